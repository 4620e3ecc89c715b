//! What an agent CLI's hooks tell its supervisor, and the state they imply.
//!
//! A CLI with hooks (Claude Code, Gemini CLI, Codex CLI; opencode through
//! Torch's plugin) runs `torch-agent --hook SOCKET` at each event of its
//! session, with the event as a JSON object on standard input; the
//! supervisor reads the agent's state from these events before it
//! believes its screen. The screen says what a TUI draws, which changes with
//! every release and includes whatever the conversation prints; a hook says
//! what the CLI did.

use serde_json::Value;

use crate::profile::Activity;
use crate::protocol::Tokens;

/// The hook events Torch installs in Claude Code, in its spelling.
pub const EVENTS: [&str; 9] = [
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "Notification",
    "PermissionRequest",
    "Stop",
    "StopFailure",
    "SessionEnd",
];

/// The hook events Torch installs in Gemini CLI, in its spelling: its
/// `BeforeAgent` carries the prompt taken, as Claude's `UserPromptSubmit`,
/// and `AfterAgent` ends a turn, as `Stop`.
pub const GEMINI_EVENTS: [&str; 7] = [
    "SessionStart",
    "BeforeAgent",
    "BeforeTool",
    "AfterTool",
    "Notification",
    "AfterAgent",
    "SessionEnd",
];

/// The hook events Torch installs in Codex CLI (its `hooks.json`), which
/// names them as Claude Code does and sends the same fields.
pub const CODEX_EVENTS: [&str; 7] = [
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "Stop",
    "SessionEnd",
];

/// The event name Torch gives the status line's input, which names none.
pub const STATUS_LINE: &str = "StatusLine";

/// The event Torch's opencode plugin sends when the CLI waits to retry a
/// model call its API refused (a 429 with its reset, an overload), with
/// when it retries (`retry_at_ms`, Unix time in milliseconds) and the API's
/// message.
pub const API_RETRY: &str = "ApiRetry";

/// The `notification_type` of Gemini CLI's Notification hook when it shows
/// a tool's confirmation dialog. The hook cannot answer it; the dialog's
/// keys do.
pub const GEMINI_TOOL_PERMISSION: &str = "ToolPermission";

/// Whether `input` is an event whose permission question the CLI takes
/// only from its screen (Gemini CLI's confirmation dialog).
pub fn answered_on_screen(input: &Value) -> bool {
    input["hook_event_name"] == "Notification"
        && input["notification_type"] == GEMINI_TOOL_PERMISSION
}

/// One hook event, as far as Torch reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEvent {
    /// A session began (started, resumed, cleared or compacted).
    SessionStart {
        /// The CLI's session id, for resuming after a restart.
        session: String,
        /// Its transcript file.
        transcript: String,
        /// Whether it resumes an earlier session (`source: "resume"`): Gemini
        /// CLI reports that before it has loaded the history, and clears its
        /// input box when it has.
        resumed: bool,
    },
    /// The CLI took a prompt from its input box (also one typed while it
    /// works, which it queues).
    PromptSubmitted {
        /// The prompt as the CLI took it.
        prompt: String,
    },
    /// A tool is about to run or just ran.
    Tool,
    /// The CLI asks for permission or shows a notice.
    Notice {
        /// Claude's `notification_type` (`permission_prompt`,
        /// `idle_prompt`, ...), empty when absent.
        kind: String,
        /// What it says.
        message: String,
    },
    /// The CLI asks to run a tool (a permission dialog is on screen).
    PermissionRequest {
        /// The tool it asks for.
        tool: String,
    },
    /// A turn ended.
    Stop,
    /// A turn ended on an error the CLI gave up on (a final API error).
    StopFailure {
        /// What went wrong, as the CLI says it.
        error: String,
    },
    /// The session ended (the program is exiting).
    SessionEnd,
    /// Claude Code's status line input (not a hook: its `statusLine`
    /// command, which Torch also installs), with the session's cost; Torch's
    /// opencode plugin sends the same, with the session's tokens.
    StatusLine {
        /// The session's cost so far in millionths of a US dollar, as the
        /// CLI computes it.
        cost_microusd: Option<u64>,
        /// The session's tokens so far, when the CLI keeps no transcript
        /// Torch reads (`tokens`: `input`, `output`, `cache_read`,
        /// `cache_write`).
        tokens: Option<Tokens>,
    },
    /// The CLI waits until `at_ms` (Unix time in milliseconds) to retry a
    /// model call its API refused; it retries by itself.
    ApiRetry {
        /// When it retries.
        at_ms: u64,
        /// What the API said.
        message: String,
    },
    /// An event Torch does not read.
    Other(String),
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

impl HookEvent {
    /// Reads one hook's standard input; `None` when it is not a JSON object
    /// naming its event.
    pub fn parse(input: &Value) -> Option<Self> {
        let name = input.get("hook_event_name")?.as_str()?;
        Some(match name {
            "SessionStart" => HookEvent::SessionStart {
                session: text(input, "session_id"),
                transcript: text(input, "transcript_path"),
                resumed: text(input, "source") == "resume",
            },
            "UserPromptSubmit" | "BeforeAgent" => HookEvent::PromptSubmitted {
                prompt: text(input, "prompt"),
            },
            "PreToolUse" | "PostToolUse" | "BeforeTool" | "AfterTool" => HookEvent::Tool,
            "Notification" => HookEvent::Notice {
                kind: text(input, "notification_type"),
                message: text(input, "message"),
            },
            "PermissionRequest" => HookEvent::PermissionRequest {
                tool: text(input, "tool_name"),
            },
            "Stop" | "AfterAgent" => HookEvent::Stop,
            "StopFailure" => HookEvent::StopFailure {
                error: first_text(input, &["error", "error_message", "message"]),
            },
            "SessionEnd" => HookEvent::SessionEnd,
            STATUS_LINE => HookEvent::StatusLine {
                cost_microusd: input
                    .pointer("/cost/total_cost_usd")
                    .and_then(Value::as_f64)
                    .filter(|c| c.is_finite() && *c >= 0.0)
                    .map(|c| (c * 1e6).round() as u64),
                tokens: input
                    .get("tokens")
                    .filter(|t| t.is_object())
                    .and_then(|t| serde_json::from_value(t.clone()).ok()),
            },
            API_RETRY => HookEvent::ApiRetry {
                at_ms: input.get("retry_at_ms").and_then(Value::as_u64)?,
                message: text(input, "message"),
            },
            other => HookEvent::Other(other.to_string()),
        })
    }

    /// The state this event puts the agent in; `None` leaves it as it was.
    pub fn activity(&self) -> Option<Activity> {
        match self {
            HookEvent::SessionStart { .. } | HookEvent::Stop => Some(Activity::Idle),
            // A failed turn leaves the CLI at its prompt, ready for the
            // next message, which is also how its user retries.
            HookEvent::StopFailure { .. } => Some(Activity::Idle),
            HookEvent::PromptSubmitted { .. } | HookEvent::Tool => Some(Activity::Working),
            HookEvent::PermissionRequest { .. } => Some(Activity::Asking),
            HookEvent::Notice { kind, .. } => match kind.as_str() {
                // Claude Code's, and Gemini CLI's confirmation dialog.
                "permission_prompt" | GEMINI_TOOL_PERMISSION => Some(Activity::Asking),
                "idle_prompt" => Some(Activity::Idle),
                _ => None,
            },
            HookEvent::SessionEnd => Some(Activity::Unknown),
            HookEvent::StatusLine { .. } | HookEvent::ApiRetry { .. } => None,
            HookEvent::Other(_) => None,
        }
    }
}

fn first_text(v: &Value, keys: &[&str]) -> String {
    keys.iter()
        .map(|k| match v.get(*k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        })
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

/// A message as Claude Code hands it to UserPromptSubmit: tabs become four
/// spaces. Compared after trimming, since a TUI drops trailing blank lines.
pub fn as_submitted(text: &str) -> String {
    text.replace('\t', "    ").trim().to_string()
}

/// Whether `prompt`, as a hook reported it, is the message `text`. A paste
/// of 4 lines or more than 800 characters reaches the hook (and the model)
/// inside Claude Code's `<pasted_content id="...">` wrapper.
pub fn is_prompt_of(prompt: &str, text: &str) -> bool {
    as_submitted(unwrap_paste(prompt.trim())) == as_submitted(text)
}

/// The text inside a `<pasted_content id="ID">` ... `</pasted_content
/// id="ID">` wrapper; the prompt itself when it is not one.
fn unwrap_paste(prompt: &str) -> &str {
    const OPEN: &str = "<pasted_content id=\"";
    let inner = prompt.strip_prefix(OPEN).and_then(|rest| {
        let (id, body) = rest.split_once("\">")?;
        body.strip_suffix(&format!("</pasted_content id=\"{id}\">"))
    });
    inner.unwrap_or(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_seen_from_gemini_cli_0_61_0_read_as_states() {
        // Payloads as Gemini CLI 0.61.0 sent them in its TUI (ids shortened).
        let start = json!({"session_id":"98f57a00","transcript_path":"/h/.gemini/tmp/w/chats/s.json",
            "cwd":"/w","hook_event_name":"SessionStart","timestamp":"2026-11-27T09:58:05.791Z","source":"startup"});
        let before =
            json!({"session_id":"98f57a00","hook_event_name":"BeforeAgent","prompt":"hello there"});
        let after = json!({"session_id":"98f57a00","hook_event_name":"AfterAgent","prompt":"hello there",
            "prompt_response":"ok","stop_hook_active":false});
        let read = |v: &Value| HookEvent::parse(v).unwrap();
        assert_eq!(read(&start).activity(), Some(Activity::Idle));
        assert_eq!(
            read(&before),
            HookEvent::PromptSubmitted {
                prompt: "hello there".into()
            }
        );
        assert_eq!(read(&before).activity(), Some(Activity::Working));
        assert_eq!(read(&after), HookEvent::Stop);
    }

    #[test]
    fn events_seen_from_claude_code_2_1_332_read_as_states() {
        // Payloads as Claude Code 2.1.332 sent them (ids shortened).
        let start = json!({"session_id":"20cc8ea7","transcript_path":"/x.jsonl","cwd":"/w",
            "hook_event_name":"SessionStart","source":"startup","model":"m"});
        let submit = json!({"session_id":"20cc8ea7","prompt_id":"27","permission_mode":"auto",
            "hook_event_name":"UserPromptSubmit","prompt":"hello there    tab \"quotes\" $(id)"});
        let stop = json!({"session_id":"20cc8ea7","hook_event_name":"Stop",
            "stop_hook_active":false,"last_assistant_message":"ok"});
        let e = HookEvent::parse(&start).unwrap();
        assert_eq!(
            e,
            HookEvent::SessionStart {
                session: "20cc8ea7".into(),
                transcript: "/x.jsonl".into(),
                resumed: false,
            }
        );
        assert_eq!(e.activity(), Some(Activity::Idle));
        let e = HookEvent::parse(&submit).unwrap();
        assert_eq!(e.activity(), Some(Activity::Working));
        let HookEvent::PromptSubmitted { prompt } = e else {
            panic!("not a prompt")
        };
        assert!(is_prompt_of(&prompt, "hello there\ttab \"quotes\" $(id)\n"));
        assert!(!is_prompt_of(&prompt, "hello there"));
        let pasted = "\n\n<pasted_content id=\"6d1c\">\n[torch message #14] one\n    two\n</pasted_content id=\"6d1c\">\n";
        assert!(is_prompt_of(pasted, "[torch message #14] one\n\ttwo"));
        assert!(!is_prompt_of(pasted, "[torch message #14] one"));
        assert!(!is_prompt_of("<pasted_content id=\"1\">x", "x"));
        assert_eq!(
            HookEvent::parse(&stop).unwrap().activity(),
            Some(Activity::Idle)
        );
    }

    #[test]
    fn permission_and_failure_events() {
        let ask = json!({"hook_event_name":"Notification","notification_type":"permission_prompt",
            "message":"Claude needs your permission to use Bash"});
        assert_eq!(
            HookEvent::parse(&ask).unwrap().activity(),
            Some(Activity::Asking)
        );
        let other = json!({"hook_event_name":"Notification","message":"hi"});
        assert_eq!(HookEvent::parse(&other).unwrap().activity(), None);
        let fail = json!({"hook_event_name":"StopFailure","error":{"type":"rate_limit"}});
        let e = HookEvent::parse(&fail).unwrap();
        assert_eq!(
            e,
            HookEvent::StopFailure {
                error: "{\"type\":\"rate_limit\"}".into()
            }
        );
        assert_eq!(e.activity(), Some(Activity::Idle));
        assert_eq!(HookEvent::parse(&json!({"prompt": "x"})), None);
        let line = json!({"hook_event_name": STATUS_LINE, "cost": {"total_cost_usd": 0.056496}});
        assert_eq!(
            HookEvent::parse(&line),
            Some(HookEvent::StatusLine {
                cost_microusd: Some(56_496),
                tokens: None,
            })
        );
        let line = json!({"hook_event_name": STATUS_LINE, "cost": {"total_cost_usd": 0},
                          "tokens": {"input": 12, "output": 3, "cache_read": 4}});
        let tokens = Tokens {
            input: 12,
            output: 3,
            cache_read: 4,
            cache_write: 0,
        };
        assert_eq!(
            HookEvent::parse(&line),
            Some(HookEvent::StatusLine {
                cost_microusd: Some(0),
                tokens: Some(tokens),
            })
        );
        assert_eq!(HookEvent::parse(&json!("SessionStart")), None);
    }
}
