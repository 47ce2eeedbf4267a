//! The object store: current objects keyed by (resource, namespace, name), a revision log whose
//! monotonic revision is every object's resourceVersion, and the watch fan-out over that log.
//!
//! Backends implement [`Backend`]; the fan-out, history replay and expiry rules live here once.

mod sqlite;

pub use sqlite::SqliteBackend;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::broadcast;

/// Where an object lives: its resource's storage name, namespace ("" when cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    /// A key for `resource` (storage name such as `deployments.apps`).
    pub fn new(resource: &str, namespace: &str, name: &str) -> Self {
        Key {
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// A stored object and the revision that last wrote it.
#[derive(Debug, Clone)]
pub struct Object {
    pub revision: i64,
    pub value: Value,
}

/// What a log entry did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn code(self) -> i64 {
        match self {
            EventType::Added => 0,
            EventType::Modified => 1,
            EventType::Deleted => 2,
        }
    }

    fn from_code(code: i64) -> Self {
        match code {
            0 => EventType::Added,
            2 => EventType::Deleted,
            _ => EventType::Modified,
        }
    }
}

/// One entry of the revision log.
#[derive(Debug, Clone)]
pub struct Event {
    pub revision: i64,
    pub event_type: EventType,
    pub key: Key,
    /// The object after the change (for Deleted: its last state, at the deleting revision).
    pub object: Arc<Value>,
    /// `object` as the JSON text the store holds, so watchers and replies need not encode it again.
    pub text: Arc<str>,
    /// The object before the change, when the log still holds it.
    pub previous: Option<Prior>,
}

/// An object's state before a change, as the JSON text the log holds, parsed the first time it
/// is asked for: only watches with selectors look at it.
#[derive(Debug, Clone)]
pub struct Prior {
    text: Arc<str>,
    parsed: Arc<std::sync::OnceLock<Value>>,
}

impl Prior {
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        Prior {
            text: text.into(),
            parsed: Arc::default(),
        }
    }

    /// The object, parsed (JSON that does not parse reads as null).
    pub fn value(&self) -> &Value {
        self.parsed
            .get_or_init(|| serde_json::from_str(&self.text).unwrap_or(Value::Null))
    }
}

/// A conditional write.
#[derive(Debug, Clone)]
pub enum Write {
    /// Fails with AlreadyExists if the key holds an object.
    Create { key: Key, value: Value },
    /// Fails with NotFound, or Conflict when the stored revision is not `expected`.
    Update {
        key: Key,
        value: Value,
        expected: i64,
    },
    /// Fails with NotFound, or Conflict when the stored revision is not `expected`.
    Delete { key: Key, expected: i64 },
}

impl Write {
    /// The key this write touches.
    pub fn key(&self) -> &Key {
        match self {
            Write::Create { key, .. } | Write::Update { key, .. } | Write::Delete { key, .. } => {
                key
            }
        }
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Object>,
    /// The store's revision the page was read at.
    pub revision: i64,
    /// Whether objects follow the last item.
    pub more: bool,
}

/// What a store operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error("stored revision is {0}")]
    Conflict(i64),
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: i64, oldest: i64 },
    #[error("storage backend: {0}")]
    Backend(String),
}

/// A storage engine: SQLite embedded, PostgreSQL for several servers.
pub trait Backend: Send + Sync + 'static {
    /// The object at `key`.
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Object>, StoreError>>;
    /// Objects of `resource` (in `namespace` when given) ordered by (namespace, name), starting after
    /// `after`, at most `limit`.
    fn list<'a>(
        &'a self,
        resource: &'a str,
        namespace: Option<&'a str>,
        after: Option<(&'a str, &'a str)>,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Page, StoreError>>;
    /// Log entries after `revision` (of `resource` when given), oldest first, at most `limit`.
    fn history<'a>(
        &'a self,
        resource: Option<&'a str>,
        revision: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Event>, StoreError>>;
    /// The newest revision and the newest compacted one (history starts after it).
    fn revisions(&self) -> (i64, i64);
    /// Applies writes in one durable transaction (group commit): each gets its own result, and
    /// the events of the successful ones are published in revision order once durable. Runs on
    /// the calling thread, which the store keeps to one commit at a time; being synchronous, a
    /// commit cannot be abandoned half-way by a caller that goes away.
    fn write_batch(&self, writes: Vec<Write>) -> Vec<Result<Event, StoreError>>;
    /// Drops log entries at or below `revision`; on the calling thread, as `write_batch`.
    fn compact(&self, revision: i64) -> Result<(), StoreError>;
}

type Pending = (
    Write,
    tokio::sync::oneshot::Sender<Result<Event, StoreError>>,
);

/// The store the API serves from: a backend, group commit and the watch fan-out.
///
/// Group commit without a writer thread: each write joins a queue, then takes the commit lock in
/// turn; whoever holds it commits everything queued as one transaction (on its own thread: the
/// backend's commit does not hand off), publishes the events in revision order and answers the
/// writers it took along. A writer whose write an earlier holder took finds its answer ready and
/// passes the lock on. So a lone write costs no hand-off between threads, and concurrent writes
/// share one durable commit.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    queue: Arc<std::sync::Mutex<std::collections::VecDeque<Pending>>>,
    committer: Arc<tokio::sync::Mutex<Committer>>,
    fanout: Arc<Fanout>,
}

/// What the commit lock guards: compaction bookkeeping.
struct Committer {
    retain: i64,
    since_compaction: i64,
}

/// Live events, on one channel per resource so that a write wakes only the watchers of its
/// resource (the garbage collector alone watches every kind), and on one channel for all.
struct Fanout {
    all: broadcast::Sender<Arc<Event>>,
    by_resource: std::sync::Mutex<std::collections::HashMap<String, broadcast::Sender<Arc<Event>>>>,
    /// The newest revision whose events have all been sent: stored after the sends.
    published: AtomicI64,
}

impl Fanout {
    fn channel(&self, resource: &str) -> broadcast::Sender<Arc<Event>> {
        let mut channels = self.by_resource.lock().expect("fan-out lock");
        // Looked up before the entry is asked for: that would copy the name for every event.
        if let Some(channel) = channels.get(resource) {
            return channel.clone();
        }
        channels
            .entry(resource.to_string())
            .or_insert_with(|| broadcast::channel(FANOUT_BUFFER).0)
            .clone()
    }

    fn subscribe(&self, resource: Option<&str>) -> broadcast::Receiver<Arc<Event>> {
        match resource {
            Some(r) => self.channel(r).subscribe(),
            None => self.all.subscribe(),
        }
    }

    fn publish(&self, event: Event) {
        let revision = event.revision;
        let event = Arc::new(event);
        let _ = self.channel(&event.key.resource).send(event.clone());
        let _ = self.all.send(event);
        self.published.fetch_max(revision, Ordering::AcqRel);
    }
}

/// How many writes one transaction takes at most.
const MAX_BATCH: usize = 512;
/// Events kept for slow watchers before they fall back to reading the log.
const FANOUT_BUFFER: usize = 8192;

impl Store {
    /// A store over `backend`, keeping `retain` revisions of history.
    pub fn new(backend: Arc<dyn Backend>, retain: i64) -> Self {
        let fanout = Arc::new(Fanout {
            all: broadcast::channel(FANOUT_BUFFER).0,
            by_resource: Default::default(),
            published: AtomicI64::new(backend.revisions().0),
        });
        Store {
            backend,
            queue: Default::default(),
            committer: Arc::new(tokio::sync::Mutex::new(Committer {
                retain: retain.max(1),
                since_compaction: 0,
            })),
            fanout,
        }
    }

    /// The object at `key`.
    pub async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        self.backend.get(key).await
    }

    /// One page of objects; see [`Backend::list`].
    pub async fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        limit: Option<usize>,
    ) -> Result<Page, StoreError> {
        self.backend.list(resource, namespace, after, limit).await
    }

    /// The newest revision.
    pub fn revision(&self) -> i64 {
        self.backend.revisions().0
    }

    /// The newest compacted revision: history starts after it.
    pub fn compacted(&self) -> i64 {
        self.backend.revisions().1
    }

    /// Applies one write durably; returns the event it logged. A caller that goes away before
    /// the answer still has its write committed, as if it had waited.
    pub async fn write(&self, write: Write) -> Result<Event, StoreError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.queue
            .lock()
            .expect("write queue lock")
            .push_back((write, tx));
        let flush_on_drop = FlushOnDrop(Some(self.clone()));
        let mut committer = self.committer.lock().await;
        loop {
            match rx.try_recv() {
                Ok(result) => {
                    flush_on_drop.disarm();
                    return result;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    flush_on_drop.disarm();
                    return Err(StoreError::Backend("store writer stopped".into()));
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    self.commit_queued(&mut committer);
                }
            }
        }
    }

    /// Commits every queued write.
    async fn flush(&self) {
        let mut committer = self.committer.lock().await;
        while !self.queue.lock().expect("write queue lock").is_empty() {
            self.commit_queued(&mut committer);
        }
    }

    /// Commits one batch of queued writes, publishes their events and answers their writers.
    fn commit_queued(&self, committer: &mut Committer) {
        let batch: Vec<Pending> = {
            let mut queue = self.queue.lock().expect("write queue lock");
            let take = queue.len().min(MAX_BATCH);
            queue.drain(..take).collect()
        };
        if batch.is_empty() {
            return;
        }
        let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let started = std::time::Instant::now();
        let count = writes.len();
        let results = self.backend.write_batch(writes);
        tracing::trace!(
            writes = count,
            elapsed_us = started.elapsed().as_micros() as u64,
            "batch committed"
        );
        for (result, reply) in results.into_iter().zip(replies) {
            if let Ok(event) = &result {
                committer.since_compaction += 1;
                self.fanout.publish(event.clone());
            }
            let _ = reply.send(result);
        }
        let retain = committer.retain;
        if committer.since_compaction >= (retain / 4).clamp(1, 10_000) {
            committer.since_compaction = 0;
            let (newest, compacted) = self.backend.revisions();
            if newest - retain > compacted
                && let Err(e) = self.backend.compact(newest - retain)
            {
                tracing::warn!(error = %e, "compacting the revision log failed");
            }
        }
    }

    /// Every event of `resource` (all resources when None) after `revision`, then live ones, in
    /// revision order, each exactly once. Fails with Expired when history no longer reaches back.
    pub async fn watch(
        &self,
        resource: Option<String>,
        revision: i64,
    ) -> Result<Watch, StoreError> {
        // Subscribe before reading history so nothing falls between the two.
        let live = self.fanout.subscribe(resource.as_deref());
        let (_, compacted) = self.backend.revisions();
        if revision < compacted {
            return Err(StoreError::Expired {
                requested: revision,
                oldest: compacted + 1,
            });
        }
        Ok(Watch {
            backend: self.backend.clone(),
            fanout: self.fanout.clone(),
            resource,
            live,
            last: revision,
            replay: std::collections::VecDeque::new(),
            replaying: true,
            failed: None,
            ended: false,
        })
    }
}

/// How many log entries one read of history takes.
const REPLAY_BATCH: usize = 1000;

/// A running watch, read by whoever consumes it: replay from the log, then the live fan-out,
/// and back to the log when it falls behind. It has no task of its own, so an event reaches its
/// consumer with no hand-off between tasks on the way.
pub struct Watch {
    backend: Arc<dyn Backend>,
    fanout: Arc<Fanout>,
    resource: Option<String>,
    live: broadcast::Receiver<Arc<Event>>,
    /// The newest revision handed out (or the starting one).
    last: i64,
    /// Events read (from history, or from the fan-out by [`Watch::progress`]) but not yet
    /// handed out.
    replay: std::collections::VecDeque<Arc<Event>>,
    /// Whether history may hold entries after those in `replay`.
    replaying: bool,
    /// An error found by [`Watch::progress`], for `next` to hand out.
    failed: Option<StoreError>,
    ended: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("resource", &self.resource)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// The next event; an error (such as Expired, when the watch fell behind the retained
    /// history) ends the watch. Cancel-safe: a call abandoned half-way loses no event.
    pub async fn next(&mut self) -> Option<Result<Arc<Event>, StoreError>> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(e) = self.failed.take() {
                self.ended = true;
                return Some(Err(e));
            }
            if let Some(event) = self.replay.pop_front() {
                self.last = event.revision;
                return Some(Ok(event));
            }
            if self.replaying {
                // Nothing changes until the read completes, so dropping it midway is harmless.
                let batch = self
                    .backend
                    .history(self.resource.as_deref(), self.last, REPLAY_BATCH)
                    .await;
                match batch {
                    Ok(batch) => {
                        self.replaying = batch.len() >= REPLAY_BATCH;
                        self.replay.extend(batch.into_iter().map(Arc::new));
                    }
                    Err(e) => {
                        self.ended = true;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    if event.revision > self.last {
                        self.last = event.revision;
                        return Some(Ok(event));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.lagged(),
                Err(broadcast::error::RecvError::Closed) => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    /// Fallen behind the fan-out's buffer: back to the log, if it still reaches.
    fn lagged(&mut self) {
        let (_, compacted) = self.backend.revisions();
        if self.last < compacted {
            self.failed = Some(StoreError::Expired {
                requested: self.last,
                oldest: compacted + 1,
            });
        } else {
            self.replaying = true;
        }
    }

    /// A revision every event up to which has been handed out by [`Watch::next`], for
    /// bookmarks: the log position when nothing is waiting, else None. (The position is stored
    /// after the events before it were sent, so once the fan-out holds none for this watch, it
    /// has been passed.) Events the replay already handed out are dropped from the fan-out
    /// here, and a new one is kept for `next`.
    pub fn progress(&mut self) -> Option<i64> {
        if self.replaying || !self.replay.is_empty() || self.failed.is_some() {
            return None;
        }
        let published = self.fanout.published.load(Ordering::Acquire);
        loop {
            match self.live.try_recv() {
                Ok(event) if event.revision <= self.last => continue,
                Ok(event) => {
                    self.replay.push_back(event);
                    return None;
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    self.lagged();
                    return None;
                }
                Err(
                    broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed,
                ) => return Some(published.max(self.last)),
            }
        }
    }

    /// Whether an event is ready to be handed out without waiting for a write.
    #[cfg(test)]
    pub(crate) fn has_ready(&self) -> bool {
        !self.replay.is_empty() || !self.live.is_empty() || self.failed.is_some()
    }
}

/// Commits the queue from a task of its own when a writer goes away before its write was
/// committed, so that the write does not wait in the queue for the next writer to come along.
struct FlushOnDrop(Option<Store>);

impl FlushOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        if let Some(store) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { store.flush().await });
        }
    }
}
