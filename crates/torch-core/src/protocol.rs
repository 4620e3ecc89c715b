//! The supervisor's control protocol: one JSON request line, one JSON reply
//! line, over the agent's Unix socket (`control.sock` in its runtime dir).
//!
//! The hub (and, until the hub does it, the CLI) uses this to deliver
//! messages and read the pane. A socket per agent, not a bus name per agent,
//! keeps the supervisor working when D-Bus is down and needs no bus policy for
//! names that come and go; file permissions on the runtime directory decide
//! who may call.
//!
//! # Versions
//!
//! Hub and supervisors are upgraded apart: a package upgrade restarts the hub
//! while every agent keeps its old supervisor, and an agent restarted later
//! gets the new supervisor while an old hub may still run. So each request
//! ([`Call`]) and each reply ([`Reply`]) carries the sender's
//! [`PROTOCOL_VERSION`] in a `version` field, and both sides keep to these
//! rules:
//!
//! - A missing `version` reads as 0: a hub or supervisor from before
//!   versions. Fields a reader does not know are ignored, so version 0 reads
//!   the requests and replies of later versions as it always read its own.
//! - A new field is optional for its reader (`#[serde(default)]`), so it can
//!   be added without a new version.
//! - A new request, or a reply an older caller could not read, needs a new
//!   version. The hub sends such a request only to a supervisor whose replies
//!   showed that version (see [`DELIVER_IF_IDLE_SINCE`]); a supervisor answers
//!   a caller in the oldest form that caller's `version` reads.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The control protocol version this build speaks.
///
/// - 0 (no `version` field): `deliver`, `capture`, `status`. Some version-0
///   supervisors also know `deliver_if_idle` and send `permanent`, but a
///   caller cannot tell which.
/// - 1: `version` in every request and reply; `deliver_if_idle`; `permanent`
///   on errors no retry can cure.
/// - 2: `hook` (an agent CLI's hook event, from `torch-agent --hook`),
///   answered `noted` or, for a permission request, `decision`; `answer`
///   (an answer to the question the agent asks, from the hub).
pub const PROTOCOL_VERSION: u32 = 2;

/// The first version whose supervisors know [`Request::Answer`].
pub const ANSWER_SINCE: u32 = 2;

/// The first version whose supervisors know [`Request::DeliverIfIdle`].
pub const DELIVER_IF_IDLE_SINCE: u32 = 1;

/// A request as it travels: what is asked, and the caller's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// What is asked (its `op` and fields sit beside `version`).
    #[serde(flatten)]
    pub request: Request,
    /// The caller's [`PROTOCOL_VERSION`]; 0 from callers before versions.
    #[serde(default)]
    pub version: u32,
}

impl Call {
    /// `request` from a caller of this build.
    pub fn new(request: Request) -> Self {
        Self {
            request,
            version: PROTOCOL_VERSION,
        }
    }
}

/// A reply as it travels: the answer, and the supervisor's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The answer (its `result` and fields sit beside `version`).
    #[serde(flatten)]
    pub response: Response,
    /// The supervisor's [`PROTOCOL_VERSION`]; 0 from supervisors before
    /// versions.
    #[serde(default)]
    pub version: u32,
}

impl Reply {
    /// `response` from a supervisor of this build.
    pub fn new(response: Response) -> Self {
        Self {
            response,
            version: PROTOCOL_VERSION,
        }
    }
}

/// The line that carries `request` from a caller of this build.
pub fn request_line(request: &Request) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(&Call::new(request.clone()))?;
    line.push(b'\n');
    Ok(line)
}

/// Reads a supervisor's reply line, of any version.
pub fn parse_reply(line: &str) -> Result<Reply, serde_json::Error> {
    serde_json::from_str(line)
}

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
    /// typing. Known since [`DELIVER_IF_IDLE_SINCE`]; to an older
    /// supervisor the hub sends `Status` first, then `Deliver`.
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
    /// An event of the agent CLI's session, from one of the hooks the
    /// supervisor installed (`torch-agent --hook`): the CLI's own JSON.
    /// Known since version 2; sent only by the `torch-agent` binary of the
    /// same package as the supervisor that installed the hook.
    Hook {
        /// The hook's standard input, as the CLI wrote it.
        event: serde_json::Value,
    },
    /// Answer the question the agent's CLI asks on screen (a permission
    /// prompt): `yes`, `no`, or the number of a choice. Known since
    /// version 2 ([`ANSWER_SINCE`]).
    Answer {
        /// What to answer.
        choice: String,
    },
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
        /// What decided `activity`: `screen`, or the last hook event and its
        /// age (`hook Stop 3 s ago`). Empty from older supervisors.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        signal: String,
        /// How long the agent has been asking or in trouble, as the health
        /// checks saw it (0 when it is neither).
        #[serde(default, skip_serializing_if = "is_zero")]
        waiting_secs: u64,
        /// What it asks, when its CLI said (a permission request).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        question: String,
        /// What the screen alone reads (`activity` may come from hooks).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        screen: String,
        /// Tokens its conversation used, when its CLI records them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<Tokens>,
        /// What its CLI says the session has cost, in millionths of a US
        /// dollar, when it says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_microusd: Option<u64>,
    },
    /// A hook event was read (answer to `Hook`).
    Noted,
    /// The supervisor's decision on a permission request (answer to a
    /// `Hook` carrying one), by the `[permissions]` policy.
    Decision {
        /// Whether the tool may run.
        allow: bool,
        /// Why, for the model when it is refused.
        message: String,
    },
    /// The answer was given (answer to `Answer`).
    Answered,
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

/// Token counts of an agent's conversation, as the model API reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tokens {
    /// Input tokens billed at the full rate.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
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
    stream.write_all(&request_line(request)?)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(parse_reply(&reply)?.response)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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

    /// The wire types of the last build before versions, as they were:
    /// what a hub or supervisor still running that build reads and writes.
    mod v0 {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Request {
            Deliver {
                text: String,
                #[serde(default, skip_serializing_if = "Option::is_none")]
                id: Option<String>,
            },
            DeliverIfIdle {
                text: String,
                #[serde(default, skip_serializing_if = "Option::is_none")]
                id: Option<String>,
            },
            Capture {
                #[serde(default)]
                history: u32,
            },
            Status,
        }

        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "result", rename_all = "snake_case")]
        pub enum Response {
            Delivered {
                submits: u32,
                millis: u64,
                text_seen: bool,
                #[serde(default)]
                duplicate: bool,
            },
            Busy {
                activity: String,
            },
            Screen {
                text: String,
            },
            Status {
                state: String,
                pid: u32,
                delivered: u64,
                idle_secs: u64,
                #[serde(default = "super::unknown_activity")]
                activity: String,
            },
            Error {
                message: String,
                #[serde(default, skip_serializing_if = "std::ops::Not::not")]
                permanent: bool,
            },
        }
    }

    /// Requests as a hub before versions wrote them.
    const OLD_REQUESTS: [&str; 4] = [
        r#"{"op":"deliver","text":"hi","id":"torch-msg-7"}"#,
        r#"{"op":"deliver_if_idle","text":"hi","id":"torch-msg-8"}"#,
        r#"{"op":"capture","history":50}"#,
        r#"{"op":"status"}"#,
    ];

    /// Replies as a supervisor before versions wrote them.
    const OLD_REPLIES: [&str; 6] = [
        r#"{"result":"delivered","submits":1,"millis":21,"text_seen":true,"duplicate":false}"#,
        r#"{"result":"busy","activity":"working"}"#,
        r#"{"result":"screen","text":"$ "}"#,
        r#"{"result":"status","state":"running","pid":42,"delivered":3,"idle_secs":5,"activity":"idle"}"#,
        r#"{"result":"error","message":"malformed request: unknown variant `hello`"}"#,
        r#"{"result":"error","message":"too big","permanent":true}"#,
    ];

    #[test]
    fn fixtures_are_what_the_old_build_wrote() {
        for line in OLD_REQUESTS {
            let old: v0::Request = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&old).unwrap(), line);
        }
        for line in OLD_REPLIES {
            let old: v0::Response = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&old).unwrap(), line);
        }
    }

    #[test]
    fn a_new_supervisor_reads_an_old_hub_and_the_old_hub_reads_its_replies() {
        let calls: Vec<Call> = OLD_REQUESTS
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(calls.iter().all(|c| c.version == 0));
        assert_eq!(
            calls[0].request,
            Request::Deliver {
                text: "hi".into(),
                id: Some("torch-msg-7".into())
            }
        );
        assert_eq!(calls[2].request, Request::Capture { history: 50 });
        assert_eq!(calls[3].request, Request::Status);
        // What the new supervisor answers, as the old hub reads it.
        let status = Reply::new(Response::Status {
            state: "running".into(),
            pid: 42,
            delivered: 3,
            idle_secs: 5,
            activity: "idle".into(),
            signal: "hook Stop 2 s ago".into(),
            waiting_secs: 0,
            question: String::new(),
            screen: String::new(),
            tokens: None,
            cost_microusd: None,
        });
        let line = serde_json::to_string(&status).unwrap();
        let old: v0::Response = serde_json::from_str(&line).unwrap();
        assert_eq!(serde_json::to_string(&old).unwrap(), OLD_REPLIES[3]);
        let refusal = serde_json::to_string(&Reply::new(Response::refusal("too big"))).unwrap();
        let old: v0::Response = serde_json::from_str(&refusal).unwrap();
        assert_eq!(serde_json::to_string(&old).unwrap(), OLD_REPLIES[5]);
    }

    #[test]
    fn an_old_supervisor_reads_a_new_hub_and_the_new_hub_reads_its_replies() {
        let new = [
            Request::Deliver {
                text: "hi".into(),
                id: Some("torch-msg-7".into()),
            },
            Request::DeliverIfIdle {
                text: "hi".into(),
                id: Some("torch-msg-8".into()),
            },
            Request::Capture { history: 50 },
            Request::Status,
        ];
        for (request, old_line) in new.iter().zip(OLD_REQUESTS) {
            let line = request_line(request).unwrap();
            let line = std::str::from_utf8(&line).unwrap();
            assert!(
                line.ends_with('\n') && line.contains(&format!(r#""version":{PROTOCOL_VERSION}"#)),
                "{line}"
            );
            let old: v0::Request = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&old).unwrap(), old_line);
        }
        let replies: Vec<Reply> = OLD_REPLIES
            .iter()
            .map(|l| parse_reply(l).unwrap())
            .collect();
        assert!(replies.iter().all(|r| r.version == 0));
        assert_eq!(
            replies[0].response,
            Response::Delivered {
                submits: 1,
                millis: 21,
                text_seen: true,
                duplicate: false
            }
        );
        assert!(matches!(
            &replies[3].response,
            Response::Status { pid: 42, activity, .. } if activity == "idle"
        ));
        assert_eq!(
            replies[4].response,
            Response::error("malformed request: unknown variant `hello`")
        );
        assert_eq!(replies[5].response, Response::refusal("too big"));
    }

    #[test]
    fn versioned_lines_round_trip() {
        let line = serde_json::to_string(&Call::new(Request::Status)).unwrap();
        assert_eq!(line, r#"{"op":"status","version":2}"#);
        assert_eq!(
            serde_json::from_str::<Call>(&line).unwrap(),
            Call::new(Request::Status)
        );
        let reply = Reply::new(Response::Screen { text: "$ ".into() });
        let line = serde_json::to_string(&reply).unwrap();
        assert_eq!(line, r#"{"result":"screen","text":"$ ","version":2}"#);
        assert_eq!(parse_reply(&line).unwrap(), reply);
        // A later supervisor's reply with fields this build does not know.
        let later =
            parse_reply(r#"{"result":"busy","activity":"asking","since":3,"version":9}"#).unwrap();
        assert_eq!(later.version, 9);
        assert_eq!(
            later.response,
            Response::Busy {
                activity: "asking".into()
            }
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
