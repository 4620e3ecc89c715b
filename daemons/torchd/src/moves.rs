//! How a task moves, for a caller already identified (`TaskAct`): claim,
//! start, done, block, cancel, and the handoffs: to another agent
//! (`handoff`), back to the ledger asking for another skill (`reroute`),
//! to a reviewer (`review`), and back from the reviewer as rework
//! (`reject`). Each move is one store transaction with its history entry
//! and the message that tells the party concerned.

use std::sync::Arc;

use torch_core::definition::check_skill;
use torch_core::policy::OPERATOR;
use torch_core::validate_message;
use torch_store::{Change, Task};

use crate::access::may_control;
use crate::error::HubError;
use crate::hub::Hub;
use crate::ledger::{assignment, denied, has_skills, invalid, stored};

/// A move worked out: the states it applies to, the state it leads to,
/// what else changes, and the message to send.
#[derive(Default)]
struct Step {
    from: &'static [&'static str],
    to: &'static str,
    owner: Option<String>,
    release: bool,
    reviewer: Option<String>,
    skills: Option<Vec<String>>,
    report: Option<(String, String, String)>,
}

impl Step {
    fn new(from: &'static [&'static str], to: &'static str) -> Self {
        Step {
            from,
            to,
            ..Step::default()
        }
    }
}

/// Does `action` on task `id` for `actor` (`None`: the operator), with
/// `target` (the agent of `handoff` and `review`, the skill of `reroute`)
/// and `note` (a summary, a reason).
pub async fn act(
    hub: &Arc<Hub>,
    actor: Option<&str>,
    id: i64,
    action: &str,
    target: &str,
    note: &str,
) -> Result<(), HubError> {
    let t = stored(hub, id).await?;
    let me = actor.unwrap_or(OPERATOR);
    let (note, target) = (note.trim(), target.trim());
    let mut step = match action {
        "claim" => claim(hub, actor, &t).await?,
        "start" => holder_only(actor, &t, "start", Step::new(&["assigned", "blocked"], "working"))?,
        "done" => {
            needs(note, "done", "--summary")?;
            finisher(actor, &t)?
        }
        "block" => {
            needs(note, "block", "--reason")?;
            holder_only(actor, &t, "block", Step::new(&["assigned", "working"], "blocked"))?
        }
        "cancel" => {
            canceller(hub, actor, &t)?;
            Step::new(&["open", "assigned", "working", "blocked", "review"], "cancelled")
        }
        "handoff" => handoff(hub, actor, &t, target, note)?,
        "reroute" => reroute(actor, &t, target, note)?,
        "review" => review(hub, actor, &t, target, note)?,
        "reject" => {
            needs(note, "reject", "--reason")?;
            reject(hub, actor, &t, note)?
        }
        other => {
            return Err(invalid(format!(
                "unknown task action {other:?}: use claim, start, done, block, cancel, handoff, reroute, review or reject"
            )))
        }
    };
    if action == "claim" {
        step.owner = Some(me.to_string());
    }
    if step.report.is_none() {
        step.report = report(hub, &t, me, step.to, note);
    }
    commit(hub, id, (action, me, note), step).await
}

/// Makes `step` on task `id` in one transaction; refused when the task is
/// no longer in a state it applies to.
async fn commit(
    hub: &Arc<Hub>,
    id: i64,
    (action, me, note): (&str, &str, &str),
    step: Step,
) -> Result<(), HubError> {
    let from = step.from.join(" or ");
    let kick = step.report.as_ref().map(|(_, r, _)| r.clone());
    // A party of another node (a holder there) gets its report there.
    let local = |r: &str| hub.fleet.agents().agents.contains_key(r);
    let report_node = kick
        .as_deref()
        .filter(|r| !local(r))
        .and_then(|r| crate::cluster::where_is(hub, r))
        .map(|(node, _)| node);
    let (who, text) = (me.to_string(), note.to_string());
    let forward = report_node.is_some();
    let made = torch_store::call(&hub.store, move |s| {
        let report = step
            .report
            .as_ref()
            .map(|(s, r, b)| (s.as_str(), r.as_str(), b.clone()));
        s.change_task(
            id,
            Change {
                from: step.from,
                to: step.to,
                owner: step.owner.as_deref(),
                owner_node: None,
                release: step.release,
                reviewer: step.reviewer.as_deref(),
                skills: step.skills.as_deref(),
                actor: &who,
                note: &text,
                report,
                report_node: report_node.as_deref(),
            },
        )
    })
    .await?;
    if !made {
        return Err(HubError::Refused(format!(
            "task #{id} is {}; `{action}` applies to a task that is {from}",
            stored(hub, id).await.map_or("gone".into(), |t| t.state)
        )));
    }
    if let Some(r) = kick {
        hub.courier.kick(&r);
    }
    if forward {
        hub.forward_now.notify_one();
    }
    hub.ledger_changed.notify_one();
    Ok(())
}

fn needs(note: &str, action: &str, flag: &str) -> Result<(), HubError> {
    if note.is_empty() {
        return Err(invalid(format!("`torch task {action}` needs {flag} TEXT")));
    }
    validate_message(note)
        .map(drop)
        .map_err(|e| invalid(format!("{flag}: {e}")))
}

/// `step`, if `actor` holds `t` or is the operator.
fn holder_only(actor: Option<&str>, t: &Task, what: &str, step: Step) -> Result<Step, HubError> {
    if actor.is_none() || actor == t.owner.as_deref() {
        return Ok(step);
    }
    Err(denied(format!(
        "only the holder of task #{} ({}) may {what} it",
        t.id,
        t.owner.as_deref().unwrap_or("nobody yet")
    )))
}

/// Finishing: the holder, or its reviewer once it is in review.
fn finisher(actor: Option<&str>, t: &Task) -> Result<Step, HubError> {
    if t.state == "review" && (actor.is_none() || actor == t.reviewer.as_deref()) {
        return Ok(Step::new(&["review"], "done"));
    }
    if t.state == "review" {
        return Err(denied(format!(
            "task #{} is in review: only its reviewer ({}) finishes it (or rejects it)",
            t.id,
            t.reviewer.as_deref().unwrap_or("nobody")
        )));
    }
    holder_only(
        actor,
        t,
        "finish",
        Step::new(&["assigned", "working", "blocked"], "done"),
    )
}

/// Whoever opened the task, an agent above them, or the operator.
fn canceller(hub: &Hub, actor: Option<&str>, t: &Task) -> Result<(), HubError> {
    let fleet = hub.fleet.agents();
    if actor.is_none() || may_control(&fleet, actor, &t.created_by) {
        return Ok(());
    }
    Err(denied(format!(
        "only {} (who opened task #{}), an agent above it or the operator may cancel it",
        t.created_by, t.id
    )))
}

/// Checks that `actor` may claim `t`: an agent with its skills and room.
async fn claim(hub: &Arc<Hub>, actor: Option<&str>, t: &Task) -> Result<Step, HubError> {
    let Some(me) = actor else {
        return Err(invalid(
            "only an agent claims a task; give it with `torch task add --assign` instead",
        ));
    };
    if t.state != "open" {
        let held = t
            .owner
            .as_deref()
            .map_or("held by nobody".into(), |o| format!("held by {o}"));
        return Err(HubError::Refused(format!(
            "task #{} is {} ({held}); only open tasks are claimed",
            t.id, t.state
        )));
    }
    if !t.waiting_on.is_empty() {
        let ids: Vec<String> = t.waiting_on.iter().map(|i| format!("#{i}")).collect();
        return Err(HubError::Refused(format!(
            "task #{} waits for {} to be done",
            t.id,
            ids.join(", ")
        )));
    }
    let fleet = hub.fleet.agents();
    has_skills(&fleet, me, &t.skills)?;
    let capacity = fleet.get(me).map_or(1, |a| a.def.capacity);
    let who = me.to_string();
    let held = torch_store::call(&hub.store, move |s| {
        Ok(s.held()?.get(&who).copied().unwrap_or(0))
    })
    .await?;
    if held >= capacity as usize {
        return Err(HubError::Refused(format!(
            "agent {me} already holds {held} tasks, its capacity; finish one first"
        )));
    }
    Ok(Step::new(&["open"], "assigned"))
}

/// Whether `agent` is within reach of whoever opened `t`: below an agent
/// that opened it, anywhere for one the operator opened.
fn in_openers_reach(hub: &Hub, t: &Task, agent: &str) -> Result<(), HubError> {
    let fleet = hub.fleet.agents();
    let opener = (t.created_by != OPERATOR).then_some(t.created_by.as_str());
    fleet.get(agent).map_err(HubError::Refused)?;
    if may_control(&fleet, opener, agent) {
        return Ok(());
    }
    Err(denied(format!(
        "task #{} was opened by {}, and {agent} is not below it",
        t.id, t.created_by
    )))
}

/// The holder passes `t` to agent `to`, which has its skills and is within
/// reach of whoever opened it; `to` gets it as a new assignment.
fn handoff(
    hub: &Hub,
    actor: Option<&str>,
    t: &Task,
    to: &str,
    note: &str,
) -> Result<Step, HubError> {
    needs(note, "handoff", "--note")?;
    if to.is_empty() {
        return Err(invalid(
            "`torch task handoff` needs --to AGENT or --skill SKILL",
        ));
    }
    let step = holder_only(
        actor,
        t,
        "hand off",
        Step::new(&["assigned", "working", "blocked"], "assigned"),
    )?;
    in_openers_reach(hub, t, to)?;
    has_skills(&hub.fleet.agents(), to, &t.skills)?;
    let me = actor.unwrap_or(OPERATOR);
    let mut text = assignment(
        &t.id.to_string(),
        &t.created_by,
        &t.title,
        &t.body,
        &t.skills,
    );
    text.push_str(&format!("\nHanded over by {me}: {note}"));
    Ok(Step {
        owner: Some(to.to_string()),
        report: Some((me.to_string(), to.to_string(), text)),
        ..step
    })
}

/// The holder gives `t` back to the ledger, asking for `skill` as well, so
/// that it goes to an agent who has it.
fn reroute(actor: Option<&str>, t: &Task, skill: &str, note: &str) -> Result<Step, HubError> {
    needs(note, "handoff", "--note")?;
    check_skill(skill).map_err(invalid)?;
    let step = holder_only(
        actor,
        t,
        "hand off",
        Step::new(&["assigned", "working", "blocked"], "open"),
    )?;
    let mut skills = t.skills.clone();
    skills.push(skill.to_string());
    skills.sort();
    skills.dedup();
    Ok(Step {
        release: true,
        skills: Some(skills),
        ..step
    })
}

/// The holder asks `reviewer` (within reach of whoever opened `t`) to
/// review it; the reviewer finishes it or sends it back.
fn review(
    hub: &Hub,
    actor: Option<&str>,
    t: &Task,
    reviewer: &str,
    note: &str,
) -> Result<Step, HubError> {
    if reviewer.is_empty() {
        return Err(invalid("`torch task review` needs --reviewer AGENT"));
    }
    let step = holder_only(
        actor,
        t,
        "send to review",
        Step::new(&["assigned", "working"], "review"),
    )?;
    in_openers_reach(hub, t, reviewer)?;
    if Some(reviewer) == t.owner.as_deref() {
        return Err(invalid(
            "an agent does not review its own task; name another reviewer",
        ));
    }
    let me = actor.unwrap_or(OPERATOR);
    let mut text = format!(
        "Task #{id} ({title}), by {me}, is for you to review.\n",
        id = t.id,
        title = t.title
    );
    if !note.is_empty() {
        text.push_str(&format!("{note}\n"));
    }
    text.push_str(&format!(
        "Approve with: torch task done {id} --summary \"what you checked\"\nSend it back with: torch task reject {id} --reason \"what to change\"",
        id = t.id
    ));
    Ok(Step {
        reviewer: Some(reviewer.to_string()),
        report: Some((me.to_string(), reviewer.to_string(), text)),
        ..step
    })
}

/// The reviewer sends `t` back to its holder as rework.
fn reject(hub: &Hub, actor: Option<&str>, t: &Task, reason: &str) -> Result<Step, HubError> {
    if t.state == "review" && actor.is_some() && actor != t.reviewer.as_deref() {
        return Err(denied(format!(
            "only the reviewer of task #{} ({}) may reject it",
            t.id,
            t.reviewer.as_deref().unwrap_or("nobody")
        )));
    }
    let me = actor.unwrap_or(OPERATOR);
    let holder = t.owner.clone().unwrap_or_default();
    let text = format!(
        "Task #{id} ({title}) came back from review by {me}: {reason}\nRework it, then: torch task review {id} --reviewer {me}, or torch task done {id} --summary \"...\"",
        id = label(hub, t),
        title = t.title
    );
    Ok(Step {
        report: Some((me.to_string(), holder, text)),
        ..Step::new(&["review"], "working")
    })
}

/// How `t` is named to its holder: `NODE:ID` for a holder of another node,
/// whose own node's ledger has ids of its own.
fn label(hub: &Hub, t: &Task) -> String {
    match (&t.owner_node, crate::cluster::node_name(hub)) {
        (Some(_), Some(here)) => format!("{here}:{}", t.id),
        _ => t.id.to_string(),
    }
}

/// The message telling the other party about `t` entering `to`, by `me`:
/// for a task finished or blocked, whoever opened it (when an agent other
/// than its holder) else its holder's parent; for a cancelled one, its
/// holder. (sender, recipient, body).
fn report(hub: &Hub, t: &Task, me: &str, to: &str, note: &str) -> Option<(String, String, String)> {
    let fleet = hub.fleet.agents();
    let holder = t.owner.as_deref();
    let party = match to {
        "done" | "blocked" => {
            let opener = (t.created_by != OPERATOR && Some(t.created_by.as_str()) != holder)
                .then(|| t.created_by.clone());
            opener.or_else(|| {
                holder
                    .and_then(|h| fleet.get(h).ok())
                    .and_then(|a| a.def.parent.clone())
            })?
        }
        "cancelled" => holder.filter(|h| *h != me)?.to_string(),
        _ => return None,
    };
    let body = match to {
        "done" => format!("Task #{} done by {me}: {}\nSummary: {note}", t.id, t.title),
        "blocked" => format!("Task #{} blocked ({me}): {}\nReason: {note}", t.id, t.title),
        _ => format!(
            "Task #{} cancelled by {me}: {}\nStop work on it.",
            label(hub, t),
            t.title
        ),
    };
    Some((me.to_string(), party, body))
}
