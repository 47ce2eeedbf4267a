//! The embedded backend: SQLite in WAL mode, durable on commit (synchronous=FULL), one writer
//! connection taking batched transactions and a pool of readers.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::Mutex;

use super::{Backend, Event, EventType, Key, Object, Page, StoreError, Write};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS objects (
        resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        revision INTEGER NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (resource, namespace, name)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS log (
        revision INTEGER PRIMARY KEY, resource TEXT NOT NULL, namespace TEXT NOT NULL,
        name TEXT NOT NULL, type INTEGER NOT NULL, prev_revision INTEGER, value TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS log_by_resource ON log (resource, revision)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
];

/// SQLite storage in one database file.
pub struct SqliteBackend {
    writer: Mutex<SqliteConnection>,
    readers: SqlitePool,
    newest: AtomicI64,
    compacted: AtomicI64,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`; `durable` false trades the fsync per
    /// commit for speed (synchronous=NORMAL: a power loss may lose the last commits, never corrupt).
    pub async fn open(path: &Path, durable: bool) -> Result<Arc<Self>, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if durable {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(std::time::Duration::from_secs(30))
            // Checkpoint often enough that the WAL never grows without bound.
            .pragma("wal_autocheckpoint", "1000")
            .pragma("journal_size_limit", "67108864");
        let mut writer = SqliteConnection::connect_with(&options).await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&mut writer).await?;
        }
        let compacted: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'compacted'")
            .fetch_optional(&mut writer)
            .await?
            .unwrap_or(0);
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(revision) FROM log")
            .fetch_one(&mut writer)
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Arc::new(SqliteBackend {
            writer: Mutex::new(writer),
            readers,
            newest: AtomicI64::new(newest.unwrap_or(0).max(compacted)),
            compacted: AtomicI64::new(compacted),
        }))
    }

    async fn apply(
        tx: &mut SqliteConnection,
        write: Write,
        revision: i64,
    ) -> Result<Result<Event, StoreError>, sqlx::Error> {
        let key = write.key().clone();
        let current = sqlx::query(
            "SELECT revision, value FROM objects WHERE resource = ? AND namespace = ? AND name = ?",
        )
        .bind(&key.resource)
        .bind(&key.namespace)
        .bind(&key.name)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| (row.get::<i64, _>(0), row.get::<String, _>(1)));
        let (event_type, mut value, previous) = match (write, current) {
            (Write::Create { .. }, Some(_)) => return Ok(Err(StoreError::AlreadyExists)),
            (Write::Create { value, .. }, None) => (EventType::Added, value, None),
            (Write::Update { .. } | Write::Delete { .. }, None) => {
                return Ok(Err(StoreError::NotFound));
            }
            (Write::Update { expected, .. } | Write::Delete { expected, .. }, Some((rev, _)))
                if expected != rev =>
            {
                return Ok(Err(StoreError::Conflict(rev)));
            }
            (Write::Update { value, .. }, Some(current)) => {
                (EventType::Modified, value, Some(current))
            }
            (Write::Delete { .. }, Some((rev, text))) => {
                let value = parse(&text);
                (EventType::Deleted, value, Some((rev, text)))
            }
        };
        set_resource_version(&mut value, revision);
        let text = value.to_string();
        if event_type == EventType::Deleted {
            sqlx::query("DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?")
                .bind(&key.resource)
                .bind(&key.namespace)
                .bind(&key.name)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT OR REPLACE INTO objects (resource, namespace, name, revision, value)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&key.resource)
            .bind(&key.namespace)
            .bind(&key.name)
            .bind(revision)
            .bind(&text)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO log (revision, resource, namespace, name, type, prev_revision, value)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(revision)
        .bind(&key.resource)
        .bind(&key.namespace)
        .bind(&key.name)
        .bind(event_type.code())
        .bind(previous.as_ref().map(|(rev, _)| *rev))
        .bind(&text)
        .execute(&mut *tx)
        .await?;
        Ok(Ok(Event {
            revision,
            event_type,
            key,
            object: Arc::new(value),
            previous: previous.map(|(_, text)| Arc::new(parse(&text))),
        }))
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Stamps the revision that writes an object into its `metadata.resourceVersion`.
fn set_resource_version(value: &mut Value, revision: i64) {
    if let Some(obj) = value.as_object_mut() {
        let metadata = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("resourceVersion".into(), revision.to_string().into());
        }
    }
}

impl Backend for SqliteBackend {
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Object>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT revision, value FROM objects
                 WHERE resource = ? AND namespace = ? AND name = ?",
            )
            .bind(&key.resource)
            .bind(&key.namespace)
            .bind(&key.name)
            .fetch_optional(&self.readers)
            .await?;
            Ok(row.map(|row| Object {
                revision: row.get(0),
                value: parse(row.get::<&str, _>(1)),
            }))
        })
    }

    fn list<'a>(
        &'a self,
        resource: &'a str,
        namespace: Option<&'a str>,
        after: Option<(&'a str, &'a str)>,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        Box::pin(async move {
            let mut sql = String::from("SELECT revision, value FROM objects WHERE resource = ?");
            if namespace.is_some() {
                sql.push_str(" AND namespace = ?");
            }
            if after.is_some() {
                sql.push_str(" AND (namespace, name) > (?, ?)");
            }
            sql.push_str(" ORDER BY namespace, name");
            // One more than asked tells whether another page follows.
            let fetch = limit.map(|l| l as i64 + 1).unwrap_or(-1);
            sql.push_str(" LIMIT ?");
            // One read transaction: the items and the revision come from the same snapshot.
            let mut tx = self.readers.begin().await?;
            let mut query = sqlx::query(&sql).bind(resource);
            if let Some(ns) = namespace {
                query = query.bind(ns);
            }
            if let Some((ns, name)) = after {
                query = query.bind(ns).bind(name);
            }
            let rows = query.bind(fetch).fetch_all(&mut *tx).await?;
            let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(revision) FROM log")
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            let mut items: Vec<Object> = rows
                .iter()
                .map(|row| Object {
                    revision: row.get(0),
                    value: parse(row.get::<&str, _>(1)),
                })
                .collect();
            let more = limit.is_some_and(|l| items.len() > l);
            if let Some(l) = limit {
                items.truncate(l);
            }
            Ok(Page {
                items,
                revision: newest
                    .unwrap_or(0)
                    .max(self.compacted.load(Ordering::Acquire)),
                more,
            })
        })
    }

    fn history<'a>(
        &'a self,
        resource: Option<&'a str>,
        revision: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Event>, StoreError>> {
        Box::pin(async move {
            let filter = if resource.is_some() {
                "AND l.resource = ?"
            } else {
                ""
            };
            let sql = format!(
                "SELECT l.revision, l.resource, l.namespace, l.name, l.type, l.value, p.value
                 FROM log l LEFT JOIN log p ON p.revision = l.prev_revision
                 WHERE l.revision > ? {filter} ORDER BY l.revision LIMIT ?"
            );
            let mut query = sqlx::query(&sql).bind(revision);
            if let Some(resource) = resource {
                query = query.bind(resource);
            }
            let rows = query.bind(limit as i64).fetch_all(&self.readers).await?;
            Ok(rows
                .iter()
                .map(|row| Event {
                    revision: row.get(0),
                    key: Key {
                        resource: row.get(1),
                        namespace: row.get(2),
                        name: row.get(3),
                    },
                    event_type: EventType::from_code(row.get(4)),
                    object: Arc::new(parse(row.get::<&str, _>(5))),
                    previous: row
                        .get::<Option<&str>, _>(6)
                        .map(|text| Arc::new(parse(text))),
                })
                .collect())
        })
    }

    fn revisions(&self) -> (i64, i64) {
        (
            self.newest.load(Ordering::Acquire),
            self.compacted.load(Ordering::Acquire),
        )
    }

    fn write_batch(&self, writes: Vec<Write>) -> BoxFuture<'_, Vec<Result<Event, StoreError>>> {
        Box::pin(async move {
            let mut conn = self.writer.lock().await;
            let count = writes.len();
            let start = self.newest.load(Ordering::Acquire);
            let outcome: Result<(Vec<Result<Event, StoreError>>, i64), sqlx::Error> = async {
                let mut tx = conn.begin().await?;
                let mut revision = start;
                let mut results = Vec::with_capacity(count);
                for write in writes {
                    let result = Self::apply(&mut tx, write, revision + 1).await?;
                    if result.is_ok() {
                        revision += 1;
                    }
                    results.push(result);
                }
                tx.commit().await?;
                Ok((results, revision))
            }
            .await;
            match outcome {
                Ok((results, revision)) => {
                    self.newest.store(revision, Ordering::Release);
                    results
                }
                Err(e) => {
                    tracing::error!(error = %e, "store transaction failed");
                    let e = StoreError::from(e);
                    (0..count).map(|_| Err(e.clone())).collect()
                }
            }
        })
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.writer.lock().await;
            let mut tx = conn.begin().await?;
            sqlx::query("DELETE FROM log WHERE revision <= ?")
                .bind(revision)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)")
                .bind(revision)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            self.compacted.store(revision, Ordering::Release);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use serde_json::json;

    async fn store(dir: &tempfile::TempDir, retain: i64) -> Store {
        let backend = SqliteBackend::open(&dir.path().join("db.sqlite"), true)
            .await
            .unwrap();
        Store::new(backend, retain)
    }

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[tokio::test]
    async fn revisions_are_monotonic_and_stamped_into_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1000).await;
        let a = store
            .write(Write::Create {
                key: Key::new("configmaps", "default", "a"),
                value: cm("a"),
            })
            .await
            .unwrap();
        let b = store
            .write(Write::Create {
                key: Key::new("configmaps", "default", "b"),
                value: cm("b"),
            })
            .await
            .unwrap();
        assert!(b.revision > a.revision);
        let got = store
            .get(&Key::new("configmaps", "default", "b"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.value["metadata"]["resourceVersion"],
            b.revision.to_string()
        );
    }

    #[tokio::test]
    async fn stale_update_conflicts_and_duplicate_create_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1000).await;
        let key = Key::new("configmaps", "default", "a");
        let created = store
            .write(Write::Create {
                key: key.clone(),
                value: cm("a"),
            })
            .await
            .unwrap();
        let again = store
            .write(Write::Create {
                key: key.clone(),
                value: cm("a"),
            })
            .await;
        assert!(matches!(again, Err(StoreError::AlreadyExists)));
        store
            .write(Write::Update {
                key: key.clone(),
                value: cm("a"),
                expected: created.revision,
            })
            .await
            .unwrap();
        let stale = store
            .write(Write::Update {
                key,
                value: cm("a"),
                expected: created.revision,
            })
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))));
    }

    #[tokio::test]
    async fn list_pages_follow_namespace_and_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1000).await;
        for name in ["c", "a", "b"] {
            store
                .write(Write::Create {
                    key: Key::new("configmaps", "default", name),
                    value: cm(name),
                })
                .await
                .unwrap();
        }
        let first = store.list("configmaps", None, None, Some(2)).await.unwrap();
        assert!(first.more);
        let names: Vec<_> = first
            .items
            .iter()
            .map(|o| o.value["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("a"), json!("b")]);
        let rest = store
            .list("configmaps", None, Some(("default", "b")), Some(2))
            .await
            .unwrap();
        assert!(!rest.more);
        assert_eq!(rest.items.len(), 1);
        assert_eq!(rest.revision, first.revision);
    }

    #[tokio::test]
    async fn watch_replays_history_then_follows_live_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1000).await;
        let key = Key::new("configmaps", "default", "a");
        let created = store
            .write(Write::Create {
                key: key.clone(),
                value: cm("a"),
            })
            .await
            .unwrap();
        let mut events = store
            .watch(Some("configmaps".into()), 0)
            .await
            .unwrap()
            .events;
        store
            .write(Write::Delete {
                key,
                expected: created.revision,
            })
            .await
            .unwrap();
        let first = events.recv().await.unwrap().unwrap();
        let second = events.recv().await.unwrap().unwrap();
        assert_eq!(first.event_type, EventType::Added);
        assert_eq!(second.event_type, EventType::Deleted);
        assert!(second.previous.is_some());
    }

    #[tokio::test]
    async fn progress_advances_past_other_resources_only_once_events_are_received() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1000).await;
        let mut watch = store.watch(Some("configmaps".into()), 0).await.unwrap();
        let written = store
            .write(Write::Create {
                key: Key::new("configmaps", "default", "a"),
                value: cm("a"),
            })
            .await
            .unwrap();
        let mut newest = 0;
        for name in ["s1", "s2"] {
            newest = store
                .write(Write::Create {
                    key: Key::new("secrets", "default", name),
                    value: cm(name),
                })
                .await
                .unwrap()
                .revision;
        }
        // The config map's event is queued: no position may be claimed past it yet.
        let queued = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                if !watch.events.is_empty() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(queued.is_ok());
        assert_eq!(watch.progress(), None);
        let event = watch.events.recv().await.unwrap().unwrap();
        assert_eq!(event.revision, written.revision);
        let position = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match watch.progress() {
                    Some(p) if p == newest => return p,
                    _ => tokio::task::yield_now().await,
                }
            }
        })
        .await
        .unwrap();
        assert!(position > written.revision);
    }

    #[tokio::test]
    async fn watch_before_compacted_history_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 10).await;
        for i in 0..40 {
            store
                .write(Write::Create {
                    key: Key::new("configmaps", "default", &format!("c{i}")),
                    value: cm(&format!("c{i}")),
                })
                .await
                .unwrap();
        }
        let err = store.watch(None, 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Expired { requested: 1, .. }));
        let newest = store.revision();
        assert!(store.watch(None, newest - 5).await.is_ok());
    }

    #[tokio::test]
    async fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(&dir, 1000).await;
            store
                .write(Write::Create {
                    key: Key::new("configmaps", "default", "kept"),
                    value: cm("kept"),
                })
                .await
                .unwrap();
        }
        let store = store(&dir, 1000).await;
        assert!(
            store
                .get(&Key::new("configmaps", "default", "kept"))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.revision(), 1);
    }
}
