//! Events about the objects a control loop acts on, written as upstream's event recorder
//! writes them (core/v1 Events named `<object>.<unix nanos in hex>`, with the loop as source).
//! Recording never waits: an event is written in the background, and dropped when too many
//! are being written already, as upstream's recorder drops them when its queue is full. An
//! event that repeats one recorded before (same object, type, reason and message) bumps the
//! earlier one's `count` and `lastTimestamp` instead, as upstream's correlator does, so that
//! `kubectl describe` shows `(x4 over 2m)`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::api::now_rfc3339;

/// Events being written at once; beyond that new ones are dropped, never waited for.
const IN_FLIGHT: usize = 32;
/// Events remembered for counting repeats; the memory starts afresh beyond this.
const REMEMBERED: usize = 4096;

/// Whether an event reports something normal or something that went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

/// Writes the events of one control loop.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    in_flight: Arc<Semaphore>,
    /// Events written, by what makes a repeat: their name and count so far.
    seen: Arc<Mutex<HashMap<String, (String, i32)>>>,
}

impl Recorder {
    /// A recorder whose events name `component` (`deployment-controller`, ...) as their source.
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder {
            client,
            component,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records an event about `object`.
    pub fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        kind: Type,
        reason: &str,
        action: &str,
        message: String,
    ) {
        self.publish_about(object.object_ref(&()), kind, reason, action, message);
    }

    /// Records an event about the object `involved` refers to.
    pub fn publish_about(
        &self,
        involved: ObjectReference,
        kind: Type,
        reason: &str,
        action: &str,
        message: String,
    ) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::debug!(reason, "too many events being written; dropping one");
            return;
        };
        let namespace = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let stamp = now_rfc3339();
        let kind = match kind {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        };
        let key = format!(
            "{}\0{kind}\0{reason}\0{message}",
            involved.uid.as_deref().unwrap_or_default()
        );
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = {
            let mut seen = self.seen.lock().expect("events poisoned");
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.get_mut(&key).map(|(name, count)| {
                *count += 1;
                (name.clone(), *count)
            })
        };
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count, "lastTimestamp": stamp});
            tokio::spawn(async move {
                let params = PatchParams::default();
                if let Err(error) = api.patch(&name, &params, &Patch::Merge(patch)).await {
                    tracing::debug!(%error, "counting a repeated event failed");
                }
                drop(permit);
            });
            return;
        }
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let name = format!("{}.{nanos:x}", involved.name.clone().unwrap_or_default());
        self.seen
            .lock()
            .expect("events poisoned")
            .insert(key, (name.clone(), 1));
        let event = json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "action": action,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        });
        let Ok(event) = serde_json::from_value::<Event>(event) else {
            return;
        };
        tokio::spawn(async move {
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(reason = ?event.reason, %error, "recording an event failed");
            }
            drop(permit);
        });
    }
}
