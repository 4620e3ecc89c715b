//! The supervisor's control socket: one JSON request, one JSON reply.
//! Wire format and its versions in `torch_core::protocol`: every reply
//! carries this supervisor's version, and every version of request is read
//! (a missing `version` is a hub from before versions).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use torch_core::profile::Activity;
use torch_core::protocol::{Call, Reply, Request, Response};
use torch_core::{validate_message, MAX_MESSAGE_BYTES};

use crate::delivery::Job;
use crate::proc;
use crate::state::Shared;

/// The largest request line we read: a maximal message even if every
/// character needed a JSON escape, plus room for the envelope.
const MAX_REQUEST_BYTES: u64 = (MAX_MESSAGE_BYTES as u64) * 6 + 4096;
/// A client has this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the listener fails.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, jobs: mpsc::Sender<Job>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                let jobs = jobs.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &shared, &jobs).await {
                        tracing::debug!("control connection ended: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(
    stream: UnixStream,
    shared: &Arc<Shared>,
    jobs: &mpsc::Sender<Job>,
) -> std::io::Result<()> {
    let cred = stream.peer_cred().ok();
    let peer = cred.and_then(|c| c.pid());
    let trusted = cred.is_some_and(|c| is_root_or_hub(c.uid()));
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    let mut line = String::new();
    let n = tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let response = if n == 0 {
        return Ok(());
    } else if !line.ends_with('\n') {
        // The same request would be cut off again.
        Response::refusal(format!(
            "request too large or not terminated by a newline (limit {MAX_REQUEST_BYTES} bytes)"
        ))
    } else {
        match serde_json::from_str::<Call>(&line) {
            // Every reply so far is one that callers of each version read.
            Ok(call) => match &call.request {
                Request::Hook { .. } if !from_own_unit(peer) => Response::refusal(
                    "hook events are taken only from processes of this agent's own unit",
                ),
                Request::Hook { .. } => answer(call.request, shared, jobs).await,
                _ if !trusted => {
                    let show = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
                    let uid = show(cred.map(|c| c.uid().to_string()));
                    let pid = show(peer.map(|p| p.to_string()));
                    tracing::warn!(
                        torch_audit = 1,
                        "refused a control request from uid {uid} (pid {pid}): only root and the hub may use this socket"
                    );
                    Response::refusal(
                        "this agent's control socket takes requests only from root and the Torch hub: \
                         use `torch send` or `torch capture` (through the hub), or run as root for --direct",
                    )
                }
                _ => answer(call.request, shared, jobs).await,
            },
            // Not permanent: a request this supervisor does not know may be
            // known to the newer one that replaces it at its next restart.
            Err(e) => Response::error(format!("malformed request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&Reply::new(response)).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

/// Whether `uid` is root's or the hub's (the `torch` user): the only
/// callers that may type, capture or answer through this socket, so that
/// no agent reaches past the hub's rules and audit.
fn is_root_or_hub(uid: u32) -> bool {
    static HUB: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    let hub = HUB.get_or_init(|| {
        nix::unistd::User::from_name(torch_core::paths::HUB_USER)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    });
    uid == 0 || Some(uid) == *hub
}

/// Whether the peer process runs in this supervisor's own unit: the agent
/// CLI's hooks do; other agents do not.
fn from_own_unit(peer: Option<i32>) -> bool {
    let own = proc::cgroup_of(std::process::id() as i32);
    match (peer.and_then(proc::cgroup_of), own) {
        (Some(peer), Some(own)) => proc::within(&peer, &own),
        _ => false,
    }
}

async fn answer(req: Request, shared: &Arc<Shared>, jobs: &mpsc::Sender<Job>) -> Response {
    match req {
        Request::Deliver { text, id } => deliver(text, id, false, shared, jobs).await,
        Request::DeliverIfIdle { text, id } => deliver(text, id, true, shared, jobs).await,
        Request::Capture { history } => {
            match shared.tmux.capture(&shared.pane, history.min(20_000)).await {
                Ok(text) => Response::Screen { text },
                Err(e) => Response::error(e.to_string()),
            }
        }
        Request::Status => shared.status_response().await,
        Request::Hook { event } => match shared.hooks.hear(&event) {
            // The CLI shows its dialog once the hook returned: answer it then.
            Some(decision) if torch_core::hooks::answered_on_screen(&event) => {
                let shared = Arc::clone(shared);
                tokio::spawn(async move { answer_on_screen(decision, &shared).await });
                Response::Noted
            }
            Some(decision) => decision.response(),
            None => Response::Noted,
        },
        Request::Answer { choice } => answer_question(&choice, shared).await,
    }
}

/// How long a dialog announced by a hook has to show on screen.
const DIALOG_SHOWS: Duration = Duration::from_secs(10);

/// Answers a dialog the policy decided, once the screen shows it.
async fn answer_on_screen(decision: crate::hooks::Decision, shared: &Shared) {
    let until = tokio::time::Instant::now() + DIALOG_SHOWS;
    while shared.activity().await != Activity::Asking {
        if tokio::time::Instant::now() >= until {
            tracing::warn!("the permission dialog the agent's CLI announced did not show within {DIALOG_SHOWS:?}; nothing was typed");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let choice = match decision {
        crate::hooks::Decision::Allow => "yes",
        crate::hooks::Decision::Deny => "no",
    };
    if let Response::Error { message, .. } = answer_question(choice, shared).await {
        tracing::warn!("cannot answer the permission dialog: {message}");
    }
}

/// Answers the question on the agent's screen with the keys its CLI reads.
pub async fn answer_question(choice: &str, shared: &Shared) -> Response {
    let activity = shared.activity().await;
    if activity != Activity::Asking {
        return Response::refusal(format!(
            "the agent asks nothing now (it is {}); nothing was typed",
            activity.as_str()
        ));
    }
    let keys = match answer_keys(shared.profile, choice) {
        Ok(keys) => keys,
        Err(why) => return Response::refusal(why),
    };
    for key in &keys {
        if let Err(e) = shared.tmux.send_key(&shared.pane, key).await {
            return Response::error(format!("cannot type the answer: {e}"));
        }
    }
    tracing::info!(
        "answered the agent's question with {choice:?} ({})",
        keys.join(" ")
    );
    shared.poke.notify_one();
    Response::Answered
}

/// The keys that answer `choice`: in the menus of Claude Code, Codex and
/// opencode, Enter takes the highlighted first choice (yes), Escape
/// refuses, a digit picks that choice; Aider reads a typed `y` or `n`.
fn answer_keys(profile: torch_core::Profile, choice: &str) -> Result<Vec<String>, String> {
    let aider = profile == torch_core::Profile::Aider;
    let choice = choice.trim().to_ascii_lowercase();
    let keys: Vec<&str> = match choice.as_str() {
        "yes" | "y" if aider => vec!["y", "Enter"],
        "no" | "n" if aider => vec!["n", "Enter"],
        "yes" | "y" => vec!["Enter"],
        "no" | "n" => vec!["Escape"],
        d if !aider && d.len() == 1 && d.chars().all(|c| c.is_ascii_digit() && c != '0') => {
            vec![d]
        }
        other => {
            return Err(format!(
                "cannot answer {other:?}: say yes, no{}",
                if aider {
                    ""
                } else {
                    ", or the number of a choice (1-9)"
                }
            ))
        }
    };
    Ok(keys.into_iter().map(String::from).collect())
}

/// Queues `text` for typing and waits for the outcome; with `if_idle`,
/// answers Busy instead when the screen shows the agent busy.
async fn deliver(
    text: String,
    id: Option<String>,
    if_idle: bool,
    shared: &Shared,
    jobs: &mpsc::Sender<Job>,
) -> Response {
    let text = match validate_message(&text) {
        Ok(t) => t,
        // The text will not change: no retry can deliver it.
        Err(e) => return Response::refusal(e.to_string()),
    };
    if if_idle {
        // The screen read here is the one delivery starts from
        // (ScreenReader), so this check costs tmux nothing extra.
        let activity = shared.activity().await;
        if activity.holds_messages() {
            return Response::Busy {
                activity: activity.as_str().to_string(),
            };
        }
    }
    let (tx, rx) = oneshot::channel();
    if jobs.send((text, id, tx)).await.is_err() {
        return Response::error("the supervisor is shutting down; message not delivered");
    }
    rx.await.unwrap_or_else(|_| {
        Response::error("the supervisor stopped before delivering; message not delivered")
    })
}

#[cfg(test)]
mod answer_tests {
    use super::answer_keys;
    use torch_core::Profile;

    #[test]
    fn answers_are_the_keys_each_cli_reads() {
        assert_eq!(answer_keys(Profile::Claude, " Yes ").unwrap(), ["Enter"]);
        assert_eq!(answer_keys(Profile::Codex, "no").unwrap(), ["Escape"]);
        assert_eq!(answer_keys(Profile::Opencode, "2").unwrap(), ["2"]);
        assert_eq!(answer_keys(Profile::Aider, "y").unwrap(), ["y", "Enter"]);
        assert_eq!(answer_keys(Profile::Aider, "NO").unwrap(), ["n", "Enter"]);
        assert!(answer_keys(Profile::Aider, "2").is_err());
        assert!(answer_keys(Profile::Claude, "0").is_err());
        assert!(answer_keys(Profile::Claude, "maybe").is_err());
    }
}
