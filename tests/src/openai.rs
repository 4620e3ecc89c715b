//! The OpenAI Responses API as `torch-test-llm` plays it for Codex CLI: what a request
//! asks, and the streamed reply, so the real CLI runs against the stand-in (field notes:
//! `shared/field-notes/codex.md`).
//!
//! Codex CLI calls only `POST {base_url}/responses` with `"stream": true`. Its `input` is a
//! list of items; the user's prompt is the last `input_text` of the last user message
//! (Codex sends its environment context and instructions as earlier user messages). On a
//! thread's first turn it makes a second call asking for a title, which is not a turn.

use serde_json::{json, Value};

/// The Responses API's path under the base URL the CLI is given (`.../v1`).
pub const PATH: &str = "/v1/responses";

/// What Codex asks when it wants a thread's title, not a turn.
const TITLE_ASK: &str = "Generate a concise";

/// The prompt of the last user message: its last `input_text`.
pub fn last_user_text(body: &Value) -> String {
    body["input"]
        .as_array()
        .and_then(|items| {
            items.iter().rev().find(|i| {
                i["role"] == "user" && i["type"].as_str().unwrap_or("message") == "message"
            })
        })
        .and_then(|msg| match &msg["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => parts
                .iter()
                .rev()
                .find_map(|p| p["text"].as_str().map(str::to_string)),
            _ => None,
        })
        .unwrap_or_default()
}

/// Whether the request asks for a thread's title rather than a turn.
pub fn is_title(body: &Value) -> bool {
    let asks = |v: &Value| v.as_str().is_some_and(|s| s.contains(TITLE_ASK));
    asks(&body["instructions"]) || asks(&Value::String(last_user_text(body)))
}

/// The server-sent event of one Responses stream event.
pub fn sse(data: &Value) -> String {
    let kind = data["type"].as_str().unwrap_or("message");
    format!("event: {kind}\ndata: {data}\n\n")
}

/// The events of a streamed reply holding `text`: created, the message item and its text
/// part opened, the text, each closed, completed with usage.
pub fn stream_events(text: &str, id: &str, model: &str, input_tokens: u64) -> Vec<Value> {
    let msg = format!("msg_{id}");
    let done_part = json!({"type": "output_text", "text": text, "annotations": []});
    let done_item = json!({
        "id": msg, "type": "message", "status": "completed", "role": "assistant",
        "content": [done_part]
    });
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": format!("resp_{id}"), "object": "response", "created_at": 0,
            "status": status, "model": model, "output": output, "usage": usage
        })
    };
    let usage = json!({
        "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + 1
    });
    let at = |extra: Value| {
        let mut v = json!({"item_id": msg, "output_index": 0, "content_index": 0});
        if let (Value::Object(base), Value::Object(more)) = (&mut v, extra) {
            base.extend(more);
        }
        v
    };
    vec![
        json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"id": msg, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        at(
            json!({"type": "response.content_part.added", "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
        at(json!({"type": "response.output_text.delta", "delta": text})),
        at(json!({"type": "response.output_text.done", "text": text})),
        at(json!({"type": "response.content_part.done", "part": done_part})),
        json!({"type": "response.output_item.done", "output_index": 0, "item": done_item}),
        json!({"type": "response.completed", "response": response("completed", json!([done_item]), usage)}),
    ]
}

/// An API-style error body.
pub fn error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        429 => ("rate_limit_exceeded", "rate_limit_exceeded"),
        400 => ("invalid_request_error", "invalid_request"),
        401 => ("invalid_request_error", "invalid_api_key"),
        _ => ("server_error", "server_error"),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_codex_sends_them() {
        let turn = json!({"instructions": "You are Codex", "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>..</environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "line one\nline two"}]},
            {"type": "reasoning", "summary": []}
        ]});
        assert_eq!(last_user_text(&turn), "line one\nline two");
        assert!(!is_title(&turn));
        let title = json!({"input": [{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Generate a concise, single-line task title for: hi"}]}]});
        assert!(is_title(&title));
    }

    #[test]
    fn a_reply_streams_its_text_and_completes() {
        let events = stream_events("hello", "1", "fake-model", 10);
        let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"response.created"));
        assert_eq!(kinds.last(), Some(&"response.completed"));
        let delta = events
            .iter()
            .find(|e| e["type"] == "response.output_text.delta");
        assert_eq!(delta.unwrap()["delta"], "hello");
        assert_eq!(events[7]["response"]["usage"]["total_tokens"], 11);
        assert!(sse(&events[0]).starts_with("event: response.created\ndata: {"));
    }
}
