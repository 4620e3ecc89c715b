//! A CLI's own way to take a prompt, where Torch has one: the message is
//! handed to the CLI whole, not typed into its terminal, so no dialog or
//! half-drawn screen can take its keys. opencode takes it through the socket
//! its Torch plugin listens on ([`crate::opencode`]), which submits the text
//! with opencode's TUI control API; Codex as a turn its app server starts
//! ([`crate::app_server`]). The CLI's hook then confirms the prompt taken,
//! as for a typed message.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::app_server::{self, RpcError};

/// How long the CLI has to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Codex's TUI has to start its conversation once it shows its
/// prompt; then the message is typed.
const THREAD_PATIENCE: Duration = Duration::from_secs(10);

/// Why a message could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Nothing listens (the CLI is starting, or its plugin did not load),
    /// or the CLI has no conversation to take a prompt yet: nothing was
    /// sent, so the message may be typed instead.
    #[error("cannot hand the message over through {path}: {why}")]
    Unreachable {
        /// The socket.
        path: String,
        /// Why.
        why: String,
    },
    /// The CLI said it could not submit the text.
    #[error("the agent's CLI refused the message: {0}")]
    Refused(String),
    /// The request was sent, and no clear answer came back.
    #[error("the agent's CLI did not answer the request to submit the message ({0}); it may or may not have taken it")]
    NoAnswer(String),
}

/// Where a CLI takes its prompts.
#[derive(Debug, Clone)]
pub enum PromptChannel {
    /// The socket of Torch's plugin in opencode: one JSON line each way.
    Plugin(PathBuf),
    /// Codex's app server, started by the supervisor.
    AppServer(PathBuf),
}

/// A connection made, nothing sent yet.
pub enum Connected {
    /// To opencode's plugin.
    Plugin(UnixStream),
    /// To Codex's app server, on the conversation `thread`.
    AppServer {
        /// The client, initialized (boxed: a WebSocket's buffers).
        client: Box<app_server::Client>,
        /// The TUI's conversation, loaded in the server: a turn can be
        /// started on it without subscribing to it.
        thread: String,
    },
}

impl PromptChannel {
    /// Connects; `session` is the conversation the CLI's hooks reported.
    /// An error means nothing was sent.
    pub async fn connect(&self, session: Option<String>) -> Result<Connected, ChannelError> {
        match self {
            Self::Plugin(path) => UnixStream::connect(path)
                .await
                .map(Connected::Plugin)
                .map_err(|e| unreachable(path, e.to_string())),
            Self::AppServer(path) => {
                let mut client = app_server::Client::connect(path)
                    .await
                    .map_err(|e| unreachable(path, e.to_string()))?;
                let thread = match session {
                    Some(thread) => thread,
                    None => the_tuis_thread(&mut client)
                        .await
                        .map_err(|why| unreachable(path, why))?,
                };
                Ok(Connected::AppServer {
                    client: Box::new(client),
                    thread,
                })
            }
        }
    }
}

/// The conversation the TUI started, before its hooks report it (Codex
/// reports its session with the first prompt): the one thread loaded. The
/// TUI draws its prompt before it has started one, so an empty list is
/// asked again for a while.
async fn the_tuis_thread(client: &mut app_server::Client) -> Result<String, String> {
    let started = tokio::time::Instant::now();
    loop {
        let loaded = client
            .call("thread/loaded/list", json!({}))
            .await
            .map_err(|e| e.to_string())?;
        match loaded["data"].as_array().map(Vec::as_slice) {
            Some([thread]) => {
                return thread
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("thread/loaded/list answered {loaded}"))
            }
            Some([]) if started.elapsed() < THREAD_PATIENCE => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some([]) => return Err("Codex has no conversation loaded".into()),
            _ => return Err(format!("Codex has several conversations loaded: {loaded}")),
        }
    }
}

fn unreachable(path: &std::path::Path, why: String) -> ChannelError {
    ChannelError::Unreachable {
        path: path.display().to_string(),
        why,
    }
}

impl Connected {
    /// Asks the CLI to submit `text` as its next prompt.
    pub async fn submit(self, text: &str) -> Result<(), ChannelError> {
        match self {
            Self::Plugin(stream) => submit_to_plugin(stream, text).await,
            Self::AppServer { mut client, thread } => {
                let input = json!([{ "type": "text", "text": text, "text_elements": [] }]);
                let turn = json!({ "threadId": thread, "input": input });
                match client.call("turn/start", turn).await {
                    Ok(_) => Ok(()),
                    Err(RpcError::Refused { message, .. }) => Err(ChannelError::Refused(message)),
                    Err(e) => Err(ChannelError::NoAnswer(e.to_string())),
                }
            }
        }
    }
}

async fn submit_to_plugin(mut stream: UnixStream, text: &str) -> Result<(), ChannelError> {
    let exchange = async {
        let mut request = json!({ "text": text }).to_string();
        request.push('\n');
        stream.write_all(request.as_bytes()).await?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Err(_) => return Err(ChannelError::NoAnswer("timed out".into())),
        Ok(Err(e)) => return Err(ChannelError::NoAnswer(e.to_string())),
        Ok(Ok(answer)) => answer,
    };
    read_answer(&answer)
}

/// The plugin's answer: `{"ok": true}`, or `{"ok": false, "error": ...}`.
fn read_answer(line: &str) -> Result<(), ChannelError> {
    let answer: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|_| ChannelError::NoAnswer(format!("answered {:?}", line.trim())))?;
    match answer["ok"].as_bool() {
        Some(true) => Ok(()),
        Some(false) => Err(ChannelError::Refused(
            answer["error"].as_str().unwrap_or("no reason given").into(),
        )),
        None => Err(ChannelError::NoAnswer(format!("answered {answer}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_is_one_json_line_and_the_answer_decides() {
        let dir = std::env::temp_dir().join(format!("torch-channel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in ["{\"ok\":true}\n", "{\"ok\":false,\"error\":\"busy\"}\n"] {
                let (stream, _) = listener.accept().await.unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                seen.push(line);
                reader
                    .into_inner()
                    .write_all(answer.as_bytes())
                    .await
                    .unwrap();
            }
            seen
        });
        let channel = PromptChannel::Plugin(path.clone());
        let text = "two\nlines \u{1b}[31m";
        channel
            .connect(None)
            .await
            .unwrap()
            .submit(text)
            .await
            .unwrap();
        let refused = channel.connect(None).await.unwrap().submit("x").await;
        assert!(matches!(refused, Err(ChannelError::Refused(ref r)) if r == "busy"));
        let seen = server.await.unwrap();
        let first: serde_json::Value = serde_json::from_str(&seen[0]).unwrap();
        assert_eq!(first["text"], text);
        std::fs::remove_file(&path).unwrap();
        let gone = PromptChannel::Plugin(path).connect(None).await;
        assert!(matches!(gone, Err(ChannelError::Unreachable { .. })));
    }

    #[test]
    fn answers_that_say_nothing_clear_are_no_answer() {
        assert!(read_answer("{\"ok\":true}\n").is_ok());
        assert!(matches!(read_answer(""), Err(ChannelError::NoAnswer(_))));
        assert!(matches!(
            read_answer("{\"fine\":1}"),
            Err(ChannelError::NoAnswer(_))
        ));
    }
}
