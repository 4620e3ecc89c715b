//! `torch task ...`: the work ledger through the hub (docs/dbus.md, the
//! `Task*` methods). From an agent's pane the agent acts; elsewhere the
//! operator.

use std::io::Read;

use anyhow::{Context, Result};
use torch_api::{Task, TaskSpec};

use crate::args::{TaskCmd, TaskRef};
use crate::{hub, hub_call};

/// Runs one `torch task` action.
pub fn run(cmd: TaskCmd) -> Result<()> {
    match cmd {
        TaskCmd::Add {
            title,
            body,
            skills,
            project,
            priority,
            after,
            assign,
        } => {
            let body = match body {
                None => String::new(),
                Some(p) if p.as_os_str() == "-" => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .context("cannot read the body from standard input")?;
                    text
                }
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read the body {}", p.display()))?,
            };
            let spec = TaskSpec {
                title,
                body,
                skills,
                project,
                priority,
                after,
                assign,
                requester: hub::caller(),
            };
            let spec = serde_json::to_string(&spec)?;
            let id = hub_call(async |h| h.task_add(&spec).await)?;
            println!("task #{id}");
        }
        TaskCmd::List { state, mine, json } => list(state.as_deref().unwrap_or(""), mine, json)?,
        TaskCmd::Current => list("", true, false)?,
        TaskCmd::Show { id, json } => show(id, json)?,
        TaskCmd::Claim { id } => act(id, "claim", "", "", "claimed")?,
        TaskCmd::Start { id } => act(id, "start", "", "", "working on")?,
        TaskCmd::Done {
            id,
            summary,
            branch,
            files,
        } => {
            let note = crate::work::describe(&summary, branch, &files);
            act(id, "done", "", &note, "done:")?
        }
        TaskCmd::Block { id, reason } => act(id, "block", "", &reason, "blocked:")?,
        TaskCmd::Cancel { id } => act(id, "cancel", "", "", "cancelled")?,
        TaskCmd::Handoff {
            id,
            to,
            skill,
            note,
        } => match (to, skill) {
            (Some(to), _) => act(id, "handoff", &to, &note, "handed over")?,
            (None, skill) => act(
                id,
                "reroute",
                &skill.unwrap_or_default(),
                &note,
                "back to the ledger:",
            )?,
        },
        TaskCmd::Review {
            id,
            reviewer,
            note,
            branch,
        } => {
            let note = crate::work::describe(&note, branch, &[]);
            act(id, "review", &reviewer, &note, "sent to review:")?
        }
        TaskCmd::Reject { id, reason } => act(id, "reject", "", &reason, "sent back:")?,
    }
    Ok(())
}

fn act(task: TaskRef, action: &str, target: &str, note: &str, said: &str) -> Result<()> {
    let (node, id) = (task.node.as_str(), task.id);
    match node {
        "" => hub_call(async |h| h.task_act(id, action, target, note).await)?,
        _ => hub_call(async |h| h.task_act_on(node, id, action, target, note).await)?,
    }
    println!("{said} task {task}");
    Ok(())
}

fn list(state: &str, mine: bool, json: bool) -> Result<()> {
    let text = hub_call(async |h| h.tasks(state, mine).await)?;
    if json {
        println!("{text}");
        return Ok(());
    }
    let tasks: Vec<Task> =
        serde_json::from_str(&text).context("the hub sent tasks this torch cannot read")?;
    if tasks.is_empty() {
        println!("no tasks");
        return Ok(());
    }
    println!(
        "{:>5} {:<10} {:>4} {:<16} {:<20} TITLE",
        "ID", "STATE", "PRI", "HOLDER", "SKILLS"
    );
    for t in &tasks {
        let state = match (t.stalled, t.waiting_on.is_empty()) {
            (true, _) => format!("{} (stalled)", t.state),
            (false, false) => format!("{} (waits)", t.state),
            (false, true) => t.state.clone(),
        };
        println!(
            "{:>5} {:<10} {:>4} {:<16} {:<20} {}",
            format!("#{}", t.id),
            state,
            t.priority,
            t.owner.as_deref().unwrap_or("-"),
            t.skills.join(","),
            t.title
        );
    }
    Ok(())
}

fn show(id: i64, json: bool) -> Result<()> {
    let text = hub_call(async |h| h.task(id).await)?;
    if json {
        println!("{text}");
        return Ok(());
    }
    let t: Task =
        serde_json::from_str(&text).context("the hub sent a task this torch cannot read")?;
    println!("task #{}: {}", t.id, t.title);
    println!(
        "state: {}; holder: {}",
        t.state,
        t.owner.as_deref().unwrap_or("-")
    );
    println!(
        "opened by {} at {}",
        t.created_by,
        crate::show::local_time(t.created_ms)
    );
    if !t.skills.is_empty() {
        println!("skills: {}", t.skills.join(", "));
    }
    if !t.waiting_on.is_empty() {
        let ids: Vec<String> = t.waiting_on.iter().map(|i| format!("#{i}")).collect();
        println!("waits for: {}", ids.join(", "));
    }
    if !t.body.is_empty() {
        println!("\n{}\n", t.body);
    }
    for c in &t.history {
        let note = if c.note.is_empty() {
            String::new()
        } else {
            format!(": {}", c.note)
        };
        println!(
            "{}  {} -> {}{note}",
            crate::show::local_time(c.at_ms),
            c.actor,
            c.state
        );
    }
    Ok(())
}
