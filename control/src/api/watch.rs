//! Watch: chunked JSON lines of `{"type", "object"}` with upstream resourceVersion semantics
//! (unset or "0": the current objects as ADDED first; N: every change after N; older than the
//! retained history: an ERROR event carrying 410 Expired), selectors applied to both the old and
//! the new object, bookmarks, `sendInitialEvents` and `timeoutSeconds`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::objects::{self, PartialMetadata};
use super::selectors::Selectors;
use super::{ApiError, ApiRequest, ApiState, Output, TABLE_CONTENT_TYPE};
use crate::registry::Resource;
use crate::store::{Event, EventType, StoreError, Watch};

/// How long a watch runs when the client sets no timeout (upstream: 30-60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often an idle watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// Shapes watch events for one client.
struct Encoder {
    resource: &'static Resource,
    output: Output,
    include: String,
    sent_columns: bool,
}

/// A watch line over borrowed parts, encoded without copying the object first.
#[derive(serde::Serialize)]
struct Line<'a, T: serde::Serialize> {
    #[serde(rename = "type")]
    event_type: &'a str,
    object: T,
}

impl Encoder {
    /// The line for one event; `text` is the object's JSON when the store already holds it.
    fn event(&mut self, event_type: &str, object: &Value, text: Option<&str>) -> Bytes {
        match (self.output, text) {
            (Output::Json, Some(text)) => {
                let mut line = Vec::with_capacity(text.len() + 32);
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(event_type.as_bytes());
                line.extend_from_slice(b"\",\"object\":");
                line.extend_from_slice(text.as_bytes());
                line.extend_from_slice(b"}\n");
                Bytes::from(line)
            }
            (Output::Json, None) => encode(&Line { event_type, object }),
            (Output::Metadata, _) => encode(&Line {
                event_type,
                object: PartialMetadata::of(object),
            }),
            (Output::Table, _) => {
                let rv = objects::meta_str(object, "resourceVersion").unwrap_or("");
                let mut table = super::table::table(
                    self.resource,
                    std::slice::from_ref(object),
                    json!({"resourceVersion": rv}),
                    &self.include,
                    chrono::Utc::now(),
                );
                // Column definitions travel with the first event only, as upstream sends them.
                if self.sent_columns {
                    table["columnDefinitions"] = json!([]);
                }
                self.sent_columns = true;
                encode(&Line {
                    event_type,
                    object: table,
                })
            }
        }
    }

    fn bookmark(&self, revision: i64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let kind = match self.output {
            Output::Table => "Table".to_string(),
            Output::Metadata => "PartialObjectMetadata".to_string(),
            Output::Json => self.resource.kind.to_string(),
        };
        let api_version = match self.output {
            Output::Json => self.resource.api_version(),
            _ => "meta.k8s.io/v1".to_string(),
        };
        encode(
            &json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}}),
        )
    }
}

fn encode(value: &impl serde::Serialize) -> Bytes {
    let mut text = serde_json::to_vec(value).expect("JSON values encode");
    text.push(b'\n');
    Bytes::from(text)
}

/// What a store event means to a watcher with these selectors and namespace, if anything.
fn translate(
    event: &Event,
    selectors: &Selectors,
    namespace: Option<&str>,
) -> Option<&'static str> {
    if namespace.is_some_and(|ns| ns != event.key.namespace) {
        return None;
    }
    let now = selectors.matches(&event.object);
    // Without selectors every state matches: the previous one need not be looked at.
    let before = event
        .previous
        .as_ref()
        .map(|p| selectors.is_everything() || selectors.matches(p.value()));
    match (event.event_type, before, now) {
        (EventType::Added, _, true) => Some("ADDED"),
        (EventType::Deleted, _, true) => Some("DELETED"),
        (EventType::Modified, Some(false), true) => Some("ADDED"),
        (EventType::Modified, Some(true) | None, true) => Some("MODIFIED"),
        // With the previous state compacted away, a DELETED for an object the client may not
        // have is harmless; missing one it has is not.
        (EventType::Modified, Some(true) | None, false) => Some("DELETED"),
        _ => None,
    }
}

/// One watch response's body: read by whoever reads the response (the connection serving it, or
/// an in-process client), so an event goes from the store's fan-out to the client with no task
/// of its own in between; dropping the body ends the watch.
struct WatchBody {
    events: Watch,
    encoder: Encoder,
    selectors: Selectors,
    namespace: Option<String>,
    /// The current objects, sent as ADDED before any change.
    initial: std::vec::IntoIter<Value>,
    /// The revision for the bookmark that marks the initial objects' end, when one is due.
    initial_end: Option<i64>,
    bookmarks: bool,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    ticker: tokio::time::Interval,
}

impl WatchBody {
    /// The next line for the client, or None when the watch ends (its timeout, the history
    /// it needs compacted away, or the store's end).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(object) = self.initial.next() {
            return Some(self.encoder.event("ADDED", &object, None));
        }
        if let Some(revision) = self.initial_end.take() {
            return Some(self.encoder.bookmark(revision, true));
        }
        loop {
            tokio::select! {
                _ = &mut self.deadline => return None,
                // With an event waiting there is no position to claim, and no need: the event
                // itself is next. (Positions only grow, so bookmarks never go back.)
                _ = self.ticker.tick(), if self.bookmarks => {
                    if let Some(at) = self.events.progress() {
                        return Some(self.encoder.bookmark(at, false));
                    }
                }
                next = self.events.next() => match next? {
                    // The store's watch ends after its error: the line is the stream's last.
                    Err(e) => return Some(error_line(&e, self.encoder.resource)),
                    Ok(event) => {
                        let namespace = self.namespace.as_deref();
                        if let Some(t) = translate(&event, &self.selectors, namespace) {
                            return Some(self.encoder.event(t, &event.object, Some(&event.text)));
                        }
                    }
                },
            }
        }
    }
}

/// `GET ...?watch=true`.
pub async fn watch(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let r = request.resource();
    let selectors = Selectors::from_query(&request.query, r)?;
    let namespace = request.target.namespace.clone();
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        // Zero means unset, as upstream reads it.
        .filter(|t| *t > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = request.query.flag("allowWatchBookmarks");
    let send_initial = request.query.get("sendInitialEvents").map(str::to_string);
    let rv = request.query.get("resourceVersion").unwrap_or("");
    let encoder = Encoder {
        resource: r,
        output: request.output,
        include: request
            .query
            .get("includeObject")
            .unwrap_or("Metadata")
            .to_string(),
        sent_columns: false,
    };
    // Unset or "0" starts from the current objects; sendInitialEvents asks for them explicitly.
    let explicit_initial = send_initial.as_deref() == Some("true");
    let initial =
        matches!(rv, "" | "0") && send_initial.as_deref() != Some("false") || explicit_initial;
    let (start, initial_objects) = if initial {
        let (items, revision, _) =
            objects::list_objects(state, r, namespace.as_deref(), &selectors, None, None).await?;
        (revision, items)
    } else if matches!(rv, "" | "0") {
        // sendInitialEvents=false: only what happens from now on.
        (state.store.revision(), Vec::new())
    } else {
        let revision = rv
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv}")))?;
        (revision, Vec::new())
    };
    let body = match state.store.watch(Some(r.storage_name()), start).await {
        Ok(events) => {
            let stream = WatchBody {
                events,
                encoder,
                selectors,
                namespace,
                initial: initial_objects.into_iter(),
                initial_end: (explicit_initial && bookmarks).then_some(start),
                bookmarks,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                ticker: tokio::time::interval_at(
                    tokio::time::Instant::now() + BOOKMARK_EVERY,
                    BOOKMARK_EVERY,
                ),
            };
            Body::from_stream(futures::stream::unfold(stream, |mut stream| async move {
                let chunk = stream.next_chunk().await?;
                Some((Ok::<_, Infallible>(chunk), stream))
            }))
        }
        Err(e) => Body::from(error_line(&e, r)),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let content_type = match request.output {
        Output::Table => TABLE_CONTENT_TYPE,
        _ => "application/json",
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn error_line(e: &StoreError, r: &Resource) -> Bytes {
    let status = ApiError::from_store(e.clone(), r, "").status();
    encode(&json!({"type": "ERROR", "object": status}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Key;
    use serde_json::json;

    fn event(event_type: EventType, old: Option<Value>, new: Value) -> Event {
        Event {
            revision: 2,
            event_type,
            key: Key::new("configmaps", "default", "a"),
            text: new.to_string().into(),
            object: Arc::new(new),
            previous: old.map(|v| crate::store::Prior::new(v.to_string())),
        }
    }

    #[test]
    fn an_object_leaving_the_selector_is_deleted_for_the_watcher() {
        let cm = crate::registry::find("", "v1", "configmaps").unwrap();
        let q = super::super::Query(vec![("labelSelector".into(), "app=web".into())]);
        let s = Selectors::from_query(&q, cm).unwrap();
        let web = json!({"metadata": {"labels": {"app": "web"}}});
        let db = json!({"metadata": {"labels": {"app": "db"}}});
        assert_eq!(
            translate(
                &event(EventType::Modified, Some(web.clone()), db.clone()),
                &s,
                None
            ),
            Some("DELETED")
        );
        assert_eq!(
            translate(
                &event(EventType::Modified, Some(db.clone()), web.clone()),
                &s,
                None
            ),
            Some("ADDED")
        );
        assert_eq!(
            translate(
                &event(EventType::Modified, Some(db.clone()), db.clone()),
                &s,
                None
            ),
            None
        );
        assert_eq!(
            translate(
                &event(EventType::Added, None, web.clone()),
                &s,
                Some("other")
            ),
            None
        );
    }
}
