//! The built-in Ingress controller: IngressClass `skiff` by default, routing by path and by
//! host, TLS terminated with a Secret's certificate (checked with curl), and the Ingress's
//! status naming the node.

use std::time::Duration;

use skiff_tests::{Server, eventually, free_port, http_get_as, text};

/// A Deployment and a Service `name` of the HTTP hello greeting `name`.
fn app(name: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: web
        image: samples.skiff.local/http-hello:0.1.0
        ports: [{{name: http, containerPort: 8080}}]
        env: [{{name: GREETING_NAME, value: {name}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: web, port: 80, targetPort: http}}]
"#
    )
}

#[test]
fn an_ingress_routes_by_path_and_host_and_terminates_tls_with_its_secret() {
    let (http, https) = (free_port(), free_port());
    let server = Server::start_with(&[
        "--ingress-http-port",
        &http.to_string(),
        "--ingress-https-port",
        &https.to_string(),
    ])
    .unwrap();
    server.import_samples();
    for name in ["api", "site", "blog"] {
        server.apply(&app(name));
    }
    // A certificate for secure.example, in a kubernetes.io/tls Secret.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["secure.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = server.dir.path();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    server.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "secure-tls",
        &format!("--cert={}", dir.join("tls.crt").display()),
        &format!("--key={}", dir.join("tls.key").display()),
    ]);
    server.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: routes}
spec:
  tls: [{hosts: [secure.example], secretName: secure-tls}]
  rules:
  - http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: site, port: {name: web}}}}
  - host: blog.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: blog, port: {number: 80}}}}
  - host: secure.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: site, port: {number: 80}}}}
"#,
    );
    for name in ["api", "site", "blog"] {
        server.kubectl_ok(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=120s",
        ]);
    }
    // The default class is the built-in one, and the Ingress's status names the node.
    assert_eq!(
        server.field("ingress/routes", "{.spec.ingressClassName}"),
        "skiff"
    );
    assert_eq!(
        server.field("ingressclass/skiff", "{.spec.controller}"),
        "skiff.dev/ingress"
    );
    let address = eventually(Duration::from_secs(30), || {
        let ip = server.field("ingress/routes", "{.status.loadBalancer.ingress[0].ip}");
        (!ip.is_empty()).then_some(ip)
    });
    assert_eq!(address.as_deref(), Some("127.0.0.1"));

    // By path, then by host.
    let answered = |host: &str, path: &str, want: &str| {
        eventually(Duration::from_secs(30), || {
            http_get_as("127.0.0.1", http, host, path)
                .ok()
                .filter(|r| r.contains(want))
        })
        .unwrap_or_else(|| {
            panic!(
                "{host}{path}: {:?}",
                http_get_as("127.0.0.1", http, host, path)
            )
        })
    };
    let api = answered("anything.example", "/api/items", "hello, api");
    assert!(api.contains("GET /api/items"), "{api}");
    answered("anything.example", "/", "hello, site");
    answered("anything.example", "/apis", "hello, site");
    answered("blog.example", "/api", "hello, blog");
    answered("BLOG.example:8080", "/", "hello, blog");

    // TLS with the Secret's certificate, checked by a real client against it.
    let out = std::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--resolve",
            &format!("secure.example:{https}:127.0.0.1"),
            "--cacert",
        ])
        .arg(dir.join("tls.crt"))
        .arg(format!("https://secure.example:{https}/hello"))
        .output()
        .unwrap();
    let body = text(&out);
    assert!(out.status.success(), "{body}");
    assert!(
        body.contains("hello, site") && body.contains("GET /hello"),
        "{body}"
    );
}
