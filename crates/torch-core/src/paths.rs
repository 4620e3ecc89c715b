//! Where Torch keeps things on a host. One place, so tests and packaging agree.

use std::path::PathBuf;

use crate::AgentName;

/// Where the hub writes the definitions of agents it spawns (its state
/// directory, so they survive reboots and are not the admin's files).
pub const SPAWNED_AGENTS_DIR: &str = "/var/lib/torch/agents";

/// Directories searched for `NAME.toml` agent definitions, highest priority
/// first (systemd's order: admin, runtime, then spawned by the hub, then
/// vendor). `TORCH_AGENTS_PATH`
/// (colon-separated) replaces the list, for development.
pub fn agent_definition_dirs() -> Vec<PathBuf> {
    match std::env::var_os("TORCH_AGENTS_PATH") {
        Some(p) => std::env::split_paths(&p).collect(),
        None => vec![
            PathBuf::from("/etc/torch/agents"),
            PathBuf::from("/run/torch/agents"),
            PathBuf::from(SPAWNED_AGENTS_DIR),
            PathBuf::from("/usr/lib/torch/agents"),
        ],
    }
}

/// The base of every agent's runtime directory (`RuntimeDirectory=` in the
/// unit); `TORCH_RUNTIME_BASE` overrides it for development.
pub fn runtime_base() -> PathBuf {
    std::env::var_os("TORCH_RUNTIME_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/torch-agent"))
}

/// The agent's runtime directory: tmux socket, control socket, output FIFO.
/// Named by the unit instance (`RuntimeDirectory=torch-agent/%i`).
pub fn agent_runtime_dir(name: &AgentName) -> PathBuf {
    runtime_base().join(name.instance())
}

/// The parent of every agent's home (`StateDirectory=torch-agent/%i`).
pub const AGENT_HOMES: &str = "/var/lib/torch-agent";

/// What every agent's own system user is named by: `ta-` and the unit
/// instance (`User=ta-%i` in the unit).
pub const AGENT_USER_PREFIX: &str = "ta-";

/// The system user agent `name` runs as, made by `torch-agent-user@.service`
/// before its unit starts.
pub fn agent_user(name: &AgentName) -> String {
    format!("{AGENT_USER_PREFIX}{}", name.instance())
}

/// The agent's home and state directory, its user's alone (mode 0700).
pub fn agent_home(name: &AgentName) -> PathBuf {
    PathBuf::from(AGENT_HOMES).join(name.instance())
}

/// Where an agent with `worktree = true` works: a git worktree in its home.
pub fn agent_worktree(name: &AgentName) -> PathBuf {
    agent_home(name).join("worktree")
}

/// The branch of an agent's worktree.
pub fn agent_branch(name: &AgentName) -> String {
    format!("torch/{}", name.as_str())
}

/// Written by the hub while it retires `name`, in its own directory (which
/// agents read and cannot write): the supervisor, stopping, then puts the
/// agent's worktree away.
pub fn retiring_marker(name: &AgentName) -> PathBuf {
    PathBuf::from(SPAWNED_AGENTS_DIR).join(format!("{}.retiring", name.instance()))
}

/// The agent's state directory as the supervisor sees it: the first of
/// systemd's `$STATE_DIRECTORY`, else [`agent_home`].
pub fn agent_state_dir(name: &AgentName) -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|dirs| std::env::split_paths(&dirs).next())
        .unwrap_or_else(|| agent_home(name))
}

/// Where the supervisor of `name` keeps the ids of the messages it typed,
/// under the agent's state directory `base`. That directory is also the
/// agent's home, so the file sits in a directory of the supervisor's own
/// (not `.torch`, which PyTorch uses for its cache).
pub fn typed_ids_file(base: &std::path::Path, name: &AgentName) -> PathBuf {
    base.join(".torch-supervisor")
        .join(format!("{}.typed", name.instance()))
}

/// The user the hub runs as (`User=` of torch.service).
pub const HUB_USER: &str = "torch";
/// The group of operators: its members may call the hub, as the operator.
pub const OPERATOR_GROUP: &str = "torch";
/// The group every agent's user is in: its members may call the hub, as
/// the agent whose unit they run in.
pub const AGENTS_GROUP: &str = "torch-agent";
/// The user `torch-metrics.service` runs as: the hub answers it `Metrics`
/// and nothing else.
pub const METRICS_USER: &str = "torch-metrics";
/// The user `torch-web.service` runs as: the hub answers it `Status` and
/// nothing else.
pub const WEB_USER: &str = "torch-web";

/// The supervisor's control socket, in the agent's runtime directory.
pub const CONTROL_SOCKET: &str = "control.sock";
/// The agent's private tmux server's socket, in its runtime directory.
pub const TMUX_SOCKET: &str = "tmux.sock";
/// The tmux configuration the supervisor writes, in the runtime directory.
pub const TMUX_CONFIG: &str = "tmux.conf";
/// The FIFO the pane's output reaches the supervisor through.
pub const OUTPUT_FIFO: &str = "output.fifo";

/// The supervisor's control socket for `name`.
pub fn control_socket(name: &AgentName) -> PathBuf {
    agent_runtime_dir(name).join(CONTROL_SOCKET)
}

/// The agent's private tmux socket.
pub fn tmux_socket(name: &AgentName) -> PathBuf {
    agent_runtime_dir(name).join(TMUX_SOCKET)
}

/// The tmux configuration the supervisor writes for the agent's server.
pub fn tmux_config(name: &AgentName) -> PathBuf {
    agent_runtime_dir(name).join(TMUX_CONFIG)
}

/// Where admins put the environment file of an agent they define
/// (`torch env NAME FILE` writes it, root's alone, mode 0600).
pub const ADMIN_AGENTS_DIR: &str = "/etc/torch/agents";

/// The environment file the hub writes for an agent it spawns, beside its
/// definition: the hub's user and root (systemd) alone read it. Named by
/// the unit instance, as the unit's `EnvironmentFile=...%i.env` finds it
/// (`%I` would turn each `-` into `/`); for ASCII names that is the name.
pub fn spawned_env_file(name: &AgentName) -> PathBuf {
    PathBuf::from(SPAWNED_AGENTS_DIR).join(format!("{}.env", name.instance()))
}

/// The environment file an admin gives an agent (`torch env`), named as
/// [`spawned_env_file`].
pub fn admin_env_file(name: &AgentName) -> PathBuf {
    PathBuf::from(ADMIN_AGENTS_DIR).join(format!("{}.env", name.instance()))
}
