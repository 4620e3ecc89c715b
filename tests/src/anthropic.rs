//! The pure parts of `torch-test-llm`, the tests' stand-in of the Anthropic Messages API:
//! what a request asks, which scripted rule answers it, and the JSON and server-sent-event
//! shapes of the answer.
//!
//! The shapes follow the public API reference (streaming: `message_start`,
//! `content_block_start`, `ping`, `content_block_delta` with `text_delta` or
//! `input_json_delta`, `content_block_stop`, `message_delta` with the stop reason and usage,
//! `message_stop`; errors: `{"type":"error","error":{"type":..,"message":..}}`), so the real
//! Claude Code CLI cannot tell the stand-in from the service.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

/// The text of the last user message: its text blocks joined with `\n`. Tool results are
/// left out, so a turn that only carries a tool's output has no text. OpenAI's Chat
/// Completions messages have the same shape and are read the same way.
pub fn last_user_text(body: &Value) -> String {
    let Some(msg) = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &msg["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Every text block of every user message, oldest first: the user's side of the
/// conversation as the model sees it (Claude Code adds `<system-reminder>` blocks of its own).
pub fn user_text_blocks(body: &Value) -> Vec<String> {
    let Some(messages) = body["messages"].as_array() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in messages.iter().filter(|m| m["role"] == "user") {
        match &m["content"] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(blocks) => out.extend(
                blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str().map(str::to_string)),
            ),
            _ => {}
        }
    }
    out
}

/// Whether the last user message carries a tool's result (the turn after a `tool_use`).
pub fn carries_tool_result(body: &Value) -> bool {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
}

/// A `Bash` tool call the stand-in asks the client to make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolUse {
    /// The shell command.
    pub command: String,
    /// What the model says the command does; a default is made up when absent.
    #[serde(default)]
    pub description: Option<String>,
}

/// One rule of a script: when it applies and what the answer is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Substring of the last user text; absent: any request.
    #[serde(default)]
    pub when: Option<String>,
    /// Reply with this text.
    #[serde(default)]
    pub reply: Option<String>,
    /// Reply with a `Bash` tool call.
    #[serde(default)]
    pub tool_use: Option<ToolUse>,
    /// Answer with this HTTP error status (429, 500, 529, ...).
    #[serde(default)]
    pub status: Option<u16>,
    /// With a 429: the seconds to tell the client to wait.
    #[serde(default)]
    pub retry_after_s: Option<u64>,
    /// Wait this long before the first byte.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Streaming: spread the deltas over this long.
    #[serde(default)]
    pub stream_ms: Option<u64>,
    /// Fire at most this many times.
    #[serde(default)]
    pub times: Option<u32>,
}

/// A script: rules tried in order, each with its key for counting how often it fired (its
/// JSON text, so a rule keeps its count when the file is rewritten around it).
pub type Script = Vec<(String, Rule)>;

/// Parses a script file's text: a JSON list of rules.
pub fn parse_script(text: &str) -> Result<Script, String> {
    let raw: Vec<Value> =
        serde_json::from_str(text).map_err(|e| format!("script is not a JSON list: {e}"))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let key = v.to_string();
            serde_json::from_value::<Rule>(v)
                .map(|r| (key, r))
                .map_err(|e| format!("script rule {i}: {e}"))
        })
        .collect()
}

/// The first rule that applies to a request with `text` as its last user text, given how
/// often each rule already fired. A tool call never answers a tool's result, so a rule
/// without `when` cannot make the client loop.
pub fn pick<'a>(
    script: &'a Script,
    text: &str,
    tool_result: bool,
    fired: &HashMap<String, u32>,
) -> Option<&'a (String, Rule)> {
    script.iter().find(|(key, rule)| {
        let text_ok = rule.when.as_deref().is_none_or(|w| text.contains(w));
        let left = rule
            .times
            .is_none_or(|n| fired.get(key).copied().unwrap_or(0) < n);
        let kind_ok = !(tool_result && rule.tool_use.is_some());
        text_ok && left && kind_ok
    })
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A text reply.
    Text(String),
    /// A `Bash` tool call.
    Bash(ToolUse),
    /// An HTTP error.
    Error {
        /// The status code.
        status: u16,
        /// For a 429: seconds until the client may retry.
        retry_after_s: Option<u64>,
    },
}

/// The reply when no rule applies.
pub const DEFAULT_REPLY: &str = "ok";

/// The answer a rule (or none) gives.
pub fn answer(rule: Option<&Rule>) -> Answer {
    let Some(rule) = rule else {
        return Answer::Text(DEFAULT_REPLY.into());
    };
    if let Some(status) = rule.status {
        return Answer::Error {
            status,
            retry_after_s: rule.retry_after_s,
        };
    }
    if let Some(t) = &rule.tool_use {
        return Answer::Bash(t.clone());
    }
    Answer::Text(rule.reply.clone().unwrap_or_else(|| DEFAULT_REPLY.into()))
}

/// The API's error type for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An error body as the API sends it.
pub fn error_body(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

/// A rough token count (four bytes a token), at least 1: clients only show it.
pub fn tokens(bytes: usize) -> u64 {
    (bytes as u64 / 4).max(1)
}

/// The content block of an answer, complete (the non-streaming form), and its stop reason.
fn block(answer: &Answer, id: &str) -> (Value, &'static str) {
    match answer {
        Answer::Bash(t) => (
            json!({"type": "tool_use", "id": format!("toolu_{id}"), "name": "Bash",
                   "input": bash_input(t)}),
            "tool_use",
        ),
        Answer::Text(text) => (json!({"type": "text", "text": text}), "end_turn"),
        Answer::Error { .. } => (json!({"type": "text", "text": ""}), "end_turn"),
    }
}

fn bash_input(t: &ToolUse) -> Value {
    let description = t
        .description
        .clone()
        .unwrap_or_else(|| format!("Run {}", t.command));
    json!({"command": t.command, "description": description})
}

fn output_tokens(answer: &Answer) -> u64 {
    match answer {
        Answer::Text(t) => tokens(t.len()),
        Answer::Bash(t) => tokens(bash_input(t).to_string().len()),
        Answer::Error { .. } => 1,
    }
}

/// A whole message (the non-streaming reply).
pub fn message(answer: &Answer, id: &str, model: &str, input_tokens: u64) -> Value {
    let (content, stop) = block(answer, id);
    json!({
        "id": format!("msg_{id}"), "type": "message", "role": "assistant",
        "content": [content], "model": model,
        "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens(answer)},
    })
}

/// One server-sent event as it goes on the wire.
pub fn sse(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// Splits `s` into pieces of about `n` characters, never inside a character.
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

/// The events of a streamed reply, in order, each with how long to wait before it: the
/// deltas share `stream`, everything else goes at once.
pub fn stream_events(
    answer: &Answer,
    id: &str,
    model: &str,
    input_tokens: u64,
    stream: Duration,
) -> Vec<(Duration, String)> {
    let (full, stop) = block(answer, id);
    let (start_block, deltas) = match answer {
        Answer::Bash(t) => {
            let mut b = full.clone();
            b["input"] = json!({});
            let parts = pieces(&bash_input(t).to_string(), 16);
            let d = parts
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}));
            (b, d.collect::<Vec<_>>())
        }
        _ => {
            let text = full["text"].as_str().unwrap_or_default();
            let d = pieces(text, 8)
                .into_iter()
                .map(|p| json!({"type": "text_delta", "text": p}));
            (json!({"type": "text", "text": ""}), d.collect())
        }
    };
    let mut start = message(answer, id, model, input_tokens);
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    let step = stream / (deltas.len().max(1) as u32);
    let now = Duration::ZERO;
    let mut out = vec![
        (
            now,
            sse(
                "message_start",
                &json!({"type": "message_start", "message": start}),
            ),
        ),
        (
            now,
            sse(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": start_block}),
            ),
        ),
        (now, sse("ping", &json!({"type": "ping"}))),
    ];
    out.extend(deltas.into_iter().map(|d| {
        (
            step,
            sse(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": d}),
            ),
        )
    }));
    out.push((
        now,
        sse(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ),
    ));
    out.push((
        now,
        sse(
            "message_delta",
            &json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens(answer)}}),
        ),
    ));
    out.push((now, sse("message_stop", &json!({"type": "message_stop"}))));
    out
}

/// `unix_secs` as an RFC 3339 UTC time (`2026-11-26T10:00:07Z`), for the rate-limit reset
/// headers.
pub fn rfc3339(unix_secs: u64) -> String {
    let secs = i64::try_from(unix_secs).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::MAX)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_user_text_joins_text_blocks_of_the_last_user_turn_only() {
        let body = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": "output"},
                {"type": "text", "text": "a"},
                {"type": "image", "source": {}},
                {"type": "text", "text": "b"},
            ]},
        ]});
        assert_eq!(last_user_text(&body), "a\nb");
        assert_eq!(user_text_blocks(&body), ["first", "a", "b"]);
        assert!(carries_tool_result(&body));
        let plain = json!({"messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(last_user_text(&plain), "hi");
        assert!(!carries_tool_result(&plain));
        assert_eq!(last_user_text(&json!({"messages": 3})), "");
        assert_eq!(last_user_text(&Value::Null), "");
    }

    #[test]
    fn rules_match_in_order_by_substring_and_count() {
        let script = parse_script(
            r#"[{"when": "slow", "delay_ms": 5, "times": 1},
                {"when": "run", "tool_use": {"command": "ls"}},
                {"reply": "fallback"}]"#,
        )
        .unwrap();
        let mut fired = HashMap::new();
        let r = pick(&script, "go slow", false, &fired).unwrap();
        assert_eq!(r.1.delay_ms, Some(5));
        fired.insert(r.0.clone(), 1);
        let r = pick(&script, "go slow", false, &fired).unwrap();
        assert_eq!(r.1.reply.as_deref(), Some("fallback"));
        let r = pick(&script, "run it", false, &fired).unwrap();
        assert!(matches!(answer(Some(&r.1)), Answer::Bash(t) if t.command == "ls"));
        // The turn carrying the tool's result is not answered with the same call again.
        let r = pick(&script, "run it", true, &fired).unwrap();
        assert_eq!(answer(Some(&r.1)), Answer::Text("fallback".into()));
        assert_eq!(answer(None), Answer::Text("ok".into()));
        assert!(parse_script(r#"[{"wen": "x"}]"#)
            .unwrap_err()
            .contains("rule 0"));
        assert!(parse_script("{}").is_err());
    }

    #[test]
    fn errors_carry_the_api_error_type() {
        let rule = Rule {
            status: Some(429),
            retry_after_s: Some(7),
            ..Rule::default()
        };
        assert_eq!(
            answer(Some(&rule)),
            Answer::Error {
                status: 429,
                retry_after_s: Some(7)
            }
        );
        assert_eq!(
            error_body(429, "slow down")["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(error_type(529), "overloaded_error");
        assert_eq!(error_type(500), "api_error");
    }

    fn frames(events: &[(Duration, String)]) -> Vec<(String, Value)> {
        events
            .iter()
            .map(|(_, e)| {
                let (name, data) = e
                    .strip_suffix("\n\n")
                    .and_then(|e| e.strip_prefix("event: "))
                    .and_then(|e| e.split_once("\ndata: "))
                    .expect("framed as event + data + blank line");
                (name.to_string(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_streamed_text_reply_is_the_api_event_sequence() {
        let events = stream_events(
            &Answer::Text("héllo wörld, twenty chars".into()),
            "1",
            "m",
            9,
            Duration::from_millis(400),
        );
        let f = frames(&events);
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
        assert_eq!(
            names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        for (name, data) in &f {
            assert_eq!(data["type"], name.as_str());
        }
        assert_eq!(f[0].1["message"]["usage"]["input_tokens"], 9);
        assert!(f[0].1["message"]["stop_reason"].is_null());
        let text: String = f
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(text, "héllo wörld, twenty chars");
        let md = &f[f.len() - 2].1;
        assert_eq!(md["delta"]["stop_reason"], "end_turn");
        assert!(md["usage"]["output_tokens"].as_u64().unwrap() > 0);
        let spread: Duration = events.iter().map(|(d, _)| *d).sum();
        assert!(spread <= Duration::from_millis(400) && spread >= Duration::from_millis(390));
    }

    #[test]
    fn a_streamed_tool_call_carries_its_input_as_json_deltas() {
        let t = ToolUse {
            command: "echo hi".into(),
            description: None,
        };
        let f = frames(&stream_events(
            &Answer::Bash(t),
            "7",
            "m",
            1,
            Duration::ZERO,
        ));
        assert_eq!(f[1].1["content_block"]["type"], "tool_use");
        assert_eq!(f[1].1["content_block"]["name"], "Bash");
        assert_eq!(f[1].1["content_block"]["input"], json!({}));
        let input: String = f
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| {
                assert_eq!(d["delta"]["type"], "input_json_delta");
                d["delta"]["partial_json"].as_str().unwrap().to_string()
            })
            .collect();
        let input: Value = serde_json::from_str(&input).unwrap();
        assert_eq!(input["command"], "echo hi");
        assert!(input["description"].is_string());
        assert_eq!(f[f.len() - 2].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
