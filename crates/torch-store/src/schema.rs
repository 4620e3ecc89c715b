//! The store's schema and its migrations.
//!
//! `PRAGMA user_version` counts the migrations a database has had; opening
//! runs the missing ones in order, each in one transaction with its count,
//! so an upgrade of Torch keeps `/var/lib/torch/torch.db` and a crash part
//! way leaves it at a version it knows. A database from before versioning
//! (version 0, tables already there) is taken by the first migration's
//! `IF NOT EXISTS`. Migrations are only ever appended.

use rusqlite::Connection;

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: messages and check-ins.
    "CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        body TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'message',
        created_ms INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_ms INTEGER,
        reason TEXT
    );
    CREATE INDEX IF NOT EXISTS messages_queue ON messages (recipient, state, id);
    CREATE TABLE IF NOT EXISTS schedules (
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
    );",
    // 2: the agents to bring back after a reboot, and the last boot seen.
    "CREATE TABLE wanted (agent TEXT PRIMARY KEY);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 3: an agent's history in id order, for pages.
    "CREATE INDEX messages_to ON messages (recipient, id);",
    // 4: a sender's key for a message, so a retried send stores it once.
    "ALTER TABLE messages ADD COLUMN send_key TEXT;
    CREATE UNIQUE INDEX messages_send_key ON messages (sender, send_key)
        WHERE send_key IS NOT NULL;",
    // 5: a check-in's schedule as the user typed it, to show it back;
    // older schedules have none and are shown from `spec`.
    "ALTER TABLE schedules ADD COLUMN typed TEXT;",
    // 6: the queue alone: which recipients have queued messages (asked at
    // every watchdog tick) costs what is queued, not a scan of all history,
    // which held the reader 135 ms at 1,000,000 messages.
    "CREATE INDEX messages_queued ON messages (recipient) WHERE state = 'queued';",
    // 7: the work ledger: tasks, what each waits for, and every change.
    "CREATE TABLE tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        skills TEXT NOT NULL DEFAULT '',
        project TEXT NOT NULL DEFAULT '',
        priority INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        owner TEXT,
        created_by TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        nudges INTEGER NOT NULL DEFAULT 0,
        nudged_ms INTEGER,
        stalled INTEGER NOT NULL DEFAULT 0,
        reviewer TEXT
    );
    CREATE INDEX tasks_by_state ON tasks (state, priority DESC, id);
    CREATE TABLE task_after (
        task INTEGER NOT NULL,
        after INTEGER NOT NULL,
        PRIMARY KEY (task, after)
    );
    CREATE TABLE task_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        state TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX task_events_by_task ON task_events (task, id);",
    // 8: messages across the nodes of a cluster: to an agent of another
    // node (`node`), handed to it (`forwarded_ms`) and settled there; and
    // from another node (`origin`, NODE:ID, stored once), settled here and
    // told (`acked_ms`).
    "ALTER TABLE messages ADD COLUMN node TEXT;
    ALTER TABLE messages ADD COLUMN origin TEXT;
    ALTER TABLE messages ADD COLUMN forwarded_ms INTEGER;
    ALTER TABLE messages ADD COLUMN acked_ms INTEGER;
    CREATE UNIQUE INDEX messages_origin ON messages (origin) WHERE origin IS NOT NULL;
    CREATE INDEX messages_to_forward ON messages (id)
        WHERE node IS NOT NULL AND state = 'queued';
    CREATE INDEX messages_to_ack ON messages (id)
        WHERE origin IS NOT NULL AND acked_ms IS NULL;",
    // 9: the node of a task's holder when it is an agent of another node
    // of the cluster, who alone may move it from there.
    "ALTER TABLE tasks ADD COLUMN owner_node TEXT;",
];

/// Brings the database to the current schema.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let have: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if have > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema {
            found: have,
            known: MIGRATIONS.len(),
        });
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(have) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", done + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_before_versions_opens_with_its_messages_and_check_ins() {
        let (s, dir) = crate::tests::temp_store("fixture");
        drop(s);
        let path = dir.join("old.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(include_str!("../fixtures/before-versions.sql"))
            .unwrap();
        let store = crate::Store::open(&path).unwrap();
        let queued = store.next_queued("dev").unwrap().unwrap();
        assert_eq!(queued.body, "queued across the upgrade");
        assert_eq!(store.history(Some("dev"), 10).unwrap().len(), 2);
        let sched = store.active_schedules(None).unwrap();
        assert_eq!((sched.len(), sched[0].typed.as_deref()), (1, None));
        // What the new schema adds works on the old rows.
        let (_, fresh) = store
            .enqueue_once("pm", "dev", "after", "message", "k")
            .unwrap();
        assert!(fresh);
        assert_eq!(store.recipients_with_queue().unwrap(), ["dev"]);
        drop(store);
        let c = Connection::open(&path).unwrap();
        let v: usize = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_database_from_before_versioning_is_upgraded_in_place() {
        let mut c = Connection::open_in_memory().unwrap();
        // What the store wrote before it had versions, with a message.
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.execute(
            "INSERT INTO messages (sender, recipient, body, created_ms) VALUES ('a', 'b', 'kept', 1)",
            [],
        )
        .unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: usize = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len());
        let body: String = c
            .query_row(
                "SELECT body FROM messages WHERE send_key IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(body, "kept");
        c.pragma_update(None, "user_version", 99).unwrap();
        let e = migrate(&mut c).unwrap_err();
        assert!(e.to_string().contains("newer Torch"), "{e}");
    }
}
