//! `torch events`: what happens in the fleet as it happens, from the hub's
//! D-Bus signals (no polling): messages queued, delivered and failed,
//! agents spawned and retired, their states, alerts, check-ins fired,
//! tasks changing state. A line each, or JSON.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use crate::hub;

/// One event as `torch events --json` prints it (a line each).
#[derive(Debug, Serialize)]
pub struct Event {
    /// When this command received it, Unix milliseconds; for one read back
    /// from the store (`--since`), when it happened there.
    pub at_ms: i64,
    /// `message_queued`, `message_delivered`, `message_failed`,
    /// `fleet_changed`, `agent_changed`, `alert`, `checkin_fired`,
    /// `pool_changed` or `task_changed`.
    pub kind: &'static str,
    /// The message's, task's or check-in's id (none for an agent's changes
    /// and alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    /// The agents concerned: sender then recipient, the agent spawned or
    /// retired, or who moved the task; for a pool, its name.
    agents: Vec<String>,
    /// What changed: the fleet change, the agent's or task's new state, a
    /// failure's reason, the alert's text, a check-in's message id.
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
    /// For an agent's new state: what decided it (`hook Stop`, `screen`, a
    /// limit) or what it asks.
    #[serde(skip_serializing_if = "String::is_empty")]
    why: String,
}

impl Event {
    fn new(kind: &'static str, id: Option<i64>, agents: &[&str], detail: &str) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Self::at(now, kind, id, agents, detail)
    }

    /// An event that happened at `at_ms`.
    pub fn at(
        at_ms: i64,
        kind: &'static str,
        id: Option<i64>,
        agents: &[&str],
        detail: &str,
    ) -> Self {
        Event {
            at_ms,
            kind,
            id,
            agents: agents.iter().map(|a| a.to_string()).collect(),
            detail: detail.to_string(),
            why: String::new(),
        }
    }

    /// What identifies an event the store also holds, to show it once
    /// when it is both read back and heard live.
    fn stored_key(&self) -> Option<(&'static str, i64, String)> {
        match self.kind {
            "message_queued" | "message_delivered" | "message_failed" | "task_changed" => {
                Some((self.kind, self.id?, self.detail.clone()))
            }
            _ => None,
        }
    }

    fn names(&self, agent: Option<&str>) -> bool {
        agent.is_none_or(|a| self.agents.iter().any(|x| x == a))
    }

    fn print(&self, json: bool) -> Result<()> {
        if json {
            println!("{}", serde_json::to_string(self)?);
        } else {
            println!("{}", self.line());
        }
        Ok(())
    }

    fn line(&self) -> String {
        let id = self.id.map_or(String::new(), |i| format!("#{i}"));
        let who = self.agents.join(" -> ");
        match self.kind {
            "message_queued" => format!("message {id} queued: {who}"),
            "message_delivered" => format!("message {id} delivered to {who}"),
            "message_failed" => format!("message {id} to {who} failed: {}", self.detail),
            "fleet_changed" => format!("agent {who} {}", self.detail),
            "agent_changed" if self.why.is_empty() => format!("agent {who} is {}", self.detail),
            "agent_changed" => format!("agent {who} is {} ({})", self.detail, self.why),
            "alert" => format!("ALERT {who}: {}", self.detail),
            "checkin_fired" => format!("check-in {id} of {who} fired: {}", self.detail),
            "pool_changed" => format!("pool {who}: {}", self.detail),
            _ => format!("task {id} {} by {who}", self.detail),
        }
    }
}

/// The Unix ms `ago` (a duration: 90s, 15m, 2h) before now.
pub fn since_ms(ago: &str) -> Result<i64> {
    let ago = torch_core::schedule::parse_duration(ago).map_err(anyhow::Error::msg)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(now - ago.as_millis() as i64)
}

/// Boxed, so the signal streams go in one `select_all`.
type Events = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;

/// Prints events until interrupted (or the bus goes away); only those
/// naming `agent`, when given; first those since `since_ms`, read back
/// from the store.
pub async fn watch(agent: Option<String>, json: bool, since_ms: Option<i64>) -> Result<()> {
    let h = hub::connect().await?;
    let streams: Vec<Events> = vec![
        Box::pin(
            h.receive_message_queued()
                .await
                .map_err(hub::explain)?
                .filter_map(|s| async move {
                    let a = s.args().ok()?;
                    Some(Event::new(
                        "message_queued",
                        Some(a.id),
                        &[a.from, a.to],
                        "",
                    ))
                }),
        ),
        Box::pin(
            h.receive_message_delivered()
                .await
                .map_err(hub::explain)?
                .filter_map(|s| async move {
                    let a = s.args().ok()?;
                    Some(Event::new("message_delivered", Some(a.id), &[a.to], ""))
                }),
        ),
        Box::pin(
            h.receive_message_failed()
                .await
                .map_err(hub::explain)?
                .filter_map(|s| async move {
                    let a = s.args().ok()?;
                    Some(Event::new("message_failed", Some(a.id), &[a.to], a.reason))
                }),
        ),
        Box::pin(
            h.receive_fleet_changed()
                .await
                .map_err(hub::explain)?
                .filter_map(|s| async move {
                    let a = s.args().ok()?;
                    Some(Event::new("fleet_changed", None, &[a.agent], a.change))
                }),
        ),
        Box::pin(
            h.receive_agent_changed()
                .await
                .map_err(hub::explain)?
                .filter_map(|s| async move {
                    let a = s.args().ok()?;
                    let mut e = Event::new("agent_changed", None, &[a.agent], a.state);
                    e.why = a.detail.to_string();
                    Some(e)
                }),
        ),
        Box::pin(
            h.receive_alert()
                .await
                .map_err(hub::explain)?
                .filter_map(|s| async move {
                    let a = s.args().ok()?;
                    Some(Event::new("alert", None, &[a.agent], a.text))
                }),
        ),
        Box::pin(
            h.receive_checkin_fired()
                .await
                .map_err(hub::explain)?
                .filter_map(|s| async move {
                    let a = s.args().ok()?;
                    let detail = format!("message #{}", a.message);
                    Some(Event::new("checkin_fired", Some(a.id), &[a.agent], &detail))
                }),
        ),
        Box::pin(
            h.receive_pool_changed()
                .await
                .map_err(hub::explain)?
                .filter_map(|s| async move {
                    let a = s.args().ok()?;
                    let detail = format!("{} -> {} members: {}", a.size, a.target, a.why);
                    Some(Event::new("pool_changed", None, &[a.pool], &detail))
                }),
        ),
        Box::pin(
            h.receive_task_changed()
                .await
                .map_err(hub::explain)?
                .filter_map(|s| async move {
                    let a = s.args().ok()?;
                    Some(Event::new("task_changed", Some(a.id), &[a.actor], a.state))
                }),
        ),
    ];
    // Subscribed before reading back: nothing falls between the two, and
    // what is in both shows once.
    let mut shown = std::collections::HashSet::new();
    if let Some(since) = since_ms {
        for event in crate::replay::since(&h, since).await? {
            if event.names(agent.as_deref()) {
                event.print(json)?;
            }
            if let Some(key) = event.stored_key() {
                shown.insert(key);
            }
        }
    }
    eprintln!("torch: watching the hub's events (Ctrl-C to stop)");
    let mut all = futures_util::stream::select_all(streams);
    while let Some(event) = all.next().await {
        if !event.names(agent.as_deref()) {
            continue;
        }
        if event.stored_key().is_some_and(|k| shown.remove(&k)) {
            continue;
        }
        event.print(json)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_happened() {
        let e = Event::new("message_queued", Some(3), &["pm", "dev1"], "");
        assert_eq!(e.line(), "message #3 queued: pm -> dev1");
        let e = Event::new("task_changed", Some(7), &["dev1"], "done");
        assert_eq!(e.line(), "task #7 done by dev1");
        let e = Event::new("fleet_changed", None, &["dev2"], "spawned");
        assert_eq!(e.line(), "agent dev2 spawned");
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains("\"kind\":\"fleet_changed\"") && !json.contains("\"id\""),
            "{json}"
        );
    }
}
