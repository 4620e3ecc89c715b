//! Agents as units: listing them, and starting, stopping and restarting
//! them through the hub (or systemd alone when the hub is down).

use std::path::{Path, PathBuf};

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{anyhow, bail, Context};
use torch_core::protocol::{Request, Response};
use torch_core::{envfile, paths, AgentDefinition, AgentName, DefinitionError, EnvVars};
use torch_systemd::{JobKind, Systemd};

use crate::args::SpawnArgs;
use crate::{call, hub, hub_call, runtime, QUICK_TIMEOUT};

/// Starts an agent; when that fails, a broken definition is named.
pub fn start(name: &AgentName) -> anyhow::Result<()> {
    // Started anyway, so the supervisor's own journal line and exit
    // status record the failure; the reason is then said here too.
    if let Err(e) = job(JobKind::Start, name) {
        check_definition(name)?;
        return Err(e);
    }
    Ok(())
}

/// Restarts an agent whose definition can be used.
pub fn restart(name: &AgentName) -> anyhow::Result<()> {
    // Checked first: a restart would stop the running agent and then fail
    // to start it.
    check_definition(name)?;
    job(JobKind::Restart, name)
}

#[derive(serde::Serialize)]
struct AgentRow {
    name: String,
    unit: String,
    active: String,
    sub: String,
    definition: Option<PathBuf>,
    /// Why the definition cannot be used, when it cannot.
    definition_error: Option<String>,
}

pub fn list(json: bool) -> anyhow::Result<()> {
    let units = runtime()?
        .block_on(async { Systemd::system().await?.list("torch-agent@*.service").await })?;
    let mut rows: Vec<AgentRow> = units
        .into_iter()
        .filter_map(|u| {
            let name = AgentName::from_unit(&u.name)?;
            Some(AgentRow {
                name: name.to_string(),
                unit: u.name,
                active: u.active,
                sub: u.sub,
                definition: None,
                definition_error: None,
            })
        })
        .collect();
    for (name, found) in torch_core::definition::discover(&paths::agent_definition_dirs()) {
        let error = found.def.err();
        match rows.iter_mut().find(|r| r.name == name) {
            Some(row) => {
                row.definition = Some(found.path);
                row.definition_error = error;
            }
            None => rows.push(AgentRow {
                unit: found.name.unit(),
                name,
                active: "inactive".into(),
                sub: "dead".into(),
                definition: Some(found.path),
                definition_error: error,
            }),
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{:<24} {:<10} {:<14} DEFINITION", "AGENT", "ACTIVE", "SUB");
    for r in rows {
        let def = r
            .definition
            .map_or("(none)".to_string(), |p| p.display().to_string());
        println!("{:<24} {:<10} {:<14} {def}", r.name, r.active, r.sub);
        if let Some(e) = r.definition_error {
            println!("{:<24} broken definition: {e}", "");
        }
    }
    Ok(())
}

/// Fails when the definition of `name` is broken: its supervisor exits at
/// once, and systemd's "job failed" does not say why. A file we cannot read
/// (another user's) is left to the supervisor to judge.
fn check_definition(name: &AgentName) -> anyhow::Result<()> {
    match AgentDefinition::find(name, &paths::agent_definition_dirs()) {
        Err(e @ (DefinitionError::Parse { .. } | DefinitionError::Invalid { .. })) => {
            bail!("agent {name} has a broken definition: {e}; fix the file, then try again")
        }
        _ => Ok(()),
    }
}

/// Starts, stops or restarts an agent through the hub, which remembers
/// whether it runs after a reboot; straight through systemd when the hub is
/// not running.
pub fn job(kind: JobKind, name: &AgentName) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let conn = zbus::Connection::system().await.map_err(hub::explain)?;
        let proxy = hub::ManagerProxy::new(&conn).await.map_err(hub::explain)?;
        let through_hub = match kind {
            JobKind::Start => proxy.start(name.as_str()).await,
            JobKind::Stop => proxy.stop(name.as_str()).await,
            JobKind::Restart => proxy.restart(name.as_str()).await,
        };
        match through_hub {
            Ok(()) => Ok(()),
            Err(e) if hub::hub_absent(&e) => {
                let after = if matches!(kind, JobKind::Stop) {
                    "it may start again at the next boot"
                } else {
                    "it will not start by itself at the next boot"
                };
                eprintln!("torch: the hub is not running, so {name} is handled by systemd alone and {after}");
                Systemd::system().await?.run_job(kind, &name.unit()).await?;
                Ok(())
            }
            Err(e) => Err(hub::explain(e)),
        }
    })
}

/// Spawns an agent through the hub.
pub fn spawn(req: SpawnArgs) -> anyhow::Result<()> {
    let brief = match &req.brief {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the brief {}", p.display()))?
            .trim_end()
            .to_string(),
        None => String::new(),
    };
    let workdir = std::path::absolute(&req.workdir)
        .with_context(|| format!("bad working directory {}", req.workdir.display()))?;
    let workdir = workdir.to_string_lossy();
    let env = req.env_file.as_deref().map(read_env_file).transpose()?;
    let caller = hub::caller();
    let r = &req;
    let progress = Progress::start(&format!("spawning {}: starting its unit", req.name));
    if !req.skills.is_empty() || req.capacity.is_some() || req.worktree || req.node.is_some() {
        let spec = torch_api::SpawnSpec {
            name: r.name.clone(),
            role: r.role.clone(),
            parent: r.parent.clone(),
            workdir: workdir.to_string(),
            profile: r.profile.clone(),
            command: r.command.clone(),
            requester: caller.clone(),
            skills: r.skills.clone(),
            capacity: r.capacity.unwrap_or(1),
            worktree: r.worktree,
            node: r.node.clone().unwrap_or_default(),
        };
        let spec = serde_json::to_string(&spec)?;
        let env = env.unwrap_or_default();
        let unit = hub_call(async |h| h.spawn_agent(&spec, &brief, &env).await)?;
        drop(progress);
        println!("spawned {} ({unit})", req.name);
        return Ok(());
    }
    let unit = hub_call(async |h| match &env {
        // Plain Spawn without variables and SpawnWithEnv without skills,
        // so that a hub older than each still spawns.
        None => {
            h.spawn(
                &r.name,
                &r.role,
                &r.parent,
                &workdir,
                &r.profile,
                r.command.clone(),
                &brief,
                &caller,
            )
            .await
        }
        Some(env) => {
            h.spawn_with_env(
                &r.name,
                &r.role,
                &r.parent,
                &workdir,
                &r.profile,
                r.command.clone(),
                &brief,
                &caller,
                env,
            )
            .await
        }
    })?;
    drop(progress);
    println!("spawned {} ({unit})", req.name);
    Ok(())
}

/// A line on a terminal's standard error saying what is awaited and for
/// how long, redrawn each second, cleared when dropped. Nothing when
/// standard error is not a terminal (a script, a pipe).
pub struct Progress {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(what: &str) -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress {
                done: None,
                thread: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let what = what.to_string();
        let thread = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            // The first second says nothing: most waits are shorter.
            while rx.recv_timeout(std::time::Duration::from_secs(1)).is_err() {
                eprint!("\r{what} ({} s)\x1b[K", start.elapsed().as_secs());
            }
            eprint!("\r\x1b[K");
        });
        Progress {
            done: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An environment file's text, checked here so an error names the file.
/// The text goes to the hub, which cannot read the caller's files.
pub fn read_env_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the environment file {}", path.display()))?;
    EnvVars::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(text)
}

/// Installs `file` as the admin's environment file of `name`, or removes
/// it for `None`.
pub fn install_env(name: &AgentName, file: Option<&Path>) -> anyhow::Result<()> {
    let target = paths::admin_env_file(name);
    let Some(file) = file else {
        envfile::remove(&target)
            .with_context(|| format!("cannot remove {} (run as root)", target.display()))?;
        println!(
            "removed {}; `torch restart {name}` applies it",
            target.display()
        );
        return Ok(());
    };
    let vars = EnvVars::parse(&read_env_file(file)?)?;
    std::fs::create_dir_all(paths::ADMIN_AGENTS_DIR)
        .with_context(|| format!("cannot create {} (run as root)", paths::ADMIN_AGENTS_DIR))?;
    envfile::write_private(&target, &vars)
        .with_context(|| format!("cannot write {} (run as root)", target.display()))?;
    let names: Vec<&str> = vars.names().collect();
    println!(
        "wrote {} ({}); `torch restart {name}` applies it",
        target.display(),
        names.join(", ")
    );
    Ok(())
}

/// Prints the agent's screen: through the hub, or from its supervisor with
/// `--direct` or when history is asked for.
pub fn capture(name: &AgentName, history: u32, direct: bool) -> anyhow::Result<()> {
    let text = if direct || history > 0 {
        match call(name, &Request::Capture { history }, QUICK_TIMEOUT)? {
            Response::Screen { text } => text,
            other => bail!("{name}: unexpected answer {other:?}"),
        }
    } else {
        hub_call(async |h| h.capture(name.as_str()).await)?
    };
    println!("{}", text.trim_end());
    Ok(())
}

/// Answers the question the agent asks on screen, through the hub.
pub fn answer(name: &AgentName, choice: &str) -> anyhow::Result<()> {
    hub_call(async |h| h.answer(name.as_str(), choice).await)?;
    println!("answered {name}: {choice}");
    Ok(())
}

/// Hands the terminal to the agent's tmux session.
pub fn attach(name: &AgentName) -> anyhow::Result<()> {
    let target = format!("={}", name.tmux_session());
    let err = Command::new("tmux")
        .arg("-S")
        .arg(paths::tmux_socket(name))
        .args(["attach-session", "-t", &target])
        .exec();
    bail!("cannot run tmux: {err}");
}

/// Hands the terminal to journalctl for the agent's unit.
pub fn logs(name: &AgentName, follow: bool, lines: Option<u32>) -> anyhow::Result<()> {
    let mut cmd = Command::new("journalctl");
    cmd.arg("-u").arg(name.unit()).arg("--no-hostname");
    if follow {
        cmd.arg("-f");
    }
    if let Some(n) = lines {
        cmd.arg("-n").arg(n.to_string());
    }
    let err = cmd.exec();
    bail!("cannot run journalctl: {err}");
}
