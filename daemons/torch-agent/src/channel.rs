//! A CLI's own way to take a prompt, where Torch has one: the message is
//! handed to the CLI whole, not typed into its terminal, so no dialog or
//! half-drawn screen can take its keys. Today: opencode, through the socket
//! its Torch plugin listens on ([`crate::opencode`]), which submits the text
//! with opencode's TUI control API. The CLI's hook then confirms the prompt
//! taken, as for a typed message.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long the CLI has to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a message could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Nothing listens (the CLI is starting, or its plugin did not load):
    /// nothing was sent, so the message may be typed instead.
    #[error("nothing listens on {path}: {source}")]
    Unreachable {
        /// The socket.
        path: String,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The CLI said it could not submit the text.
    #[error("the agent's CLI refused the message: {0}")]
    Refused(String),
    /// The request was sent, and no clear answer came back.
    #[error("the agent's CLI did not answer the request to submit the message ({0}); it may or may not have taken it")]
    NoAnswer(String),
}

/// The socket a CLI's plugin listens on.
#[derive(Debug, Clone)]
pub struct PromptChannel {
    path: PathBuf,
}

/// A connection made, nothing sent yet.
pub struct Connected(UnixStream);

impl PromptChannel {
    /// The channel at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Connects; an error means nothing was sent.
    pub async fn connect(&self) -> Result<Connected, ChannelError> {
        UnixStream::connect(&self.path)
            .await
            .map(Connected)
            .map_err(|source| ChannelError::Unreachable {
                path: self.path.display().to_string(),
                source,
            })
    }
}

impl Connected {
    /// Asks the CLI to submit `text` as its next prompt.
    pub async fn submit(self, text: &str) -> Result<(), ChannelError> {
        let exchange = async {
            let mut stream = self.0;
            let mut request = serde_json::json!({ "text": text }).to_string();
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
}

/// The CLI's answer: `{"ok": true}`, or `{"ok": false, "error": ...}`.
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
        let channel = PromptChannel::new(path.clone());
        let text = "two\nlines \u{1b}[31m";
        channel.connect().await.unwrap().submit(text).await.unwrap();
        let refused = channel.connect().await.unwrap().submit("x").await;
        assert!(matches!(refused, Err(ChannelError::Refused(ref r)) if r == "busy"));
        let seen = server.await.unwrap();
        let first: serde_json::Value = serde_json::from_str(&seen[0]).unwrap();
        assert_eq!(first["text"], text);
        std::fs::remove_file(&path).unwrap();
        let gone = PromptChannel::new(path).connect().await;
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
