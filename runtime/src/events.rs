//! The node's event recorder: pod workers hand their events over and go on, and one task
//! writes them to the API, as the kubelet's event broadcaster does. Events are advisory: when
//! the API falls behind and the queue is full, new ones are dropped (and logged), never waited
//! for, so that a slow API never delays a container's start.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

/// Events waiting to be written, at most.
const QUEUE: usize = 4096;
/// Events written at once.
const CONCURRENCY: usize = 8;

/// Hands events to the writer task.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    queue: mpsc::Sender<Event>,
}

impl EventRecorder {
    /// Starts the writer task on the current runtime.
    pub fn spawn(client: kube::Client) -> Self {
        let (queue, mut events) = mpsc::channel::<Event>(QUEUE);
        let pending = futures::stream::poll_fn(move |cx| events.poll_recv(cx));
        tokio::spawn(pending.for_each_concurrent(CONCURRENCY, move |event| {
            let client = client.clone();
            async move {
                let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
                let api: Api<Event> = Api::namespaced(client, namespace);
                if let Err(e) = api.create(&PostParams::default(), &event).await {
                    tracing::debug!(reason = ?event.reason, error = %e, "recording an event failed");
                }
            }
        }));
        EventRecorder { queue }
    }

    /// Queues an event; drops it when the queue is full.
    pub fn record(&self, event: Event) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.queue.try_send(event) {
            tracing::warn!(reason = ?event.reason, "the event queue is full; dropping an event");
        }
    }
}
