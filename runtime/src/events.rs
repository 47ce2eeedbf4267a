//! The node's event recorder: pod workers hand their events over and go on, and one task
//! writes them to the API, as the kubelet's event broadcaster does. Events are advisory: when
//! the API falls behind and the queue is full, new ones are dropped (and logged), never waited
//! for, so that a slow API never delays a container's start. Like the kubelet's
//! (`eventRecordQPS` 50, `eventBurst` 100), the recorder writes at a bounded rate, so that a
//! burst of pod starts leaves the API's writes to the pods themselves.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

/// Events waiting to be written, at most.
const QUEUE: usize = 4096;
/// Events written at once.
const CONCURRENCY: usize = 8;

/// How fast events are written: `qps` a second on average, up to `burst` at once; a `qps` of
/// 0 sets no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRate {
    pub qps: f64,
    pub burst: u32,
}

impl Default for EventRate {
    fn default() -> Self {
        EventRate {
            qps: 50.0,
            burst: 100,
        }
    }
}

/// A token bucket holding up to `burst` writes, refilled at `qps`.
struct Bucket {
    rate: EventRate,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: EventRate) -> Self {
        Bucket {
            rate,
            tokens: f64::from(rate.burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Takes a token, and answers how long to wait until it is there.
    fn reserve(&mut self) -> Duration {
        if self.rate.qps.is_nan() || self.rate.qps <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let capacity = f64::from(self.rate.burst.max(1));
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate.qps;
        self.tokens = (self.tokens + refill).min(capacity) - 1.0;
        self.last = now;
        Duration::try_from_secs_f64((-self.tokens).max(0.0) / self.rate.qps)
            .unwrap_or(Duration::ZERO)
    }
}

/// Hands events to the writer task.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    queue: mpsc::Sender<Event>,
}

impl EventRecorder {
    /// Starts the writer task on the current runtime, writing at `rate`.
    pub fn spawn(client: kube::Client, rate: EventRate) -> Self {
        let (queue, mut events) = mpsc::channel::<Event>(QUEUE);
        let mut bucket = Bucket::new(rate);
        let pending = futures::stream::poll_fn(move |cx| events.poll_recv(cx));
        // One token per event, taken in order before the event is handed to a writer.
        let paced = pending.then(move |event| {
            let wait = bucket.reserve();
            async move {
                tokio::time::sleep(wait).await;
                event
            }
        });
        tokio::spawn(paced.for_each_concurrent(CONCURRENCY, move |event| {
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

/// A reference to a pod, as an event's `involvedObject`.
pub fn pod_reference(pod: &k8s_openapi::api::core::v1::Pod) -> serde_json::Value {
    serde_json::json!({
        "kind": "Pod", "apiVersion": "v1",
        "namespace": pod.metadata.namespace.as_deref().unwrap_or("default"),
        "name": pod.metadata.name, "uid": pod.metadata.uid,
    })
}

/// An event the node (as the kubelet, `source.host` the node) records about `involved`, in
/// the involved object's namespace (`default` for a node); `annotations` go on the event.
pub fn kubelet_event(
    node: &str,
    involved: serde_json::Value,
    kind: &str,
    reason: &str,
    message: &str,
    annotations: Option<serde_json::Value>,
) -> Option<Event> {
    let now = chrono::Utc::now();
    let seconds = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let name = involved["name"].as_str().unwrap_or(node).to_string();
    let namespace = involved["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let mut metadata = serde_json::json!({
        // Named as the kubelet names its events: the object's name and the time in hex.
        "name": format!("{name}.{:x}", now.timestamp_nanos_opt().unwrap_or(0)),
        "namespace": namespace,
    });
    if let Some(annotations) = annotations {
        metadata["annotations"] = annotations;
    }
    serde_json::from_value(serde_json::json!({
        "metadata": metadata,
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": seconds,
        "lastTimestamp": seconds,
        "eventTime": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "count": 1,
    }))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_paces_writes() {
        let mut bucket = Bucket::new(EventRate {
            qps: 10.0,
            burst: 3,
        });
        let waits: Vec<Duration> = (0..5).map(|_| bucket.reserve()).collect();
        assert!(waits[..3].iter().all(|w| w.is_zero()), "{waits:?}");
        // The fourth and fifth wait for one and two refills of a tenth of a second.
        assert!(waits[3] > Duration::from_millis(90) && waits[3] <= Duration::from_millis(100));
        assert!(waits[4] > Duration::from_millis(190) && waits[4] <= Duration::from_millis(200));
        let mut unlimited = Bucket::new(EventRate { qps: 0.0, burst: 1 });
        assert!((0..1000).all(|_| unlimited.reserve().is_zero()));
    }
}
