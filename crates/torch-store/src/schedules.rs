//! Check-in schedules: their rows, and storing, firing and ending them.

use rusqlite::{params, OptionalExtension};

use crate::{now_ms, Store, StoreError};

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
