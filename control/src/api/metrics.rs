//! `metrics.k8s.io/v1beta1`: what pods and nodes use now, for `kubectl top` and autoscalers,
//! served as metrics-server serves it. The figures come from the nodes' summaries (the
//! kubelet's `GET /stats/summary`): from the endpoint of each node that runs a pod asked
//! about, or in process for the server's own node. A node that cannot be reached leaves its
//! pods out of a list, as metrics-server leaves out what it could not scrape.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use http::{Method, StatusCode};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::objects::list_objects;
use super::selectors::Selectors;
use super::{ApiError, ApiRequest, ApiState, Output, json as json_response, node_client};
use crate::registry::{self, ParsedQuantity, Resource};
use crate::store::Key;

const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// How long a node may take to answer for its usage.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the summary of the node running in the server's process.
pub trait NodeSummary: Send + Sync {
    /// The node's summary, as its endpoint serves it at `/stats/summary`.
    fn summary(&self) -> Value;
}

/// `metrics.k8s.io/v1beta1` PodMetrics.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics")]
pub struct PodMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    pub metadata: ObjectMeta,
    /// When the usage was measured: the end of the window.
    pub timestamp: Time,
    /// The window the usage was averaged over.
    pub window: String,
    /// What each running container uses.
    pub containers: Vec<ContainerMetrics>,
}

/// `metrics.k8s.io/v1beta1` ContainerMetrics.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.ContainerMetrics")]
pub struct ContainerMetrics {
    pub name: String,
    /// `cpu` and `memory` in use.
    pub usage: BTreeMap<String, Quantity>,
}

/// `metrics.k8s.io/v1beta1` NodeMetrics.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics")]
pub struct NodeMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    pub metadata: ObjectMeta,
    pub timestamp: Time,
    pub window: String,
    /// `cpu` and `memory` in use on the node.
    pub usage: BTreeMap<String, Quantity>,
}

/// The parts of a node's summary read here.
#[derive(Debug, Deserialize)]
struct Summary {
    node: NodeStats,
    #[serde(default)]
    pods: Vec<PodStats>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeStats {
    cpu: Option<CpuStats>,
    memory: Option<MemoryStats>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStats {
    pod_ref: PodRef,
    #[serde(default)]
    containers: Vec<ContainerStats>,
}

#[derive(Debug, Deserialize)]
struct PodRef {
    uid: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStats {
    name: String,
    cpu: Option<CpuStats>,
    memory: Option<MemoryStats>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CpuStats {
    time: String,
    usage_nano_cores: u64,
    #[serde(default)]
    window_nano_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemoryStats {
    working_set_bytes: u64,
}

/// `GET` of `pods` or `nodes` in metrics.k8s.io: one object, or a list.
pub async fn serve(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    if request.method != Method::GET || request.query.flag("watch") {
        return Err(ApiError::MethodNotAllowed);
    }
    if request.target.subresource.is_some() {
        return Err(ApiError::UnknownPath);
    }
    let resource = request.resource();
    let items = match resource.plural {
        "pods" => pod_metrics(state, request).await?,
        _ => node_metrics(state, request).await?,
    };
    if request.target.name.is_some() {
        let item = items.into_iter().next().ok_or_else(|| {
            let name = request.target.name.clone().unwrap_or_default();
            let name = match &request.target.namespace {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name,
            };
            ApiError::NotFound {
                group: resource.group.into(),
                resource: format!("{}.{}", resource.kind.to_lowercase(), resource.group),
                name,
            }
        })?;
        return respond(resource, request, item, false);
    }
    respond(resource, request, Value::Array(items), true)
}

fn respond(
    resource: &'static Resource,
    request: &ApiRequest,
    body: Value,
    list: bool,
) -> Result<Response, ApiError> {
    let now = chrono::Utc::now();
    let items = match (&body, list) {
        (Value::Array(items), true) => items.clone(),
        _ => vec![body.clone()],
    };
    Ok(match request.output {
        Output::Table => {
            let include = request.query.get("includeObject").unwrap_or("Metadata");
            json_response(
                StatusCode::OK,
                &super::table::table(resource, &items, json!({}), include, now),
            )
        }
        _ if list => json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version(),
                "metadata": {},
                "items": items,
            }),
        ),
        _ => json_response(StatusCode::OK, &body),
    })
}

/// PodMetrics of the pods asked for that run on a node that reported them.
async fn pod_metrics(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Vec<Value>, ApiError> {
    let pods_resource = registry::find("", "v1", "pods").expect("pods are served");
    let namespace = request.target.namespace.as_deref();
    let pods = match &request.target.name {
        Some(name) => {
            let key = Key::new(&pods_resource.storage_name(), namespace.unwrap_or(""), name);
            vec![
                super::objects::read(state, pods_resource, &key)
                    .await?
                    .value,
            ]
        }
        None => {
            let selectors = Selectors::from_query(&request.query, pods_resource)?;
            list_objects(state, pods_resource, namespace, &selectors, None, None)
                .await?
                .0
        }
    };
    let mut by_node: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for pod in pods {
        if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            by_node.entry(node.to_string()).or_default().push(pod);
        }
    }
    let summaries = summaries(state, by_node.keys().cloned().collect()).await;
    let mut items = Vec::new();
    for (node, pods) in by_node {
        let Some(summary) = summaries.get(&node) else {
            continue;
        };
        let reported: HashMap<&str, &PodStats> = summary
            .pods
            .iter()
            .map(|p| (p.pod_ref.uid.as_str(), p))
            .collect();
        for pod in pods {
            let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
            if let Some(stats) = reported.get(uid)
                && let Some(metrics) = pod_metrics_of(&pod, stats)
            {
                items.push(metrics);
            }
        }
    }
    Ok(items)
}

/// The PodMetrics of `pod` from what its node reported, if it reported a container with CPU
/// and memory figures.
fn pod_metrics_of(pod: &Value, stats: &PodStats) -> Option<Value> {
    let mut containers = Vec::new();
    let mut sampled: Option<(&str, u64)> = None;
    for container in &stats.containers {
        let (Some(cpu), Some(memory)) = (&container.cpu, &container.memory) else {
            continue;
        };
        // The pod's window is its shortest container's, as the figures are only that fresh.
        if sampled.is_none_or(|(_, w)| cpu.window_nano_seconds < w) {
            sampled = Some((&cpu.time, cpu.window_nano_seconds));
        }
        containers.push(ContainerMetrics {
            name: container.name.clone(),
            usage: usage(cpu.usage_nano_cores, memory.working_set_bytes),
        });
    }
    let (time, window) = sampled?;
    let metrics = PodMetrics {
        kind: Some("PodMetrics".into()),
        api_version: Some(API_VERSION.into()),
        metadata: ObjectMeta {
            name: pod["metadata"]["name"].as_str().map(str::to_string),
            namespace: pod["metadata"]["namespace"].as_str().map(str::to_string),
            labels: serde_json::from_value(pod["metadata"]["labels"].clone()).ok(),
            creation_timestamp: Some(Time(Timestamp::now())),
            ..ObjectMeta::default()
        },
        timestamp: parse_time(time),
        window: go_duration(window),
        containers,
    };
    serde_json::to_value(metrics).ok()
}

/// NodeMetrics of the nodes asked for that answered.
async fn node_metrics(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Vec<Value>, ApiError> {
    let nodes_resource = registry::find("", "v1", "nodes").expect("nodes are served");
    let nodes = match &request.target.name {
        Some(name) => {
            let key = Key::new(&nodes_resource.storage_name(), "", name);
            vec![
                super::objects::read(state, nodes_resource, &key)
                    .await?
                    .value,
            ]
        }
        None => {
            let selectors = Selectors::from_query(&request.query, nodes_resource)?;
            list_objects(state, nodes_resource, None, &selectors, None, None)
                .await?
                .0
        }
    };
    let names: Vec<String> = nodes
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let summaries = summaries(state, names).await;
    let mut items = Vec::new();
    for node in &nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or("");
        let Some(summary) = summaries.get(name) else {
            continue;
        };
        let (Some(cpu), Some(memory)) = (&summary.node.cpu, &summary.node.memory) else {
            continue;
        };
        let metrics = NodeMetrics {
            kind: Some("NodeMetrics".into()),
            api_version: Some(API_VERSION.into()),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: serde_json::from_value(node["metadata"]["labels"].clone()).ok(),
                creation_timestamp: Some(Time(Timestamp::now())),
                ..ObjectMeta::default()
            },
            timestamp: parse_time(&cpu.time),
            window: go_duration(cpu.window_nano_seconds),
            usage: usage(cpu.usage_nano_cores, memory.working_set_bytes),
        };
        if let Ok(value) = serde_json::to_value(metrics) {
            items.push(value);
        }
    }
    Ok(items)
}

fn usage(nano_cores: u64, bytes: u64) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu_quantity(nano_cores))),
        ("memory".to_string(), Quantity(memory_quantity(bytes))),
    ])
}

fn parse_time(time: &str) -> Time {
    Time(time.parse().unwrap_or_else(|_| Timestamp::now()))
}

/// The summaries of the named nodes that answered, fetched at once.
async fn summaries(state: &Arc<ApiState>, nodes: Vec<String>) -> HashMap<String, Summary> {
    let fetched = futures::future::join_all(nodes.into_iter().map(|node| async move {
        let summary = summary(state, &node).await;
        if let Err(e) = &summary {
            tracing::warn!(node = %node, error = %e, "the node's usage could not be read");
        }
        (node, summary)
    }))
    .await;
    fetched
        .into_iter()
        .filter_map(|(node, summary)| Some((node, summary.ok()?)))
        .collect()
}

async fn summary(state: &Arc<ApiState>, node: &str) -> Result<Summary, ApiError> {
    if let Some(local) = state.local_node.as_ref().filter(|l| l.name == node) {
        return serde_json::from_value(local.summary.summary())
            .map_err(|e| ApiError::Internal(format!("reading node {node}'s summary: {e}")));
    }
    let nodes = registry::find("", "v1", "nodes").expect("nodes are served");
    let object = super::objects::read(state, nodes, &Key::new(&nodes.storage_name(), "", node))
        .await?
        .value;
    let fetch = async {
        let response = state.nodes.get(node, &object, "/stats/summary").await?;
        if !response.status().is_success() {
            let message = node_client::failure_message(response).await;
            return Err(ApiError::Internal(format!(
                "node {node} did not serve its summary: {message}"
            )));
        }
        use http_body_util::BodyExt;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::Internal(format!("reading node {node}'s summary: {e}")))?
            .to_bytes();
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Internal(format!("reading node {node}'s summary: {e}")))
    };
    tokio::time::timeout(SUMMARY_TIMEOUT, fetch)
        .await
        .map_err(|_| ApiError::Internal(format!("node {node} did not serve its summary in time")))?
}

/// The usage of a PodMetrics summed over its containers, or a NodeMetrics', as quantities:
/// what metrics-server's tables print.
pub fn total_usage(metrics: &Value) -> (String, String) {
    let usages: Vec<&Value> = match metrics["containers"].as_array() {
        Some(containers) => containers.iter().map(|c| &c["usage"]).collect(),
        None => vec![&metrics["usage"]],
    };
    let amount = |usage: &Value, resource: &str| {
        usage[resource]
            .as_str()
            .and_then(ParsedQuantity::parse)
            .map_or(0, |q| q.nanos())
    };
    let cpu: i128 = usages.iter().map(|u| amount(u, "cpu")).sum();
    let memory: i128 = usages.iter().map(|u| amount(u, "memory")).sum();
    (
        ParsedQuantity::from_nanos(cpu).to_string(),
        ParsedQuantity::binary(memory / 1_000_000_000).to_string(),
    )
}

/// CPU in nanocores as a canonical quantity, as metrics-server writes it: `5m`, `1234567n`.
pub fn cpu_quantity(nano_cores: u64) -> String {
    ParsedQuantity::from_nanos(i128::from(nano_cores)).to_string()
}

/// Bytes as a canonical binary quantity: `2Mi`, `1500Ki`; under 1024 bytes, decimal.
pub fn memory_quantity(bytes: u64) -> String {
    ParsedQuantity::binary(i128::from(bytes)).to_string()
}

/// A duration as Go prints a `time.Duration`: `10.227s`, `500ms`, `1m0.5s`.
pub fn go_duration(nanos: u64) -> String {
    fn fraction(value: u64, unit: u64) -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.ilog10() as usize;
        let text = format!("{rest:0digits$}");
        format!("{whole}.{}", text.trim_end_matches('0'))
    }
    match nanos {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", fraction(n, 1_000)),
        n if n < 1_000_000_000 => format!("{}ms", fraction(n, 1_000_000)),
        n => {
            let seconds = fraction(n % 60_000_000_000, 1_000_000_000);
            let minutes = n / 60_000_000_000;
            match (minutes / 60, minutes % 60) {
                (0, 0) => format!("{seconds}s"),
                (0, m) => format!("{m}m{seconds}s"),
                (h, m) => format!("{h}h{m}m{seconds}s"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical_as_metrics_server_writes_them() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(5_000_000), "5m");
        assert_eq!(cpu_quantity(1_234_567), "1234567n");
        assert_eq!(cpu_quantity(2_000), "2u");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(memory_quantity(1000), "1k");
        assert_eq!(memory_quantity(512), "512");
        assert_eq!(memory_quantity(2 * 1024 * 1024), "2Mi");
        assert_eq!(memory_quantity(1500 * 1024), "1500Ki");
        assert_eq!(memory_quantity(1500), "1500");
    }

    #[test]
    fn tables_sum_a_pods_containers() {
        let pod = json!({"containers": [
            {"name": "a", "usage": {"cpu": "5m", "memory": "2Mi"}},
            {"name": "b", "usage": {"cpu": "1234567n", "memory": "64Ki"}},
        ]});
        assert_eq!(total_usage(&pod), ("6234567n".into(), "2112Ki".into()));
        let node = json!({"usage": {"cpu": "2", "memory": "1k"}});
        assert_eq!(total_usage(&node), ("2".into(), "1k".into()));
    }

    #[test]
    fn windows_print_as_go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(10_227_000_000), "10.227s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(60_500_000_000), "1m0.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(999), "999ns");
    }

    #[test]
    fn a_pods_metrics_come_from_its_nodes_summary() {
        let summary: Summary = serde_json::from_value(json!({
            "node": {"nodeName": "edge", "cpu": {"time": "2026-01-02T03:04:05Z", "usageNanoCores": 1, "windowNanoSeconds": 1}},
            "pods": [{"podRef": {"name": "web", "namespace": "default", "uid": "u1"}, "containers": [
                {"name": "app", "cpu": {"time": "2026-01-02T03:04:05Z", "usageNanoCores": 5_000_000, "windowNanoSeconds": 10_000_000_000u64},
                 "memory": {"workingSetBytes": 2_097_152}},
                {"name": "shipper", "cpu": {"time": "2026-01-02T03:04:05Z", "usageNanoCores": 0, "windowNanoSeconds": 2_500_000_000u64},
                 "memory": {"workingSetBytes": 65_536}},
            ]}],
        }))
        .unwrap();
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"}}});
        let metrics = pod_metrics_of(&pod, &summary.pods[0]).unwrap();
        assert_eq!(metrics["kind"], "PodMetrics");
        assert_eq!(metrics["metadata"]["labels"]["app"], "web");
        assert_eq!(metrics["timestamp"], "2026-01-02T03:04:05Z");
        assert_eq!(metrics["window"], "2.5s");
        assert_eq!(
            metrics["containers"],
            json!([
                {"name": "app", "usage": {"cpu": "5m", "memory": "2Mi"}},
                {"name": "shipper", "usage": {"cpu": "0", "memory": "64Ki"}},
            ])
        );
        // A node's summary without its memory gives no NodeMetrics.
        assert!(summary.node.memory.is_none());
    }
}
