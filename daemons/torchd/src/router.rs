//! The hub's router (with `[ledger] route = true`): gives each open task whose
//! dependencies are done, by priority then age, to an idle worker (an
//! engineer-like agent) that has every skill the task asks for and spare
//! capacity, least loaded first, within the hierarchy: a task an agent
//! opened goes to the workers below it, one the operator opened to any
//! worker. The holder gets the task as a message from whoever opened it,
//! in the same transaction as the assignment. In a cluster, a task that no
//! worker of this node can take now goes to an idle worker of another node
//! in its opener's reach (for an agent's task: below an agent of this node
//! in the opener's subtree) with its skills and room, as that node
//! publishes it; the task stays in this node's ledger, and the worker
//! moves it from its own node (`torch task done NODE:ID`). A round runs after each
//! change of the ledger and every [`TICK`], so a worker that turns idle
//! is seen; each round also looks for stalled tasks (`stalls`), and then
//! brings news, so `signals` tells clients what changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use torch_cluster::RemoteAgent;
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
    let remote = crate::cluster::remote_workers(hub);
    // Nobody with room: no need to read the open tasks.
    let room = fleet.agents.iter().any(|(n, a)| {
        rank(a.def.role) == 0 && held.get(n).copied().unwrap_or(0) < a.def.capacity as usize
    });
    if !room && remote.is_empty() {
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
    let mut workers = Workers::new(&fleet, held, remote);
    let mut given = Vec::new();
    let here = crate::cluster::node_name(hub);
    for task in &open {
        let Some((holder, node)) = workers.pick(&fleet, task) else {
            continue;
        };
        let from = task.created_by.as_str();
        let id = match (&node, &here) {
            (Some(_), Some(here)) => format!("{here}:{}", task.id),
            _ => task.id.to_string(),
        };
        let text = assignment(&id, from, &task.title, &task.body, &task.skills);
        let made = hub.store.change_task(
            task.id,
            Change {
                from: &["open"],
                to: "assigned",
                owner: Some(&holder),
                actor: ROUTER,
                note: "",
                report: Some((from, &holder, text)),
                owner_node: node.as_deref(),
                report_node: node.as_deref(),
                ..Default::default()
            },
        )?;
        if made {
            match &node {
                Some(n) => tracing::info!("task #{} to {holder} of node {n}", task.id),
                None => tracing::info!("task #{} to {holder}", task.id),
            }
            workers.took(&holder);
            if node.is_some() {
                hub.forward_now.notify_one();
            } else {
                given.push(holder);
            }
        }
    }
    Ok(given)
}

/// The workers of one round: what each holds and, asked once, whether it
/// is idle.
struct Workers<'f> {
    /// Engineer-like agents with a usable definition, by name.
    all: Vec<(&'f str, &'f torch_core::AgentDefinition)>,
    /// Engineer-like agents of the other nodes that are not lost, with
    /// their node, as last published.
    remote: Vec<(String, RemoteAgent)>,
    held: HashMap<String, usize>,
    idle: HashMap<String, bool>,
}

impl<'f> Workers<'f> {
    fn new(
        fleet: &'f Fleet,
        held: HashMap<String, usize>,
        remote: Vec<(String, RemoteAgent)>,
    ) -> Self {
        let all = fleet
            .agents
            .iter()
            .filter(|(_, a)| rank(a.def.role) == 0)
            .map(|(n, a)| (n.as_str(), &a.def))
            .collect();
        Workers {
            all,
            remote,
            held,
            idle: HashMap::new(),
        }
    }

    /// The worker `task` goes to, and its node when it is another: one of
    /// this node when one fits, else (for the operator's tasks) one of
    /// another node.
    fn pick(&mut self, fleet: &Fleet, task: &Task) -> Option<(String, Option<String>)> {
        if let Some(name) = self.pick_here(fleet, task) {
            return Some((name, None));
        }
        self.pick_elsewhere(fleet, task)
            .map(|(name, node)| (name, Some(node)))
    }

    /// A worker of another node for `task`: in its opener's reach (for an
    /// agent's task, below an agent of this node in its subtree, as a pool
    /// member spread over nodes is), with its skills, room (the tasks of its
    /// own node's ledger and of this one's), idle with nothing queued as
    /// its node last published it; the least loaded, then by name.
    fn pick_elsewhere(&self, fleet: &Fleet, task: &Task) -> Option<(String, String)> {
        let opener = (task.created_by != OPERATOR).then_some(task.created_by.as_str());
        let reached = |a: &RemoteAgent| match (opener, a.parent.as_deref()) {
            (None, _) => true,
            (Some(o), Some(p)) => fleet.agents.contains_key(p) && may_control(fleet, Some(o), p),
            (Some(_), None) => false,
        };
        let mut fit: Vec<(usize, &str, &str)> = self
            .remote
            .iter()
            .filter(|(_, a)| reached(a))
            // Not one that took a task this round.
            .filter(|(_, a)| self.idle.get(&a.name).is_none_or(|i| *i))
            .filter(|(_, a)| a.state == "idle" && a.queued == 0)
            .filter(|(_, a)| task.skills.iter().all(|s| a.skills.contains(s)))
            .filter_map(|(node, a)| {
                let load = self.held.get(&a.name).copied().unwrap_or(0) + a.held as usize;
                (load < a.capacity as usize).then_some((load, a.name.as_str(), node.as_str()))
            })
            .collect();
        fit.sort();
        fit.first()
            .map(|(_, name, node)| (name.to_string(), node.to_string()))
    }

    /// The worker of this node `task` goes to: in its opener's reach, with
    /// its skills, room and an idle screen; the least loaded, then by name.
    fn pick_here(&mut self, fleet: &Fleet, task: &Task) -> Option<String> {
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
