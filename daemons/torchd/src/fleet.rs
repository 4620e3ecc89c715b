//! The fleet: agents (from definition files), their hierarchy, the routing
//! policy, quotas, spawning and retiring.

use std::collections::BTreeMap;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use torch_core::config::Config;
use torch_core::envfile::{self, EnvVars};
use torch_core::policy::{self, Member, OPERATOR};
use torch_core::protocol::{self, Request, Response};
use torch_core::{paths, AgentDefinition, AgentName, Profile, Role};
use torch_systemd::{JobKind, Systemd};

/// One agent the hub knows.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Its name.
    pub name: AgentName,
    /// Its definition.
    pub def: AgentDefinition,
    /// Where the definition lives.
    pub path: PathBuf,
}

/// An agent whose definition file exists but cannot be used (a bad edit):
/// still an agent, so every command naming it says what is wrong.
#[derive(Debug, Clone)]
pub struct Broken {
    /// The file.
    pub path: PathBuf,
    /// Why it is unusable: one line starting with the file and, for a
    /// syntax error, its line.
    pub error: String,
}

/// The agents defined in the definition directories.
#[derive(Debug, Default)]
pub struct Fleet {
    /// Usable definitions, by name.
    pub agents: BTreeMap<String, Agent>,
    /// Broken definitions, by name.
    pub broken: BTreeMap<String, Broken>,
}

impl Fleet {
    /// Agent `name`, or why there is none to use.
    pub fn get(&self, name: &str) -> Result<&Agent, String> {
        if let Some(a) = self.agents.get(name) {
            return Ok(a);
        }
        Err(match self.broken.get(name) {
            Some(b) => format!(
                "agent {name:?} has a broken definition: {}; fix the file, then try again",
                b.error
            ),
            None => format!("no agent named {name:?}; see `torch status`"),
        })
    }

    /// How many agents are defined, broken ones included.
    pub fn len(&self) -> usize {
        self.agents.len() + self.broken.len()
    }
}

/// Every agent defined in `dirs`, by name (first directory wins), the
/// broken definitions apart.
pub fn read_agents(dirs: &[PathBuf]) -> Fleet {
    let mut out = Fleet::default();
    for (key, found) in torch_core::definition::discover(dirs) {
        match found.def {
            Ok(def) => {
                out.agents.insert(
                    key,
                    Agent {
                        name: found.name,
                        def,
                        path: found.path,
                    },
                );
            }
            Err(error) => {
                tracing::warn!("broken agent definition: {error}");
                out.broken.insert(
                    key,
                    Broken {
                        path: found.path,
                        error,
                    },
                );
            }
        }
    }
    out
}

/// The fleet as last read from the definition directories.
///
/// Reading and parsing every definition for every message made the hub the
/// bottleneck of a busy fleet (docs/benchmarks.md). A new read happens when
/// a directory's modification time changed (a definition added, removed or
/// replaced, as editors and the hub's own writes do) or the last read is
/// older than `max_age` (a file edited in place).
pub struct FleetCache {
    dirs: Vec<PathBuf>,
    max_age: Duration,
    last: Mutex<Option<Snapshot>>,
}

struct Snapshot {
    at: Instant,
    stamp: Vec<Option<SystemTime>>,
    fleet: Arc<Fleet>,
}

impl FleetCache {
    /// A cache over the definition directories `dirs`.
    pub fn new(dirs: Vec<PathBuf>, max_age: Duration) -> Self {
        Self {
            dirs,
            max_age,
            last: Mutex::new(None),
        }
    }

    /// The fleet; see [`read_agents`].
    pub fn agents(&self) -> Arc<Fleet> {
        // Taken before reading: a change made meanwhile shows next time.
        let stamp: Vec<Option<SystemTime>> = self
            .dirs
            .iter()
            .map(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok())
            .collect();
        if let Ok(last) = self.last.lock() {
            if let Some(s) = last.as_ref() {
                if s.stamp == stamp && s.at.elapsed() < self.max_age {
                    return Arc::clone(&s.fleet);
                }
            }
        }
        let fleet = Arc::new(read_agents(&self.dirs));
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Snapshot {
                at: Instant::now(),
                stamp,
                fleet: Arc::clone(&fleet),
            });
        }
        fleet
    }

    /// Forgets the last read (after the hub changed a definition itself).
    pub fn invalidate(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }
}

fn member(a: &Agent) -> Member<'_> {
    Member {
        name: a.name.as_str(),
        role: a.def.role,
        parent: a.def.parent.as_deref(),
    }
}

/// Checks that `from` may message `to` under `config`'s policy.
pub fn check_route<'f>(
    config: &Config,
    fleet: &'f Fleet,
    from: &str,
    to: &str,
) -> Result<&'f Agent, String> {
    let to_agent = fleet.get(to)?;
    let from_agent = if from == OPERATOR {
        None
    } else if let Some(b) = fleet.broken.get(from) {
        return Err(format!(
            "sender {from:?} has a broken definition: {}; fix the file",
            b.error
        ));
    } else {
        Some(fleet.agents.get(from).ok_or_else(|| format!("unknown sender {from:?}: not an agent of this fleet (an admin at a shell sends as `operator`)"))?)
    };
    policy::check(
        config.policy.mode,
        from_agent.map(member).as_ref(),
        &member(to_agent),
    )?;
    Ok(to_agent)
}

/// Checks that a message from `sender`, an agent of another node as that
/// node publishes it (`None`: the operator there), may reach `to`, an
/// agent of this node, under this node's policy.
pub fn check_route_from_node(
    config: &Config,
    fleet: &Fleet,
    sender: Option<&torch_cluster::RemoteAgent>,
    to: &str,
) -> Result<(), String> {
    let to_agent = fleet.get(to)?;
    let from = sender.map(remote_member).transpose()?;
    policy::check(config.policy.mode, from.as_ref(), &member(to_agent))
}

/// Checks that `from`, an agent of this node or the operator, may message
/// `to`, an agent of another node as it publishes it.
pub fn check_route_to_node(
    config: &Config,
    fleet: &Fleet,
    from: &str,
    to: &torch_cluster::RemoteAgent,
) -> Result<(), String> {
    let from_agent = match from {
        OPERATOR => None,
        name => Some(fleet.agents.get(name).ok_or_else(|| {
            format!("unknown sender {name:?}: not an agent of this node (an admin at a shell sends as `operator`)")
        })?),
    };
    policy::check(
        config.policy.mode,
        from_agent.map(member).as_ref(),
        &remote_member(to)?,
    )
}

fn remote_member(a: &torch_cluster::RemoteAgent) -> Result<Member<'_>, String> {
    Ok(Member {
        name: a.name.as_str(),
        role: a.role.parse().map_err(|_| {
            format!(
                "agent {} has a role this node does not know: {}",
                a.name, a.role
            )
        })?,
        parent: a.parent.as_deref(),
    })
}

fn depth(fleet: &Fleet, name: &str) -> usize {
    let mut d = 0;
    let mut cur = Some(name.to_string());
    while let Some(n) = cur {
        d += 1;
        if d > 64 {
            break;
        }
        cur = fleet.agents.get(&n).and_then(|a| a.def.parent.clone());
    }
    d
}

/// What a spawn asks for.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    /// New agent's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its parent ("" for none).
    pub parent: String,
    /// Working directory.
    pub workdir: String,
    /// Profile ("" for shell).
    pub profile: String,
    /// Command; empty for the profile's default.
    pub command: Vec<String>,
    /// Who asks: an agent or `operator`.
    pub requester: String,
    /// Variables for the agent's program (none for a plain `Spawn`).
    pub env: EnvVars,
    /// What it can do (none for `Spawn` and `SpawnWithEnv`).
    pub skills: Vec<String>,
    /// Tasks it takes at once (1 for `Spawn` and `SpawnWithEnv`).
    pub capacity: u32,
    /// A git worktree of its own (not for `Spawn` and `SpawnWithEnv`).
    pub worktree: bool,
    /// The pool it is a member of (spawned by the hub for the pool only).
    pub pool: Option<String>,
    /// The node of a cluster to spawn it on ("": this hub's own).
    pub node: String,
    /// Its parent runs on another node of the cluster (found there by the
    /// hub, for the operator's spawns only).
    pub parent_elsewhere: bool,
}

impl From<torch_api::SpawnSpec> for SpawnRequest {
    fn from(s: torch_api::SpawnSpec) -> Self {
        SpawnRequest {
            name: s.name,
            role: s.role,
            parent: s.parent,
            workdir: s.workdir,
            profile: s.profile,
            command: s.command,
            requester: s.requester,
            env: EnvVars::default(),
            skills: s.skills,
            capacity: s.capacity.max(1),
            worktree: s.worktree,
            pool: None,
            node: s.node,
            parent_elsewhere: false,
        }
    }
}

/// A new agent's name: valid and not taken, not even by a broken definition.
fn new_name(fleet: &Fleet, name: &str) -> Result<AgentName, String> {
    let name = AgentName::parse(name).map_err(|e| e.to_string())?;
    if let Some(a) = fleet.agents.get(name.as_str()) {
        return Err(format!(
            "agent {name} already exists (defined in {})",
            a.path.display()
        ));
    }
    if let Some(b) = fleet.broken.get(name.as_str()) {
        return Err(format!(
            "agent {name} already exists, with a broken definition: {}",
            b.error
        ));
    }
    Ok(name)
}

/// Whether a `role` may go below `parent` (orchestrators alone may have
/// none; `elsewhere`: it runs on another node), and `requester` may put it
/// there.
fn check_place(
    fleet: &Fleet,
    role: Role,
    parent: Option<&str>,
    elsewhere: bool,
    requester: &str,
) -> Result<(), String> {
    match (parent, role) {
        (None, Role::Orchestrator) => {}
        (None, _) => {
            return Err(format!(
                "a {} needs a parent (--parent NAME)",
                role.as_str()
            ))
        }
        (Some(p), _) => {
            if let Some(b) = fleet.broken.get(p) {
                return Err(format!(
                    "parent {p:?} has a broken definition: {}; fix it first",
                    b.error
                ));
            }
            let known = fleet.agents.contains_key(p) || (elsewhere && requester == OPERATOR);
            if !known {
                return Err(format!("parent {p:?} is not an agent of this fleet"));
            }
        }
    }
    // Agents grow the tree below themselves only, and never above their
    // own rank; the operator places anything anywhere.
    if requester == OPERATOR {
        return Ok(());
    }
    if parent != Some(requester) {
        return Err(format!(
            "agent {requester} may only spawn helpers below itself (--parent {requester})"
        ));
    }
    let own = fleet.get(requester)?.def.role;
    policy::check_child_role(own, role).map_err(|e| format!("agent {requester}: {e}"))
}

/// Whether one more agent `name` below `parent` stays within the quotas.
fn check_quotas(
    config: &Config,
    fleet: &Fleet,
    name: &AgentName,
    parent: Option<&str>,
) -> Result<(), String> {
    let q = &config.quotas;
    if fleet.len() >= q.max_fleet {
        return Err(format!(
            "the fleet has {} agents, the limit (quotas.max_fleet in torch.toml) is {}",
            fleet.len(),
            q.max_fleet
        ));
    }
    let Some(p) = parent else { return Ok(()) };
    let children = fleet
        .agents
        .values()
        .filter(|a| a.def.parent.as_deref() == Some(p))
        .count();
    if children >= q.max_children {
        return Err(format!(
            "{p} already has {children} children, the limit (quotas.max_children) is {}",
            q.max_children
        ));
    }
    let d = depth(fleet, p) + 1;
    if d > q.max_depth {
        return Err(format!(
            "{name} would be at depth {d} of the tree, the limit (quotas.max_depth) is {}",
            q.max_depth
        ));
    }
    Ok(())
}

/// Checks a spawn against names, the hierarchy and the quotas, and returns
/// the definition to write.
pub fn plan_spawn(
    config: &Config,
    fleet: &Fleet,
    req: &SpawnRequest,
) -> Result<(AgentName, AgentDefinition), String> {
    let name = new_name(fleet, &req.name)?;
    let role: Role = req.role.parse()?;
    let profile: Profile = if req.profile.is_empty() {
        Profile::Shell
    } else {
        req.profile.parse()?
    };
    let parent = (!req.parent.is_empty()).then(|| req.parent.clone());
    check_place(
        fleet,
        role,
        parent.as_deref(),
        req.parent_elsewhere,
        &req.requester,
    )?;
    check_quotas(config, fleet, &name, parent.as_deref())?;
    let workdir = PathBuf::from(&req.workdir);
    if !workdir.is_absolute() || !workdir.is_dir() {
        return Err(format!(
            "working directory {:?} must be an existing absolute path",
            req.workdir
        ));
    }
    let command = if req.command.is_empty() {
        profile.default_command()
    } else {
        req.command.clone()
    };
    let text = toml::to_string(&SpawnedDefinition {
        command,
        workdir: Some(workdir),
        role,
        parent,
        profile,
        skills: req.skills.clone(),
        capacity: req.capacity,
        worktree: req.worktree,
        pool: req.pool.clone(),
    })
    .map_err(|e| e.to_string())?;
    let def =
        AgentDefinition::parse(Path::new("spawn request"), &text).map_err(|e| e.to_string())?;
    Ok((name, def))
}

/// Spawns are checked and written one at a time: two spawns checked
/// against the same fleet would both pass the quotas and the name check
/// (13 children under a limit of 8 were seen with 16 at once).
static SPAWNS: Mutex<()> = Mutex::new(());

/// Checks a spawn against the current fleet (and `check`, on the
/// definition it would write) and writes its definition, which reserves the
/// name and the place in the quotas; returns the name and the definition's
/// path.
pub fn reserve_spawn(
    cache: &FleetCache,
    config: &Config,
    req: &SpawnRequest,
    check: impl FnOnce(&AgentDefinition) -> Result<(), String>,
) -> Result<(AgentName, PathBuf), String> {
    let _one_at_a_time = SPAWNS.lock().unwrap_or_else(|p| p.into_inner());
    let fleet = cache.agents();
    let (name, def) = plan_spawn(config, &fleet, req)?;
    check(&def)?;
    // Before the definition: once that exists the agent may be started,
    // and must not start without its variables.
    write_env(&name, &req.env)?;
    let path = write_definition(&name, &def).inspect_err(|_| {
        let _ = envfile::remove(&paths::spawned_env_file(&name));
    })?;
    cache.invalidate();
    Ok((name, path))
}

/// Writes a spawned agent's environment file, or removes a stale one (a
/// retired agent's of the same name) when it has no variables.
fn write_env(name: &AgentName, env: &EnvVars) -> Result<(), String> {
    let path = paths::spawned_env_file(name);
    let done = if env.is_empty() {
        envfile::remove(&path)
    } else {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        envfile::write_private(&path, env)
    };
    done.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if !env.is_empty() {
        let names: Vec<&str> = env.names().collect();
        tracing::info!("spawn: {} holds {}", path.display(), names.join(", "));
    }
    Ok(())
}

/// The keys a spawn writes (the rest keep their defaults).
#[derive(Serialize)]
struct SpawnedDefinition {
    command: Vec<String>,
    workdir: Option<PathBuf>,
    role: Role,
    parent: Option<String>,
    profile: Profile,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skills: Vec<String>,
    capacity: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    worktree: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
}

impl SpawnedDefinition {
    fn of(def: &AgentDefinition) -> Self {
        SpawnedDefinition {
            command: def.command.clone(),
            workdir: def.workdir.clone(),
            role: def.role,
            parent: def.parent.clone(),
            profile: def.profile,
            skills: def.skills.clone(),
            capacity: def.capacity,
            worktree: def.worktree,
            pool: def.pool.clone(),
        }
    }
}

/// Makes the definitions spawned agents' supervisors read readable to
/// them: a hub from before agents left the `torch` group wrote them 0640.
pub fn open_spawned_definitions() {
    let dir = Path::new(paths::SPAWNED_AGENTS_DIR);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let files = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"));
    for (path, mode) in std::iter::once((dir.to_path_buf(), 0o755)).chain(files.map(|p| (p, 0o644)))
    {
        if let Err(e) = std::fs::set_permissions(&path, Permissions::from_mode(mode)) {
            tracing::warn!("cannot let agents read {}: {e}", path.display());
        }
    }
}

/// Writes a spawned agent's definition atomically and returns its path.
pub fn write_definition(name: &AgentName, def: &AgentDefinition) -> Result<PathBuf, String> {
    let dir = PathBuf::from(paths::SPAWNED_AGENTS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Its supervisor reads it as an agent's user, outside the hub's group;
    // the secrets are in the 0600 environment file beside it.
    std::fs::set_permissions(&dir, Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot open {} to agents: {e}", dir.display()))?;
    let path = dir.join(format!("{}.toml", name.as_str()));
    let text = format!(
        "# Written by torchd for `torch spawn`; `torch retire {name}` removes it.\n{}",
        toml::to_string(&SpawnedDefinition::of(def)).map_err(|e| e.to_string())?
    );
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::set_permissions(&tmp, Permissions::from_mode(0o644)))
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Saves the agent's screen and scrollback before it is retired.
pub fn save_transcript(name: &AgentName, state_dir: &Path) -> Result<PathBuf, String> {
    let resp = protocol::call(
        &paths::control_socket(name),
        &Request::Capture { history: 20_000 },
        Duration::from_secs(10),
    )
    .map_err(|e| e.to_string())?;
    let Response::Screen { text } = resp else {
        return Err(format!("unexpected answer {resp:?}"));
    };
    let dir = state_dir.join("transcripts");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = dir.join(format!("{}-{secs}.txt", name.as_str()));
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Runs a unit job for an agent.
pub async fn unit_job(systemd: &Systemd, kind: JobKind, name: &AgentName) -> Result<(), String> {
    systemd
        .run_job(kind, &name.unit())
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fleet of `(name, role, parent)`, for the rules' tests.
    pub(crate) fn fleet_of(list: &[(&str, Role, Option<&str>)]) -> Fleet {
        Fleet {
            agents: list.iter().map(|&(n, r, p)| agent(n, r, p)).collect(),
            ..Fleet::default()
        }
    }

    fn agent(name: &str, role: Role, parent: Option<&str>) -> (String, Agent) {
        let def = AgentDefinition::parse(
            Path::new("t"),
            &format!(
                "command = [\"sh\"]\nrole = \"{}\"\n{}",
                role.as_str(),
                parent
                    .map(|p| format!("parent = \"{p}\"\n"))
                    .unwrap_or_default()
            ),
        )
        .unwrap();
        (
            name.to_string(),
            Agent {
                name: AgentName::parse(name).unwrap(),
                def,
                path: PathBuf::from(format!("/t/{name}.toml")),
            },
        )
    }

    fn req(name: &str, role: &str, parent: &str, requester: &str) -> SpawnRequest {
        torch_api::SpawnSpec {
            name: name.into(),
            role: role.into(),
            parent: parent.into(),
            workdir: "/".into(),
            requester: requester.into(),
            ..Default::default()
        }
        .into()
    }

    #[test]
    fn spawn_respects_tree_and_quotas() {
        let agents: BTreeMap<_, _> = [
            agent("boss", Role::Orchestrator, None),
            agent("pm", Role::ProjectManager, Some("boss")),
            agent("dev", Role::Developer, Some("pm")),
        ]
        .into_iter()
        .collect();
        let fleet = Fleet {
            agents,
            ..Fleet::default()
        };
        let mut config = Config::default();
        let (n, d) = plan_spawn(&config, &fleet, &req("qa", "qa", "pm", "operator")).unwrap();
        assert_eq!(
            (n.as_str(), d.parent.as_deref(), d.command.clone()),
            ("qa", Some("pm"), vec!["bash".to_string(), "-i".to_string()])
        );
        assert!(
            plan_spawn(&config, &fleet, &req("dev", "qa", "pm", "operator"))
                .unwrap_err()
                .contains("already exists")
        );
        assert!(plan_spawn(&config, &fleet, &req("x", "qa", "", "operator"))
            .unwrap_err()
            .contains("needs a parent"));
        assert!(
            plan_spawn(&config, &fleet, &req("x", "qa", "ghost", "operator"))
                .unwrap_err()
                .contains("not an agent")
        );
        // A parent on another node: for the operator only.
        let elsewhere = |requester: &str| SpawnRequest {
            parent_elsewhere: true,
            ..req("x", "qa", "far-pm", requester)
        };
        let (_, d) = plan_spawn(&config, &fleet, &elsewhere("operator")).unwrap();
        assert_eq!(d.parent.as_deref(), Some("far-pm"));
        assert!(plan_spawn(&config, &fleet, &elsewhere("pm"))
            .unwrap_err()
            .contains("not an agent"));
        assert!(plan_spawn(&config, &fleet, &req("x", "qa", "pm", "dev"))
            .unwrap_err()
            .contains("below itself"));
        assert!(plan_spawn(&config, &fleet, &req("helper", "qa", "dev", "dev")).is_ok());
        for role in ["orchestrator", "project-manager"] {
            let e = plan_spawn(&config, &fleet, &req("up", role, "dev", "dev")).unwrap_err();
            assert!(
                e.contains("agent dev: a developer may spawn only roles below"),
                "{e}"
            );
        }
        let e =
            plan_spawn(&config, &fleet, &req("pm2", "project-manager", "pm", "pm")).unwrap_err();
        assert!(e.contains("only roles below its own"), "{e}");
        assert!(plan_spawn(
            &config,
            &fleet,
            &req("pm2", "project-manager", "dev", "operator")
        )
        .is_ok());
        config.quotas.max_depth = 3;
        assert!(
            plan_spawn(&config, &fleet, &req("helper", "qa", "dev", "dev"))
                .unwrap_err()
                .contains("depth 4")
        );
        config.quotas.max_children = 1;
        assert!(
            plan_spawn(&config, &fleet, &req("qa", "qa", "pm", "operator"))
                .unwrap_err()
                .contains("max_children")
        );
        config.quotas.max_fleet = 3;
        assert!(
            plan_spawn(&config, &fleet, &req("qa", "qa", "pm", "operator"))
                .unwrap_err()
                .contains("max_fleet")
        );
        assert!(plan_spawn(
            &Config::default(),
            &fleet,
            &req("x", "boss", "pm", "operator")
        )
        .unwrap_err()
        .contains("unknown role"));
    }

    #[test]
    fn routes_need_known_agents() {
        let agents: BTreeMap<_, _> = [
            agent("boss", Role::Orchestrator, None),
            agent("pm", Role::ProjectManager, Some("boss")),
        ]
        .into_iter()
        .collect();
        let mut fleet = Fleet {
            agents,
            ..Fleet::default()
        };
        let c = Config::default();
        assert!(check_route(&c, &fleet, "operator", "pm").is_ok());
        assert!(check_route(&c, &fleet, "boss", "pm").is_ok());
        assert!(check_route(&c, &fleet, "operator", "nobody")
            .unwrap_err()
            .contains("no agent named"));
        assert!(check_route(&c, &fleet, "stranger", "pm")
            .unwrap_err()
            .contains("unknown sender"));
        let broken = Broken {
            path: PathBuf::from("/etc/torch/agents/dev.toml"),
            error: "/etc/torch/agents/dev.toml:2: invalid array".into(),
        };
        fleet.broken.insert("dev".into(), broken);
        for (from, to) in [("operator", "dev"), ("dev", "pm")] {
            let e = check_route(&c, &fleet, from, to).unwrap_err();
            assert!(
                e.contains("broken definition: /etc/torch/agents/dev.toml:2: invalid array"),
                "{e}"
            );
        }
        let e = plan_spawn(&c, &fleet, &req("dev", "qa", "pm", "operator")).unwrap_err();
        assert!(
            e.contains("already exists, with a broken definition"),
            "{e}"
        );
        let e = plan_spawn(&c, &fleet, &req("x", "qa", "dev", "operator")).unwrap_err();
        assert!(e.contains("parent \"dev\" has a broken definition"), "{e}");
    }
}
