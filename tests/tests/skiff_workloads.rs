//! The workload verbs of the `skiff` CLI, with kubectl's output: the basics tutorial through
//! `skiff create deployment`, `scale`, `set image`, `rollout status|history|undo|restart|pause|
//! resume`, then `create job` and `cordon`, `uncordon`, `drain`.

use std::time::Duration;

use skiff_tests::{Server, eventually, text};

fn says(server: &Server, args: &[&str]) -> String {
    let out = server.skiff(args);
    assert!(
        out.status.success(),
        "skiff {}: {}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs skiff and checks what it prints, trimmed.
fn says_exactly(server: &Server, args: &[&str], want: &str) {
    assert_eq!(says(server, args).trim(), want, "skiff {}", args.join(" "));
}

/// `skiff rollout status` of the tutorial's deployment, until it is done.
fn rolled_out(server: &Server) -> String {
    says(
        server,
        &["rollout", "status", "deployment/bootcamp", "--timeout=90s"],
    )
}

fn image_of(server: &Server) -> String {
    server
        .kubectl_ok(&[
            "get",
            "deployment",
            "bootcamp",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .trim()
        .to_string()
}

#[test]
fn the_skiff_cli_runs_the_basics_tutorial_and_drains_a_node() {
    let server = Server::start().unwrap();
    server.import_sample("logwriter", "registry.local/bootcamp:1");
    server.import_sample("logwriter", "registry.local/bootcamp:2");
    let node = server.node_name();

    says_exactly(
        &server,
        &[
            "create",
            "deployment",
            "bootcamp",
            "--image=registry.local/bootcamp:1",
        ],
        "deployment.apps/bootcamp created",
    );
    let status = rolled_out(&server);
    assert!(
        status
            .trim_end()
            .ends_with("deployment \"bootcamp\" successfully rolled out"),
        "{status}"
    );
    says_exactly(
        &server,
        &["scale", "deployments/bootcamp", "--replicas=3"],
        "deployment.apps/bootcamp scaled",
    );
    rolled_out(&server);
    assert_eq!(
        server
            .kubectl_ok(&[
                "get",
                "deployment",
                "bootcamp",
                "-o",
                "jsonpath={.status.availableReplicas}"
            ])
            .trim(),
        "3"
    );

    // The container is named after the image, as kubectl names it.
    says_exactly(
        &server,
        &[
            "set",
            "image",
            "deployments/bootcamp",
            "bootcamp=registry.local/bootcamp:2",
        ],
        "deployment.apps/bootcamp image updated",
    );
    rolled_out(&server);
    assert_eq!(image_of(&server), "registry.local/bootcamp:2");
    let history = says(&server, &["rollout", "history", "deployment/bootcamp"]);
    assert_eq!(
        history
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>(),
        [
            "deployment.apps/bootcamp ",
            "REVISION  CHANGE-CAUSE",
            "1         <none>",
            "2         <none>"
        ]
    );
    let shown = says(
        &server,
        &["rollout", "history", "deployment/bootcamp", "--revision=1"],
    );
    assert!(
        shown.contains("Image:\tregistry.local/bootcamp:1"),
        "{shown}"
    );
    says_exactly(
        &server,
        &["rollout", "undo", "deployment/bootcamp"],
        "deployment.apps/bootcamp rolled back",
    );
    rolled_out(&server);
    assert_eq!(image_of(&server), "registry.local/bootcamp:1");
    says_exactly(
        &server,
        &["rollout", "undo", "deployment/bootcamp", "--to-revision=2"],
        "deployment.apps/bootcamp rolled back",
    );
    rolled_out(&server);
    assert_eq!(image_of(&server), "registry.local/bootcamp:2");

    // Paused, a template change waits; resumed, it rolls out; a restart rolls every pod.
    says_exactly(
        &server,
        &["rollout", "pause", "deployment/bootcamp"],
        "deployment.apps/bootcamp paused",
    );
    says(
        &server,
        &[
            "set",
            "image",
            "deployment/bootcamp",
            "*=registry.local/bootcamp:1",
        ],
    );
    let sets = || {
        server
            .kubectl_ok(&["get", "rs", "-l", "app=bootcamp", "-o", "name"])
            .lines()
            .count()
    };
    let before = sets();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sets(), before, "a paused deployment makes no ReplicaSet");
    says_exactly(
        &server,
        &["rollout", "resume", "deployment/bootcamp"],
        "deployment.apps/bootcamp resumed",
    );
    rolled_out(&server);
    let old_pods = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=bootcamp",
        "-o",
        "jsonpath={.items[*].metadata.uid}",
    ]);
    says_exactly(
        &server,
        &["rollout", "restart", "deployment/bootcamp"],
        "deployment.apps/bootcamp restarted",
    );
    rolled_out(&server);
    eventually(Duration::from_secs(60), || {
        let now = server.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=bootcamp",
            "-o",
            "jsonpath={.items[*].metadata.uid}",
        ]);
        now.split_whitespace()
            .all(|uid| !old_pods.contains(uid))
            .then_some(())
    })
    .expect("a restart replaces every pod");

    // A job from the command line.
    says_exactly(
        &server,
        &["create", "job", "once", "--image=registry.local/bootcamp:1"],
        "job.batch/once created",
    );
    assert_eq!(
        server.kubectl_ok(&[
            "get",
            "job",
            "once",
            "-o",
            "jsonpath={.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].name}"
        ]),
        "Never once"
    );

    // Cordon, uncordon, drain: the deployment's pods are evicted; the node stays cordoned.
    assert_eq!(
        says(&server, &["cordon", &node]).trim(),
        format!("node/{node} cordoned")
    );
    assert_eq!(
        says(&server, &["cordon", &node]).trim(),
        format!("node/{node} already cordoned")
    );
    assert_eq!(
        says(&server, &["uncordon", &node]).trim(),
        format!("node/{node} uncordoned")
    );
    // A pod no controller would make again stops drain unless forced.
    server.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bare}\nspec:\n  containers: [{name: app, image: registry.local/bootcamp:1}]\n",
    );
    server.wait_for("bare", "{.status.phase}", "Running");
    let refused = server.skiff(&["drain", &node, "--timeout=30s"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains(
            "cannot delete Pods that declare no controller (use --force to override): default/bare"
        ),
        "{}",
        text(&refused)
    );
    let drained = says(&server, &["drain", &node, "--timeout=60s", "--force"]);
    assert!(
        drained.contains(&format!("node/{node} drained")),
        "{drained}"
    );
    assert!(
        drained.contains("evicting pod default/bootcamp-"),
        "{drained}"
    );
    assert!(drained.contains("pod/bare evicted"), "{drained}");
    let listed = server.kubectl_ok(&["get", "node", &node, "--no-headers"]);
    assert!(listed.contains("SchedulingDisabled"), "{listed}");
}
