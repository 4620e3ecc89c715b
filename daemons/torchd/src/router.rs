//! The hub's router (with `[ledger] route = true`): gives each open task whose
//! dependencies are done, by priority then age, to an idle worker (an
//! engineer-like agent) that has every skill the task asks for and spare
//! capacity, least loaded first, within the hierarchy: a task an agent
//! opened goes to the workers below it, one the operator opened to any
//! worker. The holder gets the task as a message from whoever opened it,
//! in the same transaction as the assignment. A round runs after each
//! change of the ledger and every [`TICK`], so a worker that turns idle
//! is seen; each round also looks for stalled tasks (`stalls`), and then
//! brings news, so `signals` tells clients what changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use torch_core::policy::{rank, OPERATOR};
use torch_core::AgentName;
use torch_store::{Change, Task};

use crate::access::may_control;
use crate::error::HubError;
use crate::fleet::Fleet;
use crate::hub::{blocking, Hub};
use crate::ledger::assignment;
use crate::service::is_idle;
use crate::stalls;

/// How often a round runs without a change of the ledger (stalls are
/// seen within it of their time).
const TICK: Duration = Duration::from_secs(1);
/// The most open tasks one round looks at.
const ROUND_MAX: u32 = 10_000;
/// Who the history says made an assignment.
const ROUTER: &str = "hub";

/// Routes until the hub stops.
pub async fn run(hub: Arc<Hub>) {
    loop {
        tokio::select! {
            _ = hub.ledger_changed.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let h = Arc::clone(&hub);
        let work = move || {
            let mut told = if h.config.ledger.route {
                round(&h)?
            } else {
                Vec::new()
            };
            told.extend(stalls::check(&h)?);
            Ok(told)
        };
        match blocking(work).await {
            Ok(given) => {
                for holder in given {
                    hub.courier.kick(&holder);
                }
            }
            Err(e) => tracing::warn!("task routing: {e}"),
        }
        hub.events.news();
    }
}

/// One round; returns the agents that got a task.
fn round(hub: &Hub) -> Result<Vec<String>, HubError> {
    // Most rounds find nothing to do: answered by one indexed query, before
    // the definitions (reread every 2 s when asked) are looked at.
    if !hub.store.any_open()? {
        return Ok(Vec::new());
    }
    let fleet = hub.fleet.agents();
    let held = hub.store.held()?;
    // Nobody with room: no need to read the open tasks.
    let room = fleet.agents.iter().any(|(n, a)| {
        rank(a.def.role) == 0 && held.get(n).copied().unwrap_or(0) < a.def.capacity as usize
    });
    if !room {
        return Ok(Vec::new());
    }
    let open: Vec<Task> = hub
        .store
        .tasks(Some("open"), ROUND_MAX)?
        .into_iter()
        .filter(|t| t.waiting_on.is_empty())
        .collect();
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let mut workers = Workers::new(&fleet, held);
    let mut given = Vec::new();
    for task in &open {
        let Some(holder) = workers.pick(&fleet, task) else {
            continue;
        };
        let from = task.created_by.as_str();
        let text = assignment(task.id, from, &task.title, &task.body, &task.skills);
        let made = hub.store.change_task(
            task.id,
            Change {
                from: &["open"],
                to: "assigned",
                owner: Some(&holder),
                actor: ROUTER,
                note: "",
                report: Some((from, &holder, text)),
                ..Default::default()
            },
        )?;
        if made {
            tracing::info!("task #{} to {holder}", task.id);
            workers.took(&holder);
            given.push(holder);
        }
    }
    Ok(given)
}

/// The workers of one round: what each holds and, asked once, whether it
/// is idle.
struct Workers<'f> {
    /// Engineer-like agents with a usable definition, by name.
    all: Vec<(&'f str, &'f torch_core::AgentDefinition)>,
    held: HashMap<String, usize>,
    idle: HashMap<String, bool>,
}

impl<'f> Workers<'f> {
    fn new(fleet: &'f Fleet, held: HashMap<String, usize>) -> Self {
        let all = fleet
            .agents
            .iter()
            .filter(|(_, a)| rank(a.def.role) == 0)
            .map(|(n, a)| (n.as_str(), &a.def))
            .collect();
        Workers {
            all,
            held,
            idle: HashMap::new(),
        }
    }

    /// The worker `task` goes to: in its opener's reach, with its skills,
    /// room and an idle screen; the least loaded, then by name.
    fn pick(&mut self, fleet: &Fleet, task: &Task) -> Option<String> {
        let opener = (task.created_by != OPERATOR).then_some(task.created_by.as_str());
        let mut fit: Vec<(usize, &str)> = self
            .all
            .iter()
            .filter(|(n, d)| {
                let held = self.held.get(*n).copied().unwrap_or(0);
                held < d.capacity as usize
                    && Some(*n) != opener
                    && may_control(fleet, opener, n)
                    && task.skills.iter().all(|s| d.skills.contains(s))
            })
            .map(|(n, _)| (self.held.get(*n).copied().unwrap_or(0), *n))
            .collect();
        fit.sort();
        fit.into_iter()
            .map(|(_, n)| n.to_string())
            .find(|n| self.is_idle(n))
    }

    fn is_idle(&mut self, name: &str) -> bool {
        if let Some(&known) = self.idle.get(name) {
            return known;
        }
        let idle = AgentName::parse(name).is_ok_and(|a| is_idle(&a));
        self.idle.insert(name.to_string(), idle);
        idle
    }

    /// `name` took a task: it holds one more and is busy for this round.
    fn took(&mut self, name: &str) {
        *self.held.entry(name.to_string()).or_insert(0) += 1;
        self.idle.insert(name.to_string(), false);
    }
}
