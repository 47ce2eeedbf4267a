//! PATCH: JSON patch, merge patch, strategic merge patch (upstream merge keys, from the schema
//! module) and apply patches, each retried over concurrent writers unless the patch carries a
//! resourceVersion precondition.

use std::sync::Arc;

use axum::response::Response;
use http::{StatusCode, header};
use serde_json::Value;

use super::fieldmanager::{self, ApplyError};
use super::objects::{self, Part, meta_str, metadata_mut};
use super::{ApiError, ApiRequest, ApiState, json};
use crate::registry::Resource;
use crate::store::StoreError;

/// The kinds of patch, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The patch type a request's Content-Type names.
    pub fn of(request: &ApiRequest) -> Result<Self, ApiError> {
        let content_type = request
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }
}

/// `original` with `patch` applied. `resource` is None for objects with no schema (Scale), which
/// take strategic patches as merge patches.
pub fn apply_patch(
    patch_type: PatchType,
    resource: Option<&Resource>,
    original: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::BadRequest(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            let mut doc = original.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic | PatchType::Apply => match resource {
            Some(r) => crate::schema::schemas()
                .strategic_merge(r, original, patch)
                .map_err(|e| ApiError::BadRequest(e.to_string())),
            None => {
                let mut doc = original.clone();
                json_patch::merge(&mut doc, patch);
                Ok(doc)
            }
        },
    }
}

/// Server-side apply of `applied` onto `live` by the request's field manager.
fn server_side_apply(
    request: &ApiRequest,
    live: Option<&Value>,
    applied: &Value,
) -> Result<Value, ApiError> {
    fieldmanager::apply(
        request.resource(),
        live,
        applied,
        &request.field_manager(),
        request.query.flag("force"),
        &super::now_rfc3339(),
    )
    .map_err(|e| match e {
        ApplyError::Conflicts(conflicts) => ApiError::ApplyConflict {
            message: ApplyError::Conflicts(conflicts.clone()).to_string(),
            causes: conflicts
                .iter()
                .map(|c| (c.message(), c.field.clone()))
                .collect(),
        },
        ApplyError::Invalid(message) => ApiError::BadRequest(message),
    })
}

/// `PATCH` an object or its status.
pub async fn patch(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let r = request.resource();
    let patch_type = PatchType::of(request)?;
    let patch = request.body_json()?;
    let name = request.target.name.clone().unwrap_or_default();
    if patch_type == PatchType::Apply {
        if request.query.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::BadRequest(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
            ));
        }
        if !patch.is_object() {
            return Err(ApiError::BadRequest("apply patch must be an object".into()));
        }
    }
    let precondition = patch
        .get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let key = objects::key(r, request.target.namespace.as_deref(), &name);
    let part = Part::of(request);
    for _ in 0..16 {
        let old = match state.store.get(&key).await {
            Ok(Some(old)) => old,
            Ok(None) if patch_type == PatchType::Apply && part == Part::Main => {
                return apply_create(state, request, patch).await;
            }
            Ok(None) => return Err(ApiError::not_found(r, &name)),
            Err(e) => return Err(ApiError::from_store(e, r, &name)),
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
        let mut patched = if patch_type == PatchType::Apply {
            server_side_apply(request, Some(&old.value), &patch)?
        } else {
            apply_patch(patch_type, Some(r), &old.value, &patch)?
        };
        objects::check_type(r, &mut patched)?;
        if meta_str(&patched, "name") != Some(name.as_str()) {
            return Err(ApiError::BadRequest(
                "metadata.name: Invalid value: the name of the object does not match the name on the URL".into(),
            ));
        }
        metadata_mut(&mut patched)
            .insert("resourceVersion".into(), old.revision.to_string().into());
        let merged = objects::prepare_update(r, &old.value, patched, part);
        let (mut merged, warnings) = objects::admit(request, r, merged, Some(&old.value))?;
        objects::allocate(state, request, r, &mut merged, Some(&old.value))?;
        if patch_type != PatchType::Apply {
            objects::record_write(request, r, &old.value, &mut merged);
        }
        match objects::update_object(state, r, key.clone(), &old, merged, request.query.dry_run())
            .await
        {
            Ok(written) => {
                return Ok(objects::with_warnings(
                    json(StatusCode::OK, &*written),
                    &warnings,
                ));
            }
            Err(StoreError::Conflict(_)) if precondition.is_none() => continue,
            Err(e) => return Err(ApiError::from_store(e, r, &name)),
        }
    }
    Err(ApiError::from_store(StoreError::Conflict(0), r, &name))
}

/// An apply patch to an object that does not exist yet creates it.
async fn apply_create(
    state: &Arc<ApiState>,
    request: &ApiRequest,
    mut object: Value,
) -> Result<Response, ApiError> {
    let name = request.target.name.clone().unwrap_or_default();
    if meta_str(&object, "name").is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(
            "metadata.name: Invalid value: the name of the object does not match the name on the URL".into(),
        ));
    }
    metadata_mut(&mut object).insert("name".into(), name.into());
    let object = server_side_apply(request, None, &object)?;
    let (created, warnings) = objects::create_value(state, request, object, false).await?;
    Ok(objects::with_warnings(
        created.respond(StatusCode::CREATED),
        &warnings,
    ))
}
