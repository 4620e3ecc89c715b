//! The OpenAI APIs as `torch-test-llm` plays them: the Responses API for Codex CLI, and
//! Chat Completions for opencode; what a request asks, and the streamed reply, so the real
//! CLIs run against the stand-in (field notes: `shared/field-notes/codex.md`,
//! `opencode.md`).
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
    let at = |extra: Value| {
        let mut v = json!({"item_id": msg, "output_index": 0, "content_index": 0});
        if let (Value::Object(base), Value::Object(more)) = (&mut v, extra) {
            base.extend(more);
        }
        v
    };
    let item = vec![
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"id": msg, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        at(
            json!({"type": "response.content_part.added", "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
        at(json!({"type": "response.output_text.delta", "delta": text})),
        at(json!({"type": "response.output_text.done", "text": text})),
        at(json!({"type": "response.content_part.done", "part": done_part})),
    ];
    around(item, done_item, id, model, input_tokens)
}

/// The events of a streamed reply that asks the client to run `command` with its
/// `exec_command` tool, asking to run it outside Codex's sandbox (so an approval is
/// asked for unless the policy grants it).
pub fn tool_call_events(command: &str, id: &str, model: &str, input_tokens: u64) -> Vec<Value> {
    let fc = format!("fc_{id}");
    let args = json!({
        "cmd": command,
        "sandbox_permissions": "require_escalated",
        "justification": format!("run {command}"),
    })
    .to_string();
    let item = |status: &str, arguments: &str| {
        json!({"id": fc, "type": "function_call", "status": status, "call_id": format!("call_{id}"),
               "name": "exec_command", "arguments": arguments})
    };
    let at = json!({"item_id": fc, "output_index": 0});
    let with = |kind: &str, key: &str| {
        let mut v = at.clone();
        v["type"] = json!(kind);
        v[key] = json!(args);
        v
    };
    let events = vec![
        json!({"type": "response.output_item.added", "output_index": 0, "item": item("in_progress", "")}),
        with("response.function_call_arguments.delta", "delta"),
        with("response.function_call_arguments.done", "arguments"),
    ];
    around(events, item("completed", &args), id, model, input_tokens)
}

/// `item_events` framed as a whole response: created first, then the item's events, its
/// `output_item.done`, and completed with usage.
fn around(
    mut item_events: Vec<Value>,
    done_item: Value,
    id: &str,
    model: &str,
    input_tokens: u64,
) -> Vec<Value> {
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
    let mut all = vec![json!({"type": "response.created",
                              "response": response("in_progress", json!([]), Value::Null)})];
    all.append(&mut item_events);
    all.push(json!({"type": "response.output_item.done", "output_index": 0, "item": done_item}));
    all.push(json!({"type": "response.completed",
                    "response": response("completed", json!([done_item]), usage)}));
    all
}

/// Whether the request carries a tool's output (the turn after a function call).
pub fn carries_tool_result(body: &Value) -> bool {
    body["input"]
        .as_array()
        .and_then(|items| items.last())
        .is_some_and(|i| i["type"] == "function_call_output")
}

/// The Chat Completions API's path under the base URL (opencode, through its
/// `@ai-sdk/openai-compatible` provider).
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// What opencode's title request says first.
const CHAT_TITLE_ASK: &str = "You are a title generator";

/// Whether a Chat Completions request asks for a session's title rather than a turn.
pub fn is_chat_title(body: &Value) -> bool {
    body["messages"].as_array().is_some_and(|m| {
        m.iter()
            .any(|m| m["role"] == "system" && m["content"].to_string().contains(CHAT_TITLE_ASK))
    })
}

/// Whether a Chat Completions request carries a tool's result (the turn after a call).
pub fn chat_carries_tool_result(body: &Value) -> bool {
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool")
}

/// The server-sent events of a streamed Chat Completions reply: `delta` in one chunk,
/// then the finish with usage, then `[DONE]`.
pub fn chat_stream(
    delta: Value,
    finish: &str,
    id: &str,
    model: &str,
    input_tokens: u64,
) -> Vec<String> {
    let chunk = |choice: Value, usage: Value| {
        json!({"id": format!("chatcmpl-{id}"), "object": "chat.completion.chunk", "created": 0,
               "model": model, "choices": [choice], "usage": usage})
    };
    let usage = json!({"prompt_tokens": input_tokens, "completion_tokens": 1,
                       "total_tokens": input_tokens + 1});
    [
        chunk(
            json!({"index": 0, "delta": delta, "finish_reason": null}),
            Value::Null,
        ),
        chunk(
            json!({"index": 0, "delta": {}, "finish_reason": finish}),
            usage,
        ),
    ]
    .iter()
    .map(|c| format!("data: {c}\n\n"))
    .chain(std::iter::once("data: [DONE]\n\n".to_string()))
    .collect()
}

/// The delta of a text reply.
pub fn chat_text(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

/// The delta of a reply that asks the client to run `command` with its `bash` tool.
pub fn chat_bash_call(command: &str, id: &str) -> Value {
    let args = json!({"command": command, "description": format!("Runs {command}")});
    json!({"role": "assistant", "content": null, "tool_calls": [{
        "index": 0, "id": format!("call_{id}"), "type": "function",
        "function": {"name": "bash", "arguments": args.to_string()}
    }]})
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
    fn chat_requests_are_read_as_opencode_sends_them() {
        let turn = json!({"messages": [
            {"role": "system", "content": "You are opencode"},
            {"role": "user", "content": [{"type": "text", "text": "line one\nline two "}]},
            {"role": "assistant", "content": "ok"},
            {"role": "tool", "tool_call_id": "c", "content": "done"}
        ]});
        assert_eq!(
            crate::anthropic::last_user_text(&turn),
            "line one\nline two "
        );
        assert!(chat_carries_tool_result(&turn) && !is_chat_title(&turn));
        let title = json!({"messages": [{"role": "system", "content": "You are a title generator. ..."},
                                        {"role": "user", "content": "hi"}]});
        assert!(is_chat_title(&title));
        let frames = chat_stream(chat_text("hello"), "stop", "1", "m", 10);
        assert_eq!(frames.len(), 3);
        assert!(frames[0].contains("\"content\":\"hello\""));
        assert_eq!(frames[2], "data: [DONE]\n\n");
        let call = chat_bash_call("touch x", "2");
        let args = call["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(args).unwrap()["command"],
            "touch x"
        );
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
        let call = tool_call_events("touch x", "2", "m", 5);
        let done = &call[call.len() - 2]["item"];
        assert_eq!(done["name"], "exec_command");
        let args: Value = serde_json::from_str(done["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["cmd"], "touch x");
        let after = json!({"input": [{"type": "function_call", "call_id": "c"},
                                     {"type": "function_call_output", "call_id": "c", "output": "done"}]});
        assert!(carries_tool_result(&after) && !carries_tool_result(&json!({"input": []})));
    }
}
