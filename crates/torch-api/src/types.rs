//! The JSON answers of `Status`, `Agents`, `Messages`/`Inbox`,
//! `Schedules` and the task methods, and the JSON requests of `SpawnAgent`
//! and `TaskAdd`.
//!
//! These are the API's own types, not the store's rows: the store may
//! change its tables without changing what clients read. Every field but
//! the identifying ones has a serde default, so a client reads an older
//! hub's answer, and unknown fields from a newer hub are ignored.

use serde::{Deserialize, Serialize};

/// `Status()`: the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The schema version of this answer (1).
    #[serde(default)]
    pub version: u32,
    /// Every defined agent, broken definitions included.
    #[serde(default)]
    pub agents: Vec<AgentStatus>,
}

/// One agent in [`FleetStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentStatus {
    /// Its name.
    pub name: String,
    /// The node it runs on, when the hub is one of a cluster; empty on a
    /// lone hub.
    pub node: String,
    /// orchestrator, project-manager, engineer...
    pub role: String,
    /// The agent above it.
    pub parent: Option<String>,
    /// How its screen is read (claude, shell...).
    pub profile: String,
    /// `torch-agent@NAME.service`.
    pub unit: String,
    /// systemd's ActiveState.
    pub active_state: String,
    /// systemd's SubState.
    pub sub_state: String,
    /// What the supervisor reads on its screen (idle, working...), when it answers.
    pub agent_state: Option<String>,
    /// Seconds since its last output, when the supervisor answers.
    pub idle_secs: Option<u64>,
    /// How long it has been asking or in trouble, in seconds (0: neither).
    pub waiting_secs: u64,
    /// What it asks, when its CLI said (a permission request).
    pub question: String,
    /// What decided `agent_state`: `screen`, or the CLI's last hook event
    /// and its age (`hook Stop 3 s ago`), or a limit (`limit: continues in
    /// 120 s`); empty when the supervisor does not answer.
    pub signal: String,
    /// What the screen alone reads, when the supervisor answers.
    pub screen_state: Option<String>,
    /// Tokens its conversation used, when its CLI records them.
    pub tokens: Option<Tokens>,
    /// What its CLI says its session has cost so far, in millionths of a
    /// US dollar, when it says (Claude Code's own price table).
    pub cost_microusd: Option<u64>,
    /// Messages waiting for it.
    pub queued: i64,
    /// Messages delivered to it.
    pub delivered: i64,
    /// Messages to it given up.
    pub failed: i64,
    /// Its definition file.
    pub definition: String,
    /// Why the definition cannot be used; None when it can.
    pub definition_error: Option<String>,
    /// What it can do, from its definition.
    pub skills: Vec<String>,
    /// Tasks it takes at once, from its definition (0 from a hub before
    /// skills).
    pub capacity: u32,
    /// The tasks it holds (assigned, working or in review), by id.
    pub tasks: Vec<i64>,
    /// Those of them whose stall its parent was told of.
    pub stalled_tasks: Vec<i64>,
}

/// `Agents()`: who is in the fleet and what each can do, for every caller
/// (an agent looking for a peer sees the whole fleet here, unlike in
/// `Status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// The schema version of this answer (1).
    #[serde(default)]
    pub version: u32,
    /// Every agent whose definition is usable, by name.
    #[serde(default)]
    pub agents: Vec<AgentEntry>,
}

/// One agent in [`Directory`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentEntry {
    /// Its name.
    pub name: String,
    /// The node it runs on, when the hub is one of a cluster; empty on a
    /// lone hub.
    pub node: String,
    /// orchestrator, project-manager, engineer...
    pub role: String,
    /// The agent above it.
    pub parent: Option<String>,
    /// What it can do.
    pub skills: Vec<String>,
    /// Tasks it takes at once.
    pub capacity: u32,
    /// What its supervisor reads (idle, working, asking, trouble, limited),
    /// or systemd's state when the supervisor does not answer (inactive,
    /// failed...).
    pub state: String,
}

/// `SpawnAgent(spec, brief, env)`: the new agent. Fields left out take
/// the defaults of `Spawn`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpawnSpec {
    /// The new agent's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The agent it reports to ("" for none: an orchestrator).
    pub parent: String,
    /// Its working directory, absolute.
    pub workdir: String,
    /// Its profile ("" for shell).
    pub profile: String,
    /// Its program and arguments (empty: the profile's default).
    pub command: Vec<String>,
    /// Who asks: `operator` or the calling agent.
    pub requester: String,
    /// What it can do.
    pub skills: Vec<String>,
    /// Tasks it takes at once (0: 1).
    pub capacity: u32,
    /// Work in a git worktree of its own, on the branch `torch/NAME`.
    pub worktree: bool,
    /// The node of a cluster to spawn it on ("": the hub's own).
    pub node: String,
}

/// `Pools()`: one pool (`[pools.NAME]` in torch.toml) as the hub last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// The pool's name.
    pub name: String,
    /// Members now.
    pub size: u32,
    /// Members it is going to.
    pub target: u32,
    /// Its bounds.
    pub min: u32,
    /// Its bounds.
    pub max: u32,
    /// Why the target is what it is.
    pub why: String,
}

/// Token counts of an agent's conversation, as the model API reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tokens {
    /// Input tokens billed at the full rate.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
}

/// One message in `Messages()` and `Inbox()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    /// Unique, increasing id; also the page cursor.
    pub id: i64,
    /// An agent or `operator` (`schedule-ID` for a check-in).
    pub sender: String,
    /// The agent it is for.
    pub recipient: String,
    /// The text as sent.
    pub body: String,
    /// `message` or `brief`.
    pub kind: String,
    /// When the hub stored it, Unix milliseconds.
    pub created_ms: i64,
    /// `queued`, `delivered` or `failed`.
    pub state: String,
    /// Deliveries tried and failed.
    pub attempts: i64,
    /// When it was delivered, Unix milliseconds.
    pub delivered_ms: Option<i64>,
    /// Why it failed, or the last delivery error.
    pub reason: Option<String>,
}

/// One check-in in `Schedules()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Schedule {
    /// Its id; its check-ins come from `schedule-ID`.
    pub id: i64,
    /// The agent it wakes.
    pub agent: String,
    /// `in`, `at`, `every` or `calendar`.
    pub kind: String,
    /// Seconds, a clock time or a calendar expression.
    pub spec: String,
    /// The spec as typed, when the hub kept it.
    pub typed: Option<String>,
    /// When it fires, as `torch schedule` spells it (`every 30m`).
    pub when: String,
    /// The note it delivers.
    pub note: String,
    /// Who set it.
    pub created_by: String,
    /// When it was set, Unix milliseconds.
    pub created_ms: i64,
    /// When it is next due, Unix milliseconds.
    pub due_ms: Option<i64>,
    /// How many times it fired.
    pub fired: i64,
    /// When it last fired, Unix milliseconds.
    pub last_fired_ms: Option<i64>,
    /// `active`, `done` or `cancelled`.
    pub state: String,
    /// Its timer unit, when armed.
    pub timer: Option<String>,
    /// The next fire time systemd holds, Unix milliseconds.
    pub next_ms: Option<i64>,
}

/// `TaskAdd(spec)`: a new task. Fields left out take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSpec {
    /// One line saying what is to be done.
    pub title: String,
    /// What to do, in full.
    pub body: String,
    /// Skills an agent needs for it (all of them).
    pub skills: Vec<String>,
    /// The project it belongs to.
    pub project: String,
    /// Higher is taken first (-1000 to 1000; default 0).
    pub priority: i64,
    /// Tasks that must be done before this one can be taken.
    pub after: Vec<i64>,
    /// An agent to give it to at once ("" for none: it stays open).
    pub assign: String,
    /// Who opens it: `operator` or the calling agent.
    pub requester: String,
}

/// A task, in `Tasks()` and `Task(id)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Task {
    /// Its id.
    pub id: i64,
    /// One line.
    pub title: String,
    /// What to do.
    pub body: String,
    /// Skills needed.
    pub skills: Vec<String>,
    /// Its project.
    pub project: String,
    /// Higher first.
    pub priority: i64,
    /// `open`, `assigned`, `working`, `review`, `blocked`, `done` or
    /// `cancelled`.
    pub state: String,
    /// The agent holding it.
    pub owner: Option<String>,
    /// Who opened it.
    pub created_by: String,
    /// When it was opened, Unix milliseconds.
    pub created_ms: i64,
    /// When it last changed, Unix milliseconds.
    pub updated_ms: i64,
    /// Tasks it waits for that are not done yet: it cannot be taken
    /// before they are.
    pub waiting_on: Vec<i64>,
    /// Nudges its holder got, idle with it, since it last changed.
    pub nudges: u32,
    /// Whether its holder's parent was told it stalled.
    pub stalled: bool,
    /// Who was last asked to review it.
    pub reviewer: Option<String>,
    /// Every change, oldest first (in `Task(id)` only).
    pub history: Vec<TaskChange>,
}

/// One change of a [`Task`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskChange {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Who: an agent or `operator`.
    pub actor: String,
    /// The state it entered.
    pub state: String,
    /// What they said: a summary, a reason.
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_and_newer_answers_are_read() {
        // A hub that knows fewer fields, and one that knows more.
        let old = r#"{"version":1,"agents":[{"name":"dev","role":"engineer","unit":"torch-agent@dev.service"}]}"#;
        let s: FleetStatus = serde_json::from_str(old).unwrap();
        assert_eq!(s.agents[0].name, "dev");
        assert_eq!(s.agents[0].definition_error, None);
        let newer = r#"[{"id":3,"sender":"operator","recipient":"dev","body":"hi","state":"queued","cost":1}]"#;
        let m: Vec<Message> = serde_json::from_str(newer).unwrap();
        assert_eq!((m[0].id, m[0].state.as_str()), (3, "queued"));
    }
}
