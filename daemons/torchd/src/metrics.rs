//! The hub's metrics in the Prometheus (OpenMetrics) text format, for
//! `Metrics()` and so for `torch-metrics`: per agent, its state, queue,
//! deliveries and their latency, restarts, last output, tokens and cost;
//! for the fleet, agents by state, messages waiting, the store's size and
//! the check-ins pending.
//!
//! Everything but the latency is read when asked (the store, systemd, the
//! supervisors), so a scrape shows the fleet as it is and nothing is kept
//! that could drift. The latency of each delivery is only known when it
//! happens, so the hub observes it then (see [`Latency`]); it starts over
//! when the hub does, as Prometheus expects of a histogram.

use std::sync::Arc;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use torch_api::AgentStatus;

use crate::error::HubError;
use crate::hub::{blocking, now_ms, Hub};
use crate::service;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabel {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentStateLabel {
    agent: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabel {
    agent: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The states an agent shows in `torch_agent_state`: what its supervisor
/// reads, or `down` when no supervisor answers (the agent is not running).
const STATES: [&str; 7] = [
    "idle", "working", "asking", "trouble", "limited", "unknown", "down",
];

/// A histogram of delivery latencies per agent.
type LatencyFamily = Family<AgentLabel, Histogram, fn() -> Histogram>;

/// From 50 ms (a message typed into an idle agent) to about 7 minutes
/// (one held while its agent worked), doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

/// The time from a message's storing to its confirmed delivery, per
/// recipient, since the hub started.
#[derive(Clone)]
pub struct Latency(LatencyFamily);

impl Default for Latency {
    fn default() -> Self {
        Latency(Family::new_with_constructor(latency_histogram))
    }
}

impl Latency {
    /// A message stored at `queued_ms` (Unix ms) reached `agent` now.
    pub fn observe(&self, agent: &str, queued_ms: i64) {
        let secs = (now_ms() - queued_ms).max(0) as f64 / 1000.0;
        let label = AgentLabel {
            agent: agent.to_string(),
        };
        self.0.get_or_create(&label).observe(secs);
    }
}

/// What the store and the check-ins add to the agents' rows.
struct FleetFacts {
    /// Check-ins set and not ended.
    checkins_pending: i64,
    /// How long the most overdue check-in is past its time (0: none).
    checkins_late_secs: f64,
    /// The store's files (the database and its write-ahead log).
    store_bytes: i64,
}

/// The metrics as the text the format defines.
pub async fn render(hub: &Arc<Hub>) -> Result<String, HubError> {
    // This node's agents only: each node's hub is scraped for its own.
    let agents = service::local_status(hub, None).await?;
    let mut restarts = Vec::with_capacity(agents.len());
    for a in &agents {
        restarts.push(hub.systemd.restarts(&a.unit).await.unwrap_or(0));
    }
    let h = Arc::clone(hub);
    let facts = blocking(move || fleet_facts(&h)).await?;
    let mut registry = Registry::default();
    register_agents(&mut registry, &agents, &restarts);
    register_fleet(&mut registry, &agents, &facts);
    registry.register(
        "torch_delivery_latency_seconds",
        "Time from a message's storing to its confirmed delivery, since the hub started",
        hub.events.latency.0.clone(),
    );
    let mut out = String::new();
    encode(&mut out, &registry)
        .map_err(|e| HubError::Internal(format!("could not write the metrics: {e}")))?;
    Ok(out)
}

fn fleet_facts(hub: &Hub) -> Result<FleetFacts, HubError> {
    let now = now_ms();
    let schedules = hub.store.active_schedules(None)?;
    let late_ms = schedules
        .iter()
        .filter_map(|s| s.due_ms)
        .map(|due| now - due)
        .max()
        .unwrap_or(0)
        .max(0);
    let db = hub.state_dir.join("torch.db");
    let files = [db.clone(), db.with_extension("db-wal")];
    let store_bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len() as i64)
        .sum();
    Ok(FleetFacts {
        checkins_pending: schedules.len() as i64,
        checkins_late_secs: late_ms as f64 / 1000.0,
        store_bytes,
    })
}

/// A gauge family filled with one value per label set.
fn gauges<L>(values: impl IntoIterator<Item = (L, i64)>) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    for (label, v) in values {
        family.get_or_create(&label).set(v);
    }
    family
}

/// A counter family filled with one total per label set.
fn counters<L>(values: impl IntoIterator<Item = (L, u64)>) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    for (label, v) in values {
        family.get_or_create(&label).inc_by(v);
    }
    family
}

fn agent(a: &AgentStatus) -> AgentLabel {
    AgentLabel {
        agent: a.name.clone(),
    }
}

/// The state an agent shows: its supervisor's word, or `down`.
fn state_of(a: &AgentStatus) -> &str {
    a.agent_state
        .as_deref()
        .filter(|s| STATES.contains(s))
        .unwrap_or("down")
}

fn register_agents(reg: &mut Registry, agents: &[AgentStatus], restarts: &[u32]) {
    let states = agents.iter().flat_map(|a| {
        STATES.iter().map(move |s| {
            let label = AgentStateLabel {
                agent: a.name.clone(),
                state: s.to_string(),
            };
            (label, i64::from(state_of(a) == *s))
        })
    });
    reg.register(
        "torch_agent_state",
        "1 for the state the agent is in (down: its supervisor does not answer), 0 for the others",
        gauges(states),
    );
    let queued = agents.iter().map(|a| (agent(a), a.queued));
    reg.register(
        "torch_agent_queue_depth",
        "Messages waiting for the agent",
        gauges(queued),
    );
    let delivered = agents.iter().map(|a| (agent(a), a.delivered.max(0) as u64));
    reg.register(
        "torch_agent_messages_delivered",
        "Messages delivered to the agent, as the store counts them",
        counters(delivered),
    );
    let failed = agents.iter().map(|a| (agent(a), a.failed.max(0) as u64));
    reg.register(
        "torch_agent_messages_failed",
        "Messages to the agent given up, as the store counts them",
        counters(failed),
    );
    let restarted = agents
        .iter()
        .zip(restarts)
        .map(|(a, &n)| (agent(a), u64::from(n)));
    reg.register(
        "torch_agent_restarts",
        "Restarts systemd made of the agent's unit (a crash, a hang) since it was last started by hand",
        counters(restarted),
    );
    let quiet = agents
        .iter()
        .filter_map(|a| Some((agent(a), a.idle_secs? as i64)));
    reg.register(
        "torch_agent_last_output_age_seconds",
        "Seconds since the agent's screen last changed, while it runs",
        gauges(quiet),
    );
    register_usage(reg, agents);
}

/// Tokens and cost, for the agents whose CLI says them.
fn register_usage(reg: &mut Registry, agents: &[AgentStatus]) {
    let tokens = agents.iter().flat_map(|a| {
        let t = a.tokens.unwrap_or_default();
        let kinds = [
            ("input", t.input),
            ("output", t.output),
            ("cache_read", t.cache_read),
            ("cache_write", t.cache_write),
        ];
        let label = move |kind: &str| TokenLabel {
            agent: a.name.clone(),
            kind: kind.to_string(),
        };
        a.tokens
            .is_some()
            .then(|| kinds.map(|(k, n)| (label(k), n)))
            .into_iter()
            .flatten()
    });
    reg.register(
        "torch_agent_tokens",
        "Tokens the agent's conversation used, by kind, where its CLI records them",
        counters(tokens),
    );
    let cost = Family::<AgentLabel, Counter<f64, AtomicU64>>::default();
    for a in agents {
        if let Some(micro) = a.cost_microusd {
            cost.get_or_create(&agent(a))
                .inc_by(micro as f64 / 1_000_000.0);
        }
    }
    reg.register(
        "torch_agent_cost_usd",
        "What the agent's session cost so far, in US dollars, where its CLI says",
        cost,
    );
}

fn register_fleet(reg: &mut Registry, agents: &[AgentStatus], facts: &FleetFacts) {
    let by_state = STATES.iter().map(|s| {
        let n = agents.iter().filter(|a| state_of(a) == *s).count();
        let label = StateLabel {
            state: s.to_string(),
        };
        (label, n as i64)
    });
    reg.register("torch_agents", "Agents defined, by state", gauges(by_state));
    let queued: i64 = agents.iter().map(|a| a.queued).sum();
    reg.register(
        "torch_messages_queued",
        "Messages waiting, for every agent",
        gauge(queued),
    );
    reg.register(
        "torch_store_bytes",
        "Size of the hub's store (the database and its write-ahead log)",
        gauge(facts.store_bytes),
    );
    reg.register(
        "torch_checkins_pending",
        "Check-ins set and not ended",
        gauge(facts.checkins_pending),
    );
    let late = Gauge::<f64, AtomicU64>::default();
    late.set(facts.checkins_late_secs);
    reg.register(
        "torch_checkins_late_seconds",
        "How long the most overdue check-in is past its time (0: none is)",
        late,
    );
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, state: Option<&str>) -> AgentStatus {
        AgentStatus {
            name: name.into(),
            unit: format!("torch-agent@{name}.service"),
            agent_state: state.map(str::to_string),
            queued: 2,
            delivered: 5,
            cost_microusd: Some(1_500_000),
            ..Default::default()
        }
    }

    #[test]
    fn agents_show_with_their_state_queue_and_cost() {
        let agents = [row("pm", Some("idle")), row("dev1", None)];
        let facts = FleetFacts {
            checkins_pending: 1,
            checkins_late_secs: 0.0,
            store_bytes: 4096,
        };
        let mut reg = Registry::default();
        register_agents(&mut reg, &agents, &[0, 3]);
        register_fleet(&mut reg, &agents, &facts);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        for line in [
            "# TYPE torch_agent_state gauge",
            "torch_agent_state{agent=\"pm\",state=\"idle\"} 1",
            "torch_agent_state{agent=\"dev1\",state=\"down\"} 1",
            "torch_agent_queue_depth{agent=\"pm\"} 2",
            "# TYPE torch_agent_messages_delivered counter",
            "torch_agent_messages_delivered_total{agent=\"pm\"} 5",
            "torch_agent_restarts_total{agent=\"dev1\"} 3",
            "torch_agent_cost_usd_total{agent=\"pm\"} 1.5",
            "torch_agents{state=\"down\"} 1",
            "torch_messages_queued 4",
            "torch_store_bytes 4096",
        ] {
            assert!(out.contains(line), "{line} not in:\n{out}");
        }
        assert!(
            !out.contains("torch_agent_state{agent=\"pm\",state=\"working\"} 1"),
            "{out}"
        );
    }

    #[test]
    fn latency_is_observed_per_agent() {
        let latency = Latency::default();
        latency.observe("pm", now_ms() - 300);
        let mut reg = Registry::default();
        reg.register("lat", "x", latency.0.clone());
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(out.contains("lat_count{agent=\"pm\"} 1"), "{out}");
        assert!(
            out.contains("lat_bucket{le=\"0.4\",agent=\"pm\"} 1"),
            "{out}"
        );
    }
}
