//! Messages across the nodes of a cluster, through Redis Streams
//! ([`torch_cluster`]): four loops of this hub's node.
//!
//! - [`forward`] hands each message stored for an agent of another node to
//!   that node's inbox, and hands it again if no answer came within
//!   [`RESEND_AFTER`] (the other node stores each message once).
//! - [`receive`] stores what arrives in this node's inbox (once, by its
//!   origin), after this node's own checks: the recipient is its own, the
//!   sender is the operator or an agent the sending node publishes, and the
//!   policy allows the route. The courier then delivers it as any other.
//! - [`tell`] tells each sending node how its messages ended here.
//! - [`hear`] settles this node's forwarded messages as their nodes tell,
//!   with the same signals as a local delivery (`torch send --wait`).
//!
//! Without Redis each loop waits and tries again; nothing is lost: a
//! message stays in the store (and the stream) until its end is known.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use torch_cluster::{Ack, Envelope, Registry};
use torch_store::State;

use crate::error::HubError;
use crate::hub::{blocking, Hub};

/// A message handed over and not settled is handed over again after this.
const RESEND_AFTER: Duration = Duration::from_secs(30);
/// How long a loop waits after Redis failed it.
const RETRY: Duration = Duration::from_secs(1);
/// How often the store is asked for what to forward or tell when nothing
/// woke the loop (a message stored by another path, or a wake missed).
const POLL: Duration = Duration::from_secs(1);

/// Starts the loops, when this hub is one node of a cluster.
pub fn start(hub: &Arc<Hub>) {
    let Some(node) = &hub.cluster else {
        return;
    };
    match hub.store.incarnation() {
        Ok(inc) => node.set_incarnation(inc),
        Err(e) => {
            tracing::error!("cluster: cannot read this store's incarnation ({e}); messages to other nodes wait until the hub starts again");
            return;
        }
    }
    tokio::spawn(forward(Arc::clone(hub)));
    tokio::spawn(receive(Arc::clone(hub)));
    tokio::spawn(tell(Arc::clone(hub)));
    tokio::spawn(hear(Arc::clone(hub)));
}

fn registry(hub: &Hub) -> Option<&Registry> {
    hub.cluster.as_ref().map(crate::cluster::Node::registry)
}

/// Runs `step` for good, waiting [`RETRY`] after a failure (said once until
/// a step succeeds again) and, after a step with nothing to do, `pause` or
/// until `wake` is told.
async fn repeat<F, Fut>(what: &str, pause: Duration, wake: Option<&Notify>, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, HubError>>,
{
    let mut failing = false;
    loop {
        match step().await {
            Ok(busy) => {
                if failing {
                    tracing::info!("cluster: {what} goes on");
                    failing = false;
                }
                if !busy {
                    match wake {
                        Some(wake) => {
                            let _ = tokio::time::timeout(pause, wake.notified()).await;
                        }
                        None => tokio::time::sleep(pause).await,
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("cluster: {what} waits: {e}");
                    failing = true;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn forward(hub: Arc<Hub>) {
    let wake = Some(&hub.forward_now);
    repeat("handing messages to other nodes", POLL, wake, || {
        forward_once(&hub)
    })
    .await;
}

async fn forward_once(hub: &Arc<Hub>) -> Result<bool, HubError> {
    let Some(node) = &hub.cluster else {
        return Ok(false);
    };
    let registry = node.registry();
    let h = Arc::clone(hub);
    let again = RESEND_AFTER.as_millis() as i64;
    // A message handed over to a node now lost waits in its inbox; handing
    // it over again would only pile up copies.
    let lost = crate::cluster::lost_nodes(hub);
    let batch = blocking(move || Ok(h.store.to_forward(again, &lost, 200)?)).await?;
    let mut done = Vec::new();
    let mut result = Ok(());
    for m in &batch {
        let envelope = Envelope {
            origin: node.origin(m.id),
            sender: m.sender.clone(),
            recipient: m.recipient.clone(),
            body: m.body.clone(),
            kind: m.kind.clone(),
        };
        // In id order: a message is never handed over before an older one
        // of the same sender.
        if let Err(e) = registry.send_to(&m.node, &envelope).await {
            result = Err(e.into());
            break;
        }
        done.push(m.id);
    }
    let h = Arc::clone(hub);
    blocking(move || Ok(h.store.mark_forwarded(done)?)).await?;
    result.map(|()| !batch.is_empty())
}

async fn receive(hub: Arc<Hub>) {
    consume(
        "reading this node's inbox",
        hub,
        |hub, pending| async move { receive_once(&hub, pending).await },
    )
    .await;
}

/// Reads one of this node's streams for good, a batch at a time with
/// `step` (given whether to read what was read before and never
/// acknowledged; it answers whether the batch had any), as [`repeat`] runs
/// it: first what a restart or a failure left unacknowledged, until none
/// is left, then new entries.
pub(crate) async fn consume<F, Fut>(what: &str, hub: Arc<Hub>, step: F)
where
    F: Fn(Arc<Hub>, bool) -> Fut,
    Fut: std::future::Future<Output = Result<bool, HubError>>,
{
    let pending = Arc::new(AtomicBool::new(true));
    repeat(what, Duration::ZERO, None, || {
        let again = Arc::clone(&pending);
        let batch = step(Arc::clone(&hub), again.load(Relaxed));
        async move { reread(&again, batch.await) }
    })
    .await;
}

/// Keeps reading what was read before and never acknowledged (after a
/// restart or a failure) until none is left, then new entries only.
fn reread(pending: &AtomicBool, got: Result<bool, HubError>) -> Result<bool, HubError> {
    match got {
        Ok(got) => {
            if !got {
                pending.store(false, Relaxed);
            }
            Ok(true)
        }
        Err(e) => {
            pending.store(true, Relaxed);
            Err(e)
        }
    }
}

/// Stores one batch of the inbox; whether it had any.
async fn receive_once(hub: &Arc<Hub>, pending: bool) -> Result<bool, HubError> {
    let Some(registry) = registry(hub) else {
        return Ok(false);
    };
    let entries = registry.read_inbox(pending).await?;
    let mut ids = Vec::with_capacity(entries.len());
    for (id, envelope) in &entries {
        take(hub, registry, envelope).await?;
        ids.push(id.clone());
    }
    registry.done_inbox(&ids).await?;
    Ok(!entries.is_empty())
}

/// Stores `envelope` for delivery here, or tells its node why not.
async fn take(hub: &Arc<Hub>, registry: &Registry, envelope: &Envelope) -> Result<(), HubError> {
    let Some((node, _)) = envelope.origin.split_once(':') else {
        tracing::warn!("cluster: an inbox entry without an origin was dropped: {envelope:?}");
        return Ok(());
    };
    let mut verdict = check(hub, node, envelope).await?;
    if verdict.is_err() && envelope.sender != torch_core::policy::OPERATOR {
        // The sender may be newer than this node's view of its node.
        crate::cluster::refresh(hub).await?;
        verdict = check(hub, node, envelope).await?;
    }
    if let Err(why) = verdict {
        let ack = Ack {
            origin: envelope.origin.clone(),
            node: registry.node().to_string(),
            state: State::Failed.as_str().into(),
            reason: why,
        };
        return registry.ack_to(node, &ack).await.map_err(HubError::from);
    }
    let (h, e) = (Arc::clone(hub), envelope.clone());
    let stored = blocking(move || {
        Ok(h.store
            .enqueue_from(&e.origin, &e.sender, &e.recipient, &e.body, &e.kind)?)
    })
    .await?;
    if stored.is_some() {
        hub.courier.kick(&envelope.recipient);
    }
    Ok(())
}

/// [`crate::cluster::check_incoming`], off the async workers (it may read
/// definitions).
async fn check(
    hub: &Arc<Hub>,
    node: &str,
    envelope: &Envelope,
) -> Result<Result<(), String>, HubError> {
    let (h, n, e) = (Arc::clone(hub), node.to_string(), envelope.clone());
    blocking(move || Ok(crate::cluster::check_incoming(&h, &n, &e))).await
}

async fn tell(hub: Arc<Hub>) {
    let wake = Some(&*hub.events.settled);
    repeat(
        "telling other nodes how their messages ended",
        POLL,
        wake,
        || tell_once(&hub),
    )
    .await;
}

async fn tell_once(hub: &Arc<Hub>) -> Result<bool, HubError> {
    let Some(registry) = registry(hub) else {
        return Ok(false);
    };
    let h = Arc::clone(hub);
    let settled = blocking(move || Ok(h.store.to_ack(200)?)).await?;
    let mut done = Vec::new();
    let mut result = Ok(());
    for s in &settled {
        let Some((node, _)) = s.origin.split_once(':') else {
            done.push(s.id);
            continue;
        };
        let ack = Ack {
            origin: s.origin.clone(),
            node: registry.node().to_string(),
            state: s.state.as_str().into(),
            reason: s.reason.clone().unwrap_or_default(),
        };
        if let Err(e) = registry.ack_to(node, &ack).await {
            result = Err(e.into());
            break;
        }
        done.push(s.id);
    }
    let h = Arc::clone(hub);
    blocking(move || Ok(h.store.mark_acked(done)?)).await?;
    result.map(|()| !settled.is_empty())
}

async fn hear(hub: Arc<Hub>) {
    let what = "hearing how messages ended on other nodes";
    consume(what, hub, |hub, pending| async move {
        hear_once(&hub, pending).await
    })
    .await;
}

async fn hear_once(hub: &Arc<Hub>, pending: bool) -> Result<bool, HubError> {
    let Some(registry) = registry(hub) else {
        return Ok(false);
    };
    let acks = registry.read_acks(pending).await?;
    let mut ids = Vec::with_capacity(acks.len());
    for (entry, ack) in &acks {
        ids.push(entry.clone());
        let Some(id) = hub.cluster.as_ref().and_then(|n| n.own_id(&ack.origin)) else {
            continue;
        };
        let state = match ack.state.as_str() {
            "delivered" => State::Delivered,
            _ => State::Failed,
        };
        let reason = (!ack.reason.is_empty()).then(|| ack.reason.clone());
        let (h, r, from) = (Arc::clone(hub), reason.clone(), ack.node.clone());
        let settled =
            blocking(move || Ok(h.store.settle_forwarded(id, &from, state, r.as_deref())?)).await?;
        match (settled, state) {
            (Some((to, created_ms)), State::Delivered) => {
                hub.events.delivered(id, &to, created_ms).await
            }
            (Some((to, _)), _) => {
                let why = reason.unwrap_or_else(|| "failed on its node".into());
                hub.events.failed(id, &to, &why).await
            }
            (None, _) => {}
        }
    }
    registry.done_acks(&ids).await?;
    Ok(!acks.is_empty())
}
