//! `torch-test-llm`: the tests' stand-in of the Anthropic Messages API, the Gemini API and
//! the OpenAI Responses and Chat Completions APIs, so integration tests can run the real
//! agent CLIs without any model service (never a real one, never off the loopback).
//!
//! ```text
//! torch-test-llm --record FILE [--script FILE] [--port N] [--port-file FILE]
//! ```
//!
//! * Binds 127.0.0.1 only; `--port 0` (the default) picks a free port. The first line on
//!   stdout is `listening on 127.0.0.1:PORT`; `--port-file` gets the port too.
//! * `POST /v1/messages` (plain or `"stream": true`), `POST /v1/messages/count_tokens`;
//!   `POST /v1beta/models/M:generateContent` and `:streamGenerateContent` (see
//!   `torch_tests::gemini`); `POST /v1/responses` and `POST /v1/chat/completions` (see
//!   `torch_tests::openai`); `POST /webhook` (any JSON, answered 200: a webhook's receiver
//!   for `torch-alerts`); anything else is a 404 with an API-style error body.
//! * Every request is appended to the record file as one JSON line: `at_ms`, `method`,
//!   `path`, `body` (JSON or null), `last_user_text`, `model`, and `request` (its number,
//!   from 1). When a `/v1/messages` reply has been sent whole (a stream's last event handed
//!   to the connection), a second line `{"request": N, "ended_ms": T}` follows, so a test or
//!   the benchmark can time what the client does after the reply.
//! * The script (a JSON list of rules, see `torch_tests::anthropic`) is read again on every
//!   request, so a test may change it while the server runs. Without a rule that applies,
//!   the reply is the text `ok`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use serde_json::{json, Value};
use torch_tests::anthropic::{self, Answer, Rule};
use torch_tests::{gemini, openai};

#[derive(Parser, Debug)]
#[command(about = "A stand-in of the model APIs the agent CLIs call, for Torch's tests")]
struct Args {
    /// Append one JSON line per request to this file.
    #[arg(long)]
    record: PathBuf,
    /// A JSON list of rules, read on every request.
    #[arg(long)]
    script: Option<PathBuf>,
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Also write the port here.
    #[arg(long)]
    port_file: Option<PathBuf>,
}

struct App {
    record: Mutex<File>,
    script: Option<PathBuf>,
    fired: Mutex<HashMap<String, u32>>,
    seq: AtomicU64,
    /// Numbers the requests, for matching a reply's end line to its request.
    requests: AtomicU64,
}

type Shared = Arc<App>;

/// Requests can be large (Claude Code sends its whole system prompt and tool list each time).
const BODY_LIMIT: usize = 256 * 1024 * 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let record = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.record)
        .with_context(|| format!("opening the record file {}", args.record.display()))?;
    let app = Arc::new(App {
        record: Mutex::new(record),
        script: args.script,
        fired: Mutex::new(HashMap::new()),
        seq: AtomicU64::new(1),
        requests: AtomicU64::new(1),
    });
    let router = axum::Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let port = listener
        .local_addr()
        .context("reading the bound port")?
        .port();
    announce(port, args.port_file.as_deref())?;
    axum::serve(listener, router).await.context("serving")
}

/// Says where we listen; the port file appears whole (written aside, then renamed), so a
/// test polling for it never reads half a number.
fn announce(port: u16, port_file: Option<&std::path::Path>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on 127.0.0.1:{port}").context("writing to stdout")?;
    out.flush().context("flushing stdout")?;
    if let Some(path) = port_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{port}\n"))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    }
    Ok(())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Every request lands here: recorded first, then answered.
async fn handle(State(app): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let json = parsed.clone().unwrap_or(Value::Null);
    let is_gemini = gemini::is_model_call(uri.path());
    let is_openai = uri.path() == openai::PATH;
    let is_chat = uri.path() == openai::CHAT_PATH;
    // Chat Completions messages have the Messages API's shape: a role, and content as a
    // string or a list of parts of type "text".
    let text = if is_gemini {
        gemini::last_user_text(&json)
    } else if is_openai {
        openai::last_user_text(&json)
    } else {
        anthropic::last_user_text(&json)
    };
    let model = json["model"].as_str().unwrap_or_default().to_string();
    let request = app.requests.fetch_add(1, Ordering::Relaxed);
    app.write_record(&json!({
        "at_ms": now_ms() as u64, "method": method.as_str(), "path": uri.path(),
        "body": json, "last_user_text": text, "model": model, "request": request,
    }));
    let post = method == Method::POST;
    match (post, uri.path(), parsed) {
        (true, "/v1/messages" | "/v1/messages/count_tokens", None) => {
            error(400, "the body is not JSON", None)
        }
        (true, "/v1/messages/count_tokens", Some(_)) => {
            let n = anthropic::tokens(body.len());
            (StatusCode::OK, axum::Json(json!({"input_tokens": n}))).into_response()
        }
        (true, "/v1/messages", Some(req)) => {
            let size = body.len();
            app.messages(&req, &text, &model, size, request).await
        }
        (true, _, Some(req)) if is_chat => app.chat(&req, &text, &model, body.len(), request).await,
        (true, _, Some(req)) if is_openai => {
            app.responses(&req, &text, &model, body.len(), request)
                .await
        }
        // A webhook's receiver, for torch-alerts: the record keeps the body.
        (true, "/webhook", Some(_)) => (StatusCode::OK, "ok\n").into_response(),
        (true, path, Some(req)) if is_gemini => {
            app.gemini(&req, &text, gemini::is_stream(path), body.len(), request)
                .await
        }
        _ => error(
            404,
            &format!("the stand-in has no {} {}", method, uri.path()),
            None,
        ),
    }
}

impl App {
    /// Appends one line and flushes it: tests read the file while we run. A failed write is
    /// reported on stderr but does not fail the request the client is waiting for.
    fn write_record(&self, line: &Value) {
        let Ok(mut f) = self.record.lock() else {
            eprintln!("torch-test-llm: record file lock poisoned");
            return;
        };
        if let Err(e) = writeln!(f, "{line}").and_then(|()| f.flush()) {
            eprintln!("torch-test-llm: writing the record: {e}");
        }
    }

    /// The script as it is now; a missing file is an empty script.
    fn script(&self) -> Result<anthropic::Script, String> {
        let Some(path) = &self.script else {
            return Ok(Vec::new());
        };
        match std::fs::read_to_string(path) {
            Ok(text) => anthropic::parse_script(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    /// Picks the rule for this request and counts it as fired.
    fn choose(&self, req: &Value, text: &str) -> Result<Option<Rule>, String> {
        let script = self.script()?;
        let mut fired = self.fired.lock().map_err(|_| "rule counts poisoned")?;
        let tool_result = anthropic::carries_tool_result(req)
            || openai::carries_tool_result(req)
            || openai::chat_carries_tool_result(req)
            || gemini::carries_tool_result(req);
        let Some((key, rule)) = anthropic::pick(&script, text, tool_result, &fired) else {
            return Ok(None);
        };
        *fired.entry(key.clone()).or_insert(0) += 1;
        Ok(Some(rule.clone()))
    }

    /// Records that the reply to request `request` was sent whole.
    fn write_end(&self, request: u64) {
        self.write_record(&json!({"request": request, "ended_ms": now_ms() as u64}));
    }

    async fn messages(
        self: &Arc<Self>,
        req: &Value,
        text: &str,
        model: &str,
        size: usize,
        request: u64,
    ) -> Response {
        let rule = match self.choose(req, text) {
            Ok(r) => r,
            Err(e) => {
                // A broken script must show in the test, not turn into a silent "ok".
                eprintln!("torch-test-llm: {e}");
                return error(500, &format!("stand-in script: {e}"), None);
            }
        };
        let ms = |v: Option<u64>| Duration::from_millis(v.unwrap_or(0));
        let (delay, stream_for) = rule.as_ref().map_or((Duration::ZERO, Duration::ZERO), |r| {
            (ms(r.delay_ms), ms(r.stream_ms))
        });
        tokio::time::sleep(delay).await;
        let answer = anthropic::answer(rule.as_ref());
        if let Answer::Error {
            status,
            retry_after_s,
        } = answer
        {
            return error(status, "scripted error from the stand-in", retry_after_s);
        }
        let id = format!("standin{:06}", self.seq.fetch_add(1, Ordering::Relaxed));
        let input = anthropic::tokens(size);
        if req["stream"] == true {
            let events = anthropic::stream_events(&answer, &id, model, input, stream_for);
            let app = Arc::clone(self);
            stream(events, move || app.write_end(request))
        } else {
            let msg = anthropic::message(&answer, &id, model, input);
            // Handed over at once: the body is built, nothing is left to wait for.
            self.write_end(request);
            (StatusCode::OK, axum::Json(msg)).into_response()
        }
    }
}

impl App {
    /// The scripted answer, after the rule's delay; a broken script is an error to answer
    /// with a 500, so it shows in the test rather than as a silent "ok".
    async fn delayed_answer(&self, req: &Value, text: &str) -> Result<Answer, String> {
        let rule = self.choose(req, text).map_err(|e| {
            eprintln!("torch-test-llm: {e}");
            format!("stand-in script: {e}")
        })?;
        let delay = Duration::from_millis(rule.as_ref().and_then(|r| r.delay_ms).unwrap_or(0));
        tokio::time::sleep(delay).await;
        Ok(anthropic::answer(rule.as_ref()))
    }

    /// A Gemini model call: the classifier gets its JSON at once; a turn gets the scripted
    /// answer (text, a `run_shell_command` call, or an error) after the rule's delay,
    /// streamed when asked.
    async fn gemini(
        self: &Arc<Self>,
        req: &Value,
        text: &str,
        stream_it: bool,
        size: usize,
        request: u64,
    ) -> Response {
        if gemini::is_classifier(req) {
            self.write_end(request);
            return (StatusCode::OK, axum::Json(gemini::classifier_reply())).into_response();
        }
        let input = anthropic::tokens(size);
        let chunk = match self.delayed_answer(req, text).await {
            Ok(Answer::Error {
                status,
                retry_after_s,
            }) => return gemini_error(status, "scripted error from the stand-in", retry_after_s),
            Ok(Answer::Text(t)) => gemini::candidate(&t, input),
            Ok(Answer::Bash(tool)) => gemini::shell_call(&tool.command, input),
            Err(e) => return gemini_error(500, &e, None),
        };
        if stream_it {
            let app = Arc::clone(self);
            stream(vec![(Duration::ZERO, gemini::sse(&chunk))], move || {
                app.write_end(request)
            })
        } else {
            self.write_end(request);
            (StatusCode::OK, axum::Json(chunk)).into_response()
        }
    }
}

impl App {
    /// An OpenAI Responses call (Codex CLI): a title request gets a title at once; a turn
    /// gets the scripted answer (text, an `exec_command` call, or an error) after the
    /// rule's delay, always streamed.
    async fn responses(
        self: &Arc<Self>,
        req: &Value,
        text: &str,
        model: &str,
        size: usize,
        request: u64,
    ) -> Response {
        let id = format!("{:06}", self.seq.fetch_add(1, Ordering::Relaxed));
        let input = anthropic::tokens(size);
        if openai::is_title(req) {
            let events = openai::stream_events("Torch agent work", &id, model, input);
            return self.responses_stream(events, request);
        }
        let reply = match self.delayed_answer(req, text).await {
            Ok(Answer::Error {
                status,
                retry_after_s,
            }) => return openai_error(status, "scripted error from the stand-in", retry_after_s),
            Ok(Answer::Text(t)) => openai::stream_events(&t, &id, model, input),
            Ok(Answer::Bash(tool)) => openai::tool_call_events(&tool.command, &id, model, input),
            Err(e) => return openai_error(500, &e, None),
        };
        self.responses_stream(reply, request)
    }

    /// A Chat Completions call (opencode): a title request gets a title at once; a turn
    /// gets the scripted answer (text, a `bash` call, or an error) after the rule's delay,
    /// streamed.
    async fn chat(
        self: &Arc<Self>,
        req: &Value,
        text: &str,
        model: &str,
        size: usize,
        request: u64,
    ) -> Response {
        let id = format!("{:06}", self.seq.fetch_add(1, Ordering::Relaxed));
        let input = anthropic::tokens(size);
        let frames = if openai::is_chat_title(req) {
            openai::chat_stream(
                openai::chat_text("Torch agent work"),
                "stop",
                &id,
                model,
                input,
            )
        } else {
            match self.delayed_answer(req, text).await {
                Ok(Answer::Error {
                    status,
                    retry_after_s,
                }) => {
                    return openai_error(status, "scripted error from the stand-in", retry_after_s)
                }
                Ok(Answer::Text(t)) => {
                    openai::chat_stream(openai::chat_text(&t), "stop", &id, model, input)
                }
                Ok(Answer::Bash(tool)) => {
                    let call = openai::chat_bash_call(&tool.command, &id);
                    openai::chat_stream(call, "tool_calls", &id, model, input)
                }
                Err(e) => return openai_error(500, &e, None),
            }
        };
        let frames = frames.into_iter().map(|f| (Duration::ZERO, f)).collect();
        let app = Arc::clone(self);
        stream(frames, move || app.write_end(request))
    }

    fn responses_stream(self: &Arc<Self>, events: Vec<Value>, request: u64) -> Response {
        let frames = events
            .iter()
            .map(|e| (Duration::ZERO, openai::sse(e)))
            .collect();
        let app = Arc::clone(self);
        stream(frames, move || app.write_end(request))
    }
}

/// An OpenAI-style error; a 429 says when to come back in `retry-after`.
fn openai_error(status: u16, message: &str, retry_after_s: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, axum::Json(openai::error_body(status, message))).into_response();
    if let Some(v) = retry_after_s.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

/// A Gemini-style error; a 429 says when to come back in its details.
fn gemini_error(status: u16, message: &str, retry_after_s: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = gemini::error_body(status, message, retry_after_s);
    (code, axum::Json(body)).into_response()
}

/// A server-sent-event response that sends each event after its pause, then calls `ended`.
fn stream(events: Vec<(Duration, String)>, ended: impl FnOnce() + Send + 'static) -> Response {
    let state = (events.into_iter(), Some(ended));
    let body = futures_util::stream::unfold(state, |(mut it, mut ended)| async move {
        let Some((pause, frame)) = it.next() else {
            // Asked for more after the last frame: the connection took it.
            if let Some(f) = ended.take() {
                f();
            }
            return None;
        };
        tokio::time::sleep(pause).await;
        Some((Ok::<_, Infallible>(Bytes::from(frame)), (it, ended)))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// An API-style error; a 429 tells when to come back, in the headers the API uses.
fn error(status: u16, message: &str, retry_after_s: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, axum::Json(anthropic::error_body(status, message))).into_response();
    if let Some(secs) = retry_after_s {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let reset = anthropic::rfc3339(now + secs);
        let h = resp.headers_mut();
        for (name, value) in [
            ("retry-after", secs.to_string()),
            ("anthropic-ratelimit-requests-reset", reset.clone()),
            ("anthropic-ratelimit-tokens-reset", reset),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
    }
    resp
}
