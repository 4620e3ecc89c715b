//! Messages: their rows, and storing, queueing and settling them.

use rusqlite::{params, OptionalExtension};

use crate::{now_ms, Store, StoreError};

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

    pub(crate) fn parse(s: &str) -> State {
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

pub(crate) const COLUMNS: &str =
    "id, sender, recipient, body, kind, created_ms, state, attempts, delivered_ms, reason";

pub(crate) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
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
    /// Messages stored after message `after` (0: from the first), oldest
    /// first, at most `limit`: (id, sender, recipient).
    pub fn messages_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, sender, recipient FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![after, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            rows.collect()
        })
    }

    /// The id of the last message stored (0: none yet).
    pub fn last_message(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
                r.get(0)
            })
        })
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

    /// The oldest queued message for `recipient`, an agent of this node.
    pub fn next_queued(&self, recipient: &str) -> Result<Option<Message>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM messages WHERE recipient = ?1 AND state = 'queued' AND node IS NULL ORDER BY id LIMIT 1"),
                params![recipient],
                row,
            )
            .optional()
        })
    }

    /// Recipients of this node that have queued messages.
    pub fn recipients_with_queue(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            // The partial index of the queue, named: without statistics the
            // planner may prefer scanning the (recipient, state, id) index,
            // which holds all history.
            let mut st = c.prepare(
                "SELECT DISTINCT recipient FROM messages INDEXED BY messages_queued WHERE state = 'queued' AND node IS NULL",
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

    /// Fails every queued message of `recipient` (the agent was retired);
    /// returns their ids.
    pub fn fail_queued(&self, recipient: &str, reason: &str) -> Result<Vec<i64>, StoreError> {
        let (recipient, reason) = (recipient.to_string(), reason.to_string());
        self.write(move |c| {
            let mut st = c.prepare(
                "UPDATE messages SET state = 'failed', reason = ?2 WHERE recipient = ?1 AND state = 'queued' RETURNING id",
            )?;
            let ids = st.query_map(params![recipient, reason], |r| r.get(0))?;
            ids.collect()
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
