//! The work ledger's tasks: what is to be done, by whom, in which state,
//! with every change kept (who, when, what) and the tasks each one waits
//! for. A change of state and the message that tells the parties about it
//! are one transaction: a task never moves without its report, nor the
//! reverse.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Row};

use crate::{now_ms, Store, StoreError};

/// A new task.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    /// One line.
    pub title: String,
    /// What to do, in full.
    pub body: String,
    /// Skills an agent needs for it, sorted.
    pub skills: Vec<String>,
    /// The project it belongs to ("" for none).
    pub project: String,
    /// Higher first.
    pub priority: i64,
    /// Tasks that must be done first.
    pub after: Vec<i64>,
    /// Who opened it: an agent or `operator`.
    pub created_by: String,
    /// The agent it is given to at once, if any.
    pub owner: Option<String>,
}

/// Writes the message that gives a new task to its holder, from the task's
/// id: (sender, recipient, body).
pub type Tell = Box<dyn FnOnce(i64) -> (String, String, String) + Send>;

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Its id.
    pub id: i64,
    /// One line.
    pub title: String,
    /// What to do.
    pub body: String,
    /// Skills needed.
    pub skills: Vec<String>,
    /// Its project.
    pub project: String,
    /// Higher first.
    pub priority: i64,
    /// open, assigned, working, review, done, failed, blocked, cancelled.
    pub state: String,
    /// The agent holding it.
    pub owner: Option<String>,
    /// Who opened it.
    pub created_by: String,
    /// When it was opened, Unix milliseconds.
    pub created_ms: i64,
    /// When it last changed, Unix milliseconds.
    pub updated_ms: i64,
    /// Tasks it waits for that are not done yet.
    pub waiting_on: Vec<i64>,
    /// Nudges its holder got since its last change.
    pub nudges: u32,
    /// When the last nudge went, Unix milliseconds.
    pub nudged_ms: Option<i64>,
    /// Whether its holder's parent was told it stalled.
    pub stalled: bool,
    /// Who was last asked to review it.
    pub reviewer: Option<String>,
    /// The node of the cluster its holder runs on, when another.
    pub owner_node: Option<String>,
}

/// One change of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEvent {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Who: an agent or `operator`.
    pub actor: String,
    /// The state it entered.
    pub state: String,
    /// What they said (a summary, a reason).
    pub note: String,
}

/// A change to make: the task must be in one of `from`; it enters `to`
/// with `owner` (unchanged when `None`), and `report`, if any, is queued as
/// a message (sender, recipient, body) in the same transaction.
#[derive(Debug, Clone, Default)]
pub struct Change<'a> {
    /// States the task may be in.
    pub from: &'a [&'a str],
    /// The state it enters.
    pub to: &'a str,
    /// Its new holder, if it changes.
    pub owner: Option<&'a str>,
    /// With a new holder: the node of the cluster it runs on, when another.
    pub owner_node: Option<&'a str>,
    /// Whether it loses its holder (back to the ledger).
    pub release: bool,
    /// Its reviewer, if one is named.
    pub reviewer: Option<&'a str>,
    /// Its skills, if they change.
    pub skills: Option<&'a [String]>,
    /// Who makes the change.
    pub actor: &'a str,
    /// What they said.
    pub note: &'a str,
    /// The message telling the parties: (sender, recipient, body).
    pub report: Option<(&'a str, &'a str, String)>,
    /// The node of the cluster the report's recipient runs on, when it is
    /// another (the message is then handed over there).
    pub report_node: Option<&'a str>,
}

const COLUMNS: &str = "id, title, body, skills, project, priority, state, owner, created_by, \
    created_ms, updated_ms, nudges, nudged_ms, stalled, reviewer, owner_node";

fn task_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let skills: String = r.get(3)?;
    Ok(Task {
        id: r.get(0)?,
        title: r.get(1)?,
        body: r.get(2)?,
        skills: skills
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        project: r.get(4)?,
        priority: r.get(5)?,
        state: r.get(6)?,
        owner: r.get(7)?,
        created_by: r.get(8)?,
        created_ms: r.get(9)?,
        updated_ms: r.get(10)?,
        waiting_on: Vec::new(),
        nudges: r.get(11)?,
        nudged_ms: r.get(12)?,
        stalled: r.get(13)?,
        reviewer: r.get(14)?,
        owner_node: r.get(15)?,
    })
}

/// The tasks `id` waits for that are not done.
fn waiting_on(c: &rusqlite::Connection, id: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT a.after FROM task_after a JOIN tasks t ON t.id = a.after
         WHERE a.task = ?1 AND t.state != 'done' ORDER BY a.after",
    )?;
    let rows = st.query_map(params![id], |r| r.get(0))?;
    rows.collect()
}

/// What every task waits for that is not done, by task.
fn all_waiting(c: &rusqlite::Connection) -> rusqlite::Result<HashMap<i64, Vec<i64>>> {
    let mut st = c.prepare_cached(
        "SELECT a.task, a.after FROM task_after a JOIN tasks t ON t.id = a.after
         WHERE t.state != 'done' ORDER BY a.task, a.after",
    )?;
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    for row in st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
        let (task, after) = row?;
        out.entry(task).or_default().push(after);
    }
    Ok(out)
}

impl Store {
    /// Stores a new task (open, or assigned to `owner`) and returns its id.
    /// Every task it waits for must exist.
    /// A task given at once (`t.owner` set) is assigned in the same
    /// transaction, with the message `tell` writes from its id (sender,
    /// recipient, body), so that no router takes it meanwhile.
    pub fn add_task(&self, t: NewTask, tell: Option<Tell>) -> Result<i64, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            c.execute(
                "INSERT INTO tasks (title, body, skills, project, priority, state, created_by, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7, ?7)",
                params![t.title, t.body, t.skills.join(","), t.project, t.priority, t.created_by, now],
            )?;
            let id = c.last_insert_rowid();
            for a in &t.after {
                c.execute("INSERT OR IGNORE INTO task_after (task, after) SELECT ?1, id FROM tasks WHERE id = ?2", params![id, a])?;
            }
            let event = "INSERT INTO task_events (task, at_ms, actor, state, note) VALUES (?1, ?2, ?3, ?4, '')";
            c.execute(event, params![id, now, t.created_by, "open"])?;
            if let Some(owner) = &t.owner {
                c.execute(
                    "UPDATE tasks SET state = 'assigned', owner = ?2 WHERE id = ?1",
                    params![id, owner],
                )?;
                c.execute(event, params![id, now, t.created_by, "assigned"])?;
            }
            if let Some(tell) = tell {
                let (sender, recipient, body) = tell(id);
                c.execute(
                    "INSERT INTO messages (sender, recipient, body, kind, created_ms) VALUES (?1, ?2, ?3, 'message', ?4)",
                    params![sender, recipient, body, now],
                )?;
            }
            Ok(id)
        })
    }

    /// The task `id`, if there is one.
    pub fn task(&self, id: i64) -> Result<Option<Task>, StoreError> {
        self.with(|c| {
            let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1");
            let Some(mut t) = c.query_row(&sql, params![id], task_row).optional()? else {
                return Ok(None);
            };
            t.waiting_on = waiting_on(c, id)?;
            Ok(Some(t))
        })
    }

    /// Tasks in `state` (all for `None`), highest priority then oldest
    /// first, at most `limit`.
    pub fn tasks(&self, state: Option<&str>, limit: u32) -> Result<Vec<Task>, StoreError> {
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM tasks WHERE ?1 IS NULL OR state = ?1
                 ORDER BY priority DESC, id LIMIT ?2"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params![state, limit], task_row)?;
            let mut out = rows.collect::<rusqlite::Result<Vec<Task>>>()?;
            // One query for what every task waits for, not one per task:
            // the router reads all open tasks every second.
            let mut waits = all_waiting(c)?;
            for t in &mut out {
                t.waiting_on = waits.remove(&t.id).unwrap_or_default();
            }
            Ok(out)
        })
    }

    /// Every task someone holds (assigned, working, review or blocked),
    /// by holder: (id, stalled) in id order.
    pub fn holders(&self) -> Result<HashMap<String, Vec<(i64, bool)>>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT owner, id, stalled FROM tasks WHERE owner IS NOT NULL
                 AND state IN ('assigned', 'working', 'review', 'blocked') ORDER BY id",
            )?;
            let mut out: HashMap<String, Vec<(i64, bool)>> = HashMap::new();
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))?;
            for row in rows {
                let (owner, id, stalled) = row?;
                out.entry(owner).or_default().push((id, stalled));
            }
            Ok(out)
        })
    }

    /// Tasks held (assigned or working), oldest change first.
    pub fn held_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.with(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM tasks WHERE state IN ('assigned', 'working') ORDER BY updated_ms"
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map([], task_row)?;
            rows.collect()
        })
    }

    /// Records a nudge about task `id`, still held and unchanged since
    /// `updated_ms`, and queues `message` (sender, recipient, body);
    /// `stalled` marks the nudge that told its holder's parent. Returns
    /// false, doing nothing, when the task changed meanwhile.
    pub fn nudge_task(
        &self,
        id: i64,
        updated_ms: i64,
        stalled: bool,
        message: (String, String, String),
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE tasks SET nudges = nudges + 1, nudged_ms = ?3, stalled = ?4
                 WHERE id = ?1 AND updated_ms = ?2 AND state IN ('assigned', 'working')",
                params![id, updated_ms, now, stalled],
            )?;
            if n == 0 {
                return Ok(false);
            }
            let (sender, recipient, body) = message;
            c.execute(
                "INSERT INTO messages (sender, recipient, body, kind, created_ms) VALUES (?1, ?2, ?3, 'message', ?4)",
                params![sender, recipient, body, now],
            )?;
            Ok(true)
        })
    }

    /// Puts every task `owner` holds (assigned, working or blocked) back to
    /// open, for `actor` because of `note`; returns their ids.
    pub fn release_tasks(
        &self,
        owner: &str,
        actor: &str,
        note: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let (owner, actor, note) = (owner.to_string(), actor.to_string(), note.to_string());
        self.write(move |c| {
            let now = now_ms();
            let ids: Vec<i64> = {
                let mut st = c.prepare(
                    "SELECT id FROM tasks WHERE owner = ?1 AND state IN ('assigned', 'working', 'blocked')",
                )?;
                let rows = st.query_map(params![owner], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for id in &ids {
                c.execute(
                    "UPDATE tasks SET state = 'open', owner = NULL, owner_node = NULL, updated_ms = ?2,
                     nudges = 0, nudged_ms = NULL, stalled = 0 WHERE id = ?1",
                    params![id, now],
                )?;
                c.execute(
                    "INSERT INTO task_events (task, at_ms, actor, state, note) VALUES (?1, ?2, ?3, 'open', ?4)",
                    params![id, now, actor, note],
                )?;
            }
            Ok(ids)
        })
    }

    /// Whether any task is open: what the router asks every second before
    /// it does anything else.
    pub fn any_open(&self) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'open')",
                [],
                |r| r.get(0),
            )
        })
    }

    /// How many tasks each agent holds (assigned or working).
    pub fn held(&self) -> Result<HashMap<String, usize>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT owner, COUNT(*) FROM tasks
                 WHERE state IN ('assigned', 'working') AND owner IS NOT NULL GROUP BY owner",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))?;
            rows.collect()
        })
    }

    /// Every change of task `id`, oldest first.
    pub fn task_events(&self, id: i64) -> Result<Vec<TaskEvent>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT at_ms, actor, state, note FROM task_events WHERE task = ?1 ORDER BY id",
            )?;
            let rows = st.query_map(params![id], |r| {
                Ok(TaskEvent {
                    at_ms: r.get(0)?,
                    actor: r.get(1)?,
                    state: r.get(2)?,
                    note: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The changes of every task after change `after` (0: from the first),
    /// oldest first, at most `limit`: (change id, task id, its event).
    pub fn task_changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, i64, TaskEvent)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, task, at_ms, actor, state, note FROM task_events WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![after, limit], |r| {
                let event = TaskEvent {
                    at_ms: r.get(2)?,
                    actor: r.get(3)?,
                    state: r.get(4)?,
                    note: r.get(5)?,
                };
                Ok((r.get(0)?, r.get(1)?, event))
            })?;
            rows.collect()
        })
    }

    /// The id of the last change of any task (0: none yet).
    pub fn last_task_change(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COALESCE(MAX(id), 0) FROM task_events", [], |r| {
                r.get(0)
            })
        })
    }

    /// Makes `change` to task `id` if it is still in one of `change.from`
    /// (checked in the same transaction, so two agents claiming one task
    /// cannot both have it); returns whether it was made.
    pub fn change_task(&self, id: i64, change: Change<'_>) -> Result<bool, StoreError> {
        let from: Vec<String> = change.from.iter().map(|s| s.to_string()).collect();
        let (to, owner) = (change.to.to_string(), change.owner.map(String::from));
        let owner_node = change.owner_node.map(String::from);
        let (release, reviewer) = (change.release, change.reviewer.map(String::from));
        let skills = change.skills.map(|s| s.join(","));
        let (actor, note) = (change.actor.to_string(), change.note.to_string());
        let report = change
            .report
            .map(|(s, r, b)| (s.to_string(), r.to_string(), b));
        let report_node = change.report_node.map(String::from);
        self.write(move |c| {
            let now = now_ms();
            let state: Option<String> = c
                .query_row("SELECT state FROM tasks WHERE id = ?1", params![id], |r| r.get(0))
                .optional()?;
            if !state.is_some_and(|s| from.contains(&s)) {
                return Ok(false);
            }
            c.execute(
                "UPDATE tasks SET state = ?2,
                 owner = CASE WHEN ?5 THEN NULL ELSE COALESCE(?3, owner) END,
                 owner_node = CASE WHEN ?5 THEN NULL WHEN ?3 IS NOT NULL THEN ?8 ELSE owner_node END,
                 reviewer = COALESCE(?6, reviewer), skills = COALESCE(?7, skills),
                 updated_ms = ?4, nudges = 0, nudged_ms = NULL, stalled = 0 WHERE id = ?1",
                params![id, to, owner, now, release, reviewer, skills, owner_node],
            )?;
            c.execute(
                "INSERT INTO task_events (task, at_ms, actor, state, note) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, now, actor, to, note],
            )?;
            if let Some((sender, recipient, body)) = report {
                c.execute(
                    "INSERT INTO messages (sender, recipient, body, kind, created_ms, node) VALUES (?1, ?2, ?3, 'message', ?4, ?5)",
                    params![sender, recipient, body, now, report_node],
                )?;
            }
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(title: &str, after: Vec<i64>) -> NewTask {
        NewTask {
            title: title.into(),
            skills: vec!["review".into(), "rust".into()],
            created_by: "pm".into(),
            after,
            ..NewTask::default()
        }
    }

    #[test]
    fn a_report_for_an_agent_of_another_node_is_handed_over() {
        let (s, _dir) = crate::tests::temp_store("tasks-node");
        let a = s.add_task(new("far work", vec![]), None).unwrap();
        let give = Change {
            from: &["open"],
            to: "assigned",
            owner: Some("far-dev"),
            owner_node: Some("node-b"),
            actor: "hub",
            report: Some(("operator", "far-dev", "Task for you".into())),
            report_node: Some("node-b"),
            ..Default::default()
        };
        assert!(s.change_task(a, give).unwrap());
        assert!(s.next_queued("far-dev").unwrap().is_none());
        let t = s.task(a).unwrap().unwrap();
        assert_eq!(t.owner_node.as_deref(), Some("node-b"));
        // Back to the ledger: no holder, no node.
        s.release_tasks("far-dev", "hub", "gone").unwrap();
        assert_eq!(s.task(a).unwrap().unwrap().owner_node, None);
        let out = s.to_forward(60_000, &[], 10).unwrap();
        assert_eq!(
            (out.len(), out[0].node.as_str(), out[0].body.as_str()),
            (1, "node-b", "Task for you")
        );
    }

    #[test]
    fn tasks_wait_for_theirs_change_once_and_keep_their_history() {
        let (s, dir) = crate::tests::temp_store("tasks");
        let a = s.add_task(new("first", vec![]), None).unwrap();
        let b = s.add_task(new("second", vec![a, 999]), None).unwrap();
        let t = s.task(b).unwrap().unwrap();
        assert_eq!((t.state.as_str(), t.waiting_on.clone()), ("open", vec![a]));
        assert_eq!(t.skills, ["review", "rust"]);

        let claim = |who: &'static str| Change {
            from: &["open"],
            to: "assigned",
            owner: Some(who),
            actor: who,
            note: "",
            report: None,
            ..Default::default()
        };
        assert!(s.change_task(a, claim("dev1")).unwrap());
        assert!(!s.change_task(a, claim("dev2")).unwrap(), "claimed twice");
        let done = Change {
            from: &["assigned", "working"],
            to: "done",
            owner: None,
            actor: "dev1",
            note: "all green",
            report: Some(("dev1", "pm", "task done".into())),
            ..Default::default()
        };
        assert!(s.change_task(a, done).unwrap());
        assert_eq!(s.task(a).unwrap().unwrap().owner.as_deref(), Some("dev1"));
        assert!(s.task(b).unwrap().unwrap().waiting_on.is_empty());
        assert_eq!(s.next_queued("pm").unwrap().unwrap().body, "task done");
        let events = s.task_events(a).unwrap();
        let states: Vec<&str> = events.iter().map(|e| e.state.as_str()).collect();
        assert_eq!(states, ["open", "assigned", "done"]);
        assert_eq!(events[2].note, "all green");
        assert_eq!(s.tasks(Some("open"), 10).unwrap().len(), 1);
        assert!(s.task(12345).unwrap().is_none());

        // A nudge counts only while the task is unchanged; a release puts
        // what a holder had back to open.
        let t = s.task(b).unwrap().unwrap();
        assert!(s.change_task(b, claim("dev2")).unwrap());
        assert!(!s
            .nudge_task(
                b,
                t.updated_ms - 1,
                false,
                ("task-2".into(), "dev2".into(), "x".into())
            )
            .unwrap());
        let held = s.held_tasks().unwrap();
        assert_eq!(held.len(), 1);
        assert!(s
            .nudge_task(
                b,
                held[0].updated_ms,
                true,
                ("task-2".into(), "pm".into(), "stalled".into())
            )
            .unwrap());
        let t = s.task(b).unwrap().unwrap();
        assert_eq!((t.nudges, t.stalled), (1, true));
        assert_eq!(
            s.release_tasks("dev2", "hub", "its agent is gone").unwrap(),
            [b]
        );
        let t = s.task(b).unwrap().unwrap();
        assert_eq!((t.state.as_str(), t.owner, t.nudges), ("open", None, 0));

        // Given at once: assigned, with its message, in one transaction.
        let given = NewTask {
            owner: Some("dev3".into()),
            ..new("third", vec![])
        };
        let tell: Tell = Box::new(|id| ("pm".into(), "dev3".into(), format!("task #{id} for you")));
        let c = s.add_task(given, Some(tell)).unwrap();
        let t = s.task(c).unwrap().unwrap();
        assert_eq!(
            (t.state.as_str(), t.owner.as_deref()),
            ("assigned", Some("dev3"))
        );
        assert_eq!(
            s.next_queued("dev3").unwrap().unwrap().body,
            format!("task #{c} for you")
        );
        let states: Vec<String> = s
            .task_events(c)
            .unwrap()
            .into_iter()
            .map(|e| e.state)
            .collect();
        assert_eq!(states, ["open", "assigned"]);
        drop(s);
        let _ = std::fs::remove_dir_all(dir);
    }
}
