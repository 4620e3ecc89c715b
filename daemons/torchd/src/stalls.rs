//! Held tasks that do not move: a holder idle at its prompt for
//! `[ledger] stall_after` since the task last changed (or since its last
//! nudge) gets a nudge, up to `[ledger] nudges`; one more `stall_after`
//! and its parent is told the task stalled (a `TORCH_ALERT=1` line too),
//! and the task shows `stalled`. A task whose holder is gone (retired, or
//! its definition removed) or not running for that long goes back to open:
//! the holder's lease has run out; so does one held by a worker of another
//! node once that node is lost. Checked by the router's rounds.

use std::collections::HashMap;

use torch_core::AgentName;
use torch_store::Task;

use crate::error::HubError;
use crate::hub::{now_ms, Hub};
use crate::service::activity;

/// Who the nudges and the history name.
const WATCHER: &str = "hub";

/// One check of every held task; returns the agents that got a message.
pub fn check(hub: &Hub) -> Result<Vec<String>, HubError> {
    let after = hub.config.ledger.stall_after.as_millis() as i64;
    let now = now_ms();
    // Only the tasks past their time: most seconds there are none, and the
    // definitions (reread every 2 s when asked) are then not looked at.
    let due: Vec<Task> = hub
        .store
        .held_tasks()?
        .into_iter()
        .filter(|t| now - t.nudged_ms.unwrap_or(t.updated_ms).max(t.updated_ms) >= after)
        .collect();
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let fleet = hub.fleet.agents();
    let mut states: HashMap<String, Option<String>> = HashMap::new();
    let mut told = Vec::new();
    for t in due {
        let Some(holder) = t.owner.clone() else {
            continue;
        };
        if fleet.get(&holder).is_err() {
            let grace = hub.config.ledger.stall_after;
            match crate::cluster::runs_elsewhere(hub, &holder, grace) {
                // A worker of another node (tasks across nodes), not
                // nudged there; its task waits out a node lost for less
                // than the lease.
                Some(true) => {}
                Some(false) => release(hub, &holder, "its holder's node is lost")?,
                None => release(hub, &holder, "its holder is no longer defined")?,
            }
            continue;
        }
        let state = states
            .entry(holder.clone())
            .or_insert_with(|| AgentName::parse(&holder).ok().and_then(|a| activity(&a)));
        match state.as_deref() {
            None => release(hub, &holder, "its holder is not running")?,
            Some("idle") => {
                let parent = fleet.get(&holder).ok().and_then(|a| a.def.parent.clone());
                if let Some(to) = nudge(hub, &t, &holder, parent, now - t.updated_ms)? {
                    told.push(to);
                }
            }
            Some(_) => {}
        }
    }
    Ok(told)
}

/// Puts what `holder` holds back to open.
fn release(hub: &Hub, holder: &str, why: &str) -> Result<(), HubError> {
    let freed = hub.store.release_tasks(holder, WATCHER, why)?;
    if !freed.is_empty() {
        tracing::warn!("tasks {freed:?} are open again: {why} ({holder})");
        hub.ledger_changed.notify_one();
    }
    Ok(())
}

/// Nudges `holder` about `t`, or tells its `parent` the task stalled once
/// the nudges are used up; returns who got the message.
fn nudge(
    hub: &Hub,
    t: &Task,
    holder: &str,
    parent: Option<String>,
    idle_ms: i64,
) -> Result<Option<String>, HubError> {
    let sender = format!("task-{}", t.id);
    let idle = format!("{}s", idle_ms / 1000);
    if t.nudges < hub.config.ledger.nudges {
        let body = format!(
            "You hold task #{id} ({title}) and have been idle for {idle}. Report with: torch task done {id} --summary \"what you did\", or if you cannot go on: torch task block {id} --reason \"why\"",
            id = t.id,
            title = t.title
        );
        let sent = hub.store.nudge_task(
            t.id,
            t.updated_ms,
            false,
            (sender, holder.to_string(), body),
        )?;
        return Ok(sent.then(|| holder.to_string()));
    }
    if t.stalled {
        return Ok(None);
    }
    let alert = format!(
        "task #{} stalled: {holder} has been idle with it for {idle} after {} nudges",
        t.id, t.nudges
    );
    tracing::warn!(torch_alert = 1, "{alert}");
    hub.events.alert_soon(holder.to_string(), alert);
    let Some(parent) = parent else {
        hub.store.nudge_task(
            t.id,
            t.updated_ms,
            true,
            (
                sender.clone(),
                holder.to_string(),
                format!("Task #{} has stalled.", t.id),
            ),
        )?;
        return Ok(None);
    };
    let body = format!(
        "Task #{} ({}), held by {holder}, has stalled: idle for {idle} after {} nudges.",
        t.id, t.title, t.nudges
    );
    let sent = hub
        .store
        .nudge_task(t.id, t.updated_ms, true, (sender, parent.clone(), body))?;
    Ok(sent.then_some(parent))
}
