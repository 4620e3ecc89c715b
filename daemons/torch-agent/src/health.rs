//! The health loop: every half watchdog interval (and at once on the
//! program's or the tmux server's death, seen through pidfds, and soon after
//! input was typed) it asks tmux for the pane, checks that the program is
//! neither stopped nor leaving its input unread, and tells systemd: READY
//! once, then WATCHDOG while healthy, with a STATUS line that says why not.
//! It returns the supervisor's exit code when the agent is to stop.

use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, Signal, SignalKind};
use torch_core::{AgentDefinition, AgentName};
use torch_tmux::{PaneInfo, Tmux, TmuxError};

use crate::notify::{self, Reporter};
use crate::state::{AgentState, Shared};
use crate::{attention, logging, proc};

/// Health period when systemd set no watchdog.
const DEFAULT_HEALTH_PERIOD: Duration = Duration::from_secs(2);
/// Without a watchdog, how long tmux may stay unresponsive before we exit.
const UNRESPONSIVE_LIMIT: Duration = Duration::from_secs(30);
/// How soon after typed input the health loop checks that it was read.
const POKE_DELAY: Duration = Duration::from_secs(1);
/// Lines of scrollback logged with the last screen of a dead program.
const LAST_SCREEN_HISTORY: u32 = 50;

/// Watches the agent until it is to stop; returns the exit code that tells
/// systemd what happened.
pub async fn watch(
    name: &AgentName,
    def: &AgentDefinition,
    shared: Arc<Shared>,
    server_pid: u32,
) -> anyhow::Result<ExitCode> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut health = Health::new(name, def, shared, server_pid);
    loop {
        if let Some(why) = health.wait(&mut term, &mut int).await {
            return Ok(shutdown(&health.shared.tmux, why).await);
        }
        if let Some(code) = health.check().await {
            return Ok(code);
        }
    }
}

/// How long one probe may wait for tmux. A check starts one period after
/// the last ping and the watchdog runs out two periods after it, so the
/// probe must give up well within one period for the supervisor to say why
/// (`STATUS=` and the journal) before systemd kills it.
fn probe_timeout(period: Duration) -> Duration {
    (period / 2).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// What a probe of the pane found.
enum Probe {
    Pane(PaneInfo),
    /// The tmux server is gone (already logged).
    ServerGone,
    /// tmux failed or did not answer: why.
    Unhealthy(String),
}

struct Health {
    name: String,
    /// Told when the agent waits too long on a question or in trouble.
    parent: Option<String>,
    shared: Arc<Shared>,
    reporter: Reporter,
    watchdog: bool,
    period: Duration,
    probe_timeout: Duration,
    hang_after: Duration,
    next_check: tokio::time::Instant,
    unresponsive_since: Option<Instant>,
    stuck: StuckInput,
    /// The program's exit, as an event: no need to wait for the next tick.
    exit_watch: Option<(u32, AsyncFd<OwnedFd>)>,
    /// So is the tmux server's death.
    server_watch: Option<AsyncFd<OwnedFd>>,
}

impl Health {
    fn new(name: &AgentName, def: &AgentDefinition, shared: Arc<Shared>, server_pid: u32) -> Self {
        let watchdog = notify::watchdog_interval();
        // Half the watchdog interval, as sd_watchdog_enabled(3) advises: each
        // check costs the agent's tmux server a command, and with hundreds of
        // agents idle checks are most of an idle fleet's CPU.
        let period = watchdog.map_or(DEFAULT_HEALTH_PERIOD, |wd| {
            (wd / 2).clamp(Duration::from_millis(200), Duration::from_secs(15))
        });
        tracing::info!(
            "agent {name}: tmux server pid {server_pid}, pane {}, program {:?}, watchdog {}",
            shared.pane,
            def.command,
            watchdog.map_or("off".into(), |wd| format!("{} us", wd.as_micros()))
        );
        Self {
            name: name.to_string(),
            parent: def.parent.clone(),
            shared,
            reporter: Reporter::default(),
            watchdog: watchdog.is_some(),
            period,
            probe_timeout: probe_timeout(period),
            hang_after: Duration::from_secs(def.hang_after_secs),
            next_check: tokio::time::Instant::now(),
            unresponsive_since: None,
            stuck: StuckInput::default(),
            exit_watch: None,
            server_watch: (server_pid != 0)
                .then(|| proc::watch_exit(server_pid))
                .flatten(),
        }
    }

    /// Waits for the next check; returns the signal's name when the
    /// supervisor is asked to stop instead.
    async fn wait(&mut self, term: &mut Signal, int: &mut Signal) -> Option<&'static str> {
        loop {
            let exited = async {
                match &self.exit_watch {
                    Some((_, fd)) => drop(fd.readable().await),
                    None => std::future::pending::<()>().await,
                }
            };
            let server_gone = async {
                match &self.server_watch {
                    Some(fd) => drop(fd.readable().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                // A stop request wins over whatever else is ready.
                biased;
                _ = term.recv() => return Some("SIGTERM"),
                _ = int.recv() => return Some("SIGINT"),
                _ = tokio::time::sleep_until(self.next_check) => return None,
                _ = exited => {
                    // tmux notices the death itself a moment later.
                    self.exit_watch = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return None;
                }
                // The probe then finds no server and says so.
                _ = server_gone => {
                    self.server_watch = None;
                    return None;
                }
                _ = self.shared.poke.notified() => {
                    // Input was typed: look within a second whether the
                    // program reads it, but not once per message.
                    self.next_check = self
                        .next_check
                        .min(tokio::time::Instant::now() + POKE_DELAY);
                }
            }
        }
    }

    /// One check; the exit code when the supervisor is to exit.
    async fn check(&mut self) -> Option<ExitCode> {
        self.next_check = tokio::time::Instant::now() + self.period;
        let info = match self.probe().await {
            Probe::Pane(info) => info,
            Probe::ServerGone => return Some(ExitCode::FAILURE),
            Probe::Unhealthy(why) => return self.unhealthy(&why),
        };
        if info.dead {
            return Some(program_exited(&self.shared, &info).await);
        }
        self.shared.set_pid(info.pid);
        if self.exit_watch.as_ref().map(|(p, _)| *p) != Some(info.pid) {
            self.exit_watch = proc::watch_exit(info.pid).map(|fd| (info.pid, fd));
        }
        if proc::process_stopped(info.pid) {
            self.shared.set_state(AgentState::Stopped);
            let why = format!("agent program (pid {}) is stopped or frozen", info.pid);
            return self.unhealthy(&why);
        }
        if let Some(code) = self.check_input(&info).await {
            return Some(code);
        }
        self.healthy(info.pid).await;
        None
    }

    /// Asks tmux for the pane, within the probe's time limit.
    async fn probe(&self) -> Probe {
        let tmux = &self.shared.tmux;
        let probe = tokio::time::timeout(self.probe_timeout, tmux.pane_info(&self.shared.pane));
        match probe.await {
            Ok(Ok(info)) => Probe::Pane(info),
            Ok(Err(TmuxError::NoServer(e))) => {
                logging::final_lines(
                    3,
                    &format!("the agent's tmux server is gone ({e}); exiting so systemd restarts the agent"),
                );
                notify::status("tmux server gone; restarting");
                Probe::ServerGone
            }
            Ok(Err(e)) => Probe::Unhealthy(format!("tmux error: {e}")),
            Err(_) => Probe::Unhealthy(format!(
                "tmux server does not answer within {:?}",
                self.probe_timeout
            )),
        }
    }

    /// Records an unhealthy check: no watchdog ping, and `STATUS=` says why.
    /// Without a watchdog nobody else will restart us, so after a while we
    /// exit ourselves: the exit code then.
    fn unhealthy(&mut self, why: &str) -> Option<ExitCode> {
        let since = *self.unresponsive_since.get_or_insert_with(|| {
            tracing::warn!("{why}; withholding the watchdog ping");
            Instant::now()
        });
        self.reporter.unhealthy(why);
        if self.watchdog || since.elapsed() < UNRESPONSIVE_LIMIT {
            return None;
        }
        logging::final_lines(
            3,
            &format!("unhealthy for {UNRESPONSIVE_LIMIT:?} and no watchdog is set; exiting so systemd restarts the agent"),
        );
        Some(ExitCode::FAILURE)
    }

    /// Follows typed input the program leaves unread; on a hang, stops tmux
    /// and returns the exit code.
    async fn check_input(&mut self, info: &PaneInfo) -> Option<ExitCode> {
        let pending = proc::pending_input(&info.tty).unwrap_or(0);
        let waited = self.stuck.observe(pending, Instant::now());
        if self.hang_after.is_zero() {
            return None;
        }
        if waited < self.hang_after {
            // Input is waiting: look again when it would count as a hang
            // (checked: hang_after_secs may be absurdly large).
            let due = self.hang_after - waited + POKE_DELAY / 10;
            if let Some(due) = self
                .stuck
                .since
                .and_then(|_| tokio::time::Instant::now().checked_add(due))
            {
                self.next_check = self.next_check.min(due);
            }
            return None;
        }
        self.shared.set_state(AgentState::Hung);
        let why = format!(
            "agent program (pid {}) has not read its input for {}s; it looks hung",
            info.pid,
            waited.as_secs()
        );
        // A hang is a diagnosis, not a doubt about tmux: waiting out the
        // watchdog would only delay the restart, and its SIGABRT would dump
        // our core. Stop in order and let Restart= do the rest.
        logging::final_lines(
            3,
            &format!("{why}; stopping it so systemd restarts the agent"),
        );
        notify::status(&format!("hung: {why}"));
        let _ = self.shared.tmux.kill_server().await;
        Some(ExitCode::FAILURE)
    }

    /// Records a healthy check: WATCHDOG, READY the first time.
    async fn healthy(&mut self, pid: u32) {
        if self.unresponsive_since.take().is_some() {
            tracing::info!("agent {} is healthy again", self.name);
        }
        self.shared.set_state(AgentState::Running);
        let activity = self.shared.activity().await;
        let status = self.shared.status_line(activity);
        if self.reporter.healthy(status) {
            tracing::info!("agent {} is running (pid {pid})", self.name);
        }
        if let Some(overdue) = self.shared.observe_attention(activity) {
            let question = self.shared.hooks.question();
            let text = attention::alert_text(&self.name, &overdue, question.as_deref());
            let (name, parent) = (self.name.clone(), self.parent.clone());
            tokio::spawn(async move { attention::raise(&name, parent.as_deref(), text).await });
        }
    }
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

/// Logs how the program ended with its last screen, stops tmux, and
/// returns 0 if the program exited 0 (the unit then stays stopped), else 1.
async fn program_exited(shared: &Shared, info: &PaneInfo) -> ExitCode {
    shared.set_state(AgentState::Exited);
    let info = exit_status(shared, info).await;
    let screen = shared
        .tmux
        .capture(&shared.pane, LAST_SCREEN_HISTORY)
        .await
        .unwrap_or_else(|e| format!("(cannot read the last screen: {e})"));
    let how = match (info.dead_status, info.dead_signal) {
        (_, Some(sig)) => format!("was killed by signal {sig}"),
        (Some(code), None) => format!("exited with status {code}"),
        (None, None) => "ended (status unknown)".to_string(),
    };
    let framed: String = screen
        .trim_end()
        .lines()
        .map(|l| format!("\n  | {l}"))
        .collect();
    logging::final_lines(4, &format!("agent program {how}; its last screen:{framed}"));
    if let Some((id, at)) = shared.last_message() {
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
    notify::status(&format!("agent program {how}"));
    let _ = shared.tmux.kill_server().await;
    if info.dead_status == Some(0) && info.dead_signal.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The dead pane with its exit status: tmux marks a pane dead at the end of
/// its output and learns the status a moment later from waitpid, so this
/// waits for it, a little.
async fn exit_status(shared: &Shared, info: &PaneInfo) -> PaneInfo {
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
    info
}

async fn shutdown(tmux: &Tmux, why: &str) -> ExitCode {
    tracing::info!("{why}: stopping the agent");
    notify::stopping();
    if let Err(e) = tmux.kill_server().await {
        tracing::warn!("cannot stop the tmux server cleanly ({e}); systemd will kill what is left");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_probe_gives_up_well_before_the_watchdog() {
        // Period = watchdog / 2; the check starts one period after the last
        // ping, so period + timeout must leave room before the watchdog.
        for wd_ms in [400u64, 1_000, 3_000, 10_000, 30_000, 60_000] {
            let wd = Duration::from_millis(wd_ms);
            let period = wd / 2;
            let margin = wd - period - probe_timeout(period);
            assert!(margin >= period / 2, "watchdog {wd:?}: margin {margin:?}");
        }
    }
}
