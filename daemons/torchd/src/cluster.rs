//! This hub as one node of a cluster ([`torch_cluster`]): at each heartbeat
//! it publishes its agents and reads the other nodes', which `Status` and
//! `Agents` then show beside its own, each with its node. Agent names are
//! claimed across the cluster before a spawn and given up at retirement.
//!
//! Without `[cluster]` none of this runs. Without Redis the hub goes on
//! alone: the other nodes' agents show as last heard (lost once Redis is
//! unheard for three heartbeats), and a spawn is refused until Redis
//! answers, since its name cannot be checked.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use torch_api::{AgentEntry, AgentStatus};
use torch_cluster::{Claim, NodeView, Registry, RemoteAgent};
use torch_core::config::Config;

use crate::error::HubError;
use crate::hub::{blocking, Hub};
use crate::service;

/// The hub's side of the cluster.
pub struct Node {
    registry: Registry,
    /// The other nodes, as last read, and when.
    others: RwLock<(Vec<NodeView>, Option<std::time::Instant>)>,
    /// Local names this node holds in the registry.
    claimed: Mutex<HashSet<String>>,
    /// How many agents this node published last.
    local_agents: std::sync::atomic::AtomicUsize,
    /// This node's store's incarnation, once read ([`Node::set_incarnation`]).
    incarnation: std::sync::OnceLock<String>,
    /// Since when each other node is lost, as this node saw it go.
    lost_since: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Forgotten nodes whose messages this node has failed already.
    forgotten_done: Mutex<HashSet<String>>,
}

impl Node {
    /// The node of `config`'s `[cluster]`, if it has one. The error is for
    /// the admin: a bad node name or Redis URL.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(cluster) = &config.cluster else {
            return Ok(None);
        };
        let node = cluster.node_name().map_err(anyhow::Error::msg)?;
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
        let registry = Registry::new(cluster, &node, credentials.as_deref())?;
        Ok(Some(Self {
            registry,
            others: RwLock::default(),
            claimed: Mutex::default(),
            local_agents: Default::default(),
            incarnation: Default::default(),
            lost_since: Mutex::default(),
            forgotten_done: Mutex::default(),
        }))
    }

    /// Sets the incarnation of this node's store (`Store::incarnation`),
    /// which the origins of its messages carry.
    pub fn set_incarnation(&self, incarnation: String) {
        let _ = self.incarnation.set(incarnation);
    }

    /// The origin of message `id` of this node's store, as other nodes
    /// store it: `NODE:INCARNATION:ID` (`NODE:ID` for a store older than
    /// incarnations).
    pub fn origin(&self, id: i64) -> String {
        match self.incarnation.get().map(String::as_str).unwrap_or("") {
            "" => format!("{}:{id}", self.name()),
            inc => format!("{}:{inc}:{id}", self.name()),
        }
    }

    /// The id in this node's store of the message of `origin`, when it is
    /// one of this node's, of this incarnation.
    pub fn own_id(&self, origin: &str) -> Option<i64> {
        let rest = origin.strip_prefix(self.name())?.strip_prefix(':')?;
        let inc = self.incarnation.get().map(String::as_str).unwrap_or("");
        let id = match rest.split_once(':') {
            Some((i, id)) if i == inc => id,
            Some(_) => return None,
            None if inc.is_empty() => rest,
            None => return None,
        };
        id.parse().ok()
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        self.registry.node()
    }

    /// Its handle on Redis.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The node `name` runs on and how it published it, when it is an agent
/// of another node, lost or not (messages for it wait until it is back).
pub fn where_is(hub: &Hub, name: &str) -> Option<(String, RemoteAgent)> {
    let node = hub.cluster.as_ref()?;
    let others = node.others.read().ok()?;
    others.0.iter().find_map(|n| {
        let a = n.agents.iter().find(|a| a.name == name)?;
        Some((n.node.clone(), a.clone()))
    })
}

/// What `view` makes of the other nodes as last read (nothing on a lone
/// hub).
fn with_others<T: Default>(hub: &Hub, view: impl FnOnce(&[NodeView]) -> T) -> T {
    let Some(node) = &hub.cluster else {
        return T::default();
    };
    match node.others.read() {
        Ok(others) => view(&others.0),
        Err(_) => T::default(),
    }
}

/// The agents of other nodes (lost or not) whose parent is `name`, each as
/// `AGENT (node NODE)`.
pub fn children_elsewhere(hub: &Hub, name: &str) -> Vec<String> {
    with_others(hub, |others| {
        others
            .iter()
            .flat_map(|n| {
                n.agents
                    .iter()
                    .filter(|a| a.parent.as_deref() == Some(name))
                    .map(|a| format!("{} (node {})", a.name, n.node))
            })
            .collect()
    })
}

/// Whether agent `name` runs on another node that is not lost, or lost
/// for less than `grace` (`true`), or on one lost longer (`false`); `None`
/// when no other node publishes it.
pub fn runs_elsewhere(hub: &Hub, name: &str, grace: std::time::Duration) -> Option<bool> {
    let node = with_others(hub, |others| {
        others
            .iter()
            .find(|n| n.agents.iter().any(|a| a.name == name))
            .map(|n| (n.node.clone(), n.lost))
    })?;
    let Some(this) = &hub.cluster else {
        return None;
    };
    Some(match node {
        (_, false) => true,
        (n, true) => this
            .lost_since
            .lock()
            .ok()
            .and_then(|s| s.get(&n).map(|t| t.elapsed() < grace))
            .unwrap_or(false),
    })
}

/// The engineer-like agents of the other nodes that are not lost, with
/// their node, as last published: workers the router may give tasks to.
pub fn remote_workers(hub: &Hub) -> Vec<(String, RemoteAgent)> {
    // A view Redis has not refreshed says nothing of who is idle now.
    let fresh = hub
        .cluster
        .as_ref()
        .is_some_and(|n| n.others.read().is_ok_and(|o| !unheard(n, o.1)));
    if !fresh {
        return Vec::new();
    }
    let engineer = |a: &RemoteAgent| {
        a.role
            .parse::<torch_core::Role>()
            .is_ok_and(|r| torch_core::policy::rank(r) == 0)
    };
    with_others(hub, |others| {
        others
            .iter()
            .filter(|n| !n.lost)
            .flat_map(|n| {
                n.agents
                    .iter()
                    .filter(|a| engineer(a))
                    .map(|a| (n.node.clone(), a.clone()))
            })
            .collect()
    })
}

/// The members of pool `pool` on the other nodes of `nodes`, each with its
/// node and whether that node is lost, as last published.
pub fn pool_members(hub: &Hub, pool: &str, nodes: &[String]) -> Vec<(String, RemoteAgent, bool)> {
    with_others(hub, |others| {
        others
            .iter()
            .filter(|n| nodes.contains(&n.node))
            .flat_map(|n| {
                n.agents
                    .iter()
                    .filter(|a| a.pool.as_deref() == Some(pool))
                    .map(|a| (n.node.clone(), a.clone(), n.lost))
            })
            .collect()
    })
}

/// Whether a message from `node` may be delivered here: its text is one
/// `torch send` takes, its recipient an agent of this node, its sender the
/// operator or an agent that node publishes (a node speaks for its own
/// agents only), and this node's policy allows the route. The error says
/// why not.
pub fn check_incoming(
    hub: &Hub,
    node: &str,
    envelope: &torch_cluster::Envelope,
) -> Result<(), String> {
    // What this node would refuse at `torch send`.
    torch_core::validate_message(&envelope.body).map_err(|e| format!("message: {e}"))?;
    let fleet = hub.fleet.agents();
    let sender =
        match envelope.sender.as_str() {
            torch_core::policy::OPERATOR => None,
            name => {
                let agents = node_agents(hub, node);
                let mut published = agents
                    .iter()
                    .find(|a| a.name == name)
                    .cloned()
                    .ok_or_else(|| format!("node {node} does not publish an agent {name}"))?;
                // A parent that node does not run is taken when it is one of
                // this node's (an agent the operator put below a parent here);
                // one of a third node is a claim about another node's agents:
                // not taken.
                if !published.parent.as_ref().is_none_or(|p| {
                    agents.iter().any(|a| &a.name == p) || fleet.agents.contains_key(p)
                }) {
                    published.parent = None;
                }
                Some(published)
            }
        };
    crate::fleet::check_route_from_node(&hub.config, &fleet, sender.as_ref(), &envelope.recipient)
}

/// This machine's free memory, in KiB (0 when it cannot be read).
fn free_kib() -> u64 {
    nix::sys::sysinfo::sysinfo().map_or(0, |i| i.ram_unused() / 1024)
}

/// Where an operator's spawn goes when it names no node (`asked` empty)
/// or asks for one (`auto`): with no node named, the node of its parent
/// when that is another (a parent must be on the agent's node); with
/// `auto`, the node with the fewest agents. This node unless another is
/// better: fewer agents, or as many and a quarter more free memory (free
/// memory moves, and a spawn should not go elsewhere for noise). A spawn
/// with variables stays here (they are not carried through Redis).
/// `None`: as asked.
pub fn place(hub: &Hub, asked: &str, parent: &str, with_env: bool) -> Option<String> {
    let node = hub.cluster.as_ref()?;
    match asked {
        "" => return where_is(hub, parent).map(|(n, _)| n),
        "auto" if with_env => return Some(node.name().to_string()),
        "auto" => {}
        _ => return None,
    }
    let here = Load {
        agents: node.local_agents.load(std::sync::atomic::Ordering::Relaxed),
        free_kib: free_kib(),
    };
    let others = node.others.read().ok()?;
    let candidates = others.0.iter().filter(|n| !n.lost).map(|n| {
        let load = Load {
            agents: n.agents.len(),
            free_kib: n.free_kib,
        };
        (load, &n.node)
    });
    let best = candidates.min_by(|a, b| a.0.cmp(&b.0));
    Some(match best {
        Some((load, name)) if load.better_than(&here) => name.clone(),
        _ => node.name().to_string(),
    })
}

/// What a node carries, for placing a spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    agents: usize,
    free_kib: u64,
}

impl Load {
    fn better_than(&self, other: &Load) -> bool {
        self.agents < other.agents
            || (self.agents == other.agents && self.free_kib > other.free_kib + other.free_kib / 4)
    }
}

impl Ord for Load {
    /// Fewer agents first, then more free memory.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.agents
            .cmp(&other.agents)
            .then(other.free_kib.cmp(&self.free_kib))
    }
}

impl PartialOrd for Load {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Checks that `node` is another node of the cluster, heard lately.
pub fn known_node(hub: &Hub, node: &str) -> Result<(), HubError> {
    let nodes: Vec<(String, bool)> = match &hub.cluster {
        Some(n) => n
            .others
            .read()
            .map(|o| o.0.iter().map(|v| (v.node.clone(), v.lost)).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    match nodes.iter().find(|(n, _)| n == node) {
        Some((_, false)) => Ok(()),
        Some((_, true)) => Err(HubError::Refused(format!(
            "node {node} is lost (unheard for three heartbeats); spawn there once it is back, or on another node"
        ))),
        None => {
            let known: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
            Err(HubError::InvalidArgs(format!(
                "no node {node} in the cluster (the others: {})",
                if known.is_empty() { "none heard yet".to_string() } else { known.join(", ") }
            )))
        }
    }
}

/// The nodes lost from here.
pub fn lost_nodes(hub: &Hub) -> Vec<String> {
    let Some(node) = &hub.cluster else {
        return Vec::new();
    };
    node.others
        .read()
        .map(|o| {
            o.0.iter()
                .filter(|n| n.lost)
                .map(|n| n.node.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the other nodes from Redis now, not at the next heartbeat: a
/// sender just spawned there may be newer than this node's view.
pub async fn refresh(hub: &Arc<Hub>) -> Result<(), HubError> {
    let Some(node) = &hub.cluster else {
        return Ok(());
    };
    let mut others = node.registry.others().await?;
    let forgotten = node.registry.forgotten().await?;
    if let Ok(mut o) = node.others.write() {
        // A node Redis no longer has (Redis came back empty, and it has not
        // published since) stays, lost, as last heard: messages for its
        // agents wait for it rather than being refused. One forgotten by
        // `torch node forget` goes.
        let gone: Vec<NodeView> =
            o.0.iter()
                .filter(|v| !others.iter().any(|n| n.node == v.node))
                .filter(|v| !forgotten.contains(&v.node))
                .map(|v| NodeView {
                    lost: true,
                    ..v.clone()
                })
                .collect();
        others.extend(gone);
        note_lost(node, &others);
        *o = (others, Some(std::time::Instant::now()));
    }
    let new: Vec<String> = match node.forgotten_done.lock() {
        Ok(mut done) => {
            done.retain(|n| forgotten.contains(n));
            forgotten
                .iter()
                .filter(|n| *n != node.name() && !done.contains(*n))
                .cloned()
                .collect()
        }
        Err(_) => Vec::new(),
    };
    for gone in new {
        crate::forget::fail_waiting(hub, &gone).await?;
        if let Ok(mut done) = node.forgotten_done.lock() {
            done.insert(gone);
        }
    }
    Ok(())
}

/// Notes since when each node of `view` is lost (and forgets the others).
fn note_lost(node: &Node, view: &[NodeView]) {
    let Ok(mut since) = node.lost_since.lock() else {
        return;
    };
    since.retain(|n, _| view.iter().any(|v| v.lost && v.node == *n));
    for v in view.iter().filter(|v| v.lost) {
        since
            .entry(v.node.clone())
            .or_insert_with(std::time::Instant::now);
    }
}

/// Drops `node` from this node's view (forgotten).
pub fn drop_node(hub: &Hub, node: &str) {
    if let Some(Ok(mut o)) = hub.cluster.as_ref().map(|n| n.others.write()) {
        o.0.retain(|v| v.node != node);
    }
}

/// Whether `node` publishes an agent `name` (the registry read again when
/// this node's view does not have it: it may be new).
pub async fn publishes(hub: &Arc<Hub>, node: &str, name: &str) -> bool {
    let has = |h: &Hub| node_agents(h, node).iter().any(|a| a.name == name);
    if has(hub) {
        return true;
    }
    refresh(hub).await.is_ok() && has(hub)
}

/// What `node` last published of its agents.
fn node_agents(hub: &Hub, node: &str) -> Vec<RemoteAgent> {
    with_others(hub, |others| {
        others
            .iter()
            .find(|v| v.node == node)
            .map(|v| v.agents.clone())
            .unwrap_or_default()
    })
}

/// Publishes this node and reads the others, every heartbeat, for good.
pub async fn run(hub: Arc<Hub>) {
    let Some(node) = &hub.cluster else { return };
    tracing::info!(
        "cluster: this hub is node {}, heartbeat every {} s",
        node.name(),
        node.registry.heartbeat().as_secs()
    );
    let mut reachable = true;
    let mut tick = tokio::time::interval(node.registry.heartbeat());
    loop {
        tick.tick().await;
        match heartbeat(&hub, node).await {
            Ok(()) if !reachable => {
                tracing::info!("cluster: Redis answers again");
                reachable = true;
            }
            Ok(()) => {}
            Err(e) => {
                if reachable {
                    tracing::warn!("cluster: {e}; this node goes on alone until Redis answers");
                    reachable = false;
                }
                // Redis may come back empty: claim every name again then.
                if let Ok(mut claimed) = node.claimed.lock() {
                    claimed.clear();
                }
            }
        }
    }
}

async fn heartbeat(hub: &Arc<Hub>, node: &Node) -> Result<(), HubError> {
    let mut local = service::local_status(hub, None).await?;
    local.retain(|a| a.definition_error.is_none());
    claim_local_names(hub, node, &local).await?;
    let h = Arc::clone(hub);
    let fleet = blocking(move || Ok(h.fleet.agents())).await?;
    let pool = |name: &str| fleet.agents.get(name).and_then(|a| a.def.pool.clone());
    let agents: Vec<RemoteAgent> = local
        .into_iter()
        .map(|a| RemoteAgent {
            pool: pool(&a.name),
            state: a.agent_state.unwrap_or(a.active_state),
            name: a.name,
            role: a.role,
            parent: a.parent,
            skills: a.skills,
            capacity: a.capacity,
            queued: a.queued,
            held: a.tasks.len() as u32,
        })
        .collect();
    node.local_agents
        .store(agents.len(), std::sync::atomic::Ordering::Relaxed);
    let known = node.registry.publish(&agents, free_kib()).await?;
    if !known {
        forget_what_redis_held(hub, node).await?;
    }
    refresh(hub).await
}

/// Redis did not know this node: new, or back empty after an outage. What
/// it held for this node is gone: its names are claimed again at the next
/// heartbeat, and its unsettled messages handed over again at once.
async fn forget_what_redis_held(hub: &Arc<Hub>, node: &Node) -> Result<(), HubError> {
    tracing::info!("cluster: Redis did not know this node (a new node, or Redis came back empty): claiming its names again and handing its unsettled messages over again");
    node.claimed.lock().map_err(poisoned)?.clear();
    let h = Arc::clone(hub);
    blocking(move || Ok(h.store.forward_again()?)).await?;
    hub.forward_now.notify_one();
    Ok(())
}

/// Claims the names of local agents not claimed yet (those defined before
/// the hub joined, or by hand); a name another node holds is reported.
async fn claim_local_names(
    hub: &Arc<Hub>,
    node: &Node,
    local: &[AgentStatus],
) -> Result<(), HubError> {
    let unclaimed: Vec<String> = {
        let claimed = node.claimed.lock().map_err(poisoned)?;
        local
            .iter()
            .filter(|a| !claimed.contains(&a.name))
            .map(|a| a.name.clone())
            .collect()
    };
    for name in unclaimed {
        match node.registry.claim(&name).await? {
            Claim::Ours => {
                // Retired since the list was read: its retirement may have
                // given the name up before this claim took it again.
                let (h, n) = (Arc::clone(hub), name.clone());
                let here = blocking(move || Ok(h.fleet.agents().agents.contains_key(&n))).await?;
                if !here {
                    node.registry.release(&name).await?;
                    continue;
                }
            }
            Claim::Taken(other) => tracing::error!(
                "cluster: agent {name} is defined here and on node {other}; names must be unique across the cluster: retire one of them"
            ),
        }
        node.claimed.lock().map_err(poisoned)?.insert(name);
    }
    Ok(())
}

/// Claims `name` for a spawn on this node; refused when another node holds
/// it or Redis cannot say. Nothing to do on a lone hub.
pub async fn claim(hub: &Hub, name: &str) -> Result<(), HubError> {
    let Some(node) = &hub.cluster else {
        return Ok(());
    };
    match node.registry.claim(name).await {
        Ok(Claim::Ours) => {
            node.claimed.lock().map_err(poisoned)?.insert(name.to_string());
            Ok(())
        }
        Ok(Claim::Taken(other)) => Err(HubError::Refused(format!(
            "agent {name} already exists on node {other}; names are unique across the cluster, choose another"
        ))),
        Err(e) => Err(HubError::Refused(format!(
            "cannot check the name {name} across the cluster ({e}); spawn again once Redis answers"
        ))),
    }
}

/// Gives `name` up after its agent is gone from this node.
pub async fn release(hub: &Hub, name: &str) {
    let Some(node) = &hub.cluster else { return };
    if let Ok(mut claimed) = node.claimed.lock() {
        claimed.remove(name);
    }
    if let Err(e) = node.registry.release(name).await {
        tracing::warn!("cluster: {name} stays claimed by this node in Redis ({e}); it is given up when this node's hub next spawns or retires it");
    }
}

/// This node's name, when it is one of a cluster.
pub fn node_name(hub: &Hub) -> Option<String> {
    hub.cluster.as_ref().map(|n| n.name().to_string())
}

/// The other nodes' agents as `Status` rows.
pub fn remote_rows(hub: &Hub) -> Vec<AgentStatus> {
    remote(hub, |node, a| AgentStatus {
        node: node.node.clone(),
        role: a.role.clone(),
        parent: a.parent.clone(),
        unit: format!("torch-agent@{}.service", a.name),
        active_state: if node.lost { "lost" } else { "active" }.into(),
        sub_state: "remote".into(),
        agent_state: Some(state(node, a)),
        queued: a.queued,
        skills: a.skills.clone(),
        capacity: a.capacity,
        name: a.name.clone(),
        ..Default::default()
    })
}

/// The other nodes' agents as `Agents` entries.
pub fn remote_entries(hub: &Hub) -> Vec<AgentEntry> {
    remote(hub, |node, a| AgentEntry {
        name: a.name.clone(),
        node: node.node.clone(),
        role: a.role.clone(),
        parent: a.parent.clone(),
        skills: a.skills.clone(),
        capacity: a.capacity,
        state: state(node, a),
    })
}

fn remote<T>(hub: &Hub, row: impl Fn(&NodeView, &RemoteAgent) -> T) -> Vec<T> {
    let Some(node) = &hub.cluster else {
        return Vec::new();
    };
    let Ok(others) = node.others.read() else {
        return Vec::new();
    };
    let (nodes, read_at) = &*others;
    let unheard = unheard(node, *read_at);
    nodes
        .iter()
        .flat_map(|n| {
            let n = NodeView {
                lost: n.lost || unheard,
                ..n.clone()
            };
            n.agents.iter().map(|a| row(&n, a)).collect::<Vec<_>>()
        })
        .collect()
}

/// Whether Redis has been unheard (the view last read at `read_at`) as
/// long as a node would be: every node is lost from here.
fn unheard(node: &Node, read_at: Option<std::time::Instant>) -> bool {
    let lost_after = node.registry.heartbeat() * torch_cluster::LOST_AFTER;
    read_at.is_none_or(|t| t.elapsed() > lost_after)
}

/// An agent of a lost node is lost, whatever it was last.
fn state(node: &NodeView, agent: &RemoteAgent) -> String {
    match node.lost {
        true => "lost".into(),
        false => agent.state.clone(),
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> HubError {
    HubError::Internal("the cluster's name table is poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::{Load, Node};

    fn node(name: &str) -> Node {
        let config: torch_core::config::Config = toml::from_str(&format!(
            "[cluster]\nnode = \"{name}\"\nredis = \"redis://127.0.0.1:1\"\n"
        ))
        .unwrap();
        Node::from_config(&config).unwrap().unwrap()
    }

    #[test]
    fn origins_carry_the_incarnation_and_only_this_ones_are_ours() {
        let n = node("node-a");
        n.set_incarnation("f00".into());
        assert_eq!(n.origin(7), "node-a:f00:7");
        assert_eq!(n.own_id("node-a:f00:7"), Some(7));
        // Another incarnation's (the store before a reinstall), another
        // node's, and the old form are not ours.
        assert_eq!(n.own_id("node-a:beef:7"), None);
        assert_eq!(n.own_id("node-b:f00:7"), None);
        assert_eq!(n.own_id("node-a:7"), None);
        assert_eq!(n.own_id("node-ab:f00:7"), None);
        // A store that handed messages over before incarnations.
        let old = node("node-a");
        old.set_incarnation(String::new());
        assert_eq!(old.origin(7), "node-a:7");
        assert_eq!(old.own_id("node-a:7"), Some(7));
        assert_eq!(old.own_id("node-a:f00:7"), None);
    }

    #[test]
    fn a_spawn_goes_elsewhere_for_fewer_agents_or_much_more_memory_only() {
        let here = Load {
            agents: 2,
            free_kib: 1000,
        };
        assert!(Load {
            agents: 1,
            free_kib: 10
        }
        .better_than(&here));
        assert!(!Load {
            agents: 2,
            free_kib: 1200
        }
        .better_than(&here));
        assert!(Load {
            agents: 2,
            free_kib: 1300
        }
        .better_than(&here));
        assert!(!Load {
            agents: 3,
            free_kib: 9000
        }
        .better_than(&here));
        assert!(
            Load {
                agents: 1,
                free_kib: 5
            } < Load {
                agents: 2,
                free_kib: 9000
            }
        );
        assert!(
            Load {
                agents: 1,
                free_kib: 9
            } < Load {
                agents: 1,
                free_kib: 5
            }
        );
    }
}
