//! Pools spread over the nodes of a cluster (`nodes = [...]` in
//! `[pools.NAME]`): which node runs the pool, where a new member goes, and
//! retiring a member of another node. The first node of the list that is
//! not lost runs the pool (each node listed has the same `[pools.NAME]`),
//! so when it goes away the next one takes over; members count on every
//! node of the list but those lost with their node, which are replaced.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use torch_core::pool::Pool;

use crate::error::HubError;
use crate::hub::Hub;
use crate::placement::ask_for;
use crate::pools::Member;

/// Whether `node` can take members now: this node, or another not lost.
fn live(hub: &Hub, node: &str) -> bool {
    crate::cluster::node_name(hub).as_deref() == Some(node)
        || crate::cluster::known_node(hub, node).is_ok()
}

/// The node that runs `pool` when it is another than this one.
pub fn run_elsewhere(hub: &Hub, pool: &Pool) -> Option<String> {
    if pool.nodes.is_empty() {
        return None;
    }
    let here = crate::cluster::node_name(hub)?;
    if !pool.nodes.contains(&here) {
        return Some(pool.nodes.join(" or "));
    }
    match pool.nodes.iter().find(|n| live(hub, n)) {
        Some(n) if *n != here => Some(n.clone()),
        _ => None,
    }
}

/// The members of pool `name` on the other nodes of its list.
pub fn remote_members(
    hub: &Hub,
    name: &str,
    pool: &Pool,
    held: &HashMap<String, usize>,
) -> Vec<Member> {
    if pool.nodes.is_empty() {
        return Vec::new();
    }
    crate::cluster::pool_members(hub, name, &pool.nodes)
        .into_iter()
        .map(|(node, a, lost)| Member {
            held: held.get(&a.name).copied().unwrap_or(0),
            idle_there: a.state == "idle" && a.held == 0 && a.queued == 0,
            name: a.name,
            node: Some(node),
            lost,
        })
        .collect()
}

/// Where a new member of `pool` goes (`None`: this node): the node of its
/// list, not lost, with the fewest live members (`members`, and `placed`
/// this round), the first listed among equals.
pub fn place_member(
    hub: &Hub,
    pool: &Pool,
    members: &[Member],
    placed: &[Option<String>],
) -> Option<String> {
    let here = crate::cluster::node_name(hub)?;
    let count = |node: &str| {
        let on = |n: &Option<String>| n.as_deref().unwrap_or(&here) == node;
        members.iter().filter(|m| !m.lost && on(&m.node)).count()
            + placed.iter().filter(|p| on(p)).count()
    };
    let best = pool
        .nodes
        .iter()
        .filter(|n| live(hub, n))
        .min_by_key(|n| count(n))?;
    (*best != here).then(|| best.clone())
}

/// A retirement one node asks of another, for its pool.
#[derive(Debug, Serialize, Deserialize)]
struct Retire {
    name: String,
    pool: String,
}

/// Retires `member` of pool `pool`, an agent of `node`; its transcript
/// there.
pub async fn retire_there(
    hub: &Hub,
    node: &str,
    member: &str,
    pool: &str,
) -> Result<String, HubError> {
    let body = Retire {
        name: member.into(),
        pool: pool.into(),
    };
    let body = serde_json::to_string(&body).map_err(|e| HubError::Internal(e.to_string()))?;
    let what = format!("to retire {member}");
    ask_for(hub, node, ("retire", body, ""), &what).await
}

/// Retires here what node `from` asks for its pool: a member of that pool
/// only.
pub async fn answer_retire(hub: &Arc<Hub>, from: &str, body: &str) -> Result<String, String> {
    let r: Retire = serde_json::from_str(body)
        .map_err(|e| format!("a retirement this node cannot read: {e}"))?;
    let h = Arc::clone(hub);
    let name = r.name.clone();
    let pool = crate::hub::blocking(move || {
        Ok(h.fleet
            .agents()
            .agents
            .get(&name)
            .and_then(|a| a.def.pool.clone()))
    })
    .await
    .map_err(|e| e.to_string())?;
    if pool.as_deref() != Some(r.pool.as_str()) {
        return Err(format!(
            "{} is not a member of pool {} here; node {from} retires pool members only",
            r.name, r.pool
        ));
    }
    tracing::info!("cluster: node {from} retires {} of pool {}", r.name, r.pool);
    crate::service::retire(hub, None, &r.name)
        .await
        .map_err(|e| e.to_string())
}
