//! `GET .../pods/NAME/log`: a container's output, as `kubectl logs` asks for it (`container`,
//! `previous`, `tailLines`, `timestamps`, `sinceSeconds`, `sinceTime`, `limitBytes`, `follow`).
//! Pods of the node running in the server's process are read from that node's files through
//! [`PodLogs`]; pods of other nodes answer that their node does not serve logs yet.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use super::objects::read;
use super::{ApiError, ApiRequest, ApiState};
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

/// Reads container logs a node keeps.
pub trait PodLogs: Send + Sync {
    /// The run's log rendered for kubectl; NotFound when the run left no log.
    fn render(&self, run: &ContainerRun, options: &LogOptions) -> std::io::Result<String>;
}

/// How often a followed log is read again.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

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
    let Some(local) = state
        .local_node
        .as_ref()
        .filter(|l| !node.is_empty() && l.name == node)
    else {
        return Err(bad(if node.is_empty() {
            format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: the pod is not bound to a node"
            )
        } else {
            format!(
                "the logs of pod \"{name}\" are kept on node {node}, which does not serve them to the API server yet"
            )
        }));
    };
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
    let logs = local.logs.clone();
    let first = match logs.render(&run, &options) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && waiting && !previous => {
            let reason = status
                .and_then(|s| s["state"]["waiting"]["reason"].as_str())
                .unwrap_or("ContainerCreating");
            return Err(bad(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ApiError::Internal(format!("reading the log: {e}"))),
    };
    let follow = request.query.flag("follow") && !previous;
    let mut response = if follow {
        // Every read takes the whole log and sends the lines past those already delivered; the
        // first sends only the tail asked for.
        let all = LogOptions {
            tail_lines: None,
            limit_bytes: None,
            ..options.clone()
        };
        let whole = logs.render(&run, &all).unwrap_or_default();
        let mut delivered = whole.lines().count();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
        let state = state.clone();
        tokio::spawn(async move {
            if tx.send(Ok(Bytes::from(first))).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(FOLLOW_EVERY).await;
                // Read the status first: a run that ended before the read has all its lines in.
                let running = match state.store.get(&key).await {
                    Ok(Some(object)) => container_status(&object.value, &run.container)
                        .is_some_and(|s| {
                            s["state"].get("running").is_some()
                                && s["restartCount"].as_u64().unwrap_or(0) as u32 == run.run
                        }),
                    _ => false,
                };
                let Ok(text) = logs.render(&run, &all) else {
                    return;
                };
                // A log that shrank was rotated: its new file starts afresh.
                if text.lines().count() < delivered {
                    delivered = 0;
                }
                let fresh: Vec<&str> = text.lines().skip(delivered).collect();
                if !fresh.is_empty() {
                    delivered += fresh.len();
                    let mut chunk = fresh.join("\n");
                    chunk.push('\n');
                    if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return;
                    }
                }
                if !running {
                    return;
                }
            }
        });
        Response::new(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
    } else {
        Response::new(Body::from(first))
    };
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}
