//! The supervisor's control protocol: one JSON request line, one JSON reply
//! line, over the agent's Unix socket (`control.sock` in its runtime dir).
//!
//! The hub (and, until the hub does it, the CLI) uses this to deliver
//! messages and read the pane. A socket per agent, not a bus name per agent,
//! keeps the supervisor working when D-Bus is down and needs no bus policy for
//! names that come and go; file permissions on the runtime directory decide
//! who may call.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A call to a supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Type `text` into the agent as one message and submit it.
    Deliver {
        /// The message; checked with [`crate::validate_message`].
        text: String,
        /// The hub's id for the message: a second request with an id the
        /// supervisor has seen is answered without typing anything, so a
        /// retry after a crash never types a message twice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Like `Deliver`, but type nothing and answer [`Response::Busy`] when
    /// the screen shows the agent working, asking or in trouble (the hub's
    /// `hold_until_idle`): one call, with no gap between looking and
    /// typing. Supervisors older than this request answer it with an error
    /// ("unknown variant"); the hub then asks `Status` first and sends
    /// `Deliver`.
    DeliverIfIdle {
        /// As in `Deliver`.
        text: String,
        /// As in `Deliver`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Read the pane's screen.
    Capture {
        /// Lines of scrollback to include above the screen.
        #[serde(default)]
        history: u32,
    },
    /// Report the agent's state.
    Status,
}

/// A supervisor's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// The message was typed, submitted and seen to be taken.
    Delivered {
        /// Submit keystrokes needed (more than 1: the program swallowed one).
        submits: u32,
        /// Time from the start of delivery to confirmation.
        millis: u64,
        /// Whether the text itself was seen on the screen before submitting
        /// (false: only a change of the screen was seen, e.g. a TUI that
        /// shows a placeholder for pasted text).
        text_seen: bool,
        /// The id was seen before: nothing was typed this time.
        #[serde(default)]
        duplicate: bool,
    },
    /// Nothing was typed: the agent's screen shows it busy (answer to
    /// `DeliverIfIdle`).
    Busy {
        /// What the screen shows: `working`, `asking` or `trouble`.
        activity: String,
    },
    /// The pane's screen.
    Screen {
        /// Plain text, one line per row.
        text: String,
    },
    /// The agent's state.
    Status {
        /// Short state word: `running`, `stopped`, `exited`.
        state: String,
        /// PID of the agent program.
        pid: u32,
        /// Messages delivered since the supervisor started.
        delivered: u64,
        /// Seconds since the pane last printed anything.
        idle_secs: u64,
        /// What the screen shows the agent doing (`idle`, `working`,
        /// `asking`, `trouble`, `unknown`), read with its profile.
        #[serde(default = "unknown_activity")]
        activity: String,
    },
    /// The call failed; the message says why and what to do.
    Error {
        /// Human-readable reason.
        message: String,
        /// Whether the same request would fail again however often it is
        /// retried (a message the supervisor refuses as too large or
        /// invalid), so the hub fails it at once instead of retrying.
        /// Supervisors older than this field do not send it: their errors
        /// read as `false`, retried as before.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        permanent: bool,
    },
}

impl Response {
    /// An error that a retry may cure (the agent busy, starting, frozen).
    pub fn error(message: impl Into<String>) -> Self {
        Response::Error {
            message: message.into(),
            permanent: false,
        }
    }

    /// An error that no retry can cure (the request itself is refused).
    pub fn refusal(message: impl Into<String>) -> Self {
        Response::Error {
            message: message.into(),
            permanent: true,
        }
    }
}

/// Why a call to a supervisor failed before it answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No supervisor listens on the socket.
    #[error("cannot reach the agent's supervisor at {path}: {source} (is torch-agent@ running? see `torch list`)")]
    Connect {
        /// Socket path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The connection broke or timed out mid-call.
    #[error("talking to the agent's supervisor failed: {0}")]
    Io(#[from] std::io::Error),
    /// The supervisor answered something we do not understand.
    #[error("the agent's supervisor sent a reply we cannot read: {0}")]
    Protocol(#[from] serde_json::Error),
}

/// Sends one request and waits (up to `timeout`) for the answer.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(serde_json::from_str(&reply)?)
}

fn unknown_activity() -> String {
    "unknown".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_stable() {
        let r = Request::Deliver {
            text: "hi".into(),
            id: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"deliver","text":"hi"}"#
        );
        let r = Request::DeliverIfIdle {
            text: "hi".into(),
            id: Some("m1".into()),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"deliver_if_idle","text":"hi","id":"m1"}"#
        );
        let busy = Response::Busy {
            activity: "working".into(),
        };
        assert_eq!(
            serde_json::to_string(&busy).unwrap(),
            r#"{"result":"busy","activity":"working"}"#
        );
        let back: Request = serde_json::from_str(r#"{"op":"capture"}"#).unwrap();
        assert_eq!(back, Request::Capture { history: 0 });
        let e = Response::error("x");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"result":"error","message":"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::refusal("x")).unwrap(),
            r#"{"result":"error","message":"x","permanent":true}"#
        );
    }

    #[test]
    fn errors_of_older_supervisors_read_as_transient() {
        let old: Response =
            serde_json::from_str(r#"{"result":"error","message":"too big"}"#).unwrap();
        assert_eq!(old, Response::error("too big"));
        let new: Response =
            serde_json::from_str(r#"{"result":"error","message":"too big","permanent":true}"#)
                .unwrap();
        assert_eq!(new, Response::refusal("too big"));
    }
}
