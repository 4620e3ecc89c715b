//! Alerts about what no supervisor can tell: an agent whose unit failed
//! (a crash loop that hit systemd's start limit, a broken definition), and
//! a check-in whose timer did not fire. Looked at every few seconds with
//! one call to systemd and one read of the store; each is told once, until
//! it is over.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use torch_core::AgentName;

use crate::hub::{blocking, now_ms, Hub};

/// How often to look.
const ROUND: Duration = Duration::from_secs(5);

/// A check-in this late past its due time missed it (its timer fires
/// within a second).
const MISSED_AFTER_MS: i64 = 60_000;

/// What was already told.
#[derive(Default)]
struct Told {
    failed: HashSet<String>,
    missed: HashSet<(i64, i64)>,
}

/// Looks every [`ROUND`] until the hub stops.
pub async fn run(hub: Arc<Hub>) {
    let mut told = Told::default();
    let mut ticks = tokio::time::interval(ROUND);
    loop {
        ticks.tick().await;
        failed_units(&hub, &mut told).await;
        missed_checkins(&hub, &mut told).await;
    }
}

async fn failed_units(hub: &Hub, told: &mut Told) {
    let Ok(units) = hub.systemd.list("torch-agent@*.service").await else {
        return;
    };
    let failed: HashSet<String> = units
        .iter()
        .filter(|u| u.active == "failed")
        .filter_map(|u| AgentName::from_unit(&u.name).map(|n| n.to_string()))
        .collect();
    for agent in failed.difference(&told.failed) {
        let text = format!(
            "agent {agent} failed: its unit stopped for good (a crash loop stops after 5 starts in 2 minutes, a broken definition at once); see why with `torch logs {agent}`, then `torch start {agent}`"
        );
        tracing::warn!(torch_alert = 1, "{text}");
        hub.events.alert(agent, &text).await;
    }
    told.failed = failed;
}

async fn missed_checkins(hub: &Arc<Hub>, told: &mut Told) {
    let h = Arc::clone(hub);
    let read = blocking(move || Ok(h.store.active_schedules(None)?)).await;
    let Ok(schedules) = read else {
        return;
    };
    let now = now_ms();
    let missed: HashSet<(i64, i64)> = schedules
        .iter()
        .filter_map(|s| Some((s.id, s.due_ms?)))
        .filter(|(_, due)| now - due > MISSED_AFTER_MS)
        .collect();
    for &(id, due) in missed.difference(&told.missed) {
        let Some(s) = schedules.iter().find(|s| s.id == id) else {
            continue;
        };
        let late = (now - due) / 1000;
        let text = format!(
            "check-in #{id} of {} is {late} s past its time and did not fire; its timer is torch-checkin@*.timer (systemctl list-timers 'torch-checkin@*'); restarting the hub arms it again",
            s.agent
        );
        tracing::warn!(torch_alert = 1, "{text}");
        hub.events.alert(&s.agent, &text).await;
    }
    told.missed = missed;
}
