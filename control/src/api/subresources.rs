//! Subresources beyond status: `scale` (an `autoscaling/v1 Scale` over spec.replicas) and the
//! review kinds that are answered rather than stored (SelfSubjectAccessReview, SelfSubjectReview,
//! SubjectAccessReview, TokenReview).

use std::sync::Arc;

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::objects::{self, Part, meta_str};
use super::patch::{PatchType, apply_patch};
use super::selectors::format_label_selector;
use super::{ApiError, ApiRequest, ApiState, json};
use crate::store::StoreError;

/// The Scale view of a scalable object.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut scale_meta = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(field) {
            scale_meta[field] = v.clone();
        }
    }
    let mut status = json!({"replicas": object["status"]["replicas"].as_i64().unwrap_or(0)});
    if let Some(selector) = object["spec"].get("selector") {
        // ReplicationControllers carry a plain map; the apps kinds a LabelSelector.
        let selector = if selector.get("matchLabels").is_some()
            || selector.get("matchExpressions").is_some()
        {
            format_label_selector(selector)
        } else {
            format_label_selector(&json!({"matchLabels": selector}))
        };
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": status,
    })
}

/// `GET`, `PUT` and `PATCH` on `<resource>/<name>/scale`.
pub async fn scale(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let r = request.resource();
    let name = request.target.name.clone().unwrap_or_default();
    let key = objects::key(r, request.target.namespace.as_deref(), &name);
    // The write is conditional only when the request names a resourceVersion.
    let body = match request.method {
        Method::PUT | Method::PATCH => Some(request.body_json()?),
        _ => None,
    };
    let precondition = body
        .as_ref()
        .and_then(|b| meta_str(b, "resourceVersion"))
        .map(str::to_string);
    for _ in 0..16 {
        let old = objects::read(state, r, &key).await?;
        let current = scale_of(&old.value);
        let wanted = match request.method {
            Method::GET => return Ok(json(StatusCode::OK, &current)),
            Method::PUT => body.clone().unwrap_or_default(),
            Method::PATCH => apply_patch(
                PatchType::of(request)?,
                None,
                &current,
                body.as_ref().unwrap_or(&Value::Null),
            )?,
            _ => return Err(ApiError::MethodNotAllowed),
        };
        if let Some(rv) = &precondition
            && *rv != old.revision.to_string()
        {
            return Err(ApiError::from_store(
                StoreError::Conflict(old.revision),
                r,
                &name,
            ));
        }
        let Some(replicas) = wanted["spec"]["replicas"].as_i64() else {
            return Err(ApiError::invalid(
                r,
                &name,
                vec![crate::registry::FieldError {
                    field: "spec.replicas".into(),
                    error_type: crate::registry::ErrorType::Required,
                    value: None,
                    detail: "Required value".into(),
                }],
            ));
        };
        let mut new = old.value.clone();
        new["spec"]["replicas"] = json!(replicas);
        let merged = objects::prepare_update(r, &old.value, new, Part::Main);
        let (mut merged, _) = objects::admit(request, r, merged, Some(&old.value))?;
        objects::record_write(request, r, &old.value, &mut merged);
        match objects::update_object(state, r, key.clone(), &old, merged, request.query.dry_run())
            .await
        {
            Ok(written) => return Ok(json(StatusCode::OK, &scale_of(&written))),
            Err(StoreError::Conflict(_)) if precondition.is_none() => {
                continue;
            }
            Err(e) => return Err(ApiError::from_store(e, r, &name)),
        }
    }
    Err(ApiError::from_store(StoreError::Conflict(0), r, &name))
}

/// `POST` of a review kind: answered from the request's user, never stored.
pub fn review(request: &ApiRequest) -> Result<Response, ApiError> {
    let r = request.resource();
    let mut review = request.body_json()?;
    objects::check_type(r, &mut review)?;
    let user = &request.user;
    match r.kind {
        "SelfSubjectReview" => {
            review["status"] = json!({"userInfo": {"username": user.name, "groups": user.groups}});
        }
        "SelfSubjectAccessReview" | "SubjectAccessReview" => {
            // Every authenticated user is authorized until the RBAC authorizer is in place.
            review["status"] =
                json!({"allowed": true, "reason": "authenticated users are authorized"});
        }
        "TokenReview" => {
            // No bearer tokens are issued yet, so none is valid.
            review["status"] = json!({"authenticated": false, "error": "token not recognized"});
        }
        _ => return Err(ApiError::MethodNotAllowed),
    }
    Ok(json(StatusCode::CREATED, &review))
}
