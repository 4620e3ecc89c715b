//! Codex CLI's app server, run beside its TUI under the agent's unit.
//!
//! Codex's TUI can run its turns in an app server it attaches to
//! (`codex --remote unix://PATH`). The supervisor starts that server itself,
//! listening on a socket in the agent's runtime directory, so it can be a
//! second client of the same conversation: it hands each message over as a
//! turn (`turn/start`) instead of typing it, and the attached TUI shows the
//! turn as if typed, for `torch attach`. The hooks keep reporting state
//! and permission requests, since the server runs them.
//!
//! The protocol is JSON-RPC (without the `jsonrpc` member) in WebSocket
//! text frames, over the unix socket. The socket Codex makes is a link to
//! one in `/tmp/codex-daemon-UID/`, mode 0600 in a 0700 directory, in the
//! unit's private `/tmp`: other agents cannot reach it.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long one request may wait for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server has to answer after it starts: well within the
/// unit's start timeout (30 s), which also covers the TUI.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The app server's socket, beside the supervisor's control socket.
pub fn socket_path(control_socket: &Path) -> PathBuf {
    control_socket.with_file_name("codex.sock")
}

/// The address Codex takes for `path`, for `--listen` and `--remote`.
pub fn address(path: &Path) -> String {
    format!("unix://{}", path.display())
}

/// A request that failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The connection failed, closed or sent something unreadable.
    #[error("{0}")]
    Connection(String),
    /// The server answered with an error.
    #[error("{method} failed: {message}")]
    Refused {
        /// The request's method.
        method: String,
        /// The server's message.
        message: String,
    },
    /// No answer within [`ANSWER_TIMEOUT`].
    #[error("{0} got no answer within {secs} s", secs = ANSWER_TIMEOUT.as_secs())]
    Timeout(String),
}

/// A running app server. Dropping it kills its process group with SIGKILL:
/// the server ignores SIGTERM, and a leftover one would keep the socket.
pub struct AppServer {
    child: Child,
    pgid: Option<i32>,
}

impl AppServer {
    /// Starts `program app-server` with `args`, listening on `path`, and
    /// waits until it answers there.
    pub async fn start(
        program: &str,
        args: &[String],
        env: &[(String, String)],
        workdir: &Path,
        path: &Path,
    ) -> anyhow::Result<Self> {
        let _ = std::fs::remove_file(path);
        let child = Command::new(program)
            .arg("app-server")
            .arg("--listen")
            .arg(address(path))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {program} app-server"))?;
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        let mut server = Self { child, pgid };
        server.wait_until_it_answers(path).await?;
        Ok(server)
    }

    async fn wait_until_it_answers(&mut self, path: &Path) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "Codex's app server exited at start ({}); its reason is in the journal above",
                    describe(status)
                );
            }
            match Client::connect(path).await {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() > START_TIMEOUT => bail!(
                    "Codex's app server did not answer on {} within {} s: {e}",
                    path.display(),
                    START_TIMEOUT.as_secs()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits until the server exits; how it ended.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => describe(status),
            Err(e) => format!("cannot be waited for: {e}"),
        }
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        // Its own process group: Node's launcher and the native server.
        if let Some(pgid) = self.pgid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Trusts the hooks Codex would run in `workdir` (Torch's own, the user's
/// and the project's), as a person would in its "Hooks need review" dialog:
/// by their current hash, so a changed hook needs trust again. The workdir
/// is trusted already (its `AGENTS.md` briefs the model, its git hooks run),
/// and a dialog would stop the agent. The TUI's
/// `--dangerously-bypass-hook-trust` does not do: an attached TUI asks again
/// when it resumes a session. The number newly trusted.
pub async fn trust_hooks(path: &Path, workdir: &Path) -> Result<usize, RpcError> {
    let mut client = Client::connect(path).await?;
    let listed = client
        .call("hooks/list", json!({ "cwds": [workdir] }))
        .await?;
    let state = untrusted_hooks(&listed);
    if state.is_empty() {
        return Ok(0);
    }
    let count = state.len();
    let edit = json!({ "keyPath": "hooks.state", "value": state, "mergeStrategy": "upsert" });
    client
        .call(
            "config/batchWrite",
            json!({ "edits": [edit], "reloadUserConfig": true }),
        )
        .await?;
    Ok(count)
}

/// `{key: {trusted_hash}}` for each hook of `listed` (a `hooks/list`
/// answer) never trusted, or changed since (managed ones need no trust).
fn untrusted_hooks(listed: &Value) -> serde_json::Map<String, Value> {
    let entries = listed["data"].as_array().into_iter().flatten();
    entries
        .flat_map(|e| e["hooks"].as_array().into_iter().flatten())
        .filter(|h| h["trustStatus"] == "untrusted" || h["trustStatus"] == "modified")
        .filter_map(|h| {
            let key = h["key"].as_str()?;
            let hash = h["currentHash"].as_str()?;
            Some((key.to_string(), json!({ "trusted_hash": hash })))
        })
        .collect()
}

/// A client connection, initialized.
pub struct Client {
    ws: WebSocketStream<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the server on `path` and says who we are.
    pub async fn connect(path: &Path) -> Result<Self, RpcError> {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            RpcError::Connection(format!("cannot connect to {}: {e}", path.display()))
        })?;
        let handshake = tokio_tungstenite::client_async("ws://localhost/", stream);
        let (ws, _) = tokio::time::timeout(ANSWER_TIMEOUT, handshake)
            .await
            .map_err(|_| RpcError::Timeout("the WebSocket handshake".into()))?
            .map_err(|e| RpcError::Connection(format!("WebSocket handshake failed: {e}")))?;
        let mut client = Self { ws, next_id: 0 };
        let info = json!({ "clientInfo": { "name": "torch-agent", "version": env!("CARGO_PKG_VERSION") } });
        client.call("initialize", info).await?;
        client.send(json!({ "method": "initialized" })).await?;
        Ok(client)
    }

    /// Sends a request and waits for its answer, passing over the
    /// notifications and the server's own requests (approvals, which the
    /// TUI answers) in between.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "id": id, "method": method, "params": params }))
            .await?;
        tokio::time::timeout(ANSWER_TIMEOUT, self.answer(id, method))
            .await
            .map_err(|_| RpcError::Timeout(method.to_string()))?
    }

    async fn send(&mut self, message: Value) -> Result<(), RpcError> {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| RpcError::Connection(format!("cannot send to Codex's app server: {e}")))
    }

    async fn answer(&mut self, id: u64, method: &str) -> Result<Value, RpcError> {
        loop {
            let frame = self.ws.next().await.ok_or_else(|| {
                RpcError::Connection("Codex's app server closed the connection".into())
            })?;
            let text = match frame {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(_)) => {
                    return Err(RpcError::Connection(
                        "Codex's app server closed the connection".into(),
                    ))
                }
                Ok(_) => continue,
                Err(e) => return Err(RpcError::Connection(e.to_string())),
            };
            let Ok(message) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if message["id"] != id || message.get("method").is_some() {
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(RpcError::Refused {
                    method: method.to_string(),
                    message: error["message"]
                        .as_str()
                        .map_or_else(|| error.to_string(), str::to_string),
                });
            }
            return Ok(message["result"].clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_not_trusted_as_they_are_now_are_trusted_by_their_hash() {
        let listed = json!({"data": [{"cwd": "/w", "hooks": [
            {"key": "h.json:stop:0:0", "trustStatus": "untrusted", "currentHash": "sha256:a"},
            {"key": "h.json:session_start:0:0", "trustStatus": "trusted", "currentHash": "sha256:c"},
            {"key": "h.json:user_prompt_submit:0:0", "trustStatus": "modified", "currentHash": "sha256:d"},
            {"key": "m:stop:0:0", "trustStatus": "managed", "currentHash": "sha256:e"},
        ]}]});
        let state = untrusted_hooks(&listed);
        assert_eq!(state.len(), 2);
        assert_eq!(state["h.json:stop:0:0"]["trusted_hash"], "sha256:a");
        assert_eq!(
            state["h.json:user_prompt_submit:0:0"]["trusted_hash"],
            "sha256:d"
        );
        assert!(untrusted_hooks(&json!({})).is_empty());
    }
}
