//! The agent CLI's hooks, as its supervisor hears them: the hook side
//! (`torch-agent --hook SOCKET`, run by the CLI at each event) and the
//! supervisor's side, [`HookFeed`], which turns the events into the agent's
//! state and tells the delivery worker which prompts the CLI took.
//!
//! The screen still counts where hooks cannot see: a dialog on screen wins
//! over an idle hook, and a turn interrupted with Esc (which fires no Stop)
//! reads idle once the TUI's chrome has shown its prompt for a while.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;
use torch_core::config::{Limits, PermissionPolicy};
use torch_core::hooks::{self, HookEvent};
use torch_core::profile::Activity;
use torch_core::protocol::{self, Request, Response};

use crate::limits;
use crate::report;
use crate::session::SessionStore;
use crate::tokens::TokenCounter;

/// A hook's input is one JSON object; prompts are bounded by the CLI.
const MAX_HOOK_INPUT: u64 = 4 << 20;
/// The CLI waits for its hooks: a supervisor that does not answer must not
/// stall the agent.
const HOOK_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A "working" hook with an idle screen for this long means a turn that
/// ended without a Stop event (interrupted with Esc).
const STALE_WORKING: Duration = Duration::from_secs(3);

/// `torch-agent --hook SOCKET`: forwards the hook's standard input to the
/// supervisor. Always exits 0 and prints nothing: Claude Code adds a
/// UserPromptSubmit hook's output to the model's context, and a failing
/// hook must not stop the agent's work.
pub fn forward(socket: &Path) -> ExitCode {
    let mut input = String::new();
    let read = std::io::stdin()
        .take(MAX_HOOK_INPUT)
        .read_to_string(&mut input);
    let event = match read.map(|_| serde_json::from_str::<serde_json::Value>(&input)) {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => {
            eprintln!("torch-agent --hook: the hook's input is not JSON ({e}); ignored");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("torch-agent --hook: cannot read the hook's input: {e}");
            return ExitCode::SUCCESS;
        }
    };
    match protocol::call(socket, &Request::Hook { event }, HOOK_CALL_TIMEOUT) {
        Ok(Response::Noted) => {}
        Ok(Response::Decision { allow, message }) => {
            println!("{}", decision_output(allow, &message))
        }
        Ok(other) => eprintln!("torch-agent --hook: the supervisor answered {other:?}"),
        Err(e) => eprintln!("torch-agent --hook: {e}"),
    }
    ExitCode::SUCCESS
}

/// `torch-agent --status-line SOCKET`: Claude Code's status line command.
/// Hands its input (the session's cost among it) to the supervisor, and
/// prints the line Claude shows under its input box.
pub fn status_line(socket: &Path) -> ExitCode {
    let mut input = String::new();
    let _ = std::io::stdin()
        .take(MAX_HOOK_INPUT)
        .read_to_string(&mut input);
    if let Ok(serde_json::Value::Object(mut event)) = serde_json::from_str(&input) {
        event.insert("hook_event_name".into(), hooks::STATUS_LINE.into());
        let event = serde_json::Value::Object(event);
        if let Err(e) = protocol::call(socket, &Request::Hook { event }, HOOK_CALL_TIMEOUT) {
            eprintln!("torch-agent --status-line: {e}");
        }
    }
    let agent = std::env::var("TORCH_AGENT").unwrap_or_default();
    println!("torch · {agent}");
    ExitCode::SUCCESS
}

/// A PermissionRequest hook's answer, as Claude Code reads it on standard
/// output.
fn decision_output(allow: bool, message: &str) -> serde_json::Value {
    let decision = if allow {
        serde_json::json!({"behavior": "allow"})
    } else {
        serde_json::json!({"behavior": "deny", "message": message})
    };
    serde_json::json!({
        "hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}
    })
}

/// The policy's answer to a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The tool may run.
    Allow,
    /// It may not.
    Deny,
}

impl Decision {
    /// The reply to the hook.
    pub fn response(self) -> Response {
        Response::Decision {
            allow: self == Decision::Allow,
            message: match self {
                Decision::Allow => String::new(),
                Decision::Deny => "Refused by the fleet's permission policy ([permissions] in torch.toml); do without this tool or ask your parent agent.".to_string(),
            },
        }
    }
}

/// How long a CLI with hooks has to report its session before the
/// supervisor reads its state from the screen alone (a `claude` profile
/// whose command is not Claude Code, or hooks that fail).
const SESSION_GRACE: Duration = Duration::from_secs(20);

/// The last event heard, and when.
#[derive(Debug, Clone)]
struct Heard {
    activity: Activity,
    event: String,
    at: Instant,
}

/// What the CLI's hooks said so far in this run of the supervisor.
pub struct HookFeed {
    created: Instant,
    heard: Mutex<Option<Heard>>,
    session: Mutex<Option<String>>,
    prompts: broadcast::Sender<String>,
    grace_said: std::sync::atomic::AtomicBool,
    /// The session's tokens as the CLI reported them, when it keeps no
    /// transcript Torch reads.
    reported_tokens: Mutex<Option<torch_core::protocol::Tokens>>,
    /// The CLI reports its session with its first prompt, not at start.
    at_first_prompt: bool,
    /// It did not report a prompt it was to confirm, and no hook was ever
    /// heard: the screen decides.
    silent: std::sync::atomic::AtomicBool,
    /// Where a reported session is kept for the next start to resume.
    sessions: Option<SessionStore>,
    /// What to answer when the CLI asks permission for a tool.
    permission: PermissionPolicy,
    /// What the CLI asks, while it asks.
    question: Mutex<Option<String>>,
    /// The agent's name, for its continue check-ins.
    agent: String,
    /// How to continue after a limit.
    limits: Limits,
    /// Until when a rate or usage limit stops the agent.
    limited_until: Mutex<Option<SystemTime>>,
    /// Woken at each event heard, for whoever follows the agent's state.
    heard_one: tokio::sync::Notify,
    /// The tokens of the session, from its transcript (whose path is also
    /// where Claude records a limit's reset).
    tokens: Mutex<TokenCounter>,
    /// The session's cost as the CLI computes it, in millionths of a dollar.
    cost: Mutex<Option<u64>>,
    /// The CLI's screen may lag behind its hooks, so the next message waits
    /// for it to settle: a resumed session began (the CLI may still be
    /// loading its history), or the policy answered a permission request
    /// (opencode's TUI may draw the dialog, already answered, after the turn
    /// ended, and would take keys meant for its input box).
    unsettled: std::sync::atomic::AtomicBool,
}

impl Default for HookFeed {
    fn default() -> Self {
        Self {
            created: Instant::now(),
            heard: Mutex::new(None),
            session: Mutex::new(None),
            prompts: broadcast::channel(64).0,
            grace_said: Default::default(),
            at_first_prompt: false,
            silent: Default::default(),
            sessions: None,
            permission: PermissionPolicy::Escalate,
            question: Mutex::new(None),
            agent: String::new(),
            limits: Limits::default(),
            limited_until: Mutex::new(None),
            tokens: Mutex::new(TokenCounter::default()),
            cost: Mutex::new(None),
            reported_tokens: Mutex::new(None),
            unsettled: Default::default(),
            heard_one: Default::default(),
        }
    }
}

impl HookFeed {
    /// The feed of `agent`: it keeps each reported session in `sessions`,
    /// answers permission requests by `permission` and continues after
    /// limits by `limits`.
    pub fn new(
        agent: &str,
        sessions: SessionStore,
        permission: PermissionPolicy,
        limits: Limits,
    ) -> Self {
        Self {
            sessions: Some(sessions),
            permission,
            agent: agent.to_string(),
            limits,
            ..Self::default()
        }
    }

    /// For a CLI that reports its session only with its first prompt: its
    /// hooks confirm deliveries from the start.
    pub fn session_at_first_prompt(mut self) -> Self {
        self.at_first_prompt = true;
        self
    }

    /// Whether the hooks confirm a delivery now: the CLI reported its
    /// session, or reports it with its first prompt and has not yet failed
    /// to report one.
    pub fn confirms_prompts(&self) -> bool {
        self.session_started()
            || (self.at_first_prompt && !self.silent.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// A delivery the hooks were to confirm was not reported: when no hook
    /// was ever heard, they are not installed or fail, and the screen
    /// decides from now on.
    pub fn prompt_unreported(&self) {
        if self.at_first_prompt && self.last().is_none() {
            self.silent
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("the agent's CLI reported no prompt through its hooks (are they installed?); its state is read from its screen");
        }
    }

    /// Takes in one hook's input; the answer to give the CLI, if any (a
    /// permission request the policy decides).
    pub fn hear(&self, input: &serde_json::Value) -> Option<Decision> {
        let Some(event) = HookEvent::parse(input) else {
            tracing::debug!("a hook sent something that names no event; ignored");
            return None;
        };
        let decision = self.note(input, &event);
        let activity = match &decision {
            // Decided: no question stays on screen, the tool runs or not.
            Some(_) => Some(Activity::Working),
            None => event.activity(),
        };
        if let (Some(activity), Ok(mut heard)) = (activity, self.heard.lock()) {
            let name = input.get("hook_event_name").and_then(|v| v.as_str());
            *heard = Some(Heard {
                activity,
                event: name.unwrap_or("?").to_string(),
                at: Instant::now(),
            });
        }
        self.heard_one.notify_one();
        decision
    }

    /// Returns once an event was heard (or was, since the last call).
    pub async fn next_heard(&self) {
        self.heard_one.notified().await;
    }

    /// Acts on what an event says beyond the state it implies.
    fn note(&self, input: &serde_json::Value, event: &HookEvent) -> Option<Decision> {
        match event {
            HookEvent::SessionStart {
                session,
                transcript,
                resumed,
            } => {
                if *resumed {
                    self.unsettle();
                }
                self.session_started_as(session, transcript)
            }
            HookEvent::PromptSubmitted { prompt } => {
                self.set_limited(None);
                // No receiver is fine: nobody is delivering just now.
                let _ = self.prompts.send(prompt.clone());
            }
            HookEvent::StopFailure { error } if error == "rate_limit" => self.limited(),
            HookEvent::ApiRetry { at_ms, message } => {
                self.retrying(*at_ms, message);
                return None;
            }
            HookEvent::StopFailure { error } => report::raise(&format!(
                "the agent's last turn failed ({error}); it is back at its prompt"
            )),
            HookEvent::PermissionRequest { tool } => return self.permission_asked(input, tool),
            HookEvent::Notice { kind, .. } if kind == hooks::GEMINI_TOOL_PERMISSION => {
                return self.decide(gemini_permission(input));
            }
            // The permission request said more (the tool and its command).
            HookEvent::Notice { kind, message }
                if kind == "permission_prompt" && self.question().is_none() =>
            {
                self.set_question(Some(message.clone()));
            }
            HookEvent::SessionEnd if !self.session_started() => self.resume_failed(),
            HookEvent::StatusLine {
                cost_microusd,
                tokens,
            } => {
                if let (Some(c), Ok(mut cost)) = (cost_microusd, self.cost.lock()) {
                    *cost = Some(*c);
                }
                if let (Some(t), Ok(mut reported)) = (tokens, self.reported_tokens.lock()) {
                    *reported = Some(*t);
                }
                // Not an event of the session: the question stands.
                return None;
            }
            _ => {}
        }
        if !matches!(event, HookEvent::Notice { .. }) {
            self.set_question(None);
        }
        None
    }

    /// A permission request: decided by the policy, or left to a human.
    fn permission_asked(&self, input: &serde_json::Value, tool: &str) -> Option<Decision> {
        let what = match input
            .pointer("/tool_input/command")
            .and_then(|v| v.as_str())
        {
            Some(command) => format!("{tool}: {command}"),
            None => tool.to_string(),
        };
        self.decide(what)
    }

    /// The question on screen went away: it was answered.
    pub fn question_gone(&self) {
        self.set_question(None);
    }

    /// The policy's answer to a request to use `what` (from a hook, or a
    /// question read off the screen), or `None` when a human answers.
    pub fn decide(&self, what: String) -> Option<Decision> {
        match self.permission {
            PermissionPolicy::Approve => {
                tracing::info!("approved by the permission policy: {what}");
                self.unsettle();
                Some(Decision::Allow)
            }
            PermissionPolicy::Deny => {
                tracing::info!("denied by the permission policy: {what}");
                self.unsettle();
                Some(Decision::Deny)
            }
            PermissionPolicy::Escalate => {
                tracing::info!(
                    "the agent asks for permission ({what}); answer with `torch answer`"
                );
                self.set_question(Some(format!("permission to use {what}")));
                None
            }
        }
    }

    /// A limit stopped the turn: hold messages until it resets, and have a
    /// check-in tell the agent to continue then.
    fn limited(&self) {
        let transcript = self.tokens.lock().ok().and_then(|t| t.path().cloned());
        let reset = transcript.and_then(|t| limits::reset_from_transcript(&t));
        let at = limits::continue_at(reset, SystemTime::now(), &self.limits, &self.agent);
        let secs = secs_until(at);
        report::raise(&format!(
            "a rate or usage limit stopped the agent's turn; it continues in {secs} s ({})",
            if reset.is_some() {
                "the limit's reset"
            } else {
                "no reset time given: [limits] wait"
            }
        ));
        self.set_limited(Some(at));
        if !self.agent.is_empty() {
            let agent = self.agent.clone();
            tokio::spawn(async move { limits::schedule_continue(&agent, at).await });
        }
    }

    /// The CLI waits to retry a call its API refused: messages wait until
    /// then. It retries by itself, so no check-in is needed to go on.
    fn retrying(&self, at_ms: u64, message: &str) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms);
        report::raise(&format!(
            "the agent's model API refused its call ({}); its CLI retries in {} s, and messages wait until then",
            message.trim(),
            secs_until(at)
        ));
        self.set_limited(Some(at));
    }

    fn set_limited(&self, until: Option<SystemTime>) {
        if let Ok(mut l) = self.limited_until.lock() {
            *l = until;
        }
    }

    /// Until when a limit stops the agent, if one does now.
    pub fn limited_until(&self) -> Option<SystemTime> {
        let until = self.limited_until.lock().ok().and_then(|l| *l)?;
        (until > SystemTime::now()).then_some(until)
    }

    fn set_question(&self, question: Option<String>) {
        if let Ok(mut q) = self.question.lock() {
            *q = question;
        }
    }

    /// The session (conversation) the CLI reported last.
    pub fn session(&self) -> Option<String> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    /// What the CLI asks, while it asks.
    pub fn question(&self) -> Option<String> {
        self.question.lock().ok().and_then(|q| q.clone())
    }

    /// The CLI ended before it started a session: a resumed session it
    /// could not find. The next start begins a new conversation.
    fn resume_failed(&self) {
        if let Some(store) = &self.sessions {
            if store.forget() {
                tracing::warn!("the agent's CLI could not resume its last session; the next start begins a new conversation");
            }
        }
    }

    fn session_started_as(&self, session: &str, transcript: &str) {
        tracing::info!("the agent's session {session} started");
        if let Ok(mut t) = self.tokens.lock() {
            t.follow(transcript.into());
        }
        if let Ok(mut s) = self.session.lock() {
            *s = Some(session.to_string());
        }
        if let Some(store) = &self.sessions {
            if let Err(e) = store.save(session, transcript) {
                tracing::warn!("cannot keep session {session} for resuming after a restart: {e}");
            }
        }
    }

    /// The tokens of the session so far: as the CLI reported them (opencode's
    /// plugin), else from its transcript when it keeps one.
    pub fn tokens(&self) -> Option<torch_core::protocol::Tokens> {
        if let Some(t) = self.reported_tokens.lock().ok().and_then(|t| *t) {
            return Some(t);
        }
        self.tokens.lock().ok()?.totals()
    }

    /// The session's cost so far, in millionths of a dollar, when the CLI
    /// reported it.
    pub fn cost_microusd(&self) -> Option<u64> {
        self.cost.lock().ok().and_then(|c| *c)
    }

    /// Whether the screen may lag behind what the hooks said since the last
    /// time this was asked (the next delivery then waits for it to settle).
    pub fn take_unsettled(&self) -> bool {
        self.unsettled
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    fn unsettle(&self) {
        self.unsettled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the CLI reported a session start since this supervisor began.
    pub fn session_started(&self) -> bool {
        self.session.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Whether the CLI may be typed into as far as its start goes: it
    /// reported its session, or it never will (no hook within
    /// [`SESSION_GRACE`], said once in the journal).
    pub fn ready_for_input(&self) -> bool {
        if self.confirms_prompts() {
            return true;
        }
        if self.created.elapsed() < SESSION_GRACE {
            return false;
        }
        if !self
            .grace_said
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "the agent's CLI reported no session within {SESSION_GRACE:?} (are its hooks installed?); its state is read from its screen"
            );
        }
        true
    }

    /// Prompts the CLI takes from now on, as its hook reports them.
    pub fn prompts(&self) -> broadcast::Receiver<String> {
        self.prompts.subscribe()
    }

    fn last(&self) -> Option<Heard> {
        self.heard.lock().ok().and_then(|h| h.clone())
    }

    /// The agent's state from the hooks, checked against what `screen`
    /// shows; the screen alone before any hook was heard.
    pub fn activity(&self, screen: Activity) -> Activity {
        if self.limited_until().is_some() {
            return Activity::Limited;
        }
        match self.last() {
            None => screen,
            Some(h) => combine(&h, screen),
        }
    }

    /// Whether any hook event was heard in this run.
    pub fn heard_any(&self) -> bool {
        self.last().is_some()
    }

    /// What decides the state, without its age: `hook EVENT`, a limit, or
    /// `screen`.
    pub fn decided_by(&self) -> String {
        if let Some(until) = self.limited_until() {
            return format!("limit: continues in {} s", secs_until(until));
        }
        match self.last() {
            Some(h) => format!("hook {}", h.event),
            None => "screen".to_string(),
        }
    }

    /// Which signal decides the state, for `status`: the hook event and its
    /// age, or the screen.
    pub fn signal(&self) -> String {
        if let Some(until) = self.limited_until() {
            return format!("limit: continues in {} s", secs_until(until));
        }
        match self.last() {
            Some(h) => format!("hook {} {} s ago", h.event, h.at.elapsed().as_secs()),
            None => "screen".to_string(),
        }
    }
}

/// Whole seconds from now until `at` (0 when past).
fn secs_until(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs()
}

/// What Gemini CLI's confirmation dialog asks to run: `Shell: COMMAND` for a
/// command, else the dialog's title and what it names.
fn gemini_permission(input: &serde_json::Value) -> String {
    let details = &input["details"];
    let text = |k: &str| details[k].as_str().unwrap_or_default();
    let tool = match text("type") {
        "exec" => "Shell",
        _ if !text("title").is_empty() => text("title"),
        _ => "a tool",
    };
    let subject = [text("command"), text("fileName"), text("url")]
        .into_iter()
        .find(|s| !s.is_empty());
    match subject {
        Some(s) => format!("{tool}: {s}"),
        None => tool.to_string(),
    }
}

fn combine(h: &Heard, screen: Activity) -> Activity {
    match (h.activity, screen) {
        // A dialog the hooks did not announce (or not yet).
        (_, Activity::Asking) => Activity::Asking,
        // A turn interrupted, or a permission refused with Esc: neither fires
        // a hook, and the prompt is back.
        (Activity::Working | Activity::Asking, Activity::Idle)
            if h.at.elapsed() >= STALE_WORKING =>
        {
            Activity::Idle
        }
        // Approved: the tool runs (PostToolUse follows).
        (Activity::Asking, Activity::Working) if h.at.elapsed() >= Duration::from_secs(1) => {
            Activity::Working
        }
        (Activity::Unknown, screen) => screen,
        (hooked, _) => hooked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_dialogs_name_what_they_ask_to_run() {
        let shell = serde_json::json!({"hook_event_name": "Notification",
            "notification_type": "ToolPermission", "message": "Tool Confirm Shell Command requires execution",
            "details": {"type": "exec", "title": "Confirm Shell Command", "command": "touch asked.txt", "rootCommand": "touch"}});
        assert!(torch_core::hooks::answered_on_screen(&shell));
        assert_eq!(gemini_permission(&shell), "Shell: touch asked.txt");
        let edit = serde_json::json!({"details": {"type": "edit", "title": "Confirm Edit", "fileName": "a.rs"}});
        assert_eq!(gemini_permission(&edit), "Confirm Edit: a.rs");
        assert_eq!(gemini_permission(&serde_json::json!({})), "a tool");
        let feed = HookFeed::default();
        assert_eq!(feed.hear(&shell), None, "escalated: a human answers");
        assert_eq!(
            feed.question().as_deref(),
            Some("permission to use Shell: touch asked.txt")
        );
    }
    use serde_json::json;

    fn heard(activity: Activity, ago: Duration) -> Heard {
        Heard {
            activity,
            event: "x".into(),
            at: Instant::now() - ago,
        }
    }

    #[test]
    fn hooks_decide_and_the_screen_corrects_what_they_cannot_see() {
        let now = Duration::ZERO;
        let old = Duration::from_secs(10);
        // Text on screen never makes an idle agent busy.
        assert_eq!(
            combine(&heard(Activity::Idle, now), Activity::Unknown),
            Activity::Idle
        );
        assert_eq!(
            combine(&heard(Activity::Idle, now), Activity::Working),
            Activity::Idle
        );
        assert_eq!(
            combine(&heard(Activity::Idle, now), Activity::Asking),
            Activity::Asking
        );
        assert_eq!(
            combine(&heard(Activity::Working, now), Activity::Idle),
            Activity::Working
        );
        // Interrupted: no Stop came, the prompt is back.
        assert_eq!(
            combine(&heard(Activity::Working, old), Activity::Idle),
            Activity::Idle
        );
        assert_eq!(
            combine(&heard(Activity::Asking, old), Activity::Working),
            Activity::Working
        );
        assert_eq!(
            combine(&heard(Activity::Asking, now), Activity::Idle),
            Activity::Asking
        );
        assert_eq!(
            combine(&heard(Activity::Asking, old), Activity::Idle),
            Activity::Idle
        );
        assert_eq!(
            combine(&heard(Activity::Unknown, now), Activity::Idle),
            Activity::Idle
        );
    }

    #[test]
    fn the_feed_reports_sessions_and_prompts() {
        let feed = HookFeed::default();
        assert_eq!(feed.activity(Activity::Working), Activity::Working);
        assert!(!feed.session_started());
        let mut prompts = feed.prompts();
        feed.hear(&json!({"hook_event_name": "SessionStart", "session_id": "s1"}));
        assert!(feed.session_started());
        assert_eq!(feed.activity(Activity::Unknown), Activity::Idle);
        feed.hear(&json!({"hook_event_name": "UserPromptSubmit", "prompt": "hi"}));
        assert_eq!(prompts.try_recv().ok().as_deref(), Some("hi"));
        assert_eq!(feed.activity(Activity::Idle), Activity::Working);
        feed.hear(&json!({"nothing": 1}));
        assert!(feed.signal().starts_with("hook UserPromptSubmit"));
    }
}
