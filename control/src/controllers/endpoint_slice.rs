//! Keeps the EndpointSlices of every Service with a selector, as kube-controller-manager's
//! EndpointSlice controller does: the pods the selector selects that have an address, each
//! with its `ready`, `serving` and `terminating` conditions, its node and a reference to it,
//! and the ports the Service's targetPorts name in it (a number, or the name of one of the
//! pod's container ports). Pods whose ports resolve alike share a slice; a Service without
//! such pods keeps one empty slice. Slices are named `<service>-<random>`, labelled with
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`, and owned by the
//! Service, so they go with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::pods::PodCache;

/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice, and this controller's value of it.
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// What reconciling a Service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("endpoint slices of service {name}: {source}")]
    Api { name: String, source: kube::Error },
}

struct Context {
    client: Client,
    pods: Store<Pod>,
}

/// Runs the EndpointSlice controller over the shared pod cache.
pub async fn run(client: Client, cache: Arc<PodCache>) {
    let services: Api<Service> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let controller = Controller::new(services, watcher::Config::default());
    let all = controller.store();
    let context = Arc::new(Context {
        client,
        pods: cache.store(),
    });
    controller
        .owns(slices, watcher::Config::default())
        // A pod's change touches the Services that select it now and those that did before
        // it was relabelled, which the event does not tell: every Service of its namespace
        // with a selector looks again.
        .watches_stream(cache.subscribe(), move |pod| {
            let namespace = pod.namespace().unwrap_or_default();
            all.state()
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(namespace.as_str()))
                .filter(|s| selector(s).is_some())
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

/// A Service's selector, when it has one and its endpoints are this controller's to keep.
fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The port a Service port's targetPort names in `pod`, if it names one there.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
        }
    }
}

/// One endpoint of a pod, as upstream writes it: `hostname` only for a pod whose subdomain is
/// the Service (a StatefulSet's pods and their governing Service).
fn endpoint(pod: &Pod, ip: &str, service: &str, publish_not_ready: bool) -> Value {
    let ready = super::pods::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let mut endpoint = json!({
        "addresses": [ip],
        "conditions": {
            "ready": publish_not_ready || (ready && !terminating),
            "serving": ready,
            "terminating": terminating,
        },
        "targetRef": {"kind": "Pod", "namespace": pod.namespace(), "name": pod.name_any(),
                      "uid": pod.metadata.uid},
    });
    let spec = pod.spec.as_ref();
    if let Some(node) = spec.and_then(|s| s.node_name.as_deref()) {
        endpoint["nodeName"] = json!(node);
    }
    if let Some(hostname) = spec.and_then(|s| s.hostname.as_deref())
        && spec.and_then(|s| s.subdomain.as_deref()) == Some(service)
    {
        endpoint["hostname"] = json!(hostname);
    }
    endpoint
}

/// The slices a Service's pods make: their endpoints, grouped by the ports they resolve to.
fn desired(service: &Service, pods: &[Arc<Pod>]) -> Vec<(Value, Vec<Value>)> {
    let spec = service.spec.clone().unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    for pod in pods {
        let status = pod.status.as_ref();
        let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let phase = status.and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let resolved: Vec<Value> = ports
            .iter()
            .filter_map(|p| {
                let mut port = json!({"port": target_port(p, pod)?,
                    "protocol": p.protocol.as_deref().unwrap_or("TCP")});
                port["name"] = json!(p.name.as_deref().unwrap_or(""));
                if let Some(app) = &p.app_protocol {
                    port["appProtocol"] = json!(app);
                }
                Some(port)
            })
            .collect();
        let ports = Value::Array(resolved);
        groups
            .entry(ports.to_string())
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint(pod, ip, &service.name_any(), publish_not_ready));
    }
    let mut slices: Vec<(Value, Vec<Value>)> = groups.into_values().collect();
    for (_, endpoints) in &mut slices {
        endpoints.sort_by_key(|e| e["targetRef"]["name"].as_str().map(str::to_string));
    }
    if slices.is_empty() {
        slices.push((json!([]), Vec::new()));
    }
    slices
}

#[tracing::instrument(name = "endpointslice", skip_all, fields(service = %service.name_any()))]
async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = service.name_any();
    let namespace = service.namespace().unwrap_or_default();
    let Some(selector) = selector(&service) else {
        return Ok(Action::await_change());
    };
    if service.metadata.deletion_timestamp.is_some() || ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| selects(selector, p.labels()))
        .collect();
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let error = |source| Error::Api {
        name: name.clone(),
        source,
    };
    let existing = api
        .list(
            &ListParams::default()
                .labels(&format!("{SERVICE_NAME}={name},{MANAGED_BY}={CONTROLLER}")),
        )
        .await
        .map_err(error)?
        .items;
    let mut unused: Vec<EndpointSlice> = existing;
    let mut labels = service.labels().clone();
    labels.insert(SERVICE_NAME.into(), name.clone());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    let owner = super::pods::controller_ref(service.as_ref());
    for (ports, endpoints) in desired(&service, &pods) {
        let body = |slice_name: Option<String>, revision: Option<String>| -> Value {
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name, "generateName": format!("{name}-"),
                    "namespace": namespace, "labels": labels, "ownerReferences": [owner],
                    "resourceVersion": revision,
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            })
        };
        // A slice with the same ports is updated in place; one of other ports may be reused.
        let reuse = unused
            .iter()
            .position(|s| serde_json::to_value(&s.ports).ok().as_ref() == Some(&ports))
            .or(if unused.is_empty() { None } else { Some(0) });
        match reuse.map(|i| unused.remove(i)) {
            Some(slice) => {
                let wanted = body(Some(slice.name_any()), slice.resource_version());
                let current = serde_json::to_value(&slice).unwrap_or_default();
                let same = current["endpoints"] == wanted["endpoints"]
                    || (current["endpoints"].is_null() && endpoints.is_empty());
                if same
                    && current["ports"] == wanted["ports"]
                    && current["metadata"]["labels"] == wanted["metadata"]["labels"]
                {
                    continue;
                }
                let slice: EndpointSlice = serde_json::from_value(wanted)
                    .map_err(|e| error(kube::Error::SerdeError(e)))?;
                api.replace(&slice.name_any(), &super::post_params(), &slice)
                    .await
                    .map_err(error)?;
            }
            None => {
                let slice: EndpointSlice = serde_json::from_value(body(None, None))
                    .map_err(|e| error(kube::Error::SerdeError(e)))?;
                api.create(&super::post_params(), &slice)
                    .await
                    .map_err(error)?;
            }
        }
    }
    for slice in unused {
        match api
            .delete(&slice.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(error(e)),
        }
    }
    Ok(Action::await_change())
}

fn error_policy(_service: Arc<Service>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "keeping endpoint slices failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: Option<&str>, ready: bool, port_name: &str, port: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
                             "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c",
                    "ports": [{"name": port_name, "containerPort": port}]}]},
                "status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    fn service(target: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}]},
        }))
        .unwrap()
    }

    #[test]
    fn pods_are_grouped_by_the_ports_their_target_port_names() {
        let pods = [
            pod("a", Some("10.42.0.2"), true, "http", 8080),
            pod("b", Some("10.42.0.3"), false, "http", 8080),
            pod("c", Some("10.42.0.4"), true, "http", 9090),
            pod("d", None, true, "http", 8080),
        ];
        let slices = desired(&service(json!("http")), &pods);
        assert_eq!(slices.len(), 2);
        let (ports, endpoints) = &slices[0];
        assert_eq!(
            ports,
            &json!([{"port": 8080, "protocol": "TCP", "name": "http"}])
        );
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0]["addresses"], json!(["10.42.0.2"]));
        assert_eq!(
            endpoints[1]["conditions"],
            json!({"ready": false, "serving": false, "terminating": false})
        );
        assert_eq!(endpoints[0]["targetRef"]["name"], "a");
        assert_eq!(endpoints[0]["nodeName"], "n1");
        assert_eq!(slices[1].0[0]["port"], 9090);
        // A numbered targetPort is the same everywhere; no pods, one empty slice.
        assert_eq!(desired(&service(json!(8080)), &pods).len(), 1);
        assert_eq!(
            desired(&service(json!(8080)), &[]),
            vec![(json!([]), vec![])]
        );
    }
}
