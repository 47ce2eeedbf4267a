//! The Kubernetes-compatible HTTP API: routing, request parsing and content negotiation. Each
//! concern has its own file; requests for objects reach [`objects`], [`watch`] and [`patch`]
//! through [`dispatch`].

pub mod discovery;
pub mod errors;
pub mod fieldmanager;
pub mod logs;
pub mod metrics;
pub mod namespaces;
pub mod node_client;
pub mod objects;
pub mod patch;
pub mod portforward;
pub mod protobuf;
pub mod selectors;
pub mod services;
pub mod spdy;
pub mod subresources;
pub mod table;
pub mod watch;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::Value;

pub use errors::ApiError;

use crate::auth::UserInfo;
use crate::registry::{self, Resource};
use crate::store::Store;

/// The largest request body accepted, as upstream's apiserver.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The node agent running in the API server's process: its pods' logs are read from its files,
/// its usage from its counters, and its pods' ports are reached directly.
#[derive(Clone)]
pub struct LocalNode {
    pub name: String,
    pub logs: std::sync::Arc<dyn logs::PodLogs>,
    pub summary: std::sync::Arc<dyn metrics::NodeSummary>,
    /// Reaches its pods' ports, for port-forwarding.
    pub ports: std::sync::Arc<dyn portforward::PodPorts>,
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode")
            .field("name", &self.name)
            .finish()
    }
}

/// What every handler shares.
pub struct ApiState {
    pub local_node: Option<LocalNode>,
    /// Reaches the other nodes' endpoints.
    pub nodes: node_client::NodeClient,
    pub store: Store,
    /// The namespaces, for the check every namespaced create makes.
    pub namespaces: namespaces::Namespaces,
    /// The address clients reach the server on, for discovery's serverAddressByClientCIDRs.
    pub advertise: String,
    /// The default tolerationSeconds new pods get for not-ready and unreachable nodes.
    pub lifecycle: crate::controllers::Lifecycle,
    /// The ClusterIPs and node ports Services hold.
    pub services: services::ServiceAllocations,
}

/// The API router; requests must carry a [`UserInfo`] extension (set by the TLS listener from a
/// verified client certificate, or by an in-process client) or get 401.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::core_versions))
        .route("/apis", get(discovery::groups))
        .route("/openapi/v3", get(discovery::openapi_index))
        .route("/openapi/v3/{*path}", get(discovery::openapi_document))
        .route("/openapi/v2", get(discovery::openapi_v2))
        .route("/api/{*rest}", any(dispatch))
        .route("/apis/{*rest}", any(dispatch))
        .fallback(|| async { ApiError::UnknownPath })
        .layer(middleware::from_fn(authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(state)
}

async fn authenticate(request: Request, next: Next) -> Response {
    if request.extensions().get::<UserInfo>().is_none() {
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

/// Where a request points: a resource, and maybe a namespace, a name and a subresource.
#[derive(Debug, Clone)]
pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Query parameters in order, repeated keys kept (exec sends `command=` several times).
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        Query(
            raw.map(|q| {
                url_pairs(q)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present and true (`true` or `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// `dryRun=All` asks for everything but the write.
    pub fn dry_run(&self) -> bool {
        self.0.iter().any(|(k, v)| k == "dryRun" && v == "All")
    }
}

fn url_pairs(
    q: &str,
) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    q.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return s.into();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            // Hex digits are read from bytes: slicing the str could split a character.
            b'%' if i + 2 < bytes.len() => match std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

/// How the client wants objects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// `as=Table`, with `includeObject` None, Metadata (default) or Object.
    Table,
    /// `as=PartialObjectMetadata` or `as=PartialObjectMetadataList`.
    Metadata,
}

impl Output {
    /// The first representation in `Accept` the server can give.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        for media in accept.split(',') {
            let mut parts = media.split(';').map(str::trim);
            let essence = parts.next().unwrap_or("");
            let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
            let param = |k: &str| params.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
            if essence != "application/json" && essence != "*/*" && essence != "application/*" {
                continue;
            }
            match (param("as"), param("g")) {
                (None, _) => return Output::Json,
                (Some("Table"), Some("meta.k8s.io")) => return Output::Table,
                (
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                    Some("meta.k8s.io"),
                ) => return Output::Metadata,
                _ => continue,
            }
        }
        Output::Json
    }
}

/// A parsed request to the object API.
pub struct ApiRequest {
    pub method: Method,
    pub target: Target,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user: UserInfo,
    pub output: Output,
}

impl ApiRequest {
    /// The body as JSON, whatever it came as (JSON, YAML, protobuf, or no Content-Type at all).
    pub fn body_json(&self) -> Result<Value, ApiError> {
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if self.body.is_empty() {
            return Err(ApiError::BadRequest("request body is empty".into()));
        }
        match essence {
            "application/vnd.kubernetes.protobuf" => protobuf::decode(&self.body)
                .map_err(|e| ApiError::BadRequest(format!("decoding protobuf body: {e}"))),
            "application/yaml" | "application/apply-patch+yaml" => {
                serde_yaml::from_slice::<Value>(&self.body)
                    .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))
            }
            ""
            | "application/json"
            | "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "text/plain"
            | "application/x-www-form-urlencoded" => serde_json::from_slice::<Value>(&self.body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding JSON body: {e}"))),
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }

    /// The resource this request is about.
    pub fn resource(&self) -> &'static Resource {
        self.target.resource
    }

    /// The field manager of a write: `fieldManager`, else derived from the User-Agent.
    pub fn field_manager(&self) -> String {
        match self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(manager) => manager.to_string(),
            None => fieldmanager::default_manager(
                self.headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok()),
            ),
        }
    }
}

/// Parses `/api/v1/...` and `/apis/<g>/<v>/...` paths into a [`Target`]; None for discovery.
fn parse_target(path: &str) -> Result<Option<Target>, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::UnknownPath),
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let find = |plural: &str| registry::find(group, version, plural).ok_or(ApiError::UnknownPath);
    let (resource, namespace, name, subresource) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty()
                && tail.is_empty()
                && matches!(*plural, "status" | "finalize")) =>
        {
            let r = find(plural)?;
            if !r.namespaced {
                return Err(ApiError::UnknownPath);
            }
            match tail {
                [] => (r, Some(*ns), None, None),
                [name] => (r, Some(*ns), Some(*name), None),
                [name, sub] => (r, Some(*ns), Some(*name), Some(*sub)),
                _ => return Err(ApiError::UnknownPath),
            }
        }
        [plural] => (find(plural)?, None, None, None),
        [plural, name] => (find(plural)?, None, Some(*name), None),
        [plural, name, sub] => (find(plural)?, None, Some(*name), Some(*sub)),
        _ => return Err(ApiError::UnknownPath),
    };
    if resource.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::UnknownPath);
    }
    Ok(Some(Target {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    }))
}

async fn dispatch(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    match handle(state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: Arc<ApiState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let Some(target) = parse_target(parts.uri.path())? else {
        return discovery::resource_list(parts.uri.path());
    };
    let user = parts
        .extensions
        .get::<UserInfo>()
        .cloned()
        .ok_or(ApiError::Unauthorized)?;
    let is_pod = target.resource.group.is_empty() && target.resource.kind == "Pod";
    if is_pod && target.subresource.as_deref() == Some("portforward") && target.name.is_some() {
        return match parts.method {
            Method::GET | Method::POST => portforward::serve(&state, &target, parts).await,
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::TooLarge(MAX_BODY))?;
    let request = ApiRequest {
        output: Output::negotiate(&parts.headers),
        method: parts.method,
        target,
        query: Query::parse(parts.uri.query()),
        headers: parts.headers,
        body,
        user,
    };
    if let Some(include) = request.query.get("includeObject")
        && !matches!(include, "None" | "Metadata" | "Object")
    {
        return Err(ApiError::BadRequest(format!(
            "includeObject: Unsupported value: \"{include}\": supported values: \"None\", \"Metadata\", \"Object\""
        )));
    }
    let resource = request.target.resource;
    let has_name = request.target.name.is_some();
    let sub = request.target.subresource.clone();
    let method = request.method.clone();
    if let Some((_, bad)) = request
        .query
        .0
        .iter()
        .find(|(k, v)| k == "dryRun" && v != "All")
    {
        return Err(ApiError::BadRequest(format!(
            "dryRun: Unsupported value: \"{bad}\": supported values: \"All\""
        )));
    }
    if resource.group == registry::METRICS_GROUP {
        return metrics::serve(&state, &request).await;
    }
    // A namespaced kind's cluster-wide path only lists and watches (upstream answers 405).
    let cluster_wide = resource.namespaced && request.target.namespace.is_none();
    let is_namespace = resource.group.is_empty() && resource.kind == "Namespace";
    let is_pod = resource.group.is_empty() && resource.kind == "Pod";
    match (method, has_name, sub.as_deref()) {
        (Method::POST | Method::DELETE, false, None) if cluster_wide => {
            Err(ApiError::MethodNotAllowed)
        }
        (_, true, Some("status")) if !resource.status => Err(ApiError::UnknownPath),
        (_, true, Some("finalize")) if !is_namespace => Err(ApiError::UnknownPath),
        (Method::GET, false, None) if request.query.flag("watch") => {
            watch::watch(&state, &request).await
        }
        (Method::GET, false, None) => objects::list(&state, &request).await,
        (Method::POST, false, None) if !registry::is_stored(resource) => {
            subresources::review(&request)
        }
        (Method::POST, false, None) => objects::create(&state, &request).await,
        (Method::DELETE, false, None) => objects::delete_collection(&state, &request).await,
        (Method::GET, true, None | Some("status")) => objects::get(&state, &request).await,
        (Method::PUT, true, None | Some("status") | Some("finalize")) => {
            objects::update(&state, &request).await
        }
        (Method::PATCH, true, None | Some("status")) => patch::patch(&state, &request).await,
        (Method::DELETE, true, None) => objects::delete(&state, &request).await,
        (_, true, Some("scale")) if resource.scale => subresources::scale(&state, &request).await,
        (Method::POST, true, Some("binding")) if is_pod => {
            subresources::bind(&state, &request).await
        }
        (Method::GET, true, Some("log")) if is_pod => logs::pod_log(&state, &request).await,
        (Method::POST, true, Some("eviction")) if is_pod => {
            subresources::evict(&state, &request).await
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// A JSON response with `code`.
pub fn json(code: StatusCode, value: &(impl serde::Serialize + ?Sized)) -> Response {
    json_as(code, value, "application/json")
}

/// A JSON response with `code` and a Content-Type naming the representation.
pub fn json_as(
    code: StatusCode,
    value: &(impl serde::Serialize + ?Sized),
    content_type: &'static str,
) -> Response {
    json_text(
        code,
        serde_json::to_vec(value).expect("JSON values encode"),
        content_type,
    )
}

/// A response with JSON already encoded.
pub fn json_text(code: StatusCode, text: impl Into<Body>, content_type: &'static str) -> Response {
    let mut response = Response::new(text.into());
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The Content-Type of a Table response.
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// The current time as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    // Written directly rather than through a format string, which is parsed on every call.
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_whole_seconds_in_utc_with_a_z() {
        let now = now_rfc3339();
        assert_eq!(now.len(), "2026-11-22T15:30:00Z".len(), "{now}");
        assert!(now.ends_with('Z'), "{now}");
        let parsed = chrono::DateTime::parse_from_rfc3339(&now).unwrap();
        assert_eq!(parsed.timestamp_subsec_nanos(), 0);
        assert_eq!(parsed.offset().local_minus_utc(), 0);
    }

    #[test]
    fn namespaced_paths_name_resource_namespace_name_and_subresource() {
        let t = parse_target("/apis/apps/v1/namespaces/default/deployments/web/scale")
            .unwrap()
            .unwrap();
        assert_eq!(t.resource.kind, "Deployment");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn namespace_status_is_a_subresource_not_a_collection() {
        let t = parse_target("/api/v1/namespaces/t/status")
            .unwrap()
            .unwrap();
        assert_eq!(t.resource.kind, "Namespace");
        assert_eq!(t.name.as_deref(), Some("t"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse_target("/api/v1/namespaces/t").unwrap().unwrap();
        assert_eq!(t.resource.kind, "Namespace");
        assert!(t.namespace.is_none());
        let t = parse_target("/api/v1/namespaces/t/pods").unwrap().unwrap();
        assert_eq!(t.resource.kind, "Pod");
        assert_eq!(t.namespace.as_deref(), Some("t"));
    }

    #[test]
    fn unknown_resources_and_versions_are_not_found() {
        assert!(parse_target("/apis/apps/v2/deployments").is_err());
        assert!(parse_target("/api/v1/widgets").is_err());
    }

    #[test]
    fn repeated_query_keys_survive_and_escapes_decode() {
        let q = Query::parse(Some(
            "command=ls&command=-l&labelSelector=app%3Dweb&odd=%a\u{e9}x",
        ));
        assert_eq!(q.get("odd"), Some("%a\u{e9}x"));
        let commands: Vec<_> = q.0.iter().filter(|(k, _)| k == "command").collect();
        assert_eq!(commands.len(), 2);
        assert_eq!(q.get("labelSelector"), Some("app=web"));
    }

    #[test]
    fn accept_header_chooses_table_metadata_or_json() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            ),
        );
        assert_eq!(Output::negotiate(&h), Output::Table);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            ),
        );
        assert_eq!(Output::negotiate(&h), Output::Metadata);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf, */*"),
        );
        assert_eq!(Output::negotiate(&h), Output::Json);
    }
}
