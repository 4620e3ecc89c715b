//! What the health loop, the delivery worker and the control socket share
//! about one agent: its pane, what the supervisor knows of the program, the
//! counters `STATUS=` and the `status` request report, and its screen.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{watch, Notify};
use torch_core::profile::{Activity, Classifier};
use torch_core::protocol::Response;
use torch_tmux::Tmux;

use crate::attention::{Overdue, Watch};
use crate::hooks::HookFeed;
use crate::screen::ScreenReader;

/// What the supervisor knows of the agent program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AgentState {
    /// Started; the first health check has not run yet.
    Starting = 0,
    /// Alive and healthy at the last check.
    Running = 1,
    /// Stopped by a signal or a tracer.
    Stopped = 2,
    /// The program ended.
    Exited = 3,
    /// It left typed input unread for `hang_after_secs`.
    Hung = 4,
}

impl AgentState {
    const ALL: [AgentState; 5] = [
        AgentState::Starting,
        AgentState::Running,
        AgentState::Stopped,
        AgentState::Exited,
        AgentState::Hung,
    ];

    /// The word `STATUS=` and the `status` answer use.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Running => "running",
            AgentState::Stopped => "stopped",
            AgentState::Exited => "exited",
            AgentState::Hung => "hung",
        }
    }
}

/// The agent, as the supervisor's tasks share it.
pub struct Shared {
    /// The agent's tmux server.
    pub tmux: Tmux,
    /// The agent's pane id (`%0`).
    pub pane: String,
    /// The pane's screen, read again only after new output.
    pub screen: Arc<ScreenReader>,
    /// Wakes the health loop (after input was typed into the pane).
    pub poke: Notify,
    /// What the CLI's hooks reported (nothing for CLIs without hooks).
    pub hooks: Arc<HookFeed>,
    /// The agent's profile, whose CLI decides the keys of an answer.
    pub profile: torch_core::Profile,
    /// Whether the program reads pasted text bracketed just now.
    pub paste_mode: Arc<crate::output::PasteMode>,
    /// How long the agent has waited on a question or in trouble.
    attention: Mutex<Watch>,
    state: AtomicU8,
    pid: AtomicU32,
    delivered: AtomicU64,
    started: Instant,
    last_output_ms: AtomicU64,
    /// Reads of pane output so far: the screen cannot change without one.
    /// Delivery waits on it instead of polling the screen.
    output_reads: watch::Sender<u64>,
    /// The hub's id of the last message delivered, and when: named in the
    /// journal if the program dies, since it is not typed again.
    last_message: Mutex<Option<(String, Instant)>>,
}

impl Shared {
    /// The agent in `pane` of `tmux`, its screen read with `classifier`.
    pub fn new(
        tmux: Tmux,
        pane: String,
        classifier: Classifier,
        hooks: Arc<HookFeed>,
        attention: Watch,
        profile: torch_core::Profile,
    ) -> Self {
        let output_reads = watch::Sender::new(0);
        let screen = Arc::new(ScreenReader::new(
            tmux.clone(),
            pane.clone(),
            output_reads.subscribe(),
            classifier,
        ));
        Self {
            tmux,
            pane,
            screen,
            poke: Notify::new(),
            hooks,
            profile,
            paste_mode: Default::default(),
            attention: Mutex::new(attention),
            state: AtomicU8::new(AgentState::Starting as u8),
            pid: AtomicU32::new(0),
            delivered: AtomicU64::new(0),
            started: Instant::now(),
            last_output_ms: AtomicU64::new(0),
            output_reads,
            last_message: Mutex::new(None),
        }
    }

    /// Records what the supervisor now knows of the program.
    pub fn set_state(&self, state: AgentState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// What the supervisor last knew of the program.
    pub fn state(&self) -> AgentState {
        let n = self.state.load(Ordering::Relaxed);
        AgentState::ALL
            .into_iter()
            .find(|s| *s as u8 == n)
            .unwrap_or(AgentState::Starting)
    }

    /// Records the program's pid, as the last health check found it.
    pub fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// Notes a read of pane output, after which the program reads pasted
    /// text bracketed or not as `paste` says.
    pub fn output_seen(&self, paste: Option<bool>) {
        self.paste_mode.set(paste);
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_output_ms.store(ms, Ordering::Relaxed);
        self.output_reads.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Notes that pane output no longer arrives: the screen is then read
    /// afresh each time its activity is asked.
    pub fn output_lost(&self) {
        self.screen.output_lost();
    }

    /// Counts of pane output reads, for waiting on the next one.
    pub fn output_reads(&self) -> watch::Receiver<u64> {
        self.output_reads.subscribe()
    }

    /// Notes the end of a delivery attempt of message `id`.
    pub fn attempted(&self, delivered: bool, id: Option<&str>) {
        if !delivered {
            return;
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if let (Some(id), Ok(mut last)) = (id, self.last_message.lock()) {
            *last = Some((id.to_string(), Instant::now()));
        }
    }

    /// The hub's id of the last message delivered, and when.
    pub fn last_message(&self) -> Option<(String, Instant)> {
        self.last_message.lock().ok().and_then(|l| l.clone())
    }

    /// What the agent is doing: what its hooks reported, checked against
    /// its screen; the screen alone for a CLI without hooks.
    pub async fn activity(&self) -> Activity {
        self.hooks.activity(self.screen.activity().await)
    }

    /// Records what the agent does now; a wait that just ran past its
    /// limit.
    pub fn observe_attention(&self, activity: Activity) -> Option<Overdue> {
        let mut watch = self.attention.lock().ok()?;
        watch.observe(activity, Instant::now())
    }

    fn waiting_secs(&self) -> u64 {
        let watch = self.attention.lock();
        let waited = watch.ok().and_then(|w| w.waiting(Instant::now()));
        waited.map_or(0, |d| d.as_secs())
    }

    fn idle_secs(&self) -> u64 {
        let since_start = self.started.elapsed().as_millis() as u64;
        since_start.saturating_sub(self.last_output_ms.load(Ordering::Relaxed)) / 1000
    }

    /// The answer to a `status` request.
    pub async fn status_response(&self) -> Response {
        let screen = self.screen.activity().await;
        Response::Status {
            state: self.state().as_str().to_string(),
            pid: self.pid.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            idle_secs: self.idle_secs(),
            activity: self.hooks.activity(screen).as_str().to_string(),
            signal: self.hooks.signal(),
            waiting_secs: self.waiting_secs(),
            question: self.hooks.question().unwrap_or_default(),
            screen: screen.as_str().to_string(),
            tokens: self.hooks.tokens(),
            cost_microusd: self.hooks.cost_microusd(),
        }
    }

    /// The `STATUS=` line. Nothing in it changes while the agent idles.
    pub fn status_line(&self, activity: Activity) -> String {
        format!(
            "agent {}, {} (pid {}); {} messages delivered",
            self.state().as_str(),
            activity.as_str(),
            self.pid.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_keep_their_words() {
        let words: Vec<_> = AgentState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(words, ["starting", "running", "stopped", "exited", "hung"]);
        for (i, s) in AgentState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "ALL is in discriminant order");
        }
    }
}
