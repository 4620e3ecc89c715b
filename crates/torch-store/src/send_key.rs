//! Messages stored once per sender's key, so that a send retried after a
//! lost reply (the hub died after storing it, before answering) is not
//! stored and delivered twice.
//!
//! A key stays taken for as long as its message is kept (see the history
//! module's pruning: 30 days after delivery by default, and forever while
//! queued).

use rusqlite::{params, OptionalExtension};

use crate::{now_ms, Store, StoreError};

enum Found {
    Stored(i64),
    Earlier(i64),
    Reused,
}

impl Store {
    /// Stores a message under `sender`'s `key` unless that key already
    /// holds one; returns its id and whether it was stored by this call. The
    /// same key for a different recipient or text is refused.
    pub fn enqueue_once(
        &self,
        sender: &str,
        recipient: &str,
        body: &str,
        kind: &str,
        key: &str,
    ) -> Result<(i64, bool), StoreError> {
        self.enqueue_once_for(sender, recipient, body, kind, key, None)
    }

    /// [`Self::enqueue_once`] for `recipient` on `node` when given, an
    /// agent of another node of the cluster (see the federation module).
    pub fn enqueue_once_for(
        &self,
        sender: &str,
        recipient: &str,
        body: &str,
        kind: &str,
        key: &str,
        node: Option<&str>,
    ) -> Result<(i64, bool), StoreError> {
        let (s, r, b, k, key_) = (
            sender.to_string(),
            recipient.to_string(),
            body.to_string(),
            kind.to_string(),
            key.to_string(),
        );
        let node = node.map(str::to_string);
        let found = self.write(move |c| {
            let earlier: Option<(i64, String, String)> = c
                .query_row(
                    "SELECT id, recipient, body FROM messages WHERE sender = ?1 AND send_key = ?2",
                    params![s, key_],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            if let Some((id, to, text)) = earlier {
                return Ok(if to == r && text == b {
                    Found::Earlier(id)
                } else {
                    Found::Reused
                });
            }
            c.execute(
                "INSERT INTO messages (sender, recipient, body, kind, created_ms, send_key, node) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![s, r, b, k, now_ms(), key_, node],
            )?;
            Ok(Found::Stored(c.last_insert_rowid()))
        })?;
        match found {
            Found::Stored(id) => Ok((id, true)),
            Found::Earlier(id) => Ok((id, false)),
            Found::Reused => Err(StoreError::KeyReused(key.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::StoreError;

    #[test]
    fn a_key_stores_its_message_once() {
        let (s, dir) = crate::tests::temp_store("sendkey");
        let (a, fresh) = s.enqueue_once("op", "dev", "hi", "message", "k1").unwrap();
        assert!(fresh);
        assert_eq!(
            s.enqueue_once("op", "dev", "hi", "message", "k1").unwrap(),
            (a, false)
        );
        // Keys are per sender; no key at all never collides.
        let (b, fresh) = s.enqueue_once("pm", "dev", "hi", "message", "k1").unwrap();
        assert!(fresh && b != a);
        s.enqueue("op", "dev", "hi", "message").unwrap();
        s.enqueue("op", "dev", "hi", "message").unwrap();
        assert!(matches!(
            s.enqueue_once("op", "dev", "other text", "message", "k1"),
            Err(StoreError::KeyReused(_))
        ));
        assert_eq!(s.inbox("dev", 10).unwrap().len(), 4);
        drop(s);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
