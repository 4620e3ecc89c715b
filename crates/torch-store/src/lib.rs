//! Torch's durable message store: SQLite in WAL mode with full sync, so a
//! message is on disk before `torch send` returns, and a crash of the hub at
//! any point loses nothing that was accepted.
//!
//! One table holds every message with its state (`queued`, `delivered`,
//! `failed`). Delivery order is the id order per recipient.
//!
//! Writes are committed in groups by one writer thread: writes that arrive
//! while a group is being synced to disk are committed together next, in
//! one transaction and one fsync. Each write still returns only once it is
//! on disk, and runs in a savepoint of its own, so one failing write does
//! not take the others of its group with it. Reads use a second
//! connection, which WAL lets run beside the writer.
//!
//! The parts: `schema` (tables and their migrations), `writer` (the group
//! commits), `messages` (queue and delivery states), `history` (pages and
//! pruning), `send_key` (a send stored once), `schedules` (check-ins),
//! `tasks` (the work ledger) and `wanted` (the agents to bring back after a
//! reboot).

use std::path::Path;
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

mod facade;
mod federation;
mod history;
mod messages;
mod schedules;
mod schema;
mod send_key;
mod tasks;
mod wanted;
mod writer;

pub use facade::call;
pub use federation::{Forward, Settled};
use messages::{row, COLUMNS};
pub use messages::{Counts, Message, State};
pub use schedules::{NewSchedule, Schedule};
pub use tasks::{Change, NewTask, Task, TaskEvent, Tell};
use writer::{writer_loop, Write};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("message store: {0} (check the disk and the permissions of the state directory)")]
    Sqlite(#[from] rusqlite::Error),
    /// A lock holder panicked.
    #[error("message store lock poisoned")]
    Poisoned,
    /// The write ran, but its group could not be committed.
    #[error("message store: cannot commit ({0}); check the disk and the permissions of the state directory")]
    Commit(String),
    /// The writer thread is gone (the store is closing, or it panicked).
    #[error("message store: the writer has stopped; restart the hub")]
    WriterGone,
    /// The database was written by a newer Torch.
    #[error("message store: schema version {found} is from a newer Torch (this one knows {known}); install that version again or restore a backup of /var/lib/torch")]
    NewerSchema {
        /// The database's version.
        found: usize,
        /// The newest this build knows.
        known: usize,
    },
    /// The blocking task that ran a store call failed (it panicked).
    #[error("message store: a store call failed to run ({0}); restart the hub")]
    Task(String),
    /// A send key was used before for another message.
    #[error("send key {0:?} was already used by this sender for a different message; use a new key for a new message")]
    KeyReused(String),
}

/// The store. Cheap to share behind an `Arc`; see the module doc for how
/// concurrent writes are grouped.
pub struct Store {
    /// Reads.
    reader: Mutex<Connection>,
    /// Writes, to the writer thread.
    writes: Option<mpsc::Sender<Write>>,
    /// The writer thread, which owns the writing connection.
    writer: Option<JoinHandle<()>>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has committed what
        // it has; joining it closes the database before we return.
        self.writes = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed message survives a power cut, not just a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;
        let (writes, queue) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("torch-store".into())
            .spawn(move || writer_loop(conn, queue))
            .map_err(|e| StoreError::Commit(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            reader: Mutex::new(reader),
            writes: Some(writes),
            writer: Some(writer),
        })
    }

    /// Runs a read.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(f(&conn)?)
    }

    /// Whether the database answers (for the watchdog).
    pub fn healthy(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.is_finished())
            && self
                .with(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A fresh store in a directory of its own, removed by the caller.
    pub(crate) fn temp_store(tag: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("torch-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&dir.join("torch.db")).unwrap(), dir)
    }

    #[test]
    fn the_queue_is_found_without_reading_history() {
        let (s, dir) = temp_store("queued-index");
        let plan: String = s
            .with(|c| {
                c.query_row(
                    "EXPLAIN QUERY PLAN SELECT DISTINCT recipient FROM messages INDEXED BY messages_queued WHERE state = 'queued'",
                    [],
                    |r| r.get(3),
                )
            })
            .unwrap();
        assert!(plan.contains("messages_queued"), "{plan}");
        let id = s.enqueue("operator", "a", "hi", "message").unwrap();
        assert_eq!(s.recipients_with_queue().unwrap(), ["a"]);
        s.finish(id, State::Delivered, None).unwrap();
        assert!(s.recipients_with_queue().unwrap().is_empty());
        drop(s);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn queue_is_ordered_per_recipient_and_survives_reopen() {
        let (s, dir) = temp_store("order");
        let a = s.enqueue("operator", "x", "one", "message").unwrap();
        let b = s.enqueue("operator", "y", "other", "message").unwrap();
        let c = s.enqueue("pm", "x", "two", "message").unwrap();
        assert!(a < b && b < c);
        assert_eq!(s.next_queued("x").unwrap().unwrap().body, "one");
        s.finish(a, State::Delivered, None).unwrap();
        drop(s);
        let s = Store::open(&dir.join("torch.db")).unwrap();
        let next = s.next_queued("x").unwrap().unwrap();
        assert_eq!((next.id, next.sender.as_str()), (c, "pm"));
        assert_eq!(
            s.counts("x").unwrap(),
            Counts {
                queued: 1,
                delivered: 1,
                failed: 0
            }
        );
        let mut r = s.recipients_with_queue().unwrap();
        r.sort();
        assert_eq!(r, ["x", "y"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_writes_are_grouped_and_a_failing_one_stays_alone() {
        let (s, dir) = temp_store("group");
        let s = Arc::new(s);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    (0..100)
                        .map(|i| {
                            if i == 50 {
                                // A broken write in the middle of the others.
                                assert!(s
                                    .write(|c| c.execute("INSERT INTO nowhere VALUES (1)", []))
                                    .is_err());
                            }
                            s.enqueue("operator", &format!("r{t}"), &format!("{i}"), "message")
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut ids: Vec<i64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 800);
        // All on disk, each recipient's in the order it sent them.
        drop(s);
        let s = Store::open(&dir.join("torch.db")).unwrap();
        for t in 0..8 {
            let bodies: Vec<String> = s
                .inbox(&format!("r{t}"), 1000)
                .unwrap()
                .into_iter()
                .map(|m| m.body)
                .collect();
            let want: Vec<String> = (0..100).map(|i| i.to_string()).collect();
            assert_eq!(bodies, want);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn schedules_fire_into_messages() {
        let (s, dir) = temp_store("sched");
        let id = s.add_schedule(new_schedule("dev", 30_000)).unwrap();
        let sch = s.schedule(id).unwrap().unwrap();
        assert_eq!((sch.state.as_str(), sch.fired), ("active", 0));
        let m = s
            .fire_schedule(&sch, "note", Some(60_000))
            .unwrap()
            .unwrap();
        assert_eq!(s.next_queued("dev").unwrap().unwrap().id, m);
        let after = s.schedule(id).unwrap().unwrap();
        assert_eq!((after.fired, after.due_ms), (1, Some(60_000)));
        // A second fire from the same reading (a timer racing another) is
        // refused and stores nothing.
        assert_eq!(s.fire_schedule(&sch, "note", Some(60_000)).unwrap(), None);
        assert_eq!(s.inbox("dev", 10).unwrap().len(), 1);
        assert!(s.fire_schedule(&after, "note", None).unwrap().is_some());
        assert!(s.active_schedules(None).unwrap().is_empty());
        s.end_schedule(id, "cancelled").unwrap();
        assert_eq!(s.schedule(id).unwrap().unwrap().state, "done");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn new_schedule(agent: &str, due_ms: i64) -> NewSchedule {
        NewSchedule {
            agent: agent.into(),
            kind: "every".into(),
            spec: "1800".into(),
            typed: "30m".into(),
            note: "check the build".into(),
            created_by: "pm".into(),
            due_ms,
        }
    }

    #[test]
    fn a_schedule_is_stored_with_its_due_time_and_typed_spec_at_once() {
        let (s, dir) = temp_store("schedrow");
        // The one write that creates the row carries the due time: no
        // reader, before or after a crash, sees a schedule without one.
        let id = s.add_schedule(new_schedule("dev", 1_800_000)).unwrap();
        let sch = s.schedule(id).unwrap().unwrap();
        assert_eq!(
            (sch.due_ms, sch.typed.as_deref(), sch.spec.as_str()),
            (Some(1_800_000), Some("30m"), "1800")
        );
        drop(s);
        let s = Store::open(&dir.join("torch.db")).unwrap();
        assert_eq!(s.active_schedules(None).unwrap(), vec![sch]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_database_from_before_typed_specs_opens_and_keeps_its_schedules() {
        let dir = std::env::temp_dir().join(format!("torch-store-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("torch.db");
        // The tables as the release before schema versions created them.
        Connection::open(&path)
            .unwrap()
            .execute_batch(include_str!("../fixtures/before-versions.sql"))
            .unwrap();
        for _ in 0..2 {
            // Opening twice: the column is added once.
            let s = Store::open(&path).unwrap();
            let old = s.schedule(1).unwrap().unwrap();
            assert_eq!(
                (old.note.as_str(), old.typed, old.due_ms),
                ("check the build", None, Some(1_764_001_800_000))
            );
            let id = s.add_schedule(new_schedule("dev", 5)).unwrap();
            assert_eq!(
                s.schedule(id).unwrap().unwrap().typed.as_deref(),
                Some("30m")
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn attempts_history_and_failures() {
        let (s, dir) = temp_store("hist");
        let a = s.enqueue("operator", "x", "one", "brief").unwrap();
        s.note_attempt(a, Some("agent down")).unwrap();
        let m = s.next_queued("x").unwrap().unwrap();
        assert_eq!(
            (m.attempts, m.reason.as_deref(), m.kind.as_str()),
            (1, Some("agent down"), "brief")
        );
        s.enqueue("x", "operator", "reply", "message").unwrap();
        assert_eq!(s.history(Some("x"), 10).unwrap().len(), 2);
        assert_eq!(s.inbox("x", 10).unwrap().len(), 1);
        assert_eq!(s.fail_queued("x", "retired").unwrap().len(), 1);
        assert!(s.next_queued("x").unwrap().is_none());
        assert!(s.healthy());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
