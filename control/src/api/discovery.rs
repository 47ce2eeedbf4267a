//! Discovery: `/version`, legacy (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) and aggregated
//! (`apidiscovery.k8s.io/v2`) discovery, and the OpenAPI v3 documents.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::{ApiError, ApiState, json, json_as};
use crate::registry::{self, RESOURCES, Resource};

/// The Kubernetes version whose API is served; kubectl's version skew is judged against it.
pub const KUBERNETES_MINOR: &str = "33";

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// `GET /version`.
pub async fn version() -> Response {
    json(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": KUBERNETES_MINOR,
            "gitVersion": format!("v1.{KUBERNETES_MINOR}.0+skiff.{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
            "emulationMajor": "1",
            "emulationMinor": KUBERNETES_MINOR,
        }),
    )
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').any(|m| {
                m.contains("g=apidiscovery.k8s.io")
                    && m.contains("v=v2")
                    && !m.contains("v=v2beta1")
                    && m.contains("as=APIGroupDiscoveryList")
            })
        })
}

/// `GET /api`.
pub async fn core_versions(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        return json_as(StatusCode::OK, &aggregated(true), AGGREGATED);
    }
    json(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": state.advertise}],
        }),
    )
}

/// `GET /apis`.
pub async fn groups(headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        return json_as(StatusCode::OK, &aggregated(false), AGGREGATED);
    }
    let groups: Vec<Value> = named_groups()
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

/// The non-core groups with their versions, preferred first.
fn named_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for (group, version) in registry::group_versions() {
        if group.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == group) {
            Some((_, versions)) => versions.push(version),
            None => out.push((group, vec![version])),
        }
    }
    out
}

/// Subresources of a resource: (name, responseKind group, version, kind, verbs).
fn subresources(
    r: &Resource,
) -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
)> {
    const GPU: &[&str] = &["get", "patch", "update"];
    let mut out = Vec::new();
    if r.status {
        out.push(("status", r.group, r.version, r.kind, GPU));
    }
    if r.scale {
        out.push(("scale", "autoscaling", "v1", "Scale", GPU));
    }
    if r.kind == "Pod" && r.group.is_empty() {
        out.push(("binding", "", "v1", "Binding", &["create"][..]));
        out.push(("eviction", "policy", "v1", "Eviction", &["create"][..]));
        out.push(("log", "", "v1", "Pod", &["get"][..]));
    }
    if r.kind == "Namespace" && r.group.is_empty() {
        out.push(("finalize", "", "v1", "Namespace", &["update"][..]));
    }
    out
}

/// `GET /api/v1` and `GET /apis/<g>/<v>`: the APIResourceList.
pub fn resource_list(path: &str) -> Result<Response, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version) = match segments.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        // `/apis/<group>`: the APIGroup.
        ["apis", g] => {
            let (name, versions) = named_groups()
                .into_iter()
                .find(|(name, _)| name == g)
                .ok_or(ApiError::UnknownPath)?;
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            return Ok(json(
                StatusCode::OK,
                &json!({"kind": "APIGroup", "apiVersion": "v1", "name": name,
                        "versions": versions, "preferredVersion": versions[0]}),
            ));
        }
        _ => return Err(ApiError::UnknownPath),
    };
    let served: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return Err(ApiError::UnknownPath);
    }
    let mut resources = Vec::new();
    for r in served {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for (sub, g, v, kind, verbs) in subresources(r) {
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if g != r.group || v != r.version {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": resources}),
    ))
}

/// The aggregated discovery document of the core group (`core`) or of every other group.
fn aggregated(core: bool) -> Value {
    let mut items = Vec::new();
    let groups: Vec<(&str, Vec<&str>)> = if core {
        vec![("", vec!["v1"])]
    } else {
        named_groups()
    };
    for (group, versions) in groups {
        let versions: Vec<Value> = versions
            .iter()
            .map(|version| {
                let resources: Vec<Value> = RESOURCES
                    .iter()
                    .filter(|r| r.group == group && r.version == *version)
                    .map(|r| {
                        let mut entry = json!({
                            "resource": r.plural,
                            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": r.singular,
                            "verbs": r.verbs,
                        });
                        if !r.short_names.is_empty() {
                            entry["shortNames"] = json!(r.short_names);
                        }
                        if !r.categories.is_empty() {
                            entry["categories"] = json!(r.categories);
                        }
                        let subs: Vec<Value> = subresources(r)
                            .into_iter()
                            .map(|(sub, g, v, kind, verbs)| json!({
                                "subresource": sub,
                                "responseKind": {"group": g, "version": v, "kind": kind},
                                "verbs": verbs,
                            }))
                            .collect();
                        if !subs.is_empty() {
                            entry["subresources"] = json!(subs);
                        }
                        entry
                    })
                    .collect();
                json!({"version": version, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(json!({"metadata": {"name": group}, "versions": versions}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// `GET /openapi/v3`.
pub async fn openapi_index() -> Response {
    json(StatusCode::OK, crate::schema::schemas().index())
}

/// `GET /openapi/v3/<api/v1 | apis/g/v>`, immutable under its hash.
pub async fn openapi_document(Path(path): Path<String>) -> Response {
    let Some((body, hash)) = crate::schema::schemas().document(&path) else {
        return ApiError::UnknownPath.into_response();
    };
    let mut response = Response::new(axum::body::Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, immutable"),
    );
    response
}

/// `GET /openapi/v2`: an empty document. Schemas are served as v3 only; kubectl falls back to v2
/// for kinds v3 does not list (an unknown apiVersion) and, finding none there either, reports the
/// missing kind as it does against upstream. Zero bytes are the empty protobuf message.
pub async fn openapi_v2() -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    );
    response
}
