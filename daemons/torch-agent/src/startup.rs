//! Start-up of one agent: its private tmux server in the runtime directory,
//! the output pipe attached before the program starts (not one byte of its
//! output is missed), the program itself, and the control socket the hub
//! reaches it through. READY is the health loop's to send, once the first
//! check finds the program running.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::unix::pipe;
use tokio::net::{UnixListener, UnixStream};
use torch_core::config::Config;
use torch_core::{paths, AgentDefinition, AgentName};
use torch_tmux::Tmux;

use crate::app_server::{self, AppServer};
use crate::hooks::HookFeed;
use crate::screen::{fleet_config, profile_classifier};
use crate::session::{resume_args, SessionStore};
use crate::state::Shared;

/// Time limit of an ordinary tmux command (a 256 KiB paste included).
const TMUX_TIMEOUT: Duration = Duration::from_secs(5);

/// A started agent, for the supervisor's tasks to take over.
pub struct Started {
    /// The agent, shared by the tasks.
    pub shared: Arc<Shared>,
    /// The pane's output, for the journal.
    pub output: pipe::Receiver,
    /// The control socket, listening.
    pub listener: UnixListener,
    /// Where it listens (the CLIs' hooks and opencode's plugin socket are
    /// named after it).
    pub control_path: PathBuf,
    /// The tmux server's pid (0: unknown).
    pub server_pid: u32,
    /// Codex's app server, which its TUI runs its turns in.
    pub app_server: Option<AppServer>,
}

/// Checks that the definition's program can be run; the error is the line
/// to tell the admin.
pub fn check_program(def: &AgentDefinition, def_path: &Path) -> Result<(), String> {
    let program = &def.command[0];
    match resolve_program(program, def.env.get("PATH").map(String::as_str)) {
        Some(_) => Ok(()),
        None => Err(not_runnable(program, def_path)),
    }
}

/// Starts the agent of `def` (from `def_path`) in a fresh tmux server.
pub async fn start(
    name: &AgentName,
    def_path: &Path,
    def: &AgentDefinition,
) -> anyhow::Result<Started> {
    let workdir = def.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    if !workdir.is_dir() {
        bail!(
            "working directory {} does not exist; create it or fix `workdir` in {}",
            workdir.display(),
            def_path.display()
        );
    }
    let workdir = match def.worktree {
        true => crate::worktree::prepare(name, def, &workdir)?,
        false => workdir,
    };
    // systemd made RUNTIME_DIRECTORY for us; by hand, use the same place.
    let dir = std::env::var_os("RUNTIME_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::agent_runtime_dir(name));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let control_path = dir.join(paths::CONTROL_SOCKET);
    if UnixStream::connect(&control_path).await.is_ok() {
        bail!("agent {name} is already supervised (its control socket {} answers); stop that one first", control_path.display());
    }
    let tmux = fresh_tmux(&dir, def).await?;
    let (fifo, output) = output_fifo(&dir)?;
    let config = fleet_config(def);
    let rules = config.profile_rules(def.profile);
    let program = Program::prepare(name, def_path, def, &config, &workdir, &control_path)?;
    let app_server = match &program.codex {
        Some(codex) => Some(start_app_server(def, &program, codex, &workdir, &control_path).await?),
        None => None,
    };
    let pane = start_program(name, def, &tmux, &workdir, &fifo, &program).await?;
    if let Some(files) = program.aider.clone() {
        tokio::spawn(crate::aider::watch(files, Arc::clone(&program.hooks)));
    }
    if let Err(e) = tmux.connect_control(&pane).await {
        tracing::warn!("no tmux control connection ({e}); using a tmux process per command");
    }
    let server_pid = tmux.server_pid().await.unwrap_or(0);
    let classifier = profile_classifier(def, &rules);
    let watch = crate::attention::Watch::new(config.attention.clone());
    let shared = Arc::new(Shared::new(
        tmux,
        pane,
        classifier,
        program.hooks,
        watch,
        def.profile,
    ));
    if def.profile == torch_core::Profile::Aider {
        tokio::spawn(crate::aider::answer_questions(Arc::clone(&shared)));
    }
    let listener = listen(&control_path)?;
    Ok(Started {
        shared,
        output,
        listener,
        control_path,
        server_pid,
        app_server,
    })
}

/// Starts Codex's app server for the TUI to attach to, and trusts the
/// hooks it would run.
async fn start_app_server(
    def: &AgentDefinition,
    program: &Program,
    codex: &crate::codex::Prepared,
    workdir: &Path,
    control_path: &Path,
) -> anyhow::Result<AppServer> {
    let path = app_server::socket_path(control_path);
    let server = AppServer::start(
        &def.command[0],
        &codex.server_args,
        &program.env,
        workdir,
        &path,
    )
    .await?;
    let trusted = app_server::trust_hooks(&path, workdir)
        .await
        .context("cannot trust the workdir's hooks in Codex's app server")?;
    tracing::info!(
        "Codex's app server answers on {} ({trusted} hooks newly trusted)",
        path.display()
    );
    Ok(server)
}

/// Writes the tmux configuration and clears a server left from an earlier
/// run, which would hold a stale agent.
async fn fresh_tmux(dir: &Path, def: &AgentDefinition) -> anyhow::Result<Tmux> {
    let config = dir.join(paths::TMUX_CONFIG);
    std::fs::write(&config, torch_tmux::config(&agent_shell(def)))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let tmux = Tmux::new(&dir.join(paths::TMUX_SOCKET), &config, TMUX_TIMEOUT);
    if tmux.socket().exists() {
        let _ = tmux.kill_server().await;
        let _ = std::fs::remove_file(tmux.socket());
    }
    Ok(tmux)
}

/// Creates the FIFO the pane's output arrives through, and opens it.
fn output_fifo(dir: &Path) -> anyhow::Result<(PathBuf, pipe::Receiver)> {
    let fifo = dir.join(paths::OUTPUT_FIFO);
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("cannot create {}", fifo.display()))?;
    // Open read-write: the FIFO then never reports EOF when tmux's `cat`
    // restarts, and opening does not wait for a writer.
    let rx = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&fifo)
        .with_context(|| format!("cannot open {}", fifo.display()))?;
    Ok((fifo, rx))
}

/// Starts the tmux session and the agent's program in its pane; returns
/// the pane id.
/// What the agent program is started with, and the hook feed its CLI
/// reports to.
struct Program {
    command: Vec<String>,
    env: Vec<(String, String)>,
    hooks: Arc<HookFeed>,
    /// Aider's files that stand for hooks, to watch once it runs.
    aider: Option<crate::aider::Files>,
    /// How Codex's app server is started, for a Codex agent.
    codex: Option<crate::codex::Prepared>,
}

impl Program {
    /// The definition's command and environment, with what its profile's
    /// CLI needs: its own config (hooks or the files that stand for them,
    /// no first-run dialogs) and the last session resumed.
    fn prepare(
        name: &AgentName,
        def_path: &Path,
        def: &AgentDefinition,
        config: &Config,
        workdir: &Path,
        control_path: &Path,
    ) -> anyhow::Result<Self> {
        let rules = config.profile_rules(def.profile);
        let mut env = agent_env(name, def);
        let mut args = Vec::new();
        let mut aider = None;
        let mut codex = None;
        match def.profile {
            torch_core::Profile::Claude => env.extend(
                crate::claude::prepare(name, def, workdir, control_path)
                    .context("cannot prepare Claude Code's config for this agent")?,
            ),
            torch_core::Profile::Gemini => env.extend(
                crate::gemini::prepare(name, def, control_path)
                    .context("cannot prepare Gemini CLI's settings for this agent")?,
            ),
            torch_core::Profile::Opencode => crate::opencode::prepare(name, def, control_path)
                .context("cannot prepare opencode's plugin for this agent")?,
            torch_core::Profile::Codex => {
                let prepared = crate::codex::prepare(name, def, workdir, control_path)
                    .context("cannot prepare Codex CLI's hooks for this agent")?;
                args.extend(prepared.tui_args.iter().cloned());
                codex = Some(prepared);
            }
            torch_core::Profile::Aider => {
                let (a, files) = crate::aider::prepare(name, workdir, control_path)
                    .context("cannot prepare Aider's files for this agent")?;
                args.extend(a);
                aider = Some(files);
            }
            _ => {}
        }
        let mut command = def.command.clone();
        if !def.profile.has_hooks() {
            let hooks = Arc::new(HookFeed::default());
            return Ok(Self {
                command,
                env,
                hooks,
                aider,
                codex,
            });
        }
        let sessions = SessionStore::new(&paths::agent_state_dir(name), name, def_path);
        if let Some(session) = sessions.resumable().filter(|_| !rules.resume.is_empty()) {
            tracing::info!("resuming the agent's session {session}");
            command.extend(resume_args(&rules.resume, &session));
        }
        // After a resume's subcommand (Codex's `resume ID`), which takes them too.
        command.extend(args);
        let permission = config.permissions.for_role(def.role);
        let limits = config.limits.clone();
        let mut hooks = HookFeed::new(name.as_str(), sessions, permission, limits);
        if def.profile.reports_session_at_first_prompt() {
            hooks = hooks.session_at_first_prompt();
        }
        let hooks = Arc::new(hooks);
        Ok(Self {
            command,
            env,
            hooks,
            aider,
            codex,
        })
    }
}

/// The program's environment: who it is in the fleet, then its definition's.
fn agent_env(name: &AgentName, def: &AgentDefinition) -> Vec<(String, String)> {
    let mut env = vec![
        ("TORCH_AGENT".to_string(), name.to_string()),
        ("TORCH_ROLE".to_string(), def.role.as_str().to_string()),
    ];
    if let Some(p) = &def.parent {
        env.push(("TORCH_PARENT".into(), p.clone()));
    }
    env.extend(def.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

async fn start_program(
    name: &AgentName,
    def: &AgentDefinition,
    tmux: &Tmux,
    workdir: &Path,
    fifo: &Path,
    program: &Program,
) -> anyhow::Result<String> {
    let env = &program.env;
    // Start on a placeholder, attach the output pipe, then start the real
    // program: not one byte of its output is missed.
    let placeholder = ["sleep".to_string(), "infinity".to_string()];
    let pane = tmux
        .new_session(
            &name.tmux_session(),
            (def.width, def.height),
            workdir,
            env,
            &placeholder,
        )
        .await
        .context("cannot start the agent's tmux server")?;
    tmux.pipe_pane(
        &pane,
        &format!("exec cat > {}", shell_quote(&fifo.to_string_lossy())),
    )
    .await
    .context("cannot attach the output pipe")?;
    tmux.respawn(&pane, workdir, env, &program.command)
        .await
        .context("cannot start the agent program")?;
    Ok(pane)
}

/// Listens on the control socket. Anyone may connect; the supervisor
/// answers only root and the hub, and hook events only from its own unit
/// (`control.rs`), by the peer's credentials, so no group is needed and
/// agents stay out of the hub's group, which can read the message store.
fn listen(control_path: &Path) -> anyhow::Result<UnixListener> {
    let _ = std::fs::remove_file(control_path);
    let listener = UnixListener::bind(control_path)
        .with_context(|| format!("cannot listen on {}", control_path.display()))?;
    std::fs::set_permissions(control_path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot set the mode of {}", control_path.display()))?;
    Ok(listener)
}

/// Finds `program` the way execvp will.
fn resolve_program(program: &str, env_path: Option<&str>) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_exec(&p).then_some(p);
    }
    let path = env_path
        .map(str::to_string)
        .or_else(|| std::env::var("PATH").ok())?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_exec(p))
}

/// The shell tmux exports as `SHELL` and runs in windows a person opens:
/// the definition's `SHELL`, else bash (agent CLIs such as Claude Code refuse
/// to run their tools in anything else), else `/bin/sh`.
fn agent_shell(def: &AgentDefinition) -> PathBuf {
    def.env
        .get("SHELL")
        .map(PathBuf::from)
        .or_else(|| resolve_program("/bin/bash", None))
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// What to tell the admin when `command` cannot be run.
fn not_runnable(program: &str, def_path: &Path) -> String {
    let mut msg = format!(
        "{}: command {program:?} is not an executable file or not found in PATH; fix `command`",
        def_path.display()
    );
    if program.starts_with("/tmp/") || program.starts_with("/var/tmp/") {
        msg.push_str(
            " (agents have a private /tmp and /var/tmp, PrivateTmp=: install the program elsewhere, \
             e.g. /usr/local/bin or the agent's workdir)",
        );
    }
    msg
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_like_execvp() {
        assert!(resolve_program("sh", Some("/usr/bin:/bin")).is_some());
        assert!(resolve_program("/bin/sh", None).is_some());
        assert!(resolve_program("no-such-program-torch", Some("/usr/bin")).is_none());
        assert!(resolve_program("/etc/passwd", None).is_none());
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
