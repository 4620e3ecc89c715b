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

use std::path::Path;
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

mod history;
mod schema;
mod send_key;
mod wanted;

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
    /// A send key was used before for another message.
    #[error("send key {0:?} was already used by this sender for a different message; use a new key for a new message")]
    KeyReused(String),
}

/// The state of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for delivery.
    Queued,
    /// Typed into the recipient and confirmed.
    Delivered,
    /// Will not be delivered; `reason` says why.
    Failed,
}

impl State {
    /// The word stored and shown: `queued`, `delivered`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Delivered => "delivered",
            State::Failed => "failed",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "delivered" => State::Delivered,
            "failed" => State::Failed,
            _ => State::Queued,
        }
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique, increasing id.
    pub id: i64,
    /// Sender: an agent name or `operator`.
    pub sender: String,
    /// Recipient agent.
    pub recipient: String,
    /// The text.
    pub body: String,
    /// `message` or `brief` (the first message of a spawned agent).
    pub kind: String,
    /// When it was accepted, Unix milliseconds.
    pub created_ms: i64,
    /// Current state.
    pub state: State,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When it was delivered, Unix milliseconds.
    pub delivered_ms: Option<i64>,
    /// Why it failed, or the last delivery error.
    pub reason: Option<String>,
}

/// Counts of messages by state for one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting.
    pub queued: i64,
    /// Done.
    pub delivered: i64,
    /// Given up.
    pub failed: i64,
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

/// Commits groups of writes until every sender is gone.
fn writer_loop(conn: Connection, writes: mpsc::Receiver<Write>) {
    let begin = || {
        // Never inside a transaction a failed commit left open.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        // Without a transaction each savepoint commits by itself: slower,
        // still correct.
        conn.execute_batch("BEGIN IMMEDIATE").is_ok()
    };
    while let Ok(first) = writes.recv() {
        let group: Vec<Write> = std::iter::once(first).chain(writes.try_iter()).collect();
        let mut in_tx = begin();
        let mut pending: Vec<Finish> = Vec::new();
        for write in group {
            let finish = write(&conn);
            if in_tx && conn.is_autocommit() {
                // SQLite rolled the whole transaction back (disk full, I/O
                // error): its writes so far, this one included, are lost.
                for f in pending.drain(..).chain(std::iter::once(finish)) {
                    f(Err("SQLite rolled the transaction back".into()));
                }
                in_tx = begin();
            } else if in_tx {
                pending.push(finish);
            } else {
                finish(Ok(()));
            }
        }
        let commit = if in_tx {
            conn.execute_batch("COMMIT").map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                e.to_string()
            })
        } else {
            Ok(())
        };
        for finish in pending {
            finish(commit.clone());
        }
    }
}

/// What a write does once its group's commit is known.
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A waiting write: runs inside its group's transaction and returns what to
/// do once the group is committed.
type Write = Box<dyn FnOnce(&Connection) -> Finish + Send>;

/// Runs `f` in a savepoint: on error its changes alone are undone.
fn in_savepoint<T>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.execute_batch("SAVEPOINT torch_write")?;
    match f(c) {
        Ok(v) => {
            c.execute_batch("RELEASE torch_write")?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK TO torch_write; RELEASE torch_write");
            Err(e)
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

const COLUMNS: &str =
    "id, sender, recipient, body, kind, created_ms, state, attempts, delivered_ms, reason";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        sender: r.get(1)?,
        recipient: r.get(2)?,
        body: r.get(3)?,
        kind: r.get(4)?,
        created_ms: r.get(5)?,
        state: State::parse(&r.get::<_, String>(6)?),
        attempts: r.get(7)?,
        delivered_ms: r.get(8)?,
        reason: r.get(9)?,
    })
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

    /// Runs a write in the next group and returns once that is on disk.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        // Each waiter is woken by the writer itself: no chain of hand-offs.
        let (done, result) = mpsc::sync_channel(1);
        let write: Write = Box::new(move |c| {
            let ran = in_savepoint(c, f);
            Box::new(move |commit| {
                let out = match (ran, commit) {
                    (Err(e), _) => Err(StoreError::Sqlite(e)),
                    (Ok(_), Err(e)) => Err(StoreError::Commit(e)),
                    (Ok(v), Ok(())) => Ok(v),
                };
                let _ = done.send(out);
            })
        });
        self.writes
            .as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(write)
            .map_err(|_| StoreError::WriterGone)?;
        result.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Whether the database answers (for the watchdog).
    pub fn healthy(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.is_finished())
            && self
                .with(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
                .is_ok()
    }

    /// Stores a new queued message; returns its id once it is on disk.
    pub fn enqueue(
        &self,
        sender: &str,
        recipient: &str,
        body: &str,
        kind: &str,
    ) -> Result<i64, StoreError> {
        let (sender, recipient, body, kind) = (
            sender.to_string(),
            recipient.to_string(),
            body.to_string(),
            kind.to_string(),
        );
        self.write(move |c| {
            c.execute(
                "INSERT INTO messages (sender, recipient, body, kind, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![sender, recipient, body, kind, now_ms()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// The oldest queued message for `recipient`.
    pub fn next_queued(&self, recipient: &str) -> Result<Option<Message>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM messages WHERE recipient = ?1 AND state = 'queued' ORDER BY id LIMIT 1"),
                params![recipient],
                row,
            )
            .optional()
        })
    }

    /// Recipients that have queued messages.
    pub fn recipients_with_queue(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            // The partial index of the queue, named: without statistics the
            // planner may prefer scanning the (recipient, state, id) index,
            // which holds all history.
            let mut st = c.prepare(
                "SELECT DISTINCT recipient FROM messages INDEXED BY messages_queued WHERE state = 'queued'",
            )?;
            let v = st.query_map([], |r| r.get(0))?.collect();
            v
        })
    }

    /// Counts an attempt and remembers its error.
    pub fn note_attempt(&self, id: i64, error: Option<&str>) -> Result<(), StoreError> {
        let error = error.map(str::to_string);
        self.write(move |c| {
            c.execute(
                "UPDATE messages SET attempts = attempts + 1, reason = ?2 WHERE id = ?1",
                params![id, error],
            )
            .map(drop)
        })
    }

    /// Marks a message delivered or failed.
    pub fn finish(&self, id: i64, state: State, reason: Option<&str>) -> Result<(), StoreError> {
        let delivered = (state == State::Delivered).then(now_ms);
        let reason = reason.map(str::to_string);
        self.write(move |c| {
            c.execute(
                "UPDATE messages SET state = ?2, delivered_ms = ?3, reason = COALESCE(?4, reason) WHERE id = ?1",
                params![id, state.as_str(), delivered, reason],
            )
            .map(drop)
        })
    }

    /// Fails every queued message of `recipient` (the agent was retired).
    pub fn fail_queued(&self, recipient: &str, reason: &str) -> Result<usize, StoreError> {
        let (recipient, reason) = (recipient.to_string(), reason.to_string());
        self.write(move |c| {
            c.execute(
                "UPDATE messages SET state = 'failed', reason = ?2 WHERE recipient = ?1 AND state = 'queued'",
                params![recipient, reason],
            )
        })
    }

    /// Message counts by state for `recipient`.
    pub fn counts(&self, recipient: &str) -> Result<Counts, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT state, COUNT(*) FROM messages WHERE recipient = ?1 GROUP BY state",
            )?;
            let mut counts = Counts::default();
            let rows = st.query_map(params![recipient], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for r in rows {
                let (state, n) = r?;
                match State::parse(&state) {
                    State::Queued => counts.queued = n,
                    State::Delivered => counts.delivered = n,
                    State::Failed => counts.failed = n,
                }
            }
            Ok(counts)
        })
    }
}

/// One check-in schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Unique id; the `sender` of its check-in messages is `schedule-ID`.
    pub id: i64,
    /// The agent it wakes.
    pub agent: String,
    /// `in`, `at`, `every` or `calendar`.
    pub kind: String,
    /// Seconds, a clock time or a calendar expression.
    pub spec: String,
    /// The spec as the requester typed it (`30m` for 1800 seconds); None
    /// for schedules stored before it was kept.
    pub typed: Option<String>,
    /// The note delivered when it fires.
    pub note: String,
    /// Who set it: an agent or `operator`.
    pub created_by: String,
    /// When it was set, Unix milliseconds.
    pub created_ms: i64,
    /// When it is next due (once done: when it was last due), Unix
    /// milliseconds; stored in the same write as the schedule itself.
    pub due_ms: Option<i64>,
    /// How many times it fired.
    pub fired: i64,
    /// When it last fired.
    pub last_fired_ms: Option<i64>,
    /// `active`, `done` or `cancelled`.
    pub state: String,
}

/// A schedule to store: see [`Schedule`] for the fields.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// The agent it wakes.
    pub agent: String,
    /// `in`, `at`, `every` or `calendar`.
    pub kind: String,
    /// Seconds, a clock time or a calendar expression.
    pub spec: String,
    /// The spec as typed.
    pub typed: String,
    /// The note delivered when it fires.
    pub note: String,
    /// An agent or `operator`.
    pub created_by: String,
    /// Its first due time, Unix milliseconds.
    pub due_ms: i64,
}

const SCHEDULE_COLUMNS: &str =
    "id, agent, kind, spec, note, created_by, created_ms, due_ms, fired, last_fired_ms, state, typed";

fn schedule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        id: r.get(0)?,
        agent: r.get(1)?,
        kind: r.get(2)?,
        spec: r.get(3)?,
        note: r.get(4)?,
        created_by: r.get(5)?,
        created_ms: r.get(6)?,
        due_ms: r.get(7)?,
        fired: r.get(8)?,
        last_fired_ms: r.get(9)?,
        state: r.get(10)?,
        typed: r.get(11)?,
    })
}

impl Store {
    /// Stores a new active schedule with its first due time, in one row
    /// written at once: there is never a schedule without a due time (one
    /// would never fire); returns its id once it is on disk.
    pub fn add_schedule(&self, s: NewSchedule) -> Result<i64, StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO schedules (agent, kind, spec, typed, note, created_by, created_ms, due_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![s.agent, s.kind, s.spec, s.typed, s.note, s.created_by, now_ms(), s.due_ms],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// One schedule.
    pub fn schedule(&self, id: i64) -> Result<Option<Schedule>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1"),
                params![id],
                schedule_row,
            )
            .optional()
        })
    }

    /// Active schedules, of one agent or all.
    pub fn active_schedules(&self, agent: Option<&str>) -> Result<Vec<Schedule>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE state = 'active' AND (?1 IS NULL OR agent = ?1) ORDER BY id"))?;
            let v = st.query_map(params![agent], schedule_row)?.collect();
            v
        })
    }

    /// Records a firing of `s` as read before, stores the note as a check-in
    /// message for the agent and moves the schedule to `next_due` (None: it
    /// is done), in one transaction: a fire is never half-recorded. Returns
    /// the message id, or None when `s` was fired or ended meanwhile (two
    /// timers firing at once both find it due): a check-in is never stored
    /// twice.
    pub fn fire_schedule(
        &self,
        s: &Schedule,
        body: &str,
        next_due: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let (id, fired, due, agent, body) =
            (s.id, s.fired, s.due_ms, s.agent.clone(), body.to_string());
        // One write, so one savepoint: all statements or none.
        self.write(move |c| {
            let now = now_ms();
            let claimed = c.execute(
                "UPDATE schedules SET fired = fired + 1, last_fired_ms = ?2, \
                 state = CASE WHEN ?3 IS NULL THEN 'done' ELSE state END, due_ms = COALESCE(?3, due_ms) \
                 WHERE id = ?1 AND fired = ?4 AND state = 'active' AND due_ms IS ?5",
                params![id, now, next_due, fired, due],
            )?;
            if claimed == 0 {
                return Ok(None);
            }
            c.execute(
                "INSERT INTO messages (sender, recipient, body, kind, created_ms) VALUES (?1, ?2, ?3, 'checkin', ?4)",
                params![format!("schedule-{id}"), agent, body, now],
            )?;
            Ok(Some(c.last_insert_rowid()))
        })
    }

    /// Ends a schedule (`done` or `cancelled`).
    pub fn end_schedule(&self, id: i64, state: &str) -> Result<(), StoreError> {
        let state = state.to_string();
        self.write(move |c| {
            c.execute(
                "UPDATE schedules SET state = ?2 WHERE id = ?1 AND state = 'active'",
                params![id, state],
            )
            .map(drop)
        })
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
        {
            // The schedules table as the first release created it.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE schedules (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    agent TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    spec TEXT NOT NULL,
                    note TEXT NOT NULL,
                    created_by TEXT NOT NULL,
                    created_ms INTEGER NOT NULL,
                    due_ms INTEGER,
                    fired INTEGER NOT NULL DEFAULT 0,
                    last_fired_ms INTEGER,
                    state TEXT NOT NULL DEFAULT 'active'
                );
                INSERT INTO schedules (agent, kind, spec, note, created_by, created_ms, due_ms)
                    VALUES ('dev', 'every', '1800', 'old', 'pm', 1, 2);",
            )
            .unwrap();
        }
        for _ in 0..2 {
            // Opening twice: the column is added once.
            let s = Store::open(&path).unwrap();
            let old = s.schedule(1).unwrap().unwrap();
            assert_eq!(
                (old.note.as_str(), old.typed, old.due_ms),
                ("old", None, Some(2))
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
        assert_eq!(s.fail_queued("x", "retired").unwrap(), 1);
        assert!(s.next_queued("x").unwrap().is_none());
        assert!(s.healthy());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
