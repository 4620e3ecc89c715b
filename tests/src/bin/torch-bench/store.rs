//! Fills the hub's store with settled history, so that the bench can time
//! the hub with a large store. The history is to and from the agent being
//! timed: the worst case for the hub's per-agent queries.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

/// Rows per transaction: a few transactions, with progress between them.
const CHUNK: usize = 250_000;
/// The stored messages are spread over this span before now, well inside
/// the hub's retention (30 days by default), so it prunes none of them.
const SPAN_MS: i64 = 3_600_000;

/// Adds `n` delivered messages to the store at `db`, which the hub (now
/// stopped) created: nine in ten from the operator to `agent`, the rest
/// from `agent` to `other`.
pub fn fill(db: &Path, n: usize, agent: &str, other: &str) -> Result<Duration> {
    let owner = std::fs::metadata(db).with_context(|| format!("{}", db.display()))?;
    let t = Instant::now();
    let mut conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    // The file is synced once at the end, before anything is timed on it.
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let mut done = 0;
    while done < n {
        let end = (done + CHUNK).min(n);
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO messages (sender, recipient, body, kind, created_ms, state, attempts, delivered_ms)
                 VALUES (?1, ?2, ?3, 'message', ?4, 'delivered', 1, ?5)",
            )?;
            for i in done..end {
                let (from, to) = if i % 10 == 9 {
                    (agent, other)
                } else {
                    ("operator", agent)
                };
                // Oldest first, as the ids go.
                let created = now - SPAN_MS + i as i64 * SPAN_MS / n as i64;
                let body =
                    format!("stored message {i}: the quick brown fox jumps over the lazy dog");
                insert.execute(params![from, to, body, created, created + 2])?;
            }
        }
        tx.commit()?;
        done = end;
        eprintln!(
            "store: {done}/{n} messages added in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    // Into the database file, so that the hub starts on an empty WAL.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    // Written back now, not while the hub's own fsyncs are being timed.
    std::fs::File::open(db)?.sync_all()?;
    // Whatever SQLite left beside the database, made by root, must stay
    // writable by the hub's user.
    for suffix in ["-wal", "-shm"] {
        let side = db.with_file_name(format!(
            "{}{suffix}",
            db.file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("torch.db")
        ));
        if side.exists() {
            std::os::unix::fs::chown(&side, Some(owner.uid()), Some(owner.gid()))
                .with_context(|| format!("chown {}", side.display()))?;
        }
    }
    Ok(t.elapsed())
}
