//! Message history: pages of it for the API, and its pruning.
//!
//! Pages go backwards from a cursor (a message id), so a client walks any
//! length of history in bounded replies; pruning deletes what was settled
//! (delivered or failed) before a cutoff, a batch per write, so that the
//! writer never holds the database for long.

use rusqlite::{params, OptionalExtension};

use crate::{row, Message, Store, StoreError, COLUMNS};

impl Store {
    /// Messages to or from `agent` (all when `None`), newest last, at most `limit`.
    pub fn history(&self, agent: Option<&str>, limit: u32) -> Result<Vec<Message>, StoreError> {
        self.history_page(agent, None, limit)
    }

    /// Messages addressed to `agent`, newest last, at most `limit`.
    pub fn inbox(&self, agent: &str, limit: u32) -> Result<Vec<Message>, StoreError> {
        self.inbox_page(agent, None, limit)
    }

    /// Like [`Store::history`], of the messages older than id `before`.
    pub fn history_page(
        &self,
        agent: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.page(
            "(?1 IS NULL OR recipient = ?1 OR sender = ?1)",
            agent,
            before,
            limit,
        )
    }

    /// Like [`Store::inbox`], of the messages older than id `before`.
    pub fn inbox_page(
        &self,
        agent: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.page("recipient = ?1", Some(agent), before, limit)
    }

    fn page(
        &self,
        filter: &str,
        agent: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.with(|c| {
            let sql = format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM messages WHERE {filter} AND id < ?2 ORDER BY id DESC LIMIT ?3) ORDER BY id"
            );
            let mut st = c.prepare_cached(&sql)?;
            let v = st
                .query_map(params![agent, before.unwrap_or(i64::MAX), limit], row)?
                .collect();
            v
        })
    }

    /// Deletes up to `batch` delivered or failed messages settled (or, for
    /// a failed one, created) before `cutoff_ms`; returns how many. Queued
    /// messages are never deleted, however old, nor one from another node
    /// whose outcome that node was not told yet (stored once by its origin,
    /// it must stay to be recognized if it comes again). Only ids stored before the
    /// cutoff are looked at: with nothing old enough, nothing is scanned.
    pub fn prune_settled(&self, cutoff_ms: i64, batch: u32) -> Result<usize, StoreError> {
        let Some(bound) = self.last_id_before(cutoff_ms)? else {
            return Ok(0);
        };
        self.write(move |c| {
            c.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE id <= ?3 AND state != 'queued' AND (origin IS NULL OR acked_ms IS NOT NULL) AND COALESCE(delivered_ms, created_ms) < ?1 LIMIT ?2)",
                params![cutoff_ms, batch, bound],
            )
        })
    }

    /// The highest id of a message stored before `cutoff_ms`, found by
    /// point lookups (ids grow with time), not by reading the history: a
    /// message settles after it is stored, so none after it can be pruned.
    fn last_id_before(&self, cutoff_ms: i64) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            let first_from = |id: i64| {
                c.query_row(
                    "SELECT id, created_ms FROM messages WHERE id >= ?1 ORDER BY id LIMIT 1",
                    [id],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()
            };
            let Some((first, first_ms)) = first_from(i64::MIN)? else {
                return Ok(None);
            };
            if first_ms >= cutoff_ms {
                return Ok(None);
            }
            let last: i64 = c.query_row("SELECT MAX(id) FROM messages", [], |r| r.get(0))?;
            // `lo` was stored before the cutoff; nothing from `hi` on was.
            let (mut lo, mut hi) = (first, last.saturating_add(1));
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                match first_from(mid)? {
                    Some((id, ms)) if ms < cutoff_ms && id < hi => lo = id,
                    _ => hi = mid,
                }
            }
            Ok(Some(lo))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::State;

    #[test]
    fn pages_walk_back_and_pruning_keeps_the_queue() {
        let (s, dir) = crate::tests::temp_store("history");
        let ids: Vec<i64> = (0..5)
            .map(|i| {
                s.enqueue("operator", "a", &i.to_string(), "message")
                    .unwrap()
            })
            .collect();
        s.enqueue("a", "b", "other", "message").unwrap();
        let bodies = |v: Vec<crate::Message>| v.into_iter().map(|m| m.body).collect::<Vec<_>>();
        assert_eq!(bodies(s.inbox_page("a", None, 2).unwrap()), ["3", "4"]);
        assert_eq!(
            bodies(s.inbox_page("a", Some(ids[3]), 2).unwrap()),
            ["1", "2"]
        );
        assert_eq!(bodies(s.inbox_page("a", Some(ids[1]), 2).unwrap()), ["0"]);
        assert_eq!(s.history_page(Some("a"), None, 100).unwrap().len(), 6);
        assert_eq!(s.history_page(None, Some(ids[2]), 100).unwrap().len(), 2);

        for id in &ids[..3] {
            s.finish(*id, State::Delivered, None).unwrap();
        }
        s.finish(ids[3], State::Failed, Some("refused")).unwrap();
        // Nothing settled before the epoch; everything settled before the future.
        assert_eq!(s.prune_settled(0, 100).unwrap(), 0);
        assert_eq!(s.last_id_before(0).unwrap(), None);
        assert_eq!(s.last_id_before(i64::MAX).unwrap(), Some(ids[4] + 1));
        assert_eq!(s.prune_settled(i64::MAX, 2).unwrap(), 2);
        assert_eq!(s.prune_settled(i64::MAX, 100).unwrap(), 2);
        assert_eq!(bodies(s.inbox("a", 100).unwrap()), ["4"]);
        assert_eq!(
            s.next_queued("b").unwrap().map(|m| m.body).as_deref(),
            Some("other")
        );
        drop(s);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
