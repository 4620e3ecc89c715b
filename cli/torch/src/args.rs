//! The command line's definition, apart so the man pages and completions
//! (`torch generate-docs`) come from the same source as the parser.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "torch",
    version,
    about = "Run and talk to a fleet of AI coding agents supervised by systemd"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Send a message to an agent through the hub (stored, then delivered in order).
    ///
    /// The sender is $TORCH_AGENT when an agent calls from its pane, else `operator`.
    Send {
        /// The agent.
        name: String,
        /// The message; `-` reads it from standard input (one trailing newline dropped).
        text: String,
        /// Wait until the message is confirmed on the agent's screen.
        #[arg(long)]
        wait: bool,
        /// Bypass the hub: type it now through the agent's supervisor (not
        /// stored; root only).
        #[arg(long)]
        direct: bool,
    },
    /// Answer the question an agent asks on screen (a permission prompt):
    /// yes, no, or the number of a choice
    Answer {
        /// The agent (the operator may answer for any; an agent for those
        /// below it).
        name: String,
        /// yes, no, or the number of a choice (1-9).
        choice: String,
    },
    /// Print the agent's screen.
    Capture {
        /// The agent.
        name: String,
        /// Lines of scrollback to include above the screen (implies --direct,
        /// so root only).
        #[arg(long, default_value_t = 0)]
        history: u32,
        /// Ask the agent's supervisor, not the hub (root only).
        #[arg(long)]
        direct: bool,
    },
    /// Create an agent: write its definition, queue its brief, start it.
    Spawn(SpawnArgs),
    /// Schedule a check-in: at the given time the note is sent to the agent
    /// through the hub, as a systemd timer that survives reboots.
    ///
    /// AGENT may be `self` from an agent's pane. Examples:
    /// `torch schedule self --in 15m --note "check the build"`,
    /// `torch schedule dev --every 30m --note "commit your work"`.
    #[command(group(clap::ArgGroup::new("when").required(true).args(["in_", "at", "every", "on_calendar"])))]
    Schedule {
        /// The agent, or `self`.
        agent: String,
        /// Once, after this long (90s, 15m, 1.5h, 1h30m, 2d).
        #[arg(long = "in", value_name = "DURATION")]
        in_: Option<String>,
        /// Once, at the next HH:MM[:SS] (local time).
        #[arg(long, value_name = "HH:MM")]
        at: Option<String>,
        /// Repeatedly, with this period (first after one period); at least
        /// `[schedules] min_interval` of torch.toml (default 1m).
        #[arg(long, value_name = "DURATION")]
        every: Option<String>,
        /// Repeatedly, on a systemd calendar expression (man systemd.time)
        /// whose elapses are at least `[schedules] min_interval` apart.
        #[arg(long, value_name = "EXPR")]
        on_calendar: Option<String>,
        /// What to tell the agent when it fires.
        #[arg(long)]
        note: String,
    },
    /// List active check-ins as they were set (`every 30m`) with their next
    /// fire time from systemd, in local time.
    Schedules {
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a check-in and its timer.
    Unschedule {
        /// The schedule's id (see `torch schedules`).
        id: i64,
    },
    /// The work ledger: open tasks, take them, report on them
    Task {
        #[command(subcommand)]
        action: TaskCmd,
    },
    /// The nodes of a cluster (docs/cluster.md).
    Node {
        #[command(subcommand)]
        action: NodeCmd,
    },
    /// Check torch.toml and its drop-ins.
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// Commit work in progress in every agent's project (what
    /// torch-autocommit.timer runs; see torch.toml [autocommit]).
    Autocommit {
        /// Say what would be committed, commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write man pages and shell completions into DIR (used when packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Output directory.
        dir: PathBuf,
    },
    /// Fire the check-ins that are due (what their timers run).
    #[command(hide = true)]
    FireDue,
    /// Give an agent you define in /etc/torch/agents its environment (an
    /// API key): FILE's KEY=VALUE lines go to /etc/torch/agents/NAME.env,
    /// root's alone (mode 0600), read by systemd when the agent starts.
    ///
    /// Run as root; restart the agent to apply. Agents spawned through the
    /// hub get theirs with `torch spawn --env-file`.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["file", "remove"])))]
    Env {
        /// The agent.
        name: String,
        /// The environment file to install (read literally: KEY=VALUE, # comments).
        file: Option<PathBuf>,
        /// Remove the agent's environment file instead.
        #[arg(long)]
        remove: bool,
    },
    /// Stop an agent, keep its final transcript, and remove it.
    Retire {
        /// The agent.
        name: String,
    },
    /// Why an agent reads the state it does: which signal decided it (its
    /// CLI's hooks or its screen) and when, what it waits for, its tokens.
    Explain {
        /// The agent.
        name: String,
    },
    /// Who is in the fleet and what each can do: name, role, state, skills
    /// (every agent sees the whole fleet here, to find a peer)
    Agents {
        /// Only agents with this skill; repeat for several (all needed).
        #[arg(long = "skill", value_name = "SKILL")]
        skills: Vec<String>,
        /// Only agents whose screen reads idle.
        #[arg(long)]
        idle: bool,
        /// Machine-readable output (schema in docs/dbus.md).
        #[arg(long)]
        json: bool,
    },
    /// What happens in the fleet, as it happens: messages queued,
    /// delivered and failed, agents spawned and retired, their states,
    /// alerts, check-ins fired, pools scaling, tasks moving (from the
    /// hub's signals; Ctrl-C stops)
    Events {
        /// Only events naming this agent.
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
        /// First what happened in this last while (90s, 15m, 2h), read
        /// back from the store: messages and tasks (states, alerts and
        /// check-ins fired show live only).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// One JSON object a line (schema in docs/dbus.md).
        #[arg(long)]
        json: bool,
    },
    /// A full-screen dashboard of the fleet: the tree with each agent's
    /// state, queue and last output; the selected agent's screen, inbox and
    /// journal; keys to send, answer, restart and attach (refreshed from
    /// the hub's signals)
    Top,
    /// The fleet's metrics as Prometheus reads them (the text
    /// torch-metrics.socket serves at /metrics; names in metrics.md)
    Metrics,
    /// The fleet as a tree, with unit state, agent state and queues.
    Status {
        /// Machine-readable output (schema in docs/dbus.md).
        #[arg(long)]
        json: bool,
    },
    /// Messages addressed to an agent.
    Inbox {
        /// The agent.
        name: String,
        /// At most this many (up to 1000), newest last.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Only messages older than this id: the next page back is
        /// `--before` the first id shown.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        before: Option<i64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Message history, of one agent or of all.
    Messages {
        /// Only messages to or from this agent.
        #[arg(long)]
        agent: Option<String>,
        /// At most this many (up to 1000), newest last.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Only messages older than this id: the next page back is
        /// `--before` the first id shown.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        before: Option<i64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Attach your terminal to the agent's tmux session (detach with C-b d).
    Attach {
        /// The agent.
        name: String,
    },
    /// Show the agent's journal (its output and its supervisor's lines).
    Logs {
        /// The agent.
        name: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Show this many recent lines.
        #[arg(short = 'n', long)]
        lines: Option<u32>,
    },
    /// List agents: defined ones and running units, with their state.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Start an agent's unit and wait until it is ready.
    Start {
        /// The agent.
        name: String,
    },
    /// Stop an agent's unit.
    Stop {
        /// The agent.
        name: String,
    },
    /// Restart an agent's unit and wait until it is ready.
    Restart {
        /// The agent.
        name: String,
    },
}

/// `torch task` actions. From an agent's pane, the agent acts (the hub
/// knows it by its unit).
#[derive(Subcommand)]
pub enum TaskCmd {
    /// Open a task; prints its id
    Add {
        /// One line saying what is to be done.
        #[arg(long)]
        title: String,
        /// A file with what to do in full; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        body: Option<PathBuf>,
        /// A skill the agent needs; repeat for several (all needed).
        #[arg(long = "skill", value_name = "SKILL")]
        skills: Vec<String>,
        /// The project it belongs to.
        #[arg(long, default_value = "")]
        project: String,
        /// Higher is taken first (-1000 to 1000).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i64,
        /// A task that must be done first; repeat for several.
        #[arg(long = "after", value_name = "ID")]
        after: Vec<i64>,
        /// Give it at once to this agent (yourself or one below you).
        #[arg(long, value_name = "AGENT", default_value = "")]
        assign: String,
    },
    /// List tasks: open ones, and those of you and the agents below you
    List {
        /// Only tasks in this state (open, assigned, working, blocked,
        /// done, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only the tasks you hold.
        #[arg(long)]
        mine: bool,
        /// Machine-readable output (schema in docs/dbus.md).
        #[arg(long)]
        json: bool,
    },
    /// Show a task with its history
    Show {
        /// The task's id.
        id: i64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the tasks you hold (from an agent's pane)
    Current,
    /// Take an open task you have the skills and room for
    Claim {
        /// The task's id (of this node's ledger: another node's tasks are
        /// given, not claimed).
        id: TaskRef,
    },
    /// Say you are working on a task you hold
    Start {
        /// The task's id; NODE:ID for a task of another node of the
        /// cluster, as its assignment says.
        id: TaskRef,
    },
    /// Finish a task you hold; whoever gave it is told, with the summary
    Done {
        /// The task's id; NODE:ID for a task of another node of the
        /// cluster, as its assignment says.
        id: TaskRef,
        /// What you did.
        #[arg(long)]
        summary: String,
        /// The branch the work is on [default: your worktree's, if you
        /// have one]; the report then carries its changes (git diff --stat
        /// against the branch it tracks).
        #[arg(long)]
        branch: Option<String>,
        /// Files the work touched.
        #[arg(long, num_args = 1..)]
        files: Vec<String>,
    },
    /// Say a task you hold cannot go on; whoever gave it is told why
    Block {
        /// The task's id; NODE:ID for a task of another node of the
        /// cluster, as its assignment says.
        id: TaskRef,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Cancel a task you opened (or one opened below you)
    Cancel {
        /// The task's id; NODE:ID for a task of another node of the
        /// cluster, as its assignment says.
        id: TaskRef,
    },
    /// Pass a task you hold to another agent, or back to the ledger for an
    /// agent with another skill
    #[command(group(clap::ArgGroup::new("whom").required(true).args(["to", "skill"])))]
    Handoff {
        /// The task's id; NODE:ID for a task of another node of the
        /// cluster, as its assignment says.
        id: TaskRef,
        /// The agent to take it (with its skills, below whoever opened it).
        #[arg(long, value_name = "AGENT")]
        to: Option<String>,
        /// A skill it needs as well: it goes back open, for an agent who has it.
        #[arg(long, value_name = "SKILL")]
        skill: Option<String>,
        /// What the next one needs to know.
        #[arg(long)]
        note: String,
    },
    /// Ask an agent to review a task you hold; it finishes it or sends it back
    Review {
        /// The task's id; NODE:ID for a task of another node of the
        /// cluster, as its assignment says.
        id: TaskRef,
        /// The reviewer (below whoever opened the task).
        #[arg(long, value_name = "AGENT")]
        reviewer: String,
        /// What to look at.
        #[arg(long, default_value = "")]
        note: String,
        /// The branch to review [default: your worktree's, if you have
        /// one]; the reviewer gets its changes (git diff --stat).
        #[arg(long)]
        branch: Option<String>,
    },
    /// Send a task you review back to its holder as rework
    Reject {
        /// The task's id; NODE:ID for a task of another node of the
        /// cluster, as its assignment says.
        id: TaskRef,
        /// What to change.
        #[arg(long)]
        reason: String,
    },
}

/// A task: its id in this node's ledger, or `NODE:ID` in another node's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    /// The node whose ledger holds it ("" for this node's).
    pub node: String,
    /// Its id there.
    pub id: i64,
}

impl std::str::FromStr for TaskRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // As an assignment prints it: `Task #build-1:7`.
        let s = s.strip_prefix('#').unwrap_or(s);
        let (node, id) = match s.rsplit_once(':') {
            Some((node, id)) if !node.is_empty() => (node, id),
            _ => ("", s),
        };
        let id = id.trim_start_matches('#');
        match id.parse::<i64>() {
            Ok(id) if id > 0 => Ok(TaskRef {
                node: node.to_string(),
                id,
            }),
            _ => Err(format!(
                "{s:?} is not a task: give its number (12), or NODE:NUMBER for another node's (build-1:12)"
            )),
        }
    }
}

impl std::fmt::Display for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.node.as_str() {
            "" => write!(f, "#{}", self.id),
            node => write!(f, "{node}:{}", self.id),
        }
    }
}

/// `torch node` actions.
#[derive(Subcommand)]
pub enum NodeCmd {
    /// Forget a node gone for good (lost: its hub unheard for three
    /// heartbeats): its agent names are free again, the messages waiting
    /// for its agents fail on every node, and it leaves `torch status`.
    /// Nothing is undone on the node itself; if it comes back, it joins
    /// again.
    Forget {
        /// The node's name.
        node: String,
    },
}

/// `torch config` actions.
#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the files read and the configuration they make, merged table
    /// by table; a bad file is named with its line.
    Check,
}

/// What `torch spawn` asks for.
#[derive(clap::Args)]
pub struct SpawnArgs {
    /// The new agent's name.
    pub name: String,
    /// orchestrator, project-manager, engineer, developer, qa, devops, reviewer, researcher, writer.
    #[arg(long)]
    pub role: String,
    /// The agent it reports to (required except for an orchestrator).
    #[arg(long, default_value = "")]
    pub parent: String,
    /// Its working directory.
    #[arg(long)]
    pub workdir: PathBuf,
    /// claude, codex, gemini, opencode, aider or shell (default).
    #[arg(long, default_value = "")]
    pub profile: String,
    /// A file whose text is delivered as the agent's first message.
    #[arg(long)]
    pub brief: Option<PathBuf>,
    /// KEY=VALUE lines (an API key) for the agent's program, kept by the
    /// hub where only it and root read them, never in its command line.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// What it can do (rust, frontend, review...); repeat for several.
    #[arg(long = "skill", value_name = "SKILL")]
    pub skills: Vec<String>,
    /// How many tasks it takes at once [default: 1].
    #[arg(long)]
    pub capacity: Option<u32>,
    /// Work in a git worktree of the workdir's repository, on a branch
    /// torch/NAME made from the parent's branch; put away at retire, the
    /// branch kept.
    #[arg(long)]
    pub worktree: bool,
    /// In a cluster, the node to spawn it on, or `auto` for the node with
    /// the fewest agents (the operator only; its variables are given there,
    /// with `torch env`). Default: this one, or its parent's node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// The command to run instead of the profile's default.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[cfg(test)]
mod task_ref_tests {
    use super::TaskRef;

    #[test]
    fn a_task_is_a_number_or_a_node_and_a_number() {
        let here: TaskRef = "12".parse().unwrap();
        assert_eq!(
            (here.node.as_str(), here.id, here.to_string()),
            ("", 12, "#12".into())
        );
        let hash: TaskRef = "#12".parse().unwrap();
        assert_eq!(hash, here);
        let far: TaskRef = "build-1:7".parse().unwrap();
        assert_eq!("#build-1:7".parse::<TaskRef>().unwrap(), far);
        assert_eq!(
            (far.node.as_str(), far.id, far.to_string()),
            ("build-1", 7, "build-1:7".into())
        );
        for bad in ["", "x", "build-1:", ":3", "0", "build-1:-2"] {
            let e = bad.parse::<TaskRef>().unwrap_err();
            assert!(e.contains("NODE:NUMBER"), "{bad}: {e}");
        }
    }
}
