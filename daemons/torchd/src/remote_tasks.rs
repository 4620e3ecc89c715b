//! Tasks across the nodes of a cluster: the router gives a task of this
//! node's ledger to a worker of another node (`router`), and the worker
//! moves it from its own node (`TaskActOn`, `torch task done NODE:ID`).
//! Its hub hands the move to the task's node through Redis; the task's
//! node takes the worker as the node that runs it publishes it (a node
//! speaks for its own agents only), checks that the task is held by that
//! agent of that node, and makes the move as for that agent, with its own
//! checks.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::HubError;
use crate::hub::Hub;
use crate::placement::ask_for;

/// A move asked by another node.
#[derive(Debug, Serialize, Deserialize)]
struct Move {
    id: i64,
    action: String,
    target: String,
    note: String,
    /// The agent of the asking node that makes it.
    actor: String,
}

/// Makes `action` on task `id` of node `node`'s ledger for `actor`, an
/// agent of this node.
pub async fn act_elsewhere(
    hub: &Arc<Hub>,
    actor: Option<&str>,
    node: &str,
    id: i64,
    (action, target, note): (&str, &str, &str),
) -> Result<(), HubError> {
    let Some(actor) = actor else {
        return Err(HubError::Refused(format!(
            "the operator moves node {node}'s tasks on node {node} (torch task {action} {id} there)"
        )));
    };
    crate::cluster::known_node(hub, node)?;
    let body = Move {
        id,
        action: action.into(),
        target: target.into(),
        note: note.into(),
        actor: actor.into(),
    };
    let body = serde_json::to_string(&body).map_err(|e| HubError::Internal(e.to_string()))?;
    let what = format!("to {action} task {node}:{id}");
    ask_for(hub, node, ("task", body, ""), &what)
        .await
        .map(drop)
}

/// Makes the move node `from` asks on this node's ledger.
pub async fn answer(hub: &Arc<Hub>, from: &str, body: &str) -> Result<String, String> {
    let m: Move = serde_json::from_str(body)
        .map_err(|e| format!("a task move this node cannot read: {e}"))?;
    if !crate::cluster::publishes(hub, from, &m.actor).await {
        return Err(format!("node {from} does not publish an agent {}", m.actor));
    }
    // Only the holder this node gave the task to, on the node it gave it
    // to: the name alone may have been retired there and taken elsewhere.
    let t = crate::ledger::stored(hub, m.id)
        .await
        .map_err(|e| e.to_string())?;
    let held_there =
        t.owner.as_deref() == Some(m.actor.as_str()) && t.owner_node.as_deref() == Some(from);
    if !held_there {
        return Err(format!(
            "task #{} is not held by {} of node {from}; an agent of another node moves only a task given to it",
            m.id, m.actor
        ));
    }
    tracing::info!(
        "cluster: {} of node {from}: task #{} {}",
        m.actor,
        m.id,
        m.action
    );
    crate::moves::act(hub, Some(&m.actor), m.id, &m.action, &m.target, &m.note)
        .await
        .map(|()| String::new())
        .map_err(|e| e.to_string())
}
