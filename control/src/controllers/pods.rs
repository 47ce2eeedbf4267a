//! What the workload controllers share about pods: one watch of every Pod feeding one cache,
//! fanned out to each controller as triggers, and upstream's pod predicates (active, ready,
//! available) and the bookkeeping of writes not yet seen (expectations).
//!
//! kube's shared reflector streams pass on applied objects only; a controller also needs to hear
//! of a pod that went (a ReplicaSet replaces it), including one that vanished while the watch was
//! broken, so the fan-out here passes every object a watch event touched, and after a relist
//! every object listed and every object the relist no longer shows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event as Change};
use kube::runtime::{WatchStreamExt, reflector::Lookup};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;

/// A pod's metadata as it reaches a controller's trigger.
pub type PodMeta = PartialObjectMeta<Pod>;

/// The cache of every Pod, shared by the controllers.
pub struct PodCache {
    store: Store<Pod>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Arc<Pod>>>>,
}

impl PodCache {
    /// Starts watching Pods; the cache fills in the background.
    pub fn start(client: Client) -> Arc<Self> {
        let writer = Writer::<Pod>::default();
        let cache = Arc::new(PodCache {
            store: writer.as_reader(),
            subscribers: Mutex::new(Vec::new()),
        });
        tokio::spawn(drive(
            Arc::downgrade(&cache),
            writer,
            Api::<Pod>::all(client),
        ));
        cache
    }

    /// The cache itself. Wait for [`Store::wait_until_ready`] before trusting it.
    pub fn store(&self) -> Store<Pod> {
        self.store.clone()
    }

    /// Every pod a watch event touches from now on, as a controller trigger.
    pub fn subscribe(&self) -> impl Stream<Item = Result<PodMeta, watcher::Error>> + Send + use<> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .expect("subscribers poisoned")
            .push(sender);
        tokio_stream::wrappers::UnboundedReceiverStream::new(receiver).map(|pod: Arc<Pod>| {
            Ok(PartialObjectMeta {
                types: None,
                metadata: pod.metadata.clone(),
                _phantom: Default::default(),
            })
        })
    }

    fn broadcast(&self, pods: impl IntoIterator<Item = Arc<Pod>>) {
        let mut subscribers = self.subscribers.lock().expect("subscribers poisoned");
        for pod in pods {
            subscribers.retain(|s| s.send(pod.clone()).is_ok());
        }
    }
}

async fn drive(cache: std::sync::Weak<PodCache>, mut writer: Writer<Pod>, api: Api<Pod>) {
    let mut changes = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // During a relist: what the cache held before it, and what the relist has shown.
    let mut before: Option<Vec<Arc<Pod>>> = None;
    let mut listed: Vec<Arc<Pod>> = Vec::new();
    while let Some(change) = changes.next().await {
        let change = match change {
            Ok(change) => change,
            Err(error) => {
                tracing::debug!(%error, "the controllers' pod watch was interrupted");
                continue;
            }
        };
        writer.apply_watcher_event(&change);
        let Some(cache) = cache.upgrade() else { return };
        match change {
            Change::Apply(pod) | Change::Delete(pod) => cache.broadcast([Arc::new(pod)]),
            Change::Init => before = Some(cache.store.state()),
            Change::InitApply(pod) => listed.push(Arc::new(pod)),
            Change::InitDone => {
                let seen: HashSet<ObjectRef<Pod>> =
                    listed.iter().map(|p| p.to_object_ref(())).collect();
                let vanished = before
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| !seen.contains(&p.to_object_ref(())));
                cache.broadcast(std::mem::take(&mut listed).into_iter().chain(vanished));
            }
        }
    }
}

/// Whether `selector` selects `labels`, as `metav1.LabelSelectorAsSelector` decides. An empty
/// selector selects everything; a malformed one nothing.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The pods in `namespace` whose controller is the object with `uid`.
pub fn owned_by(pods: &Store<Pod>, namespace: &str, uid: &str) -> Vec<Arc<Pod>> {
    pods.state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| controller_of(p.as_ref()).is_some_and(|o| o.uid == uid))
        .collect()
}

/// A count or percentage scaled against `total`, rounded up or down (upstream's
/// `GetScaledValueFromIntOrPercent`).
pub fn scaled(
    value: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let product = percent * i64::from(total);
            Ok(if round_up {
                (product + 99) / 100
            } else {
                product / 100
            } as i32)
        }
    }
}

/// Whether a PodDisruptionBudget's selector selects a pod: in policy/v1 an empty selector
/// selects every pod of the namespace, a missing one none.
pub fn budget_selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_some_and(|s| selects(s, labels))
}

/// Whether a selector selects nothing in particular (`{}`), which the workload controllers refuse
/// to act on.
pub fn selects_everything(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

/// The controller reference among an object's owners.
pub fn controller_of<K: Resource>(object: &K) -> Option<&OwnerReference> {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner`, as the controllers set on what they create.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: ResourceExt::uid(owner).unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Adopts or releases `object` with a strategic-merge patch of its owner references (which
/// names its uid, so that it applies to this object only). `None` when the object is gone or
/// changed meanwhile, which the next turn of the loop sees.
pub async fn patch_ownership<K>(
    api: &Api<K>,
    object: &K,
    patch: serde_json::Value,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    match api
        .patch(
            &name,
            &super::patch_params(),
            &kube::api::Patch::Strategic(patch),
        )
        .await
    {
        Ok(patched) => Ok(Some(patched)),
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A pod that still counts toward its controller: not finished and not being deleted
/// (upstream's `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// The time the pod became Ready, when it is.
pub fn ready_since(pod: &Pod) -> Option<Option<k8s_openapi::jiff::Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been Ready for `min_ready_seconds` at `now` (upstream's
/// `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: k8s_openapi::jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => {
            let ready_for = now.as_second() - since.as_second();
            ready_for >= i64::from(min_ready_seconds)
        }
    }
}

/// The pod a controller creates from its template (upstream's `GetPodFromTemplate`): the
/// template's labels, annotations, finalizers and spec, named after `prefix`.
pub fn pod_from_template(template: &PodTemplateSpec, prefix: &str, owner: OwnerReference) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut pod = Pod {
        spec: template.spec.clone(),
        ..Pod::default()
    };
    pod.metadata.generate_name = Some(format!("{prefix}-"));
    pod.metadata.labels = meta.labels;
    pod.metadata.annotations = meta.annotations;
    pod.metadata.finalizers = meta.finalizers;
    pod.metadata.owner_references = Some(vec![owner]);
    pod
}

/// Writes a controller has made and not yet seen in its caches, per object it controls
/// (upstream's `ControllerExpectations`). While any are outstanding, the controller does not
/// act again on the cache, which would still show the world before those writes. They expire
/// after five minutes, as upstream's do, should a watch event never come.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    /// Names of pods created.
    created: HashSet<String>,
    /// Names of pods deleted.
    deleted: HashSet<String>,
    since: Instant,
}

const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

impl Expectations {
    /// Records that pods were created and deleted for the object `key`.
    pub fn expect(&self, key: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().expect("expectations poisoned");
        // Entries of objects that went away are dropped here once they expire.
        pending.retain(|_, p| p.since.elapsed() < EXPECTATIONS_TIMEOUT);
        let entry = pending.entry(key.to_owned()).or_insert_with(|| Pending {
            created: HashSet::new(),
            deleted: HashSet::new(),
            since: Instant::now(),
        });
        entry.created.extend(created);
        entry.deleted.extend(deleted);
        entry.since = Instant::now();
    }

    /// Whether the cache shows every write recorded for `key` (pods in `namespace`): created
    /// pods are there, deleted ones gone or being deleted.
    pub fn satisfied(&self, key: &str, namespace: &str, pods: &Store<Pod>) -> bool {
        let mut pending = self.pending.lock().expect("expectations poisoned");
        let Some(entry) = pending.get_mut(key) else {
            return true;
        };
        let get = |name: &String| pods.get(&ObjectRef::new(name).within(namespace));
        entry.created.retain(|name| get(name).is_none());
        entry
            .deleted
            .retain(|name| get(name).is_some_and(|p| p.metadata.deletion_timestamp.is_none()));
        let done = (entry.created.is_empty() && entry.deleted.is_empty())
            || entry.since.elapsed() > EXPECTATIONS_TIMEOUT;
        if done {
            pending.remove(key);
        }
        done
    }

    /// Notes that the watch showed the pod `name`, which `key`'s controller may have created.
    /// A pod created and deleted again before the controller looks is never in its cache.
    pub fn observed(&self, key: &str, name: &str) {
        let mut pending = self.pending.lock().expect("expectations poisoned");
        if let Some(entry) = pending.get_mut(key) {
            entry.created.remove(name);
        }
    }

    /// Forgets `key`, when its object is gone.
    pub fn forget(&self, key: &str) {
        self.pending
            .lock()
            .expect("expectations poisoned")
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_labels_and_expressions_as_upstream_does() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert!(selects(
            &selector,
            &labels(&[("app", "web"), ("tier", "b")])
        ));
        assert!(!selects(
            &selector,
            &labels(&[("app", "web"), ("tier", "c")])
        ));
        assert!(!selects(
            &selector,
            &labels(&[("app", "web"), ("tier", "a"), ("canary", "1")])
        ));
        assert!(!selects(&selector, &labels(&[("tier", "a")])));
        assert!(selects_everything(&LabelSelector::default()));
        assert!(!selects_everything(&selector));
    }

    #[test]
    fn availability_waits_min_ready_seconds_after_ready() {
        let now: k8s_openapi::jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "status": {"conditions": [{"type": "Ready", "status": "True",
                                       "lastTransitionTime": "2026-01-01T00:00:05Z"}]}
        }))
        .unwrap();
        assert!(is_available(&pod, 0, now));
        assert!(is_available(&pod, 5, now));
        assert!(!is_available(&pod, 6, now));
        assert!(!is_available(&Pod::default(), 0, now));
    }
}
