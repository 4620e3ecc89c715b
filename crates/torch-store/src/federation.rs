//! Messages across the nodes of a cluster. A message to an agent of another
//! node is stored here first, with that node, then handed over and marked
//! forwarded; it stays queued until that node says how it ended. A message
//! from another node is stored once by its origin (`NODE:ID`), whatever
//! number of times it arrives, delivered here like any other, and its end
//! told back once.

use rusqlite::{params, OptionalExtension};

use crate::messages::State;
use crate::{now_ms, Store, StoreError};

/// A message to hand to another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Its id here.
    pub id: i64,
    /// The node its recipient runs on.
    pub node: String,
    /// Sender: an agent of this node or `operator`.
    pub sender: String,
    /// Recipient, on `node`.
    pub recipient: String,
    /// The text.
    pub body: String,
    /// `message` or `brief`.
    pub kind: String,
    /// Handed over before, and not settled since.
    pub again: bool,
}

/// A message from another node that ended here, to tell its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Its id here.
    pub id: i64,
    /// `NODE:ID` on the node it came from.
    pub origin: String,
    /// Delivered or failed.
    pub state: State,
    /// Why it failed.
    pub reason: Option<String>,
}

impl Store {
    /// Stores a message for `recipient` on `node`; its id once on disk.
    pub fn enqueue_for_node(
        &self,
        sender: &str,
        recipient: &str,
        body: &str,
        node: &str,
    ) -> Result<i64, StoreError> {
        let row = [sender, recipient, body, node].map(str::to_string);
        self.write(move |c| {
            c.execute(
                "INSERT INTO messages (sender, recipient, body, kind, created_ms, node) VALUES (?1, ?2, ?3, 'message', ?4, ?5)",
                params![row[0], row[1], row[2], now_ms(), row[3]],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Queued messages for other nodes never handed over, or handed over
    /// more than `again_ms` ago and not settled (the other node or Redis
    /// may have lost them; the other node stores each once), oldest first;
    /// not again to the nodes in `lost` (it waits in their inbox).
    pub fn to_forward(
        &self,
        again_ms: i64,
        lost: &[String],
        limit: u32,
    ) -> Result<Vec<Forward>, StoreError> {
        // Node names hold no control character: one separates them.
        let lost = format!("\u{1f}{}\u{1f}", lost.join("\u{1f}"));
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, node, sender, recipient, body, kind, forwarded_ms IS NOT NULL FROM messages INDEXED BY messages_to_forward
                 WHERE node IS NOT NULL AND state = 'queued'
                   AND (forwarded_ms IS NULL
                        OR (forwarded_ms < ?1 AND instr(?3, char(31) || node || char(31)) = 0))
                 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![now_ms() - again_ms, limit, lost], |r| {
                Ok(Forward {
                    id: r.get(0)?,
                    node: r.get(1)?,
                    sender: r.get(2)?,
                    recipient: r.get(3)?,
                    body: r.get(4)?,
                    kind: r.get(5)?,
                    again: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Makes every message handed to another node and not settled wait to
    /// be handed over again at once (Redis came back empty: it lost them).
    pub fn forward_again(&self) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "UPDATE messages SET forwarded_ms = NULL WHERE node IS NOT NULL AND state = 'queued'",
                [],
            )
            .map(drop)
        })
    }

    /// Fails every message waiting for an agent of `node` (forgotten: it
    /// will not come back) with `reason`; each one's id and recipient.
    pub fn fail_for_node(
        &self,
        node: &str,
        reason: &str,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let (node, reason) = (node.to_string(), reason.to_string());
        self.write(move |c| {
            let mut st = c.prepare_cached(
                "UPDATE messages SET state = 'failed', reason = ?2
                 WHERE node = ?1 AND state = 'queued' RETURNING id, recipient",
            )?;
            let rows = st.query_map(params![node, reason], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// This store's incarnation, made once: part of the origin of each
    /// message handed to another node, so that a node whose store starts
    /// again (reinstalled under the same name) never repeats an origin the
    /// other nodes have stored. "" for a store that handed messages over
    /// before incarnations were kept: its origins stay as they were.
    pub fn incarnation(&self) -> Result<String, StoreError> {
        self.write(|c| {
            let known: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'incarnation'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(known) = known {
                return Ok(known);
            }
            let legacy: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE forwarded_ms IS NOT NULL)",
                [],
                |r| r.get(0),
            )?;
            let made = match legacy {
                true => String::new(),
                false => {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos());
                    format!("{:x}", nanos ^ u128::from(std::process::id()))
                }
            };
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('incarnation', ?1)",
                params![made],
            )?;
            Ok(made)
        })
    }

    /// Notes messages handed to their node.
    pub fn mark_forwarded(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.stamp("UPDATE messages SET forwarded_ms = ?2 WHERE id = ?1", ids)
    }

    /// Settles message `id`, handed to `node`, as that node says: its
    /// recipient and when it was stored, or `None` when it is not such a
    /// message (another node cannot settle it) or is settled already.
    pub fn settle_forwarded(
        &self,
        id: i64,
        node: &str,
        state: State,
        reason: Option<&str>,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let delivered = (state == State::Delivered).then(now_ms);
        let reason = reason.map(str::to_string);
        let node = node.to_string();
        self.write(move |c| {
            c.query_row(
                "UPDATE messages SET state = ?2, delivered_ms = ?3, reason = ?4
                 WHERE id = ?1 AND node = ?5 AND state = 'queued'
                 RETURNING recipient, created_ms",
                params![id, state.as_str(), delivered, reason, node],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    /// Stores a message from another node once: its id, or `None` when
    /// `origin` was stored before. Arriving again means its node did not
    /// hear how it ended: it is told again.
    pub fn enqueue_from(
        &self,
        origin: &str,
        sender: &str,
        recipient: &str,
        body: &str,
        kind: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row = [origin, sender, recipient, body, kind].map(str::to_string);
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO messages (origin, sender, recipient, body, kind, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (origin) WHERE origin IS NOT NULL DO NOTHING",
                params![row[0], row[1], row[2], row[3], row[4], now_ms()],
            )?;
            if n == 1 {
                return Ok(Some(c.last_insert_rowid()));
            }
            c.execute(
                "UPDATE messages SET acked_ms = NULL WHERE origin = ?1",
                params![row[0]],
            )?;
            Ok(None)
        })
    }

    /// Messages from other nodes that ended here and whose origin was not
    /// told yet, oldest first.
    pub fn to_ack(&self, limit: u32) -> Result<Vec<Settled>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, origin, state, reason FROM messages INDEXED BY messages_to_ack
                 WHERE origin IS NOT NULL AND acked_ms IS NULL AND state != 'queued'
                 ORDER BY id LIMIT ?1",
            )?;
            let rows = st.query_map(params![limit], |r| {
                Ok(Settled {
                    id: r.get(0)?,
                    origin: r.get(1)?,
                    state: State::parse(&r.get::<_, String>(2)?),
                    reason: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Runs `update` (`?1` a message's id, `?2` now) for each of `ids`, in
    /// one write.
    fn stamp(&self, update: &'static str, ids: Vec<i64>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut st = c.prepare_cached(update)?;
            let now = now_ms();
            for id in ids {
                st.execute(params![id, now])?;
            }
            Ok(())
        })
    }

    /// Notes messages whose origin was told how they ended.
    pub fn mark_acked(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.stamp("UPDATE messages SET acked_ms = ?2 WHERE id = ?1", ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_has_an_incarnation_of_its_own_for_good() {
        let (a, _da) = crate::tests::temp_store("inc-a");
        let (b, _db) = crate::tests::temp_store("inc-b");
        let inc = a.incarnation().unwrap();
        assert!(!inc.is_empty());
        assert_eq!(a.incarnation().unwrap(), inc);
        assert_ne!(b.incarnation().unwrap(), inc);
    }

    #[test]
    fn a_message_for_another_node_waits_outside_the_local_queue_until_settled() {
        let (s, _dir) = crate::tests::temp_store("forward");
        let id = s.enqueue_for_node("operator", "far", "hi", "b").unwrap();
        assert!(s.next_queued("far").unwrap().is_none());
        assert!(s.recipients_with_queue().unwrap().is_empty());
        let out = s.to_forward(60_000, &[], 10).unwrap();
        assert_eq!((out.len(), out[0].node.as_str()), (1, "b"));
        s.mark_forwarded(vec![id]).unwrap();
        assert!(s.to_forward(60_000, &[], 10).unwrap().is_empty());
        // Handed over long ago and never settled: handed over again, unless
        // its node is lost.
        assert_eq!(s.to_forward(-1, &[], 10).unwrap().len(), 1);
        assert!(s.to_forward(-1, &["b".into()], 10).unwrap().is_empty());
        s.forward_again().unwrap();
        assert_eq!(s.to_forward(60_000, &["b".into()], 10).unwrap().len(), 1);
        s.mark_forwarded(vec![id]).unwrap();
        assert!(s
            .settle_forwarded(id, "c", State::Failed, None)
            .unwrap()
            .is_none());
        let settled = s.settle_forwarded(id, "b", State::Delivered, None).unwrap();
        assert_eq!(settled.map(|(to, _)| to).as_deref(), Some("far"));
        // It handed messages over before it had an incarnation: none.
        assert_eq!(s.incarnation().unwrap(), "");
        // A forgotten node's messages fail; settled ones stay as they are.
        let other = s.enqueue_for_node("operator", "gone", "hi", "c").unwrap();
        let failed = s.fail_for_node("c", "forgotten").unwrap();
        assert_eq!(failed, vec![(other, "gone".to_string())]);
        assert!(s.fail_for_node("c", "forgotten").unwrap().is_empty());
        assert!(s.fail_for_node("b", "forgotten").unwrap().is_empty());
        assert!(s
            .settle_forwarded(id, "b", State::Failed, Some("late"))
            .unwrap()
            .is_none());
        assert!(s.to_forward(-1, &[], 10).unwrap().is_empty());
        assert_eq!(s.counts("far").unwrap().delivered, 1);
    }

    #[test]
    fn a_message_from_another_node_is_stored_once_and_told_back_once() {
        let (s, _dir) = crate::tests::temp_store("origin");
        let id = s
            .enqueue_from("a:7", "operator", "dev", "hi", "message")
            .unwrap();
        let id = id.unwrap();
        assert_eq!(
            s.enqueue_from("a:7", "operator", "dev", "hi", "message")
                .unwrap(),
            None
        );
        assert_eq!(s.next_queued("dev").unwrap().map(|m| m.id), Some(id));
        assert!(s.to_ack(10).unwrap().is_empty());
        s.finish(id, State::Delivered, None).unwrap();
        let settled = s.to_ack(10).unwrap();
        assert_eq!(
            (settled[0].origin.as_str(), settled[0].state),
            ("a:7", State::Delivered)
        );
        s.mark_acked(vec![id]).unwrap();
        assert!(s.to_ack(10).unwrap().is_empty());
        // Sent again (its node never heard): stored once, told again.
        assert_eq!(
            s.enqueue_from("a:7", "operator", "dev", "hi", "message")
                .unwrap(),
            None
        );
        assert_eq!(s.to_ack(10).unwrap().len(), 1);
    }
}
