//! What `torch top` shows: the fleet as a tree, each agent's state, queue,
//! last output and tasks, which agent is selected, what is being typed.

use std::collections::BTreeMap;
use std::time::Instant;

use torch_api::{AgentStatus, FleetStatus};

/// One line of the tree.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    /// Its depth in the tree (0: no parent).
    pub depth: usize,
    /// What its supervisor reads, or `down`.
    pub state: String,
    /// What decided the state, or the question asked.
    pub why: String,
    pub queued: i64,
    /// Seconds since its last output, when the status was read.
    pub quiet_secs: Option<u64>,
    pub tasks: Vec<i64>,
}

impl Row {
    fn of(a: &AgentStatus, depth: usize) -> Row {
        Row {
            name: a.name.clone(),
            depth,
            state: a.agent_state.clone().unwrap_or_else(|| "down".into()),
            why: if a.question.is_empty() {
                a.signal.clone()
            } else {
                a.question.clone()
            },
            queued: a.queued,
            quiet_secs: a.idle_secs,
            tasks: a.tasks.clone(),
        }
    }
}

/// What the keys act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Moving in the tree.
    Browse,
    /// Typing a message to the selected agent.
    Typing(String),
}

/// The whole view's state.
pub struct Model {
    pub rows: Vec<Row>,
    pub selected: usize,
    /// Whether the selected agent's screen, inbox and journal show.
    pub detail: bool,
    pub mode: Mode,
    /// The last thing done or gone wrong, for the bottom line.
    pub note: String,
    /// When the rows were read.
    pub read_at: Instant,
    /// The selected agent's screen, inbox and journal, when shown.
    pub screen: String,
    pub inbox: Vec<String>,
    pub journal: Vec<String>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            rows: Vec::new(),
            selected: 0,
            detail: false,
            mode: Mode::Browse,
            note: String::new(),
            read_at: Instant::now(),
            screen: String::new(),
            inbox: Vec::new(),
            journal: Vec::new(),
        }
    }
}

impl Model {
    /// Takes a fresh status, keeping the selection on the same agent.
    pub fn set_fleet(&mut self, fleet: &FleetStatus) {
        let keep = self.selected_name().map(str::to_string);
        self.rows = tree(&fleet.agents);
        self.read_at = Instant::now();
        self.selected = keep
            .and_then(|n| self.rows.iter().position(|r| r.name == n))
            .unwrap_or(0)
            .min(self.rows.len().saturating_sub(1));
    }

    /// An agent's new state, as its supervisor said.
    pub fn set_state(&mut self, agent: &str, state: &str, why: &str) {
        if let Some(r) = self.rows.iter_mut().find(|r| r.name == agent) {
            r.state = state.to_string();
            r.why = why.to_string();
            if state == "working" {
                r.quiet_secs = Some(0);
            }
        }
    }

    pub fn selected_name(&self) -> Option<&str> {
        self.rows.get(self.selected).map(|r| r.name.as_str())
    }

    pub fn up(&mut self) {
        self.selected = self.selected.saturating_sub(1);
    }

    pub fn down(&mut self) {
        if self.selected + 1 < self.rows.len() {
            self.selected += 1;
        }
    }
}

/// The agents in tree order: each after its parent, siblings by name; an
/// agent whose parent is not in the fleet is a root.
pub fn tree(agents: &[AgentStatus]) -> Vec<Row> {
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    let mut children: BTreeMap<Option<&str>, Vec<&AgentStatus>> = BTreeMap::new();
    for a in agents {
        let parent = a.parent.as_deref().filter(|p| names.contains(p));
        children.entry(parent).or_default().push(a);
    }
    for siblings in children.values_mut() {
        siblings.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut out = Vec::new();
    // Iterative, with a bound: a cycle of parents in hand-written
    // definitions cannot loop.
    let mut stack: Vec<(&AgentStatus, usize)> = children
        .get(&None)
        .map(|v| v.iter().rev().map(|a| (*a, 0)).collect())
        .unwrap_or_default();
    while let Some((a, depth)) = stack.pop() {
        if out.len() >= agents.len() {
            break;
        }
        out.push(Row::of(a, depth));
        if let Some(kids) = children.get(&Some(a.name.as_str())) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, parent: Option<&str>) -> AgentStatus {
        AgentStatus {
            name: name.into(),
            parent: parent.map(str::to_string),
            agent_state: Some("idle".into()),
            ..Default::default()
        }
    }

    #[test]
    fn children_follow_their_parent() {
        let fleet = [
            agent("dev2", Some("pm")),
            agent("pm", Some("boss")),
            agent("boss", None),
            agent("dev1", Some("pm")),
            agent("orphan", Some("gone")),
        ];
        let rows = tree(&fleet);
        let got: Vec<(&str, usize)> = rows.iter().map(|r| (r.name.as_str(), r.depth)).collect();
        assert_eq!(
            got,
            [
                ("boss", 0),
                ("pm", 1),
                ("dev1", 2),
                ("dev2", 2),
                ("orphan", 0)
            ]
        );
    }

    #[test]
    fn the_selection_stays_on_its_agent() {
        let mut m = Model::default();
        m.set_fleet(&FleetStatus {
            version: 1,
            agents: vec![agent("a", None), agent("b", None)],
        });
        m.down();
        assert_eq!(m.selected_name(), Some("b"));
        m.set_fleet(&FleetStatus {
            version: 1,
            agents: vec![agent("0", None), agent("a", None), agent("b", None)],
        });
        assert_eq!(m.selected_name(), Some("b"));
        m.set_state("b", "working", "hook UserPromptSubmit");
        assert_eq!(m.rows[2].state, "working");
    }
}
