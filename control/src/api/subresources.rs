//! Subresources beyond status: `scale` (an `autoscaling/v1 Scale` over spec.replicas),
//! `pods/binding` (how a scheduler assigns a pod to a node) and the review kinds that are answered rather than stored (SelfSubjectAccessReview, SelfSubjectReview,
//! SubjectAccessReview, TokenReview).

use std::sync::Arc;

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::objects::{self, Part, meta_str};
use super::patch::{PatchType, apply_patch};
use super::selectors::format_label_selector;
use super::{ApiError, ApiRequest, ApiState, json};
use crate::registry::{ErrorType, FieldError};
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

/// `POST pods/<name>/binding`: assigns the pod to the Binding's target node, as upstream's
/// BindingREST does. The pod must exist, not be assigned yet, not be terminating and have no
/// scheduling gates; the Binding's uid and resourceVersion, when set, are preconditions. The pod
/// gets `spec.nodeName`, the Binding's annotations and `PodScheduled=True`; the answer is a
/// success Status.
pub async fn bind(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let r = request.resource();
    let name = request.target.name.clone().unwrap_or_default();
    let binding = request.body_json()?;
    if meta_str(&binding, "name").is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Binding object".into(),
        ));
    }
    let errors = binding_errors(&binding);
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            group: String::new(),
            kind: "Binding".into(),
            kind_group: "Binding".into(),
            name,
            causes: errors,
        });
    }
    let node = binding["target"]["name"].as_str().unwrap_or_default();
    let uid = meta_str(&binding, "uid").filter(|u| !u.is_empty());
    let revision = meta_str(&binding, "resourceVersion").filter(|v| !v.is_empty());
    let key = objects::key(r, request.target.namespace.as_deref(), &name);
    let refused = |detail: String| ApiError::Conflict {
        group: String::new(),
        resource: "pods/binding".into(),
        name: name.clone(),
        detail,
    };
    for _ in 0..16 {
        let old = objects::read(state, r, &key).await?;
        let pod = &old.value;
        if uid.is_some_and(|u| meta_str(pod, "uid") != Some(u)) {
            return Err(ApiError::Conflict {
                group: String::new(),
                resource: "pods".into(),
                name: name.clone(),
                detail: format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    uid.unwrap_or_default(),
                    meta_str(pod, "uid").unwrap_or_default()
                ),
            });
        }
        if revision.is_some_and(|v| v != old.revision.to_string()) {
            return Err(ApiError::from_store(
                StoreError::Conflict(old.revision),
                r,
                &name,
            ));
        }
        if pod["metadata"].get("deletionTimestamp").is_some() {
            return Err(refused(format!(
                "pod {name} is being deleted, cannot be assigned to a host"
            )));
        }
        if let Some(assigned) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(refused(format!(
                "pod {name} is already assigned to node \"{assigned}\""
            )));
        }
        if pod["spec"]["schedulingGates"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
        {
            return Err(refused(format!(
                "pod {name} has non-empty .spec.schedulingGates"
            )));
        }
        let mut new = pod.clone();
        new["spec"]["nodeName"] = json!(node);
        if let Some(annotations) = binding["metadata"]["annotations"].as_object()
            && !annotations.is_empty()
        {
            let meta = objects::metadata_mut(&mut new);
            let target = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(target) = target.as_object_mut() {
                for (k, v) in annotations {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
        set_condition(
            &mut new,
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null}),
        );
        match objects::update_object(state, r, key.clone(), &old, new, request.query.dry_run())
            .await
        {
            Ok(_) => {
                return Ok(json(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success", "code": 201}),
                ));
            }
            Err(StoreError::Conflict(_)) if revision.is_none() => continue,
            Err(e) => return Err(ApiError::from_store(e, r, &name)),
        }
    }
    Err(ApiError::from_store(StoreError::Conflict(0), r, &name))
}

/// Upstream `ValidatePodBinding`: a target name, and a target kind of Node or none.
fn binding_errors(binding: &Value) -> Vec<FieldError> {
    let target = &binding["target"];
    let mut errors = Vec::new();
    if let Some(kind) = target["kind"]
        .as_str()
        .filter(|k| !k.is_empty() && *k != "Node")
    {
        errors.push(FieldError {
            field: "target.kind".into(),
            error_type: ErrorType::NotSupported,
            value: Some(json!(kind)),
            detail: "supported values: \"Node\", \"<empty>\"".into(),
        });
    }
    if target["name"].as_str().is_none_or(str::is_empty) {
        errors.push(FieldError {
            field: "target.name".into(),
            error_type: ErrorType::Required,
            value: None,
            detail: String::new(),
        });
    }
    errors
}

/// Sets a pod condition as upstream's UpdatePodCondition does: the new condition replaces the
/// one of its type, keeping the old transition time when the status stays the same.
fn set_condition(pod: &mut Value, mut condition: Value) {
    let now = json!(super::now_rfc3339());
    let status = &mut pod["status"];
    if !status.is_object() {
        *status = json!({});
    }
    let conditions = status
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])))
        .and_then(Value::as_array_mut);
    let Some(conditions) = conditions else {
        return;
    };
    match conditions
        .iter_mut()
        .find(|c| c["type"] == condition["type"])
    {
        Some(old) => {
            condition["lastTransitionTime"] = if old["status"] == condition["status"] {
                old["lastTransitionTime"].clone()
            } else {
                now
            };
            *old = condition;
        }
        None => {
            condition["lastTransitionTime"] = now;
            conditions.push(condition);
        }
    }
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

/// `POST pods/<name>/eviction`: deletes the pod unless a PodDisruptionBudget forbids it now,
/// as upstream's EvictionREST does. Pods not running (Pending, finished) or being deleted go
/// regardless; otherwise the one budget selecting the pod must allow a disruption, which the
/// eviction uses up (`disruptionsAllowed` minus one, the pod in `disruptedPods`) before the pod
/// is deleted. Refused with 429 and the budget's numbers when it allows none; more than one
/// budget is an error, as upstream has it.
pub async fn evict(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let r = request.resource();
    let name = request.target.name.clone().unwrap_or_default();
    let namespace = request.target.namespace.clone().unwrap_or_default();
    let eviction = request.body_json()?;
    if meta_str(&eviction, "name").is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let options =
        objects::delete_options_of(eviction.get("deleteOptions").unwrap_or(&json!({})), request)?;
    let key = objects::key(r, Some(&namespace), &name);
    let budgets = crate::registry::find("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::Internal("poddisruptionbudgets are not served".into()))?;
    for _ in 0..16 {
        let pod = objects::read(state, r, &key).await?.value;
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        let exempt = pod["metadata"].get("deletionTimestamp").is_some()
            || matches!(phase, "Pending" | "Succeeded" | "Failed");
        if !exempt {
            let everything = super::selectors::Selectors {
                labels: super::selectors::LabelSelector::parse("")?,
                fields: super::selectors::FieldSelector::parse("", budgets)?,
            };
            let (listed, _, _) =
                objects::list_objects(state, budgets, Some(&namespace), &everything, None, None)
                    .await?;
            let labels: std::collections::BTreeMap<String, String> =
                serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap_or_default();
            let matching: Vec<Value> = listed
                .into_iter()
                .filter(|pdb| {
                    let selector = serde_json::from_value::<
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
                    >(pdb["spec"]["selector"].clone())
                    .ok();
                    crate::controllers::pods::budget_selects(selector.as_ref(), &labels)
                })
                .collect();
            if matching.len() > 1 {
                return Err(ApiError::Internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                ));
            }
            if let Some(pdb) = matching.into_iter().next() {
                match use_up_disruption(state, budgets, &pdb, &pod, request).await {
                    Ok(()) => {}
                    Err(None) => continue,
                    Err(Some(refusal)) => return Err(refusal),
                }
            }
        }
        return match objects::delete_one(state, r, key, &options).await {
            Ok(_) => Ok(json(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "code": 201}),
            )),
            Err(e) => Err(e),
        };
    }
    Err(ApiError::from_store(StoreError::Conflict(0), r, &name))
}

/// Takes one disruption from `pdb` for `pod`. `Err(None)` when the budget changed meanwhile
/// (try again), `Err(Some(_))` when the eviction is refused.
async fn use_up_disruption(
    state: &Arc<ApiState>,
    budgets: &crate::registry::Resource,
    pdb: &Value,
    pod: &Value,
    request: &ApiRequest,
) -> Result<(), Option<ApiError>> {
    let pdb_name = meta_str(pdb, "name").unwrap_or_default().to_string();
    let status = &pdb["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    let refuse = |cause: String| {
        Some(ApiError::TooManyRequests {
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            causes: vec![("DisruptionBudget".into(), cause)],
        })
    };
    if observed < generation {
        return Err(refuse(format!(
            "The disruption budget {pdb_name} is still being processed by the server."
        )));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(Some(ApiError::Forbidden(
            "pdb disruptions allowed is negative".into(),
        )));
    }
    let healthy = status["currentHealthy"].as_i64().unwrap_or(0);
    let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
    // An unready pod may go while the budget is met without it (IfHealthyBudget).
    let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    let always_unhealthy = pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
    if !ready && (always_unhealthy || healthy >= desired) {
        return Ok(());
    }
    if allowed == 0 {
        return Err(refuse(format!(
            "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
        )));
    }
    if request.query.dry_run() {
        return Ok(());
    }
    let key = objects::key(budgets, meta_str(pdb, "namespace"), &pdb_name);
    let old = objects::read(state, budgets, &key).await.map_err(Some)?;
    if old.value["metadata"]["resourceVersion"] != pdb["metadata"]["resourceVersion"] {
        return Err(None);
    }
    let mut new = old.value.clone();
    new["status"]["disruptionsAllowed"] = json!(allowed - 1);
    let pod_name = meta_str(pod, "name").unwrap_or_default();
    if !new["status"]["disruptedPods"].is_object() {
        new["status"]["disruptedPods"] = json!({});
    }
    new["status"]["disruptedPods"][pod_name] = json!(crate::api::now_rfc3339());
    match objects::update_object(state, budgets, key, &old, new, false).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict(_)) => Err(None),
        Err(e) => Err(Some(ApiError::from_store(e, budgets, &pdb_name))),
    }
}
