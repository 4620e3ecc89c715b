//! The writer thread: writes are committed in groups, each in a savepoint
//! of its own, and each caller woken once its group is on disk.

use std::sync::mpsc;

use rusqlite::Connection;

use crate::{Store, StoreError};

/// Commits groups of writes until every sender is gone.
pub(crate) fn writer_loop(conn: Connection, writes: mpsc::Receiver<Write>) {
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
pub(crate) type Write = Box<dyn FnOnce(&Connection) -> Finish + Send>;

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

impl Store {
    /// Runs a write in the next group and returns once that is on disk.
    pub(crate) fn write<T: Send + 'static>(
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
}
