//! Tells clients what the store holds that is new, as signals, in order:
//! every message stored (`MessageQueued`), however it was stored (a send, a
//! brief, a check-in, the ledger's assignments, reports and nudges), and
//! every change of a task (`TaskChanged`). Each is read past the last one
//! told, by one indexed query, when there is news (every stored message is
//! followed by a kick of the courier, every change of the ledger by a round
//! of the router, and both bring news) and every second besides.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::{blocking, Hub};

/// How often the store is looked at without news.
const TICK: Duration = Duration::from_secs(1);
/// The most rows one look reads; the rest follow at once.
const PAGE: u32 = 1_000;

/// Tells until the hub stops.
pub async fn run(hub: Arc<Hub>) {
    let h = Arc::clone(&hub);
    let start = blocking(move || Ok((h.store.last_message()?, h.store.last_task_change()?)));
    let (mut messages, mut tasks) = match start.await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("clients will not be told of new messages and task changes: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hub.events.news_arrived() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        messages = tell_messages(&hub, messages).await;
        tasks = tell_tasks(&hub, tasks).await;
    }
}

/// Signals each message stored after `after`; the last one told.
async fn tell_messages(hub: &Arc<Hub>, mut after: i64) -> i64 {
    loop {
        let (h, from) = (Arc::clone(hub), after);
        let page = match blocking(move || Ok(h.store.messages_after(from, PAGE)?)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("new messages: {e}");
                return after;
            }
        };
        let full = page.len() == PAGE as usize;
        for (id, sender, recipient) in page {
            hub.events.queued(id, &sender, &recipient).await;
            after = id;
        }
        if !full {
            return after;
        }
    }
}

/// Signals each change of a task after change `after`; the last one told.
async fn tell_tasks(hub: &Arc<Hub>, mut after: i64) -> i64 {
    loop {
        let (h, from) = (Arc::clone(hub), after);
        let page = match blocking(move || Ok(h.store.task_changes_after(from, PAGE)?)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("task changes: {e}");
                return after;
            }
        };
        let full = page.len() == PAGE as usize;
        for (change, task, event) in page {
            hub.events
                .task_changed(task, &event.state, &event.actor)
                .await;
            after = change;
        }
        if !full {
            return after;
        }
    }
}
