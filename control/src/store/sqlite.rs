//! The embedded backend: SQLite in WAL mode, durable on commit (synchronous=FULL). One writing
//! connection runs each batch of writes as one transaction on the committing caller's thread
//! (the store lets one caller commit at a time); reads take a pooled read-only connection, on
//! the calling thread for key lookups and on the blocking pool for lists and history. Without
//! a sync per commit (`durable` false), checkpoints run on a thread of their own
//! ([`checkpointer`]).
//!
//! Which log entries belong to which resource is kept in memory ([`History`]) rather than in an
//! index of the log: the log is already in revision order, and an index page written with every
//! commit cost one more WAL frame to flush before the write could be answered.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::{Backend, Event, EventType, Key, Object, Page, Prior, StoreError, Write};

mod checkpointer;

use checkpointer::Checkpointer;

/// An object's body is stored once, in the log row of the revision that wrote it: `objects` maps
/// each key to that revision. Compaction deletes log rows that no object points at any more, so
/// the rows at or below the compacted revision are exactly the live objects' current ones.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS objects (
        resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        PRIMARY KEY (resource, namespace, name)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS log (
        revision INTEGER PRIMARY KEY, resource TEXT NOT NULL, namespace TEXT NOT NULL,
        name TEXT NOT NULL, type INTEGER NOT NULL, prev_revision INTEGER, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    DROP INDEX IF EXISTS log_by_resource;
";

/// Databases written before bodies were stored once kept a copy in `objects.value`. Their
/// objects move over in one transaction: a body whose log row was compacted away goes back into
/// the log at its revision (below the compacted one, so no watch replays it).
const MIGRATE_OBJECT_BODIES: &str = "
    INSERT OR IGNORE INTO log (revision, resource, namespace, name, type, prev_revision, value)
        SELECT revision, resource, namespace, name, 1, NULL, value FROM objects;
    CREATE TABLE objects_by_revision (
        resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        PRIMARY KEY (resource, namespace, name)) WITHOUT ROWID;
    INSERT INTO objects_by_revision SELECT resource, namespace, name, revision FROM objects;
    DROP TABLE objects;
    ALTER TABLE objects_by_revision RENAME TO objects;
";

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// The newest and the newest compacted revision, shared by the writer thread and readers.
#[derive(Default)]
struct Revisions {
    newest: AtomicI64,
    compacted: AtomicI64,
}

/// The revisions of each resource's log entries after the compacted revision, oldest first:
/// where a watch of one resource finds its history without reading the other resources' entries.
/// The writer adds a batch's entries once they are durable and before their events are
/// published. A reader takes those up to the newest revision of its snapshot; one committed but
/// not yet added here is still to be published, so it reaches a watch from the fan-out.
#[derive(Default)]
struct History {
    by_resource: HashMap<String, VecDeque<i64>>,
    /// The newest revision added.
    newest: i64,
    /// The revision the entries were last cut at: none at or below it is held.
    compacted: i64,
}

impl History {
    /// Reads the log's entries after `compacted`, in revision order.
    fn load(conn: &Connection, compacted: i64) -> Result<Self, StoreError> {
        let mut history = History {
            newest: compacted,
            compacted,
            ..History::default()
        };
        history.extend(conn, compacted)?;
        Ok(history)
    }

    /// Adds the log's entries after `revision` (which must be newer than every entry held).
    fn extend(&mut self, conn: &Connection, revision: i64) -> Result<(), StoreError> {
        let mut statement = conn
            .prepare("SELECT revision, resource FROM log WHERE revision > ?1 ORDER BY revision")?;
        let mut rows = statement.query(params![revision])?;
        while let Some(row) = rows.next()? {
            let resource = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            self.push(resource, row.get(0)?);
        }
        Ok(())
    }

    fn push(&mut self, resource: &str, revision: i64) {
        self.newest = revision;
        match self.by_resource.get_mut(resource) {
            Some(revisions) => revisions.push_back(revision),
            None => {
                self.by_resource
                    .insert(resource.to_string(), VecDeque::from([revision]));
            }
        }
    }

    /// At most `limit` revisions of `resource` after `revision` and up to `through`. A reader
    /// whose snapshot predates a compaction can ask for entries already cut here: an expiry.
    fn after(
        &self,
        resource: &str,
        revision: i64,
        through: i64,
        limit: usize,
    ) -> Result<Vec<i64>, StoreError> {
        if revision < self.compacted {
            return Err(StoreError::Expired {
                requested: revision,
                oldest: self.compacted + 1,
            });
        }
        let Some(revisions) = self.by_resource.get(resource) else {
            return Ok(Vec::new());
        };
        let first = revisions.partition_point(|&r| r <= revision);
        Ok(revisions
            .range(first..)
            .take_while(|&&r| r <= through)
            .take(limit)
            .copied()
            .collect())
    }

    /// Forgets the entries at or below `revision`.
    fn compact(&mut self, revision: i64) {
        self.compacted = self.compacted.max(revision);
        self.by_resource.retain(|_, revisions| {
            let gone = revisions.partition_point(|&r| r <= revision);
            revisions.drain(..gone);
            !revisions.is_empty()
        });
    }
}

/// The history, held for a step that leaves it whole (an append, or a cut at the front), so a
/// panic elsewhere cannot leave it half-changed.
fn lock(history: &Mutex<History>) -> std::sync::MutexGuard<'_, History> {
    history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read-only connections kept for reuse.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Runs a short read (a primary-key lookup) on the calling thread: tens of microseconds,
    /// cheaper than two hand-offs to the blocking pool.
    fn inline<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = match self.idle.lock().expect("reader pool lock").pop() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = f(&conn);
        self.idle.lock().expect("reader pool lock").push(conn);
        result
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(conn)
    }

    /// Runs `f` on an idle read connection on the blocking pool.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match readers.idle.lock().expect("reader pool lock").pop() {
                Some(conn) => conn,
                None => readers.open()?,
            };
            let result = f(&conn);
            readers.idle.lock().expect("reader pool lock").push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store reader stopped: {e}")))?
    }
}

/// What opening a database yields: the writer's connection, the checkpoints' (when commits
/// are not synced), the revisions and the history.
type Opened = (Connection, Option<Connection>, Revisions, History);

/// SQLite storage in one database file.
pub struct SqliteBackend {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
    revisions: Arc<Revisions>,
    history: Arc<Mutex<History>>,
    /// Checkpoints off the commit path, when commits are not synced.
    _checkpointer: Option<Checkpointer>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`; `durable` false trades the fsync per
    /// commit for speed (synchronous=NORMAL: a power loss may lose the last commits, never corrupt).
    pub async fn open(path: &Path, durable: bool) -> Result<Arc<Self>, StoreError> {
        let path = path.to_path_buf();
        let (conn, checkpoints, revisions, history) = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> Result<Opened, StoreError> {
                let mut conn = Connection::open(&path)?;
                conn.busy_timeout(std::time::Duration::from_secs(30))?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
                // Checkpoint often enough that the WAL never grows without bound. (Without a
                // sync per commit, the checkpoint thread's hook replaces this below.)
                conn.pragma_update(None, "wal_autocheckpoint", 1000)?;
                conn.pragma_update(None, "journal_size_limit", 67_108_864)?;
                migrate(&mut conn)?;
                conn.execute_batch(SCHEMA)?;
                let compacted: i64 = conn
                    .query_row("SELECT value FROM meta WHERE key = 'compacted'", [], |r| {
                        r.get(0)
                    })
                    .optional()?
                    .unwrap_or(0);
                let newest: Option<i64> =
                    conn.query_row("SELECT MAX(revision) FROM log", [], |r| r.get(0))?;
                let revisions = Revisions::default();
                revisions
                    .newest
                    .store(newest.unwrap_or(0).max(compacted), Ordering::Release);
                revisions.compacted.store(compacted, Ordering::Release);
                let history = History::load(&conn, compacted)?;
                let checkpoints = if durable {
                    None
                } else {
                    let checkpoints = Connection::open(&path)?;
                    checkpoints.pragma_update(None, "synchronous", "NORMAL")?;
                    Some(checkpoints)
                };
                Ok((conn, checkpoints, revisions, history))
            }
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        let revisions = Arc::new(revisions);
        let writer = Arc::new(Mutex::new(conn));
        let checkpointer = checkpoints
            .map(|conn| Checkpointer::start(&writer, conn))
            .transpose()?;
        Ok(Arc::new(SqliteBackend {
            writer,
            _checkpointer: checkpointer,
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            revisions,
            history: Arc::new(Mutex::new(history)),
        }))
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        lock_writer(&self.writer)
    }
}

/// The writing connection, held by a commit, a compaction or the tail of a checkpoint.
fn lock_writer(writer: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    // A panic while holding the connection leaves no transaction open (rusqlite rolls back on
    // drop), so the connection stays usable.
    writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Brings a database of an older layout up to [`SCHEMA`].
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let bodies_in_objects = conn
        .prepare("SELECT 1 FROM pragma_table_info('objects') WHERE name = 'value'")?
        .exists([])?;
    if bodies_in_objects {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(MIGRATE_OBJECT_BODIES)?;
        tx.commit()?;
    }
    Ok(())
}

fn write_batch(
    conn: &mut Connection,
    writes: Vec<Write>,
    start: i64,
    compacted: i64,
) -> Result<(Vec<Result<Event, StoreError>>, i64), StoreError> {
    let outcome = {
        // BEGIN and COMMIT are cached statements too: run as text, SQLite would parse each
        // anew for every batch.
        let mut statements = Statements::new(conn);
        statements.get(Sql::Begin)?.execute([])?;
        apply_all(&mut statements, writes, start, compacted).and_then(|outcome| {
            statements.get(Sql::Commit)?.execute([])?;
            Ok(outcome)
        })
    };
    if outcome.is_err() && !conn.is_autocommit() {
        // A failed statement or commit leaves the transaction open: nothing of it stays.
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "rolling back a failed batch failed");
        }
    }
    outcome
}

/// Applies a batch's writes inside its transaction.
fn apply_all(
    statements: &mut Statements<'_>,
    writes: Vec<Write>,
    start: i64,
    compacted: i64,
) -> Result<(Vec<Result<Event, StoreError>>, i64), StoreError> {
    let mut revision = start;
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let result = apply(statements, write, revision + 1, compacted)?;
        if result.is_ok() {
            revision += 1;
        }
        results.push(result);
    }
    Ok((results, revision))
}

/// What a batch's writes run (the last variant last: [`Sql::COUNT`] counts from it).
#[derive(Clone, Copy)]
enum Sql {
    Begin,
    Commit,
    ClaimObject,
    SelectObject,
    DeleteObject,
    PutObject,
    DeleteBody,
    InsertEntry,
}

impl Sql {
    /// One more than the last variant's index: the statements a batch can hold.
    const COUNT: usize = Sql::InsertEntry as usize + 1;

    fn text(self) -> &'static str {
        match self {
            Sql::Begin => "BEGIN IMMEDIATE",
            Sql::Commit => "COMMIT",
            Sql::ClaimObject => {
                "INSERT INTO objects (resource, namespace, name, revision)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING"
            }
            Sql::SelectObject => SELECT_OBJECT,
            Sql::DeleteObject => {
                "DELETE FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3"
            }
            Sql::PutObject => {
                "INSERT OR REPLACE INTO objects (resource, namespace, name, revision)
                 VALUES (?1, ?2, ?3, ?4)"
            }
            Sql::DeleteBody => "DELETE FROM log WHERE revision = ?1",
            Sql::InsertEntry => {
                "INSERT INTO log (revision, resource, namespace, name, type, prev_revision, value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            }
        }
    }
}

/// The statements of one batch, each taken from the connection's cache on its first use and
/// kept to the batch's end: taking a statement from the cache and handing it back each hash
/// its text, once a batch rather than once a write.
struct Statements<'c> {
    conn: &'c Connection,
    prepared: [Option<rusqlite::CachedStatement<'c>>; Sql::COUNT],
}

impl<'c> Statements<'c> {
    fn new(conn: &'c Connection) -> Self {
        Statements {
            conn,
            prepared: Default::default(),
        }
    }

    fn get(&mut self, sql: Sql) -> rusqlite::Result<&mut rusqlite::CachedStatement<'c>> {
        let slot = &mut self.prepared[sql as usize];
        if slot.is_none() {
            *slot = Some(self.conn.prepare_cached(sql.text())?);
        }
        Ok(slot.as_mut().expect("prepared just now"))
    }
}

/// The current revision and body of an object. (A subquery, not a join: SQLite plans a join
/// anew for each set of bound values, which costs more than the lookup.)
const SELECT_OBJECT: &str =
    "SELECT revision, (SELECT value FROM log WHERE log.revision = o.revision)
     FROM objects o WHERE resource = ?1 AND namespace = ?2 AND name = ?3";

/// Log entries with the bodies they replaced, chosen by `$where` (the statement text is whole
/// at compile time, so a read does not build it before looking it up in the cache).
macro_rules! select_entries {
    ($where:literal) => {
        concat!(
            "SELECT l.revision, l.resource, l.namespace, l.name, l.type, l.value, p.value
             FROM log l LEFT JOIN log p ON p.revision = l.prev_revision ",
            $where
        )
    };
}

/// A row's JSON body, parsed where SQLite holds it rather than copied out first.
fn parse_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Value> {
    Ok(parse(row.get_ref(index)?.as_str()?))
}

/// Applies one write inside the batch's transaction; a failed condition leaves no trace.
fn apply(
    statements: &mut Statements<'_>,
    write: Write,
    revision: i64,
    compacted: i64,
) -> Result<Result<Event, StoreError>, StoreError> {
    let key = write.key().clone();
    // A create claims its key in the step that finds it free (one descent of the objects'
    // index, not a lookup and then an insert); the others keep the body they replace.
    let create = matches!(write, Write::Create { .. });
    let current: Option<(i64, String)> = if create {
        let claimed = statements.get(Sql::ClaimObject)?.execute(params![
            key.resource,
            key.namespace,
            key.name,
            revision
        ])?;
        if claimed == 0 {
            return Ok(Err(StoreError::AlreadyExists));
        }
        None
    } else {
        statements
            .get(Sql::SelectObject)?
            .query_row(params![key.resource, key.namespace, key.name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?
    };
    let (event_type, mut value, previous) = match (write, current) {
        (Write::Create { value, .. }, _) => (EventType::Added, value, None),
        (Write::Update { .. } | Write::Delete { .. }, None) => {
            return Ok(Err(StoreError::NotFound));
        }
        (Write::Update { expected, .. } | Write::Delete { expected, .. }, Some((rev, _)))
            if expected != rev =>
        {
            return Ok(Err(StoreError::Conflict(rev)));
        }
        (Write::Update { value, .. }, Some((rev, text))) => {
            (EventType::Modified, value, Some((rev, text)))
        }
        (Write::Delete { .. }, Some((rev, text))) => {
            (EventType::Deleted, parse(&text), Some((rev, text)))
        }
    };
    set_resource_version(&mut value, revision);
    let text = encode(&value);
    if event_type == EventType::Deleted {
        statements.get(Sql::DeleteObject)?.execute(params![
            key.resource,
            key.namespace,
            key.name
        ])?;
    } else if !create {
        statements.get(Sql::PutObject)?.execute(params![
            key.resource,
            key.namespace,
            key.name,
            revision
        ])?;
    }
    // The body this write replaces is history now; below the compacted revision no watch can
    // ask for it, and compaction has already passed it by.
    if let Some((replaced, _)) = &previous
        && *replaced <= compacted
    {
        statements
            .get(Sql::DeleteBody)?
            .execute(params![replaced])?;
    }
    statements.get(Sql::InsertEntry)?.execute(params![
        revision,
        key.resource,
        key.namespace,
        key.name,
        event_type.code(),
        previous.as_ref().map(|(rev, _)| *rev),
        text
    ])?;
    Ok(Ok(Event {
        revision,
        event_type,
        key,
        object: Arc::new(value),
        text: text.into(),
        previous: previous.map(|(_, text)| Prior::new(text)),
    }))
}

/// Deletes the history after `from` up to `revision`, but for the rows that hold live objects'
/// bodies. (Rows at or below `from` hold only those: [`apply`] deletes one when its object
/// changes.)
fn compact(conn: &mut Connection, from: i64, revision: i64) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM log WHERE revision > ?1 AND revision <= ?2 AND NOT EXISTS (
             SELECT 1 FROM objects o WHERE o.resource = log.resource
                 AND o.namespace = log.namespace AND o.name = log.name
                 AND o.revision = log.revision)",
        params![from, revision],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?1)",
        params![revision],
    )?;
    tx.commit()?;
    Ok(())
}

/// The JSON text of `value`. serde_json's writer into a buffer, not `Display`, which passes each
/// token through a `fmt::Formatter` and costs several times as much.
fn encode(value: &Value) -> String {
    // A Value always encodes (its keys are strings); the fallback is never taken.
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
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
        let readers = self.readers.clone();
        Box::pin(async move {
            readers.inline(|conn| {
                let row = conn
                    .prepare_cached(SELECT_OBJECT)?
                    .query_row(params![key.resource, key.namespace, key.name], |r| {
                        Ok(Object {
                            revision: r.get(0)?,
                            value: parse_column(r, 1)?,
                        })
                    })
                    .optional()?;
                Ok(row)
            })
        })
    }

    fn list<'a>(
        &'a self,
        resource: &'a str,
        namespace: Option<&'a str>,
        after: Option<(&'a str, &'a str)>,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        let resource = resource.to_string();
        let namespace = namespace.map(str::to_string);
        let after = after.map(|(n, m)| (n.to_string(), m.to_string()));
        let compacted = self.revisions.compacted.load(Ordering::Acquire);
        Box::pin(self.readers.with(move |conn| {
            let mut sql = String::from(
                "SELECT revision, (SELECT value FROM log WHERE log.revision = o.revision)
                 FROM objects o WHERE resource = ?",
            );
            let mut args: Vec<rusqlite::types::Value> = vec![resource.into()];
            if let Some(ns) = namespace {
                sql.push_str(" AND namespace = ?");
                args.push(ns.into());
            }
            if let Some((ns, name)) = after {
                sql.push_str(" AND (namespace, name) > (?, ?)");
                args.push(ns.into());
                args.push(name.into());
            }
            // One more than asked tells whether another page follows.
            sql.push_str(" ORDER BY namespace, name LIMIT ?");
            let fetch = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX).saturating_add(1));
            args.push(fetch.unwrap_or(-1).into());
            // One read transaction: the items and the revision come from the same snapshot.
            let tx = conn.unchecked_transaction()?;
            let mut items: Vec<Object> = tx
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok(Object {
                        revision: r.get(0)?,
                        value: parse_column(r, 1)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let newest: Option<i64> =
                tx.query_row("SELECT MAX(revision) FROM log", [], |r| r.get(0))?;
            tx.commit()?;
            let more = limit.is_some_and(|l| items.len() > l);
            if let Some(l) = limit {
                items.truncate(l);
            }
            Ok(Page {
                items,
                revision: newest.unwrap_or(0).max(compacted),
                more,
            })
        }))
    }

    fn history<'a>(
        &'a self,
        resource: Option<&'a str>,
        revision: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Event>, StoreError>> {
        let resource = resource.map(str::to_string);
        let history = self.history.clone();
        Box::pin(self.readers.with(move |conn| {
            // Compaction is read in the same snapshot as the rows: history that was compacted
            // away under a replaying watch is an expiry, never a silent gap.
            let tx = conn.unchecked_transaction()?;
            let compacted: i64 = tx
                .query_row("SELECT value FROM meta WHERE key = 'compacted'", [], |r| {
                    r.get(0)
                })
                .optional()?
                .unwrap_or(0);
            if revision < compacted {
                return Err(StoreError::Expired {
                    requested: revision,
                    oldest: compacted + 1,
                });
            }
            let map = |r: &rusqlite::Row<'_>| {
                let text: String = r.get(5)?;
                Ok(Event {
                    revision: r.get(0)?,
                    key: Key {
                        resource: r.get(1)?,
                        namespace: r.get(2)?,
                        name: r.get(3)?,
                    },
                    event_type: EventType::from_code(r.get(4)?),
                    object: Arc::new(parse(&text)),
                    text: text.into(),
                    previous: r.get::<_, Option<String>>(6)?.map(Prior::new),
                })
            };
            let rows = match &resource {
                None => tx
                    .prepare_cached(select_entries!(
                        "WHERE l.revision > ?1 ORDER BY l.revision LIMIT ?2"
                    ))?
                    .query_map(params![revision, limit as i64], map)?
                    .collect::<Result<Vec<_>, _>>()?,
                Some(resource) => {
                    // The history may already list entries committed after this snapshot.
                    let newest: i64 =
                        tx.query_row("SELECT IFNULL(MAX(revision), 0) FROM log", [], |r| r.get(0))?;
                    let revisions = lock(&history).after(resource, revision, newest, limit)?;
                    let mut entry = tx.prepare_cached(select_entries!("WHERE l.revision = ?1"))?;
                    revisions
                        .into_iter()
                        .map(|r| entry.query_row(params![r], map))
                        .collect::<Result<Vec<_>, _>>()?
                }
            };
            tx.commit()?;
            Ok(rows)
        }))
    }

    fn revisions(&self) -> (i64, i64) {
        (
            self.revisions.newest.load(Ordering::Acquire),
            self.revisions.compacted.load(Ordering::Acquire),
        )
    }

    fn write_batch(&self, writes: Vec<Write>) -> Vec<Result<Event, StoreError>> {
        let count = writes.len();
        let mut conn = self.writer();
        let start = self.revisions.newest.load(Ordering::Acquire);
        let compacted = self.revisions.compacted.load(Ordering::Acquire);
        match write_batch(&mut conn, writes, start, compacted) {
            Ok((results, newest)) => {
                let mut history = lock(&self.history);
                for event in results.iter().flatten() {
                    history.push(&event.key.resource, event.revision);
                }
                self.revisions.newest.store(newest, Ordering::Release);
                results
            }
            Err(e) => {
                tracing::error!(error = %e, "store transaction failed");
                // A commit can fail after it became durable: take the log's word for the newest
                // revision so the next batch does not reuse revisions.
                let logged: Result<Option<i64>, _> =
                    conn.query_row("SELECT MAX(revision) FROM log", [], |r| r.get(0));
                if let Ok(Some(newest)) = logged {
                    self.revisions.newest.fetch_max(newest, Ordering::AcqRel);
                    let mut history = lock(&self.history);
                    let known = history.newest;
                    if let Err(e) = history.extend(&conn, known) {
                        tracing::error!(error = %e, "reading the log's newest entries failed");
                    }
                }
                (0..count).map(|_| Err(e.clone())).collect()
            }
        }
    }

    fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let from = self.revisions.compacted.load(Ordering::Acquire);
        compact(&mut self.writer(), from, revision)?;
        self.revisions.compacted.store(revision, Ordering::Release);
        lock(&self.history).compact(revision);
        Ok(())
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

    async fn create(store: &Store, name: &str) -> Event {
        store
            .write(Write::Create {
                key: Key::new("configmaps", "default", name),
                value: cm(name),
            })
            .await
            .unwrap()
    }

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[tokio::test]
    async fn a_batch_that_fails_midway_leaves_nothing_and_the_next_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let backend = SqliteBackend::open(&path, true).await.unwrap();
        // A second connection makes the log refuse one name, so the batch fails after its first
        // write went in.
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON log WHEN NEW.name = 'refused'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            )
            .unwrap();
        let create = |name: &str| Write::Create {
            key: Key::new("configmaps", "default", name),
            value: cm(name),
        };
        let failed = backend.write_batch(vec![create("first"), create("refused")]);
        assert_eq!(failed.len(), 2);
        for result in &failed {
            assert!(
                matches!(result, Err(StoreError::Backend(m)) if m.contains("refused by the test")),
                "{result:?}"
            );
        }
        let first = Key::new("configmaps", "default", "first");
        assert!(backend.get(&first).await.unwrap().is_none());
        assert_eq!(backend.revisions().0, 0);
        let next = backend.write_batch(vec![create("first")]);
        assert_eq!(next[0].as_ref().unwrap().revision, 1);
        assert!(backend.get(&first).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_each_gets_its_own_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1000).await;
        let writes = (0..50).map(|i| {
            let store = store.clone();
            tokio::spawn(async move { create(&store, &format!("c{i}")).await.revision })
        });
        let mut revisions = futures::future::join_all(writes)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        revisions.sort();
        revisions.dedup();
        assert_eq!(revisions.len(), 50, "every write has a revision of its own");
        assert_eq!(store.revision(), *revisions.last().unwrap());
    }

    #[tokio::test]
    async fn a_write_whose_caller_goes_away_is_still_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1000).await;
        // Another writer is committing, so this one waits in the queue when it is dropped.
        let busy = store.committer.lock().await;
        let pending = tokio::spawn({
            let store = store.clone();
            async move { create(&store, "orphan").await }
        });
        while store.queue.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        pending.abort();
        assert!(pending.await.unwrap_err().is_cancelled());
        drop(busy);
        let key = Key::new("configmaps", "default", "orphan");
        for _ in 0..1000 {
            if store.get(&key).await.unwrap().is_some() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the abandoned write was never committed");
    }

    #[tokio::test]
    async fn revisions_are_monotonic_and_stamped_into_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1000).await;
        let a = create(&store, "a").await;
        let b = create(&store, "b").await;
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
        let created = create(&store, "a").await;
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
            create(&store, name).await;
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
        let created = create(&store, "a").await;
        let mut events = store.watch(Some("configmaps".into()), 0).await.unwrap();
        store
            .write(Write::Delete {
                key,
                expected: created.revision,
            })
            .await
            .unwrap();
        let first = events.next().await.unwrap().unwrap();
        let second = events.next().await.unwrap().unwrap();
        assert_eq!(first.event_type, EventType::Added);
        assert_eq!(second.event_type, EventType::Deleted);
        assert!(second.previous.is_some());
    }

    #[tokio::test]
    async fn progress_advances_past_other_resources_only_once_events_are_received() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 1000).await;
        let mut watch = store.watch(Some("configmaps".into()), 0).await.unwrap();
        let written = create(&store, "a").await;
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
                if watch.has_ready() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(queued.is_ok());
        assert_eq!(watch.progress(), None);
        let event = watch.next().await.unwrap().unwrap();
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
    async fn a_watch_that_falls_behind_the_fan_out_reads_the_rest_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 100_000).await;
        let mut watch = store.watch(Some("configmaps".into()), 0).await.unwrap();
        // More writes than the fan-out buffers for one receiver, while nobody reads the watch.
        let count = super::super::FANOUT_BUFFER + 500;
        let writes = (0..count).map(|i| {
            let store = store.clone();
            async move { create(&store, &format!("c{i}")).await.revision }
        });
        let mut written: Vec<i64> = futures::future::join_all(writes).await;
        written.sort();
        let mut seen = Vec::with_capacity(count);
        while seen.len() < count {
            let event = watch.next().await.unwrap().unwrap();
            seen.push(event.revision);
        }
        assert_eq!(seen, written, "every write once, in revision order");
        // Caught up, the watch follows the next write, and claims no position before it.
        let after = create(&store, "after").await;
        assert_eq!(watch.progress(), None);
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.revision, after.revision);
        assert_eq!(watch.progress(), Some(after.revision));
    }

    #[tokio::test]
    async fn watch_before_compacted_history_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 10).await;
        for i in 0..40 {
            create(&store, &format!("c{i}")).await;
        }
        let err = store.watch(None, 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Expired { requested: 1, .. }));
        let newest = store.revision();
        assert!(store.watch(None, newest - 5).await.is_ok());
    }

    /// Log rows at or below the compacted revision: each must be a live object's body.
    fn rows_below_compaction(dir: &tempfile::TempDir, compacted: i64) -> (i64, i64) {
        let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [compacted], |r| r.get(0)).unwrap() };
        (
            count("SELECT COUNT(*) FROM log WHERE revision <= ?1"),
            count("SELECT COUNT(*) FROM objects WHERE revision <= ?1"),
        )
    }

    #[tokio::test]
    async fn compaction_keeps_live_bodies_and_drops_replaced_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 10).await;
        let kept = create(&store, "kept").await;
        let replaced = create(&store, "replaced").await;
        let deleted = create(&store, "deleted").await;
        for i in 0..40 {
            create(&store, &format!("c{i}")).await;
        }
        let compacted = store.compacted();
        assert!(compacted > deleted.revision, "history was compacted");
        assert_eq!(
            rows_below_compaction(&dir, compacted),
            (compacted, compacted)
        );

        let key = |name: &str| Key::new("configmaps", "default", name);
        let got = store.get(&key("kept")).await.unwrap().unwrap();
        assert_eq!(got.revision, kept.revision);
        assert_eq!(got.value["metadata"]["name"], "kept");
        let page = store.list("configmaps", None, None, None).await.unwrap();
        assert_eq!(page.items.len(), 43);
        assert!(
            page.items
                .iter()
                .all(|o| o.value["metadata"]["name"].is_string())
        );

        let mut changed = cm("replaced");
        changed["data"] = json!({"k": "v"});
        let updated = store
            .write(Write::Update {
                key: key("replaced"),
                value: changed,
                expected: replaced.revision,
            })
            .await
            .unwrap();
        assert_eq!(
            updated.previous.as_ref().unwrap().value()["metadata"]["name"],
            "replaced"
        );
        let gone = store
            .write(Write::Delete {
                key: key("deleted"),
                expected: deleted.revision,
            })
            .await
            .unwrap();
        assert_eq!(gone.object["metadata"]["name"], "deleted");
        let (log, live) = rows_below_compaction(&dir, compacted);
        assert_eq!((log, live), (compacted - 2, compacted - 2));
        let got = store.get(&key("replaced")).await.unwrap().unwrap();
        assert_eq!(got.value["data"]["k"], "v");
        assert!(store.get(&key("deleted")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_database_with_bodies_in_objects_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let body = |name: &str, revision: i64| {
            let mut value = cm(name);
            set_resource_version(&mut value, revision);
            encode(&value)
        };
        {
            let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
            conn.execute_batch(
                "CREATE TABLE objects (
                     resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                     revision INTEGER NOT NULL, value TEXT NOT NULL,
                     PRIMARY KEY (resource, namespace, name)) WITHOUT ROWID;
                 CREATE TABLE log (
                     revision INTEGER PRIMARY KEY, resource TEXT NOT NULL,
                     namespace TEXT NOT NULL, name TEXT NOT NULL, type INTEGER NOT NULL,
                     prev_revision INTEGER, value TEXT NOT NULL);
                 CREATE INDEX log_by_resource ON log (resource, revision);
                 CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 INSERT INTO meta VALUES ('compacted', 5);",
            )
            .unwrap();
            // "old" was written at 3, whose log row compaction removed; "new" at 7.
            for (name, revision) in [("old", 3), ("new", 7)] {
                conn.execute(
                    "INSERT INTO objects VALUES ('configmaps', 'default', ?1, ?2, ?3)",
                    params![name, revision, body(name, revision)],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO log VALUES (7, 'configmaps', 'default', 'new', 0, NULL, ?1)",
                params![body("new", 7)],
            )
            .unwrap();
        }
        let store = store(&dir, 1000).await;
        assert_eq!((store.revision(), store.compacted()), (7, 5));
        for (name, revision) in [("old", 3), ("new", 7)] {
            let got = store
                .get(&Key::new("configmaps", "default", name))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.revision, revision);
            assert_eq!(
                got.value["metadata"]["resourceVersion"],
                revision.to_string()
            );
        }
        let page = store.list("configmaps", None, None, None).await.unwrap();
        assert_eq!(page.items.len(), 2);
        // History still starts after the compacted revision: the moved body is not replayed.
        let mut watch = store.watch(Some("configmaps".into()), 5).await.unwrap();
        let first = watch.next().await.unwrap().unwrap();
        assert_eq!(first.revision, 7);
        let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        let exists = |sql: &str| conn.prepare(sql).unwrap().exists([]).unwrap();
        assert!(
            !exists("SELECT 1 FROM pragma_table_info('objects') WHERE name = 'value'"),
            "bodies live in the log alone"
        );
        assert!(
            !exists("SELECT 1 FROM sqlite_master WHERE name = 'log_by_resource'"),
            "the log is not indexed by resource on disk"
        );
    }

    #[test]
    fn history_lists_one_resources_entries_within_its_bounds() {
        let mut history = History::default();
        for (revision, resource) in [(1, "pods"), (2, "configmaps"), (3, "pods"), (4, "pods")] {
            history.push(resource, revision);
        }
        assert_eq!(history.after("pods", 0, 10, 10).unwrap(), vec![1, 3, 4]);
        assert_eq!(history.after("pods", 1, 10, 10).unwrap(), vec![3, 4]);
        assert_eq!(
            history.after("pods", 0, 3, 10).unwrap(),
            vec![1, 3],
            "up to a snapshot"
        );
        assert_eq!(
            history.after("pods", 0, 10, 2).unwrap(),
            vec![1, 3],
            "at most the limit"
        );
        assert_eq!(
            history.after("secrets", 0, 10, 10).unwrap(),
            Vec::<i64>::new()
        );
        history.compact(3);
        assert_eq!(history.after("pods", 3, 10, 10).unwrap(), vec![4]);
        assert_eq!(
            history.after("configmaps", 3, 10, 10).unwrap(),
            Vec::<i64>::new()
        );
        assert!(
            !history.by_resource.contains_key("configmaps"),
            "an emptied resource goes"
        );
        assert!(matches!(
            history.after("pods", 2, 10, 10),
            Err(StoreError::Expired {
                requested: 2,
                oldest: 4
            })
        ));
    }

    #[tokio::test]
    async fn a_reopened_store_replays_one_resources_history_among_others() {
        let dir = tempfile::tempdir().unwrap();
        let (mut configmaps, mut secrets) = (Vec::new(), Vec::new());
        {
            let store = store(&dir, 1000).await;
            for i in 0..30 {
                configmaps.push(create(&store, &format!("c{i}")).await.revision);
                if i % 3 == 0 {
                    let secret = Write::Create {
                        key: Key::new("secrets", "default", &format!("s{i}")),
                        value: cm(&format!("s{i}")),
                    };
                    secrets.push(store.write(secret).await.unwrap().revision);
                }
            }
        }
        let store = store(&dir, 1000).await;
        async fn replay(store: &Store, resource: &str, after: i64, count: usize) -> Vec<i64> {
            let mut watch = store.watch(Some(resource.into()), after).await.unwrap();
            let mut seen = Vec::new();
            while seen.len() < count {
                // A missing entry would leave the watch waiting for writes that never come.
                let next = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next());
                let event = next.await.expect("history replayed").unwrap().unwrap();
                assert_eq!(event.key.resource, resource);
                seen.push(event.revision);
            }
            seen
        }
        assert_eq!(replay(&store, "configmaps", 0, 30).await, configmaps);
        assert_eq!(replay(&store, "secrets", 0, 10).await, secrets);
        assert_eq!(
            replay(&store, "secrets", secrets[4], 5).await,
            secrets[5..],
            "from the middle"
        );
        // The history goes on from the log's end after the reopening.
        let later = create(&store, "later").await;
        assert_eq!(
            replay(&store, "configmaps", configmaps[29], 1).await,
            vec![later.revision]
        );
    }

    #[tokio::test]
    async fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(&dir, 1000).await;
            create(&store, "kept").await;
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
