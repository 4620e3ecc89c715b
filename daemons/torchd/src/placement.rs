//! Asking another node's hub through Redis ([`torch_cluster::Request`]),
//! and answering what other nodes ask. Above all spawning on another node
//! (`torch spawn --node N`): the hub hands the spawn to N's hub and waits
//! for its answer; N's hub spawns it as its operator would, with its own
//! checks (name, quotas, place in the tree), and answers with the unit or
//! the reason. Moves of tasks across nodes ride the same requests
//! (`remote_tasks`).
//!
//! Only the operator spawns elsewhere: an agent's helpers go below it, on
//! its own node. Variables (an API key) are not carried through Redis: give
//! them on the agent's node (`torch env NAME FILE` there).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use torch_cluster::{Reply, Request};
use torch_core::policy::OPERATOR;

use crate::error::HubError;
use crate::federation::consume;
use crate::fleet::SpawnRequest;
use crate::hub::Hub;
use crate::service;

/// How long a spawn on another node may take: its unit's start (30 s)
/// and the trips through Redis.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// A request older than this when its turn comes is not done: what it asks
/// (a spawn waits for its agent's start) would end after its asker stopped
/// waiting.
const EXPIRE_AFTER: Duration = Duration::from_secs(30);

/// Spawns waiting for another node's answer, by request id.
#[derive(Default)]
pub struct Waiting {
    replies: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    next: AtomicU64,
}

/// Spawns `req` on its node, another of the cluster; the unit, as there.
pub async fn spawn_elsewhere(
    hub: &Arc<Hub>,
    req: SpawnRequest,
    brief: &str,
) -> Result<String, HubError> {
    if hub.cluster.is_none() {
        return Err(HubError::Refused(format!(
            "no [cluster] in torch.toml: this hub is alone, there is no node {}; leave out --node",
            req.node
        )));
    }
    if req.requester != OPERATOR {
        return Err(HubError::AccessDenied(format!(
            "agent {} may spawn on its own node only (its helpers go below it)",
            req.requester
        )));
    }
    if !req.env.is_empty() {
        return Err(HubError::Refused(format!(
            "variables are not carried to another node; spawn without --env-file, then give them on node {} with `torch env {} FILE`",
            req.node, req.name
        )));
    }
    crate::cluster::known_node(hub, &req.node)?;
    let body = spec_json(&req)?;
    let what = format!("to spawn {}", req.name);
    ask_for(hub, &req.node, ("spawn", body, brief), &what).await
}

/// [`ask`], its outcome as the caller's: what `node` gave, or why not
/// (`what`: what was asked, "to spawn NAME").
pub async fn ask_for(
    hub: &Hub,
    node: &str,
    (kind, body, brief): (&str, String, &str),
    what: &str,
) -> Result<String, HubError> {
    match ask(hub, node, kind, body, brief).await {
        Ok(Ok(given)) => Ok(given),
        Ok(Err(why)) => Err(HubError::Refused(format!("node {node}: {why}"))),
        Err(Unanswered::NotSent(e)) => Err(HubError::Refused(format!(
            "cannot ask node {node} {what} ({e}); try again once Redis answers"
        ))),
        Err(Unanswered::TimedOut) => Err(HubError::Refused(format!(
            "node {node} did not answer within {} s when asked {what}: see there whether it was done",
            ANSWER_TIMEOUT.as_secs()
        ))),
    }
}

/// Why another node gave no answer.
pub enum Unanswered {
    /// The request could not be handed to Redis.
    NotSent(torch_cluster::ClusterError),
    /// No answer within [`ANSWER_TIMEOUT`].
    TimedOut,
}

/// Asks `node`'s hub to do `kind` with `body` (and `brief`, for a spawn);
/// its answer: what it gave, or why it did not do it.
pub async fn ask(
    hub: &Hub,
    node: &str,
    kind: &str,
    body: String,
    brief: &str,
) -> Result<Result<String, String>, Unanswered> {
    let Some(this) = &hub.cluster else {
        return Err(Unanswered::TimedOut);
    };
    let registry = this.registry();
    let waiting = &hub.placement;
    let id = format!(
        "{}:{}:{}",
        registry.node(),
        std::process::id(),
        waiting.next.fetch_add(1, Relaxed)
    );
    let (tx, rx) = oneshot::channel();
    if let Ok(mut replies) = waiting.replies.lock() {
        replies.insert(id.clone(), tx);
    }
    let request = Request {
        id: id.clone(),
        from: registry.node().to_string(),
        kind: kind.into(),
        body,
        brief: brief.to_string(),
    };
    let sent = registry.request(node, &request).await;
    let answer = match sent {
        Ok(()) => tokio::time::timeout(ANSWER_TIMEOUT, rx).await.ok(),
        Err(e) => {
            if let Ok(mut replies) = waiting.replies.lock() {
                replies.remove(&id);
            }
            return Err(Unanswered::NotSent(e));
        }
    };
    if let Ok(mut replies) = waiting.replies.lock() {
        replies.remove(&id);
    }
    match answer {
        Some(Ok(reply)) if reply.ok => Ok(Ok(reply.body)),
        Some(Ok(reply)) => Ok(Err(reply.body)),
        _ => Err(Unanswered::TimedOut),
    }
}

/// The spawn as the other node reads it: the API's spec, for its node.
fn spec_json(req: &SpawnRequest) -> Result<String, HubError> {
    let spec = RemoteSpawn {
        pool: req.pool.clone(),
        spec: spawn_spec(req),
    };
    serde_json::to_string(&spec).map_err(|e| HubError::Internal(e.to_string()))
}

/// A spawn one node asks of another: the API's spec, and the pool the new
/// agent is a member of (a pool spread over nodes grows there).
#[derive(serde::Serialize, serde::Deserialize)]
struct RemoteSpawn {
    #[serde(flatten)]
    spec: torch_api::SpawnSpec,
    #[serde(default)]
    pool: Option<String>,
}

fn spawn_spec(req: &SpawnRequest) -> torch_api::SpawnSpec {
    torch_api::SpawnSpec {
        name: req.name.clone(),
        role: req.role.clone(),
        parent: req.parent.clone(),
        workdir: req.workdir.clone(),
        profile: req.profile.clone(),
        command: req.command.clone(),
        requester: OPERATOR.into(),
        skills: req.skills.clone(),
        capacity: req.capacity,
        worktree: req.worktree,
        node: req.node.clone(),
    }
}

/// Starts the loops that serve other nodes' requests and hear the answers
/// to this node's, when this hub is one node of a cluster.
pub fn start(hub: &Arc<Hub>) {
    if hub.cluster.is_none() {
        return;
    }
    tokio::spawn(serve(Arc::clone(hub)));
    tokio::spawn(hear(Arc::clone(hub)));
}

async fn serve(hub: Arc<Hub>) {
    consume(
        "serving other nodes' requests",
        hub,
        |hub, pending| async move { serve_once(&hub, pending).await },
    )
    .await;
}

async fn serve_once(hub: &Arc<Hub>, pending: bool) -> Result<bool, HubError> {
    let Some(node) = &hub.cluster else {
        return Ok(false);
    };
    let registry = node.registry();
    let requests = registry.read_requests(pending).await?;
    let mut ids = Vec::with_capacity(requests.len());
    let now = match requests.is_empty() {
        true => 0,
        false => registry.now_ms().await?,
    };
    let read_at = std::time::Instant::now();
    for (entry, request) in &requests {
        // Its asker stopped waiting, or will before it is done (this node
        // was down, Redis away, or the requests before took long): what it
        // asked is not done behind its back.
        let at = now + read_at.elapsed().as_millis() as u64;
        let answered = match stale(entry, at) {
            true => Err(format!(
                "asked over {} s ago, not done: ask again",
                EXPIRE_AFTER.as_secs()
            )),
            false => answer(hub, request).await,
        };
        let reply = match answered {
            Ok(body) => Reply {
                id: request.id.clone(),
                ok: true,
                body,
            },
            Err(why) => Reply {
                id: request.id.clone(),
                ok: false,
                body: why,
            },
        };
        registry.reply(&request.from, &reply).await?;
        ids.push(entry.clone());
    }
    registry.done_requests(&ids).await?;
    Ok(!requests.is_empty())
}

/// Whether the request of stream entry `entry` (its id: Redis's
/// milliseconds, then a sequence) is older than [`EXPIRE_AFTER`] at `now`.
fn stale(entry: &str, now: u64) -> bool {
    let at: u64 = entry
        .split_once('-')
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or(now);
    now.saturating_sub(at) > EXPIRE_AFTER.as_millis() as u64
}

/// Does what another node asks: a spawn here, as the operator; a move of
/// a task of this node's ledger by an agent of that node; the retirement
/// of a member of its pool.
async fn answer(hub: &Arc<Hub>, request: &Request) -> Result<String, String> {
    match request.kind.as_str() {
        "spawn" => spawn_here(hub, request).await,
        "task" => crate::remote_tasks::answer(hub, &request.from, &request.body).await,
        "retire" => crate::pool_nodes::answer_retire(hub, &request.from, &request.body).await,
        other => Err(format!("this node does not know the request {other:?}")),
    }
}

/// Spawns here what another node asks, as the operator.
async fn spawn_here(hub: &Arc<Hub>, request: &Request) -> Result<String, String> {
    let asked: RemoteSpawn = serde_json::from_str(&request.body)
        .map_err(|e| format!("a spawn this node cannot read: {e}"))?;
    let mut req: SpawnRequest = asked.spec.into();
    req.pool = asked.pool;
    req.requester = OPERATOR.into();
    // Here, whatever placement would say: the asking node chose.
    req.node = crate::cluster::node_name(hub).unwrap_or_default();
    tracing::info!(
        "cluster: node {} asks to spawn {} here",
        request.from,
        req.name
    );
    service::spawn(hub, req, &request.brief)
        .await
        .map_err(|e| e.to_string())
}

async fn hear(hub: Arc<Hub>) {
    consume(
        "hearing other nodes' answers",
        hub,
        |hub, pending| async move { hear_once(&hub, pending).await },
    )
    .await;
}

async fn hear_once(hub: &Arc<Hub>, pending: bool) -> Result<bool, HubError> {
    let Some(node) = &hub.cluster else {
        return Ok(false);
    };
    let registry = node.registry();
    let replies = registry.read_replies(pending).await?;
    let mut ids = Vec::with_capacity(replies.len());
    for (entry, reply) in replies.iter().cloned() {
        ids.push(entry);
        // Nobody waits for an answer that came too late (or from before a
        // restart): the spawn happened or not, as `torch status` shows.
        let waiter = hub
            .placement
            .replies
            .lock()
            .map_err(poisoned)?
            .remove(&reply.id);
        if let Some(tx) = waiter {
            let _ = tx.send(reply);
        }
    }
    registry.done_replies(&ids).await?;
    Ok(!replies.is_empty())
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> HubError {
    HubError::Internal("the table of requests waiting for another node's answer is poisoned".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_older_than_its_asker_waits_is_stale() {
        let now = 1_000_000;
        assert!(!super::stale("999000-0", now));
        assert!(!super::stale(&format!("{}-3", now - 30_000), now));
        assert!(super::stale(&format!("{}-0", now - 30_001), now));
        assert!(!super::stale("garbled", now));
    }
}
