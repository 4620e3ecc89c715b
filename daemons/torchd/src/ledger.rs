//! The work ledger's tasks, for a caller already identified: opening one
//! and giving it to an agent, listing and showing them. How a task moves
//! afterwards is in `moves`.
//!
//! Who may do what: anyone opens a task; the operator gives it to anyone,
//! an agent to itself or the agents below it, and only to one with every
//! skill the task asks for. An agent claims an open task whose
//! dependencies are done, if it has the skills and spare capacity. Its
//! holder (or the operator) starts, finishes and blocks it; whoever opened
//! it, an agent above them, or the operator cancels it. An agent sees open
//! tasks, and those it opened or holds or that agents below it opened or
//! hold.

use std::sync::Arc;

use torch_api::{Task, TaskChange, TaskSpec};
use torch_core::definition::check_skill;
use torch_core::validate_message;
use torch_store::{NewTask, Tell};

use crate::access::{self, may_control, Kind};
use crate::error::HubError;
use crate::fleet::Fleet;
use crate::hub::Hub;

/// The longest title, in characters.
const MAX_TITLE: usize = 200;
/// Priorities run from -`MAX_PRIORITY` to `MAX_PRIORITY`.
const MAX_PRIORITY: i64 = 1000;
/// The most tasks one `Tasks` answer holds.
const LIST_MAX: u32 = 1000;

pub fn invalid(m: impl Into<String>) -> HubError {
    HubError::InvalidArgs(m.into())
}

pub fn denied(m: impl Into<String>) -> HubError {
    HubError::AccessDenied(m.into())
}

/// Checks `spec` and returns the task to store (unassigned).
fn checked(spec: &TaskSpec, requester: &str) -> Result<NewTask, HubError> {
    let title = spec.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE || title.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "a task's title is one line of 1 to {MAX_TITLE} characters"
        )));
    }
    let body = match spec.body.trim() {
        "" => String::new(),
        b => validate_message(b).map_err(|e| invalid(format!("task body: {e}")))?,
    };
    let mut skills = spec.skills.clone();
    for s in &skills {
        check_skill(s).map_err(invalid)?;
    }
    skills.sort();
    skills.dedup();
    if spec.priority.abs() > MAX_PRIORITY {
        return Err(invalid(format!(
            "priority {} is out of range (-{MAX_PRIORITY} to {MAX_PRIORITY})",
            spec.priority
        )));
    }
    Ok(NewTask {
        title: title.to_string(),
        body,
        skills,
        project: spec.project.trim().to_string(),
        priority: spec.priority,
        after: spec.after.clone(),
        created_by: requester.to_string(),
        owner: None,
    })
}

/// Whether agent `name` of `fleet` has every skill of `task`.
pub fn has_skills(fleet: &Fleet, name: &str, skills: &[String]) -> Result<(), HubError> {
    let agent = fleet.get(name).map_err(HubError::Refused)?;
    let missing: Vec<&str> = skills
        .iter()
        .filter(|s| !agent.def.skills.contains(s))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(HubError::Refused(format!(
        "agent {name} lacks the skills {} this task asks for (its definition lists: {})",
        missing.join(", "),
        agent.def.skills.join(", ")
    )))
}

/// Opens a task for `requester` (`actor` the calling agent, `None` the
/// operator) and gives it to `spec.assign` if named; returns its id.
pub async fn add(
    hub: &Arc<Hub>,
    requester: &str,
    actor: Option<&str>,
    spec: TaskSpec,
) -> Result<i64, HubError> {
    let new = checked(&spec, requester)?;
    let store = Arc::clone(&hub.store);
    for &after in &new.after {
        if torch_store::call(&store, move |s| s.task(after))
            .await?
            .is_none()
        {
            return Err(invalid(format!(
                "task #{after} (in --after) does not exist"
            )));
        }
    }
    let assign = spec.assign.trim().to_string();
    if !assign.is_empty() {
        let fleet = hub.fleet.agents();
        let acting = access::reach(&hub.config.access, &fleet, actor, Kind::Acts);
        if !may_control(&fleet, acting, &assign) {
            return Err(denied(format!(
                "agent {} may give tasks only to itself and the agents below it, not to {assign}",
                actor.unwrap_or_default()
            )));
        }
        has_skills(&fleet, &assign, &new.skills)?;
    }
    let tell: Option<Tell> = (!assign.is_empty()).then(|| {
        let (from, to) = (requester.to_string(), assign.clone());
        let (title, body, skills) = (new.title.clone(), new.body.clone(), new.skills.clone());
        Box::new(move |id: i64| {
            let text = assignment(&id.to_string(), &from, &title, &body, &skills);
            (from, to, text)
        }) as Tell
    });
    let mut new = new;
    new.owner = (!assign.is_empty()).then(|| assign.clone());
    let id = torch_store::call(&store, move |s| s.add_task(new, tell)).await?;
    hub.ledger_changed.notify_one();
    if !assign.is_empty() {
        hub.courier.kick(&assign);
    }
    Ok(id)
}

/// The message that gives task `id` to its holder (`NODE:ID` for a
/// holder on another node than the task's).
pub fn assignment(id: &str, from: &str, title: &str, body: &str, skills: &[String]) -> String {
    let mut text = format!("Task #{id} for you, from {from}: {title}\n");
    if !skills.is_empty() {
        text.push_str(&format!("(skills: {})\n", skills.join(", ")));
    }
    if !body.is_empty() {
        text.push_str(&format!("\n{body}\n"));
    }
    text.push_str(&format!(
        "\nStart with: torch task start {id}\nReport with: torch task done {id} --summary \"what you did\"\nIf you cannot go on: torch task block {id} --reason \"why\""
    ));
    text
}

/// Whether `actor` (`None`: the operator) may see task `t`.
fn visible(fleet: &Fleet, actor: Option<&str>, t: &torch_store::Task) -> bool {
    t.state == "open"
        || may_control(fleet, actor, &t.created_by)
        || t.owner
            .as_deref()
            .is_some_and(|o| may_control(fleet, actor, o))
}

/// The API's view of a stored task.
fn api_task(t: torch_store::Task, history: Vec<TaskChange>) -> Task {
    Task {
        id: t.id,
        title: t.title,
        body: t.body,
        skills: t.skills,
        project: t.project,
        priority: t.priority,
        state: t.state,
        owner: t.owner,
        created_by: t.created_by,
        created_ms: t.created_ms,
        updated_ms: t.updated_ms,
        waiting_on: t.waiting_on,
        nudges: t.nudges,
        stalled: t.stalled,
        reviewer: t.reviewer,
        history,
    }
}

/// The tasks `actor` may see, in `state` (all for `None`); its own only
/// with `mine`.
pub async fn list(
    hub: &Arc<Hub>,
    actor: Option<&str>,
    state: Option<String>,
    mine: bool,
) -> Result<Vec<Task>, HubError> {
    let all = torch_store::call(&hub.store, move |s| s.tasks(state.as_deref(), LIST_MAX)).await?;
    let fleet = hub.fleet.agents();
    let seeing = access::reach(&hub.config.access, &fleet, actor, Kind::Sees);
    Ok(all
        .into_iter()
        .filter(|t| visible(&fleet, seeing, t))
        .filter(|t| !mine || (actor.is_some() && t.owner.as_deref() == actor))
        .map(|t| api_task(t, Vec::new()))
        .collect())
}

/// Task `id` with its history, if `actor` may see it.
pub async fn show(hub: &Arc<Hub>, actor: Option<&str>, id: i64) -> Result<Task, HubError> {
    let t = stored(hub, id).await?;
    let fleet = hub.fleet.agents();
    let seeing = access::reach(&hub.config.access, &fleet, actor, Kind::Sees);
    if !visible(&fleet, seeing, &t) {
        return Err(denied(format!(
            "agent {} may see open tasks and those of itself and the agents below it; #{id} is not one",
            actor.unwrap_or_default()
        )));
    }
    let events = torch_store::call(&hub.store, move |s| s.task_events(id)).await?;
    let history = events
        .into_iter()
        .map(|e| TaskChange {
            at_ms: e.at_ms,
            actor: e.actor,
            state: e.state,
            note: e.note,
        })
        .collect();
    Ok(api_task(t, history))
}

pub async fn stored(hub: &Arc<Hub>, id: i64) -> Result<torch_store::Task, HubError> {
    torch_store::call(&hub.store, move |s| s.task(id))
        .await?
        .ok_or_else(|| {
            invalid(format!(
                "there is no task #{id}; `torch task list` shows them"
            ))
        })
}
