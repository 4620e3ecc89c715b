//! The hub's signals as JSON lines for the browsers: what changed, about
//! whom. The page draws a new state at once and reads the status again
//! for the rest.

use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use torch_api::ManagerProxy;

type Events = std::pin::Pin<Box<dyn Stream<Item = Value> + Send>>;

/// Passes every signal of the hub on to `out` until the bus goes.
pub async fn forward(hub: ManagerProxy<'static>, out: broadcast::Sender<String>) {
    let streams = match subscribe(&hub).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "torch-web: cannot listen to the hub's signals: {e}; the page will not update live"
            );
            return;
        }
    };
    let mut all = futures_util::stream::select_all(streams);
    while let Some(event) = all.next().await {
        // No browser listening is fine.
        let _ = out.send(event.to_string());
    }
}

async fn subscribe(h: &ManagerProxy<'static>) -> zbus::Result<Vec<Events>> {
    let states = h.receive_agent_changed().await?.filter_map(|s| async move {
        let a = s.args().ok()?;
        Some(json!({"kind": "agent_changed", "agent": a.agent, "state": a.state, "why": a.detail}))
    });
    let alerts = h.receive_alert().await?.filter_map(|s| async move {
        let a = s.args().ok()?;
        Some(json!({"kind": "alert", "agent": a.agent, "text": a.text}))
    });
    let fleet = h.receive_fleet_changed().await?.filter_map(|s| async move {
        let a = s.args().ok()?;
        Some(json!({"kind": "fleet_changed", "agent": a.agent, "change": a.change}))
    });
    let queued = h
        .receive_message_queued()
        .await?
        .filter_map(|s| async move {
            let a = s.args().ok()?;
            Some(json!({"kind": "message_queued", "id": a.id, "from": a.from, "to": a.to}))
        });
    let delivered = h
        .receive_message_delivered()
        .await?
        .filter_map(|s| async move {
            let a = s.args().ok()?;
            Some(json!({"kind": "message_delivered", "id": a.id, "to": a.to}))
        });
    let failed = h
        .receive_message_failed()
        .await?
        .filter_map(|s| async move {
            let a = s.args().ok()?;
            Some(json!({"kind": "message_failed", "id": a.id, "to": a.to, "reason": a.reason}))
        });
    let pools = h.receive_pool_changed().await?.filter_map(|s| async move {
        let a = s.args().ok()?;
        Some(json!({"kind": "pool_changed", "pool": a.pool, "size": a.size, "target": a.target, "why": a.why}))
    });
    let tasks = h.receive_task_changed().await?.filter_map(|s| async move {
        let a = s.args().ok()?;
        Some(json!({"kind": "task_changed", "id": a.id, "state": a.state, "actor": a.actor}))
    });
    Ok(vec![
        Box::pin(states),
        Box::pin(alerts),
        Box::pin(fleet),
        Box::pin(queued),
        Box::pin(delivered),
        Box::pin(failed),
        Box::pin(tasks),
        Box::pin(pools),
    ])
}
