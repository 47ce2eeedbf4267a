//! `GET .../pods/NAME/log`: a container's output, as `kubectl logs` asks for it (`container`,
//! `previous`, `tailLines`, `timestamps`, `sinceSeconds`, `sinceTime`, `limitBytes`, `follow`).
//! Pods of the node running in the server's process are read from that node's files through
//! [`PodLogs`]; the logs of pods on other nodes come from those nodes' endpoints, through
//! [`super::node_client`].

use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use super::objects::read;
use super::{ApiError, ApiRequest, ApiState, node_client};
use crate::store::Key;

/// What `kubectl logs` asks of one run's log.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub limit_bytes: Option<usize>,
}

/// One run of one container of one pod.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: String,
    /// The run's restart count: 0 for the first run.
    pub run: u32,
}

/// A log's text as it is sent: chunks, or the error that ended it.
pub type LogStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Reads container logs a node keeps.
pub trait PodLogs: Send + Sync {
    /// The run's log as kubectl asks for it, then, when `follow`, what the run writes later,
    /// until it ends. NotFound when the run left no log. May block: it reads files.
    fn open(
        &self,
        run: &ContainerRun,
        options: &LogOptions,
        follow: bool,
    ) -> std::io::Result<LogStream>;
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

fn options(request: &ApiRequest) -> Result<LogOptions, ApiError> {
    let number = |key: &str| -> Result<Option<i64>, ApiError> {
        request
            .query
            .get(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| bad(format!("{key}: Invalid value: \"{v}\": must be an integer")))
            })
            .transpose()
    };
    let since = match (number("sinceSeconds")?, request.query.get("sinceTime")) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "at most one of sinceTime or sinceSeconds may be specified".into(),
            ));
        }
        (Some(seconds), None) if seconds < 1 => {
            return Err(bad(
                "sinceSeconds: Invalid value: must be greater than 0".into()
            ));
        }
        (Some(seconds), None) => Some(chrono::Utc::now() - chrono::Duration::seconds(seconds)),
        (None, Some(time)) => Some(
            chrono::DateTime::parse_from_rfc3339(time)
                .map_err(|_| bad(format!("sinceTime: Invalid value: \"{time}\"")))?
                .with_timezone(&chrono::Utc),
        ),
        (None, None) => None,
    };
    let tail_lines = number("tailLines")?;
    if tail_lines.is_some_and(|t| t < 0) {
        return Err(bad(
            "tailLines: Invalid value: must be greater than or equal to 0".into(),
        ));
    }
    let limit_bytes = number("limitBytes")?;
    if limit_bytes.is_some_and(|l| l < 1) {
        return Err(bad(
            "limitBytes: Invalid value: must be greater than 0".into()
        ));
    }
    Ok(LogOptions {
        timestamps: request.query.flag("timestamps"),
        tail_lines: tail_lines.map(|t| t as usize),
        since,
        limit_bytes: limit_bytes.map(|l| l as usize),
    })
}

/// The container a request means: the named one, or the pod's only one.
fn pick_container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let (app, init) = (names("containers"), names("initContainers"));
    match asked {
        Some(asked) if app.iter().chain(&init).any(|c| c == asked) => Ok(asked.to_string()),
        Some(asked) => Err(bad(format!(
            "container {asked} is not valid for pod {name}"
        ))),
        None if app.len() == 1 => Ok(app[0].clone()),
        None => Err(bad(format!(
            "a container name must be specified for pod {name}, choose one of: [{}] or one of the init containers: [{}]",
            app.join(" "),
            init.join(" ")
        ))),
    }
}

/// The container's status entry, from either list.
fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|f| pod["status"][f].as_array())
        .flatten()
        .find(|s| s["name"].as_str() == Some(container))
}

/// The query a node's log endpoint takes: the run, and what kubectl asked for.
fn node_query(run: &ContainerRun, options: &LogOptions, follow: bool) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("uid", &run.uid)
        .append_pair("run", &run.run.to_string());
    if follow {
        query.append_pair("follow", "true");
    }
    if options.timestamps {
        query.append_pair("timestamps", "true");
    }
    if let Some(tail) = options.tail_lines {
        query.append_pair("tailLines", &tail.to_string());
    }
    if let Some(since) = options.since {
        query.append_pair(
            "sinceTime",
            &since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        );
    }
    if let Some(limit) = options.limit_bytes {
        query.append_pair("limitBytes", &limit.to_string());
    }
    query.finish()
}

/// The run's log from the endpoint of the node that ran it; None when the node kept no log of
/// the run.
async fn from_node(
    state: &Arc<ApiState>,
    node: &str,
    run: &ContainerRun,
    options: &LogOptions,
    follow: bool,
) -> Result<Option<Body>, ApiError> {
    let nodes = crate::registry::find("", "v1", "nodes").expect("nodes are served");
    let stored = state
        .store
        .get(&Key::new(&nodes.storage_name(), "", node))
        .await;
    let Some(object) = stored.map_err(|e| ApiError::from_store(e, nodes, node))? else {
        return Err(bad(format!(
            "the logs of pod \"{}\" are kept on node {node}, which is not registered",
            run.pod
        )));
    };
    let path = format!(
        "/containerLogs/{}/{}/{}?{}",
        run.namespace,
        run.pod,
        run.container,
        node_query(run, options, follow)
    );
    let response = state.nodes.get(node, &object.value, &path).await?;
    if response.status().is_success() {
        return Ok(Some(Body::new(response.into_body())));
    }
    if node_client::not_found(&response) {
        return Ok(None);
    }
    let message = node_client::failure_message(response).await;
    Err(ApiError::Internal(format!(
        "node {node} did not serve the log: {message}"
    )))
}

/// `GET pods/NAME/log`.
pub async fn pod_log(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let resource = request.resource();
    let namespace = request.target.namespace.clone().unwrap_or_default();
    let name = request.target.name.clone().unwrap_or_default();
    let key = Key::new(&resource.storage_name(), &namespace, &name);
    let pod = read(state, resource, &key).await?.value;
    let container = pick_container(&pod, &name, request.query.get("container"))?;
    let options = options(request)?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node.is_empty() {
        return Err(bad(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: the pod is not bound to a node"
        )));
    }
    let status = container_status(&pod, &container);
    let restarts = status.and_then(|s| s["restartCount"].as_u64()).unwrap_or(0) as u32;
    let previous = request.query.flag("previous");
    let run = if previous {
        if restarts == 0 {
            return Err(bad(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        restarts - 1
    } else {
        restarts
    };
    let waiting = status.and_then(|s| s["state"].get("waiting")).is_some()
        && status.and_then(|s| s.get("containerID")).is_none();
    let run = ContainerRun {
        namespace,
        pod: name.clone(),
        uid: pod["metadata"]["uid"].as_str().unwrap_or("").to_string(),
        container: container.clone(),
        run,
    };
    let follow = request.query.flag("follow") && !previous;
    let body = match state.local_node.as_ref().filter(|l| l.name == node) {
        Some(local) => {
            let (logs, opened_run, opened_options) = (local.logs.clone(), run.clone(), options);
            let opened = tokio::task::spawn_blocking(move || {
                logs.open(&opened_run, &opened_options, follow)
            })
            .await
            .map_err(|e| ApiError::Internal(format!("reading the log: {e}")))?;
            match opened {
                Ok(stream) => Some(Body::from_stream(stream)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(ApiError::Internal(format!("reading the log: {e}"))),
            }
        }
        None => from_node(state, node, &run, &options, follow).await?,
    };
    let body = match body {
        Some(body) => body,
        None if waiting && !previous => {
            let reason = status
                .and_then(|s| s["state"]["waiting"]["reason"].as_str())
                .unwrap_or("ContainerCreating");
            return Err(bad(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            )));
        }
        None => Body::empty(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}
