//! The template history of StatefulSets and DaemonSets: one ControllerRevision per distinct pod
//! template, named `<owner>-<hash>` and labelled `controller.kubernetes.io/hash`, holding the
//! template as upstream's `getPatch` writes it (`{"spec":{"template":{..., "$patch":
//! "replace"}}}`), which is what `kubectl rollout history` shows and `rollout undo` applies.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::deployment::template_hash;
use super::pods;

/// The label with a revision's hash.
const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// A revision's data for a template.
pub fn data_of(template: &PodTemplateSpec) -> serde_json::Value {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// Makes sure `template` has a revision owned by `owner` and returns the names of the current
/// revision (`current` while it exists, else the update one) and the update revision. A
/// template of an older revision that comes back makes that revision the latest again. Old
/// revisions beyond `history_limit` (default 10) are deleted, never the two in use.
pub async fn sync<K>(
    client: &Client,
    owner: &K,
    template: &PodTemplateSpec,
    collisions: Option<i32>,
    current: Option<&str>,
    history_limit: Option<i32>,
) -> Result<(String, String), kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    let namespace = owner.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let uid = owner.uid().unwrap_or_default();
    let mut revisions: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| pods::controller_of(r).is_some_and(|o| o.uid == uid))
        .collect();
    revisions.sort_by_key(|r| r.revision);
    let data = data_of(template);
    let hash = template_hash(template, collisions);
    let owner_name = owner.name_any();
    let next = revisions.last().map_or(1, |r| r.revision + 1);
    let update = match revisions
        .iter()
        .find(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
    {
        Some(existing) if existing.revision != next - 1 => {
            let mut bumped = existing.clone();
            bumped.revision = next;
            bumped.metadata.managed_fields = None;
            api.replace(&bumped.name_any(), &super::post_params(), &bumped)
                .await?
                .name_any()
        }
        Some(existing) => existing.name_any(),
        None => {
            let mut revision = ControllerRevision {
                data: Some(RawExtension(data)),
                revision: next,
                ..ControllerRevision::default()
            };
            revision.metadata.name = Some(format!("{owner_name}-{hash}"));
            revision.metadata.namespace = Some(namespace.clone());
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.clone());
            revision.metadata.labels = Some(labels);
            revision.metadata.owner_references = Some(vec![pods::controller_ref(owner)]);
            match api.create(&super::post_params(), &revision).await {
                Ok(made) => made.name_any(),
                Err(kube::Error::Api(e)) if e.code == 409 => format!("{owner_name}-{hash}"),
                Err(error) => return Err(error),
            }
        }
    };
    let current = current
        .filter(|c| revisions.iter().any(|r| r.name_any() == *c))
        .map_or_else(|| update.clone(), str::to_owned);
    let limit = history_limit.unwrap_or(10).max(0) as usize;
    let old: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| r.name_any() != update && r.name_any() != current)
        .collect();
    for r in old.iter().take(old.len().saturating_sub(limit)) {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok((current, update))
}

/// The template a stored revision holds.
pub async fn template_of(
    client: &Client,
    namespace: &str,
    revision: &str,
) -> Result<Option<PodTemplateSpec>, kube::Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let stored = api.get(revision).await?;
    Ok(stored
        .data
        .and_then(|d| d.0.pointer("/spec/template").cloned())
        .map(|mut t| {
            if let Some(o) = t.as_object_mut() {
                o.remove("$patch");
            }
            t
        })
        .and_then(|t| serde_json::from_value(t).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_data_replaces_the_whole_template_as_upstream_patches_it() {
        let template: PodTemplateSpec =
            serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}}})).unwrap();
        assert_eq!(
            data_of(&template),
            json!({"spec": {"template": {"metadata": {"labels": {"app": "web"}}, "$patch": "replace"}}})
        );
    }
}
