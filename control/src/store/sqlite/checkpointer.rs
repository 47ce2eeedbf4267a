//! Checkpoints of the write-ahead log off the commit path, for commits that are not synced.
//! SQLite's own checkpoints run inside the commit that crosses the threshold: that commit copies
//! a thousand pages into the database and syncs it while every other writer waits. Without a
//! sync per commit, that stall (about 18 ms, ten times a second under load) is most of what a
//! write waits for. Here a thread of its own copies the committed frames on a connection of its
//! own while commits go on.
//!
//! Durable commits keep SQLite's checkpoints: there the database's sync would run alongside the
//! log's syncs and slow every commit more than the stall it saves.
//!
//! A log being appended to never ends up wholly copied, and only a wholly copied log starts
//! over. So once the log is long, the thread holds commits back (through the writer's lock)
//! while it copies the few frames appended during its last pass; the next commit then starts
//! the log from the beginning.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::Connection;

use crate::store::StoreError;

/// Frames written since the last checkpoint after which the next one runs: SQLite's default.
#[cfg(not(test))]
const CHECKPOINT_FRAMES: i32 = 1000;
/// Frames in the log after which commits wait for the tail to be copied, so that the log
/// starts over: about 32 MiB of 4 KiB pages, under the journal size limit (no truncation).
#[cfg(not(test))]
const RESTART_FRAMES: i32 = 8192;
// Tests go through many checkpoints in few writes.
#[cfg(test)]
const CHECKPOINT_FRAMES: i32 = 64;
#[cfg(test)]
const RESTART_FRAMES: i32 = 256;

/// What the commits tell the thread.
#[derive(Default)]
struct State {
    /// Frames in the log after the newest commit.
    frames: i32,
    /// Frames of the log the last checkpoint had copied.
    copied: i32,
    /// The thread waits for `due` to hold.
    waiting: bool,
    stop: bool,
}

impl State {
    fn due(&self) -> bool {
        // A log that started over holds fewer frames than were copied of the one before.
        let copied = if self.frames >= self.copied {
            self.copied
        } else {
            0
        };
        self.frames - copied >= CHECKPOINT_FRAMES
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The checkpointing thread; stopped (after any pass under way) when dropped.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Takes over the checkpoints of the database `writer` commits to, copying through `conn`
    /// (a read-write connection of the same database). SQLite's automatic checkpoints of the
    /// writer end: its commit hook now only counts the log's frames.
    pub(super) fn start(
        writer: &Arc<Mutex<Connection>>,
        conn: Connection,
    ) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared::default());
        let hook = shared.clone();
        super::lock_writer(writer).wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, frames: std::ffi::c_int| {
                let mut state = hook.lock();
                state.frames = frames;
                // Waking a thread that is not waiting would cost a system call per commit.
                if state.waiting && state.due() {
                    state.waiting = false;
                    hook.wake.notify_one();
                }
                Ok(())
            },
        ))?;
        let thread = std::thread::Builder::new()
            .name("skiff-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                let writer = writer.clone();
                move || run(&shared, &writer, &conn)
            })
            .map_err(|e| StoreError::Backend(format!("starting the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, writer: &Mutex<Connection>, conn: &Connection) {
    loop {
        {
            let mut state = shared.lock();
            while !state.stop && !state.due() {
                state.waiting = true;
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            state.waiting = false;
            if state.stop {
                return;
            }
        }
        let outcome = checkpoint(conn).and_then(|(log, copied)| {
            if log >= RESTART_FRAMES && copied < log {
                let _commits_wait = super::lock_writer(writer);
                checkpoint(conn)
            } else {
                Ok((log, copied))
            }
        });
        let mut state = shared.lock();
        match outcome {
            Ok((_, copied)) => state.copied = copied,
            Err(e) => {
                tracing::warn!(error = %e, "checkpointing the write-ahead log failed");
                // Tried again once as many frames more are written, not at once.
                state.copied = state.frames;
            }
        }
    }
}

/// Copies what no reader still needs of the log into the database, then syncs it (as the
/// connection's `synchronous` says). Returns the frames in the log and those copied.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i32, i32)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_copied_alongside_commits_and_starts_over_once_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let writer = Arc::new(Mutex::new(conn));
        let checkpointer = Checkpointer::start(&writer, Connection::open(&path).unwrap()).unwrap();
        let database_before = std::fs::metadata(&path).unwrap().len();

        // SQLite's own checkpoints are off, so only this thread's copying lets the log start
        // over; commits go on back to back, so only holding them back for the tail does.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let (mut restarts, mut last, mut commits, mut copied) = (0, 0, 0, 0);
        while restarts < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the log never started over: {last} frames after {commits} commits"
            );
            super::super::lock_writer(&writer)
                .execute("INSERT INTO t VALUES (zeroblob(3000))", [])
                .unwrap();
            commits += 1;
            let frames = checkpointer.shared.lock().frames;
            if frames < last {
                restarts += 1;
                // Only a wholly copied log starts over: every row before this one is copied.
                copied = commits - 1;
            }
            last = frames;
        }
        drop(checkpointer);

        // Those rows are in the database file itself, not only in the log.
        let database_after = std::fs::metadata(&path).unwrap().len();
        assert!(
            database_after >= database_before + copied * 3000,
            "{copied} rows copied, yet the database grew from {database_before} to \
             {database_after} bytes"
        );
        let rows: i64 = super::super::lock_writer(&writer)
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows as u64, commits);
    }
}
