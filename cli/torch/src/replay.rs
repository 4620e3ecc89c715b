//! `torch events --since`: what happened lately, read back from the hub's
//! store before the live events: messages stored, delivered and given up,
//! and each task's history. Agents' states, alerts and check-ins fired are
//! not stored, so they show live only.

use anyhow::{Context, Result};
use torch_api::{ManagerProxy, Message, Task};

use crate::events::Event;
use crate::hub;

/// Messages read per call (the hub's page limit).
const PAGE: u32 = 1000;

/// At most this many pages of messages are read back (100,000 messages).
const MAX_PAGES: usize = 100;

/// The events since `since_ms` (Unix ms), oldest first.
pub async fn since(h: &ManagerProxy<'_>, since_ms: i64) -> Result<Vec<Event>> {
    let mut out = messages_since(h, since_ms).await?;
    out.extend(tasks_since(h, since_ms).await?);
    out.sort_by_key(|e| e.at_ms);
    Ok(out)
}

async fn messages_since(h: &ManagerProxy<'_>, since_ms: i64) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    let mut before = 0;
    for _ in 0..MAX_PAGES {
        let page = h.messages("", before, PAGE).await.map_err(hub::explain)?;
        let page: Vec<Message> =
            serde_json::from_str(&page).context("the hub's messages are not as expected")?;
        let Some(first) = page.first() else { break };
        let (oldest, oldest_ms) = (first.id, first.created_ms);
        for m in page.iter().filter(|m| m.created_ms >= since_ms) {
            out.extend(message_events(m));
        }
        if oldest_ms < since_ms || page.len() < PAGE as usize {
            break;
        }
        before = oldest;
    }
    Ok(out)
}

/// A stored message as the events it went through. A message given up
/// shows at its storing time: the store keeps no time for the failure.
fn message_events(m: &Message) -> Vec<Event> {
    let id = Some(m.id);
    let mut out = vec![Event::at(
        m.created_ms,
        "message_queued",
        id,
        &[&m.sender, &m.recipient],
        "",
    )];
    if let Some(at) = m.delivered_ms {
        out.push(Event::at(at, "message_delivered", id, &[&m.recipient], ""));
    } else if m.state == "failed" {
        let reason = m.reason.as_deref().unwrap_or("");
        out.push(Event::at(
            m.created_ms,
            "message_failed",
            id,
            &[&m.recipient],
            reason,
        ));
    }
    out
}

async fn tasks_since(h: &ManagerProxy<'_>, since_ms: i64) -> Result<Vec<Event>> {
    let list = h.tasks("", false).await.map_err(hub::explain)?;
    let list: Vec<Task> =
        serde_json::from_str(&list).context("the hub's tasks are not as expected")?;
    let mut out = Vec::new();
    for t in list.iter().filter(|t| t.updated_ms >= since_ms) {
        let task = h.task(t.id).await.map_err(hub::explain)?;
        let task: Task =
            serde_json::from_str(&task).context("the hub's task is not as expected")?;
        for c in task.history.iter().filter(|c| c.at_ms >= since_ms) {
            out.push(Event::at(
                c.at_ms,
                "task_changed",
                Some(t.id),
                &[&c.actor],
                &c.state,
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_message_is_queued_then_delivered() {
        let m = Message {
            id: 4,
            sender: "pm".into(),
            recipient: "dev".into(),
            created_ms: 10,
            delivered_ms: Some(25),
            state: "delivered".into(),
            ..Default::default()
        };
        let e = message_events(&m);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].kind, e[0].at_ms), ("message_queued", 10));
        assert_eq!((e[1].kind, e[1].at_ms), ("message_delivered", 25));
    }
}
