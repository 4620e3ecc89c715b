//! Start-up, health and shutdown of one agent.
//!
//! Failure policy (also in `docs/supervisor.md`): the supervisor never tries
//! to repair in place. When the agent program exits, it logs the pane's last
//! screen and exits itself (status 0 when the program exited 0, else 1), and
//! systemd's `Restart=on-failure` starts a fresh server and program with the
//! unit's backoff and start limit. When tmux is gone it exits 1 the same way.
//! When the program leaves typed input unread for `hang_after_secs`, it says
//! why, stops tmux and exits 1, so systemd restarts the agent at once. When
//! tmux stops answering, it stops pinging the watchdog and says why in
//! `STATUS=`, and systemd kills and restarts it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sd_notify::NotifyState;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::unix::pipe;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use torch_core::config::{config_files, Config};
use torch_core::profile::{builtin, Activity, Classifier};
use torch_core::protocol::Response;
use torch_core::{paths, AgentDefinition, AgentName};
use torch_tmux::{PaneInfo, Tmux, TmuxError};

use crate::{control, delivery, logging, output, EXIT_CONFIG};

/// Time limit of an ordinary tmux command (a 256 KiB paste included).
const TMUX_TIMEOUT: Duration = Duration::from_secs(5);
/// Health period when systemd set no watchdog.
const DEFAULT_HEALTH_PERIOD: Duration = Duration::from_secs(2);
/// Without a watchdog, how long tmux may stay unresponsive before we exit.
const UNRESPONSIVE_LIMIT: Duration = Duration::from_secs(30);
/// How soon after typed input the health loop checks that it was read.
const POKE_DELAY: Duration = Duration::from_secs(1);
/// Lines of scrollback logged with the last screen of a dead program.
const LAST_SCREEN_HISTORY: u32 = 50;

/// State shared by the health loop, the delivery worker and the control socket.
pub struct Shared {
    /// The agent's tmux server.
    pub tmux: Tmux,
    /// The agent's pane id (`%0`).
    pub pane: String,
    pid: AtomicU32,
    delivered: AtomicU64,
    started: Instant,
    last_output_ms: AtomicU64,
    /// Reads of pane output so far: the screen cannot change without one.
    /// Delivery waits on it instead of polling the screen.
    output_reads: tokio::sync::watch::Sender<u64>,
    /// The last classification, with the `output_reads` it was made at.
    activity_seen: std::sync::Mutex<Option<(u64, Activity)>>,
    /// The pane's screen, shared with delivery.
    screen: Arc<delivery::ScreenReader>,
    /// The output pump stopped: `output_reads` no longer tells whether the
    /// screen changed, so the activity is read afresh each time.
    output_lost: std::sync::atomic::AtomicBool,
    state: std::sync::Mutex<&'static str>,
    classifier: Classifier,
    /// Wakes the health loop (after input was typed into the pane).
    pub poke: tokio::sync::Notify,
    /// The hub's id of the last message delivered, and when: named in the
    /// journal if the program dies, since it is not typed again.
    last_message: std::sync::Mutex<Option<(String, Instant)>>,
}

impl Shared {
    fn idle_secs(&self) -> u64 {
        let since_start = self.started.elapsed().as_millis() as u64;
        since_start.saturating_sub(self.last_output_ms.load(Ordering::Relaxed)) / 1000
    }

    fn set_state(&self, state: &'static str) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    fn state(&self) -> &'static str {
        self.state.lock().map(|s| *s).unwrap_or("unknown")
    }

    /// Notes a read of pane output.
    fn output_seen(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_output_ms.store(ms, Ordering::Relaxed);
        self.output_reads.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// What the agent's screen shows it doing. The screen is read again only
    /// after new output: an idle fleet then costs no tmux calls for it.
    pub async fn activity(&self) -> Activity {
        // Read before the capture: output arriving meanwhile makes the next
        // call look again, never the other way round.
        let reads = *self.output_reads.borrow();
        let lost = self.output_lost.load(Ordering::Relaxed);
        if let Ok(seen) = self.activity_seen.lock() {
            if let Some((at, activity)) = *seen {
                if at == reads && !lost {
                    return activity;
                }
            }
        }
        let activity = match self.screen.read().await {
            Ok(screen) => self.classifier.classify(&screen.rows),
            Err(_) => return Activity::Unknown,
        };
        if let Ok(mut seen) = self.activity_seen.lock() {
            *seen = Some((reads, activity));
        }
        activity
    }

    /// The answer to a `status` request.
    pub async fn status_response(&self) -> Response {
        Response::Status {
            state: self.state().to_string(),
            pid: self.pid.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            idle_secs: self.idle_secs(),
            activity: self.activity().await.as_str().to_string(),
        }
    }

    /// The `STATUS=` line. Nothing in it changes while the agent idles: each
    /// change costs systemd a PropertiesChanged signal to every subscriber.
    fn status_line(&self, activity: Activity) -> String {
        format!(
            "agent {}, {} (pid {}); {} messages delivered",
            self.state(),
            activity.as_str(),
            self.pid.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
        )
    }
}

fn notify(states: &[NotifyState]) {
    // Outside systemd there is nobody to tell; that is not an error.
    let _ = sd_notify::notify(false, states);
}

/// Runs the agent until it stops; the exit code tells systemd what happened.
pub async fn run(name: AgentName) -> ExitCode {
    let found = AgentDefinition::find(&name, &paths::agent_definition_dirs());
    let role = found
        .as_ref()
        .map(|(_, d)| d.role.as_str())
        .unwrap_or("unknown");
    logging::init(name.as_str(), role);
    let (path, def) = match found {
        Ok(f) => f,
        Err(e) => {
            logging::final_lines(3, &e.to_string());
            notify(&[NotifyState::Status(&format!("broken definition: {e}"))]);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match supervise(&name, &path, def).await {
        Ok(code) => code,
        Err(e) => {
            logging::final_lines(3, &format!("{e:#}"));
            notify(&[NotifyState::Status(&format!("failed: {e:#}"))]);
            ExitCode::FAILURE
        }
    }
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

async fn supervise(
    name: &AgentName,
    def_path: &Path,
    def: AgentDefinition,
) -> anyhow::Result<ExitCode> {
    tracing::info!("starting agent {name} from {}", def_path.display());
    let program = &def.command[0];
    if resolve_program(program, def.env.get("PATH").map(String::as_str)).is_none() {
        logging::final_lines(3, &not_runnable(program, def_path));
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let workdir = def.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    if !workdir.is_dir() {
        bail!(
            "working directory {} does not exist; create it or fix `workdir` in {}",
            workdir.display(),
            def_path.display()
        );
    }

    // systemd made RUNTIME_DIRECTORY for us; by hand, use the same place.
    let dir = std::env::var_os("RUNTIME_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::agent_runtime_dir(name));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let control_path = dir.join("control.sock");
    if UnixStream::connect(&control_path).await.is_ok() {
        bail!("agent {name} is already supervised (its control socket {} answers); stop that one first", control_path.display());
    }
    let config = dir.join("tmux.conf");
    std::fs::write(&config, torch_tmux::config(&agent_shell(&def)))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let tmux = Tmux::new(&dir.join("tmux.sock"), &config, TMUX_TIMEOUT);
    if tmux.socket().exists() {
        // A server left from an earlier run would hold a stale agent.
        let _ = tmux.kill_server().await;
        let _ = std::fs::remove_file(tmux.socket());
    }

    let fifo = dir.join("output.fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("cannot create {}", fifo.display()))?;
    // Open read-write: the FIFO then never reports EOF when tmux's `cat`
    // restarts, and opening does not wait for a writer.
    let output_rx = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&fifo)
        .with_context(|| format!("cannot open {}", fifo.display()))?;

    let mut env = vec![
        ("TORCH_AGENT".to_string(), name.to_string()),
        ("TORCH_ROLE".to_string(), def.role.as_str().to_string()),
    ];
    if let Some(p) = &def.parent {
        env.push(("TORCH_PARENT".into(), p.clone()));
    }
    env.extend(def.env.iter().map(|(k, v)| (k.clone(), v.clone())));

    // Start on a placeholder, attach the output pipe, then start the real
    // program: not one byte of its output is missed.
    let placeholder = ["sleep".to_string(), "infinity".to_string()];
    let pane = tmux
        .new_session(
            &name.tmux_session(),
            (def.width, def.height),
            &workdir,
            &env,
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
    tmux.respawn(&pane, &workdir, &env, &def.command)
        .await
        .context("cannot start the agent program")?;
    if let Err(e) = tmux.connect_control(&pane).await {
        tracing::warn!("no tmux control connection ({e}); using a tmux process per command");
    }
    let server_pid = tmux.server_pid().await.unwrap_or(0);
    let classifier = profile_classifier(&def);
    let output_reads = tokio::sync::watch::Sender::new(0);
    let screen = Arc::new(delivery::ScreenReader::new(
        tmux.clone(),
        pane.clone(),
        output_reads.subscribe(),
    ));

    let shared = Arc::new(Shared {
        tmux: tmux.clone(),
        pane: pane.clone(),
        pid: AtomicU32::new(0),
        delivered: AtomicU64::new(0),
        started: Instant::now(),
        last_output_ms: AtomicU64::new(0),
        output_reads,
        activity_seen: std::sync::Mutex::new(None),
        screen: Arc::clone(&screen),
        output_lost: std::sync::atomic::AtomicBool::new(false),
        state: std::sync::Mutex::new("starting"),
        classifier,
        poke: tokio::sync::Notify::new(),
        last_message: std::sync::Mutex::new(None),
    });

    let _ = std::fs::remove_file(&control_path);
    let listener = UnixListener::bind(&control_path)
        .with_context(|| format!("cannot listen on {}", control_path.display()))?;
    std::fs::set_permissions(&control_path, std::fs::Permissions::from_mode(0o660))?;
    share_with_hub(&dir, &control_path);

    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = output::pump(output_rx, || shared.output_seen()).await {
                tracing::warn!("pane output no longer reaches the journal: {e}");
            }
            shared.output_lost.store(true, Ordering::Relaxed);
        });
    }
    let (jobs_tx, jobs_rx) = mpsc::channel(1024);
    let typed_ids = load_typed_ids(name);
    {
        let shared = Arc::clone(&shared);
        let ready = def.ready_pattern.clone();
        let poker = Arc::clone(&shared);
        tokio::spawn(delivery::worker(
            screen,
            ready,
            jobs_rx,
            shared.output_reads.subscribe(),
            typed_ids,
            // Typed input: the health loop watches whether the program
            // reads it.
            move || poker.poke.notify_one(),
            move |delivered, id| {
                if delivered {
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                    if let (Some(id), Ok(mut last)) = (id, shared.last_message.lock()) {
                        *last = Some((id.to_string(), Instant::now()));
                    }
                }
            },
        ));
    }
    tokio::spawn(control::serve(listener, Arc::clone(&shared), jobs_tx));

    let mut wd_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut wd_usec);
    // Half the watchdog interval, as sd_watchdog_enabled(3) advises: each
    // check costs the agent's tmux server a command, and with hundreds of
    // agents idle checks are most of an idle fleet's CPU.
    let period = if watchdog {
        (Duration::from_micros(wd_usec) / 2)
            .clamp(Duration::from_millis(200), Duration::from_secs(15))
    } else {
        DEFAULT_HEALTH_PERIOD
    };
    let probe_timeout = period.clamp(Duration::from_millis(500), Duration::from_secs(2));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut next_check = tokio::time::Instant::now();
    let mut last_status = String::new();
    let mut ready_sent = false;
    let mut unresponsive_since: Option<Instant> = None;
    let mut stuck = StuckInput::default();
    let hang_after = Duration::from_secs(def.hang_after_secs);
    tracing::info!(
        "agent {name}: tmux server pid {server_pid}, pane {pane}, program {:?}, watchdog {}",
        def.command,
        if watchdog {
            format!("{wd_usec} us")
        } else {
            "off".into()
        }
    );
    // The program's exit, as an event: no need to wait for the next tick.
    let mut exit_watch: Option<(u32, AsyncFd<OwnedFd>)> = None;
    // So is the tmux server's death.
    let mut server_watch = (server_pid != 0).then(|| watch_exit(server_pid)).flatten();
    loop {
        let exited = async {
            match &exit_watch {
                Some((_, fd)) => drop(fd.readable().await),
                None => std::future::pending::<()>().await,
            }
        };
        let server_gone = async {
            match &server_watch {
                Some(fd) => drop(fd.readable().await),
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            // A stop request wins over whatever else is ready.
            biased;
            _ = term.recv() => return Ok(shutdown(&tmux, "SIGTERM").await),
            _ = int.recv() => return Ok(shutdown(&tmux, "SIGINT").await),
            _ = tokio::time::sleep_until(next_check) => {}
            _ = exited => {
                // tmux notices the death itself a moment later.
                exit_watch = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The probe below then finds no server and says so.
            _ = server_gone => server_watch = None,
            _ = shared.poke.notified() => {
                // Input was typed: look within a second whether the program
                // reads it, but not once per message.
                next_check = next_check.min(tokio::time::Instant::now() + POKE_DELAY);
                continue;
            }
        }
        next_check = tokio::time::Instant::now() + period;
        let probe = tokio::time::timeout(probe_timeout, tmux.pane_info(&pane)).await;
        let info = match probe {
            Ok(Ok(info)) => info,
            Ok(Err(TmuxError::NoServer(e))) => {
                logging::final_lines(
                    3,
                    &format!("the agent's tmux server is gone ({e}); exiting so systemd restarts the agent"),
                );
                notify(&[NotifyState::Status("tmux server gone; restarting")]);
                return Ok(ExitCode::FAILURE);
            }
            Ok(Err(e)) => {
                unhealthy(
                    &shared,
                    &mut unresponsive_since,
                    &format!("tmux error: {e}"),
                );
                if give_up(watchdog, unresponsive_since) {
                    return Ok(ExitCode::FAILURE);
                }
                continue;
            }
            Err(_) => {
                unhealthy(
                    &shared,
                    &mut unresponsive_since,
                    &format!("tmux server does not answer within {probe_timeout:?}"),
                );
                if give_up(watchdog, unresponsive_since) {
                    return Ok(ExitCode::FAILURE);
                }
                continue;
            }
        };
        if info.dead {
            return Ok(program_exited(&shared, &info).await);
        }
        shared.pid.store(info.pid, Ordering::Relaxed);
        if exit_watch.as_ref().map(|(p, _)| *p) != Some(info.pid) {
            exit_watch = watch_exit(info.pid).map(|fd| (info.pid, fd));
        }
        if process_stopped(info.pid) {
            shared.set_state("stopped");
            unhealthy(
                &shared,
                &mut unresponsive_since,
                &format!("agent program (pid {}) is stopped or frozen", info.pid),
            );
            if give_up(watchdog, unresponsive_since) {
                return Ok(ExitCode::FAILURE);
            }
            continue;
        }
        let waited = stuck.observe(pending_input(&info.tty).unwrap_or(0), Instant::now());
        if def.hang_after_secs > 0 && stuck.since.is_some() && waited < hang_after {
            // Input is waiting: look again when it would count as a hang
            // (checked: hang_after_secs may be absurdly large).
            if let Some(due) =
                tokio::time::Instant::now().checked_add(hang_after - waited + POKE_DELAY / 10)
            {
                next_check = next_check.min(due);
            }
        }
        if def.hang_after_secs > 0 && waited >= hang_after {
            shared.set_state("hung");
            let why = format!(
                "agent program (pid {}) has not read its input for {}s; it looks hung",
                info.pid,
                waited.as_secs()
            );
            // A hang is a diagnosis, not a doubt about tmux: waiting out the
            // watchdog would only delay the restart, and its SIGABRT would
            // dump our core. Stop in order and let Restart= do the rest.
            logging::final_lines(
                3,
                &format!("{why}; stopping it so systemd restarts the agent"),
            );
            notify(&[NotifyState::Status(&format!("hung: {why}"))]);
            let _ = shared.tmux.kill_server().await;
            return Ok(ExitCode::FAILURE);
        }
        if unresponsive_since.take().is_some() {
            tracing::info!("agent {name} is healthy again");
            // STATUS= says "unhealthy" until we say otherwise.
            last_status.clear();
        }
        shared.set_state("running");
        let status = shared.status_line(shared.activity().await);
        if ready_sent {
            if status == last_status {
                notify(&[NotifyState::Watchdog]);
            } else {
                notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
            }
        } else {
            notify(&[
                NotifyState::Ready,
                NotifyState::Watchdog,
                NotifyState::Status(&status),
            ]);
            tracing::info!("agent {name} is running (pid {})", info.pid);
            ready_sent = true;
        }
        last_status = status;
    }
}

/// The screen reader for the agent's profile, with `torch.toml`'s
/// replacements; a broken config or pattern falls back to the built-in rules.
fn profile_classifier(def: &AgentDefinition) -> Classifier {
    let rules = match Config::load(&config_files()) {
        Ok(c) => c.profile_rules(def.profile),
        Err(e) => {
            tracing::warn!(
                "{e}; using the built-in rules of profile {}",
                def.profile.as_str()
            );
            builtin(def.profile)
        }
    };
    Classifier::new(&rules).unwrap_or_else(|e| {
        tracing::warn!(
            "{e}; using the built-in rules of profile {}",
            def.profile.as_str()
        );
        // The built-in patterns are unit-tested to compile.
        Classifier::new(&builtin(def.profile)).unwrap_or_default()
    })
}

/// The ids of messages typed into this agent before, from its state
/// directory, with a journal line for each message whose fate the previous
/// run never learned: it is not typed again, so the operator must judge.
fn load_typed_ids(name: &AgentName) -> delivery::TypedIds {
    let base = std::env::var_os("STATE_DIRECTORY")
        .and_then(|dirs| std::env::split_paths(&dirs).next())
        .unwrap_or_else(paths::agent_state_base);
    let path = paths::typed_ids_file(&base, name);
    match delivery::TypedIds::open(&path) {
        Ok((ids, unsure)) => {
            for id in unsure {
                tracing::warn!(
                    "message {id} was submitted (Enter pressed) when the agent last stopped, and the agent never showed it took it; it is not typed again. If the agent did not get it, send it again (`torch messages --agent {name}` shows it)"
                );
            }
            ids
        }
        Err(e) => {
            tracing::warn!("{e}");
            delivery::TypedIds::in_memory()
        }
    }
}

/// Lets the hub (which runs as the `torch` user) reach the control socket:
/// the runtime directory and the socket get the `torch` group. Without that
/// group only root can talk to the supervisor.
fn share_with_hub(dir: &Path, socket: &Path) {
    let gid = match nix::unistd::Group::from_name("torch") {
        Ok(Some(g)) => g.gid,
        _ => {
            tracing::info!("no `torch` group: only root can reach {}", socket.display());
            return;
        }
    };
    for p in [dir, socket] {
        if let Err(e) = nix::unistd::chown(p, None, Some(gid)) {
            tracing::warn!(
                "cannot give {} to group torch ({e}); the hub will not reach this agent",
                p.display()
            );
        }
    }
}

/// Records an unhealthy tick: no watchdog ping, and `STATUS=` says why.
fn unhealthy(shared: &Shared, since: &mut Option<Instant>, why: &str) {
    if since.is_none() {
        tracing::warn!("{why}; withholding the watchdog ping");
        *since = Some(Instant::now());
    }
    let _ = shared;
    notify(&[NotifyState::Status(&format!("unhealthy: {why}"))]);
}

/// Without a watchdog nobody else will restart us, so we do it ourselves.
fn give_up(watchdog: bool, since: Option<Instant>) -> bool {
    let over = !watchdog && since.is_some_and(|t| t.elapsed() >= UNRESPONSIVE_LIMIT);
    if over {
        logging::final_lines(
            3,
            &format!("unhealthy for {UNRESPONSIVE_LIMIT:?} and no watchdog is set; exiting so systemd restarts the agent"),
        );
    }
    over
}

/// A descriptor that becomes readable when process `pid` exits (pidfd;
/// Linux 5.3 and later). `None` where the kernel has no pidfd: the health
/// ticks still notice the exit, later.
fn watch_exit(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    use std::os::fd::FromRawFd;
    let pid = nix::libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open and
    // unchanged until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
}

nix::ioctl_read_bad!(fionread, nix::libc::FIONREAD, nix::libc::c_int);

/// Bytes typed into the pane's terminal that its program has not read yet.
fn pending_input(tty: &str) -> Option<usize> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{FromRawFd, OwnedFd};
    if !tty.starts_with("/dev/pts/") {
        return None;
    }
    // Opened only for the ioctl and closed at once: holding the pane's
    // terminal open would hide its hang-up from tmux.
    let fd = open(
        tty,
        OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer we pass.
    unsafe { fionread(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut n) }.ok()?;
    usize::try_from(n).ok()
}

/// Tracks typed input that the program leaves unread.
#[derive(Default)]
struct StuckInput {
    pending: usize,
    since: Option<Instant>,
}

impl StuckInput {
    /// Records the pending byte count; returns for how long input has
    /// waited without the program reading any of it.
    fn observe(&mut self, pending: usize, now: Instant) -> Duration {
        if pending == 0 || pending < self.pending {
            // Nothing waiting, or the program read some: it is alive.
            self.since = (pending > 0).then_some(now);
        } else if self.since.is_none() {
            self.since = Some(now);
        }
        self.pending = pending;
        self.since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }
}

/// Whether `pid` is stopped by a signal or a tracer (state T or t).
fn process_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name may hold spaces and parentheses; the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|s| s == "T" || s == "t")
}

async fn program_exited(shared: &Shared, info: &PaneInfo) -> ExitCode {
    shared.set_state("exited");
    // tmux marks a pane dead at the end of its output, and learns the exit
    // status a moment later from waitpid: wait for it, a little.
    let mut info = info.clone();
    for _ in 0..50 {
        if info.dead_status.is_some() || info.dead_signal.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        match shared.tmux.pane_info(&shared.pane).await {
            Ok(i) => info = i,
            Err(_) => break,
        }
    }
    let info = &info;
    let screen = shared
        .tmux
        .capture(&shared.pane, LAST_SCREEN_HISTORY)
        .await
        .unwrap_or_else(|e| format!("(cannot read the last screen: {e})"));
    let screen = screen.trim_end();
    let how = match (info.dead_status, info.dead_signal) {
        (_, Some(sig)) => format!("was killed by signal {sig}"),
        (Some(code), None) => format!("exited with status {code}"),
        (None, None) => "ended (status unknown)".to_string(),
    };
    let framed: String = screen.lines().map(|l| format!("\n  | {l}")).collect();
    logging::final_lines(4, &format!("agent program {how}; its last screen:{framed}"));
    if let Some((id, at)) = shared.last_message.lock().ok().and_then(|l| l.clone()) {
        // A message is typed at most once: if the program died before it
        // read this one, only the operator can tell and send it again.
        logging::final_lines(
            4,
            &format!(
                "the last message delivered to it was {id}, {:.1} s before it ended; it is not typed again: if it was lost, send it again",
                at.elapsed().as_secs_f64()
            ),
        );
    }
    notify(&[NotifyState::Status(&format!("agent program {how}"))]);
    let _ = shared.tmux.kill_server().await;
    if info.dead_status == Some(0) && info.dead_signal.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn shutdown(tmux: &Tmux, why: &str) -> ExitCode {
    tracing::info!("{why}: stopping the agent");
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    if let Err(e) = tmux.kill_server().await {
        tracing::warn!("cannot stop the tmux server cleanly ({e}); systemd will kill what is left");
    }
    ExitCode::SUCCESS
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
    fn stuck_input_counts_only_while_nothing_is_read() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut st = StuckInput::default();
        assert_eq!(st.observe(0, t0), Duration::ZERO);
        assert_eq!(st.observe(10, t0 + s(1)), Duration::ZERO);
        assert_eq!(st.observe(10, t0 + s(5)), s(4));
        assert_eq!(st.observe(12, t0 + s(6)), s(5));
        // The program read something: the clock starts again.
        assert_eq!(st.observe(3, t0 + s(7)), Duration::ZERO);
        assert_eq!(st.observe(0, t0 + s(8)), Duration::ZERO);
    }

    #[test]
    fn own_process_is_not_stopped() {
        assert!(!process_stopped(std::process::id()));
        assert!(!process_stopped(u32::MAX));
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
