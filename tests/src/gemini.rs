//! The Gemini API as `torch-test-llm` plays it for Gemini CLI: what a request asks, and
//! the replies, so the real CLI runs against the stand-in (field notes:
//! `shared/field-notes/gemini-cli.md`).
//!
//! Gemini CLI 0.61.0 with the model "Auto" makes two calls per turn:
//! `POST /v1beta/models/M:generateContent`, a routing classifier that wants JSON fitting
//! its schema (to plain text it asks again and again), then
//! `POST /v1beta/models/M:streamGenerateContent?alt=sse`, the turn itself.

use serde_json::{json, Value};

/// Whether `path` is one of the Gemini API's model calls the stand-in answers.
pub fn is_model_call(path: &str) -> bool {
    path.starts_with("/v1beta/models/")
        && (path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent"))
}

/// Whether `path` asks for a streamed turn.
pub fn is_stream(path: &str) -> bool {
    path.ends_with(":streamGenerateContent")
}

/// Whether the request is the CLI's routing classifier (it asks for JSON).
pub fn is_classifier(body: &Value) -> bool {
    body["generationConfig"]["responseMimeType"] == "application/json"
        || body["config"]["responseMimeType"] == "application/json"
}

/// The prompt of the last user turn: its last text part (a session's first turn also holds
/// the CLI's `<session_context>` part before it).
pub fn last_user_text(body: &Value) -> String {
    body["contents"]
        .as_array()
        .and_then(|c| c.iter().rev().find(|t| t["role"] == "user"))
        .and_then(|turn| turn["parts"].as_array())
        .and_then(|parts| parts.iter().rev().find_map(|p| p["text"].as_str()))
        .unwrap_or_default()
        .to_string()
}

/// The classifier's answer: a simple task, so the CLI routes it without asking again.
pub fn classifier_reply() -> Value {
    let verdict = json!({"complexity_reasoning": "a short request", "complexity_score": 1});
    candidate(&verdict.to_string(), 10)
}

/// One response (or stream chunk) holding `text`, finished, with token counts.
pub fn candidate(text: &str, input_tokens: u64) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {
            "promptTokenCount": input_tokens,
            "candidatesTokenCount": 1,
            "totalTokenCount": input_tokens + 1
        },
        "modelVersion": "standin"
    })
}

/// One response asking to run `command` with Gemini CLI's shell tool, finished.
pub fn shell_call(command: &str, input_tokens: u64) -> Value {
    let mut chunk = candidate("", input_tokens);
    chunk["candidates"][0]["content"]["parts"] = json!([{
        "functionCall": {"name": "run_shell_command", "args": {"command": command}}
    }]);
    chunk
}

/// Whether the request's last turn hands back a tool's result.
pub fn carries_tool_result(body: &Value) -> bool {
    body["contents"]
        .as_array()
        .and_then(|c| c.last())
        .and_then(|turn| turn["parts"].as_array())
        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()))
}

/// The server-sent event carrying `chunk`.
pub fn sse(chunk: &Value) -> String {
    format!("data: {chunk}\r\n\r\n")
}

/// An API-style error body.
pub fn error_body(status: u16, message: &str, retry_after_s: Option<u64>) -> Value {
    let kind = match status {
        429 => "RESOURCE_EXHAUSTED",
        400 => "INVALID_ARGUMENT",
        404 => "NOT_FOUND",
        _ => "INTERNAL",
    };
    // The API says when to come back in the error's details, not in a header.
    let details = match retry_after_s {
        Some(s) => {
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{s}s")}])
        }
        None => json!([]),
    };
    json!({"error": {"code": status, "message": message, "status": kind, "details": details}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_gemini_cli_sends_them() {
        let turn = json!({"contents": [
            {"role": "user", "parts": [{"text": "<session_context>...</session_context>"}, {"text": "hello"}]},
            {"role": "model", "parts": [{"text": "ok"}]},
            {"role": "user", "parts": [{"text": "line one\nline two"}]}
        ]});
        assert_eq!(last_user_text(&turn), "line one\nline two");
        assert!(is_model_call(
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
        ));
        assert!(is_stream("/v1beta/models/m:streamGenerateContent"));
        assert!(!is_model_call("/v1beta/models"));
        let classifier = json!({"generationConfig": {"responseMimeType": "application/json"}});
        assert!(is_classifier(&classifier) && !is_classifier(&turn));
        let verdict = classifier_reply();
        let text = verdict["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(text).unwrap()["complexity_score"],
            1
        );
    }
}
