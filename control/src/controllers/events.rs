//! Events about the objects a control loop acts on, written as upstream's event recorder
//! writes them (core/v1 Events named `<object>.<unix nanos in hex>`, with the loop as source).
//! Recording never waits: an event is written in the background, and dropped when too many
//! are being written already, as upstream's recorder drops them when its queue is full.

use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::api::now_rfc3339;

/// Events being written at once; beyond that new ones are dropped, never waited for.
const IN_FLIGHT: usize = 32;

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
}

impl Recorder {
    /// A recorder whose events name `component` (`deployment-controller`, ...) as their source.
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder {
            client,
            component,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
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
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let name = involved.name.clone().unwrap_or_default();
        let event = json!({
            "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": match kind { Type::Normal => "Normal", Type::Warning => "Warning" },
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
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(reason = ?event.reason, %error, "recording an event failed");
            }
            drop(permit);
        });
    }
}
