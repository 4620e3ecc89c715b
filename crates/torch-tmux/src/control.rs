//! A persistent tmux control-mode connection (`tmux -C attach`).
//!
//! A tmux command over this connection costs a line each way instead of a
//! fork and exec of the tmux client (about 2-3 ms each, 6-8 per message).
//! Replies come back in order as `%begin ... %end` (or `%error`) blocks
//! flagged 1 for our commands; notifications and tmux's own blocks (flag 0)
//! are skipped. A reply that does not come in time breaks the connection
//! for good: the caller falls back to one tmux process per command.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;

/// How a control-mode command failed.
#[derive(Debug)]
pub enum ControlError {
    /// tmux answered `%error` with this text.
    Failed(String),
    /// The connection is unusable (closed, timed out, bad argument).
    Broken,
}

type Reply = oneshot::Sender<Result<String, String>>;

/// One control-mode client of an agent's tmux server.
pub struct Control {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Arc<Mutex<VecDeque<Reply>>>,
    broken: Arc<std::sync::atomic::AtomicBool>,
    _child: Child,
}

/// Whether `arg` can be passed single-quoted on a control-mode line.
pub fn quotable(arg: &str) -> bool {
    !arg.contains(['\'', '\n', '\r'])
}

impl Control {
    /// Attaches a control client to the session of `target` on the server
    /// at `socket` (ignoring its size, without pane output notifications).
    pub async fn attach(socket: &Path, config: &Path, target: &str) -> std::io::Result<Self> {
        let mut child = crate::tmux_command(socket, config)
            .args([
                "-C",
                "attach-session",
                "-f",
                "ignore-size,no-output",
                "-t",
                target,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let pending: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let broken: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (p, b) = (Arc::clone(&pending), Arc::clone(&broken));
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut block: Option<(String, Vec<String>)> = None;
            while let Ok(Some(line)) = lines.next_line().await {
                match &mut block {
                    None => {
                        // "%begin TIME NUMBER FLAGS": ours have flag 1.
                        let f: Vec<&str> = line.split(' ').collect();
                        if f.len() == 4 && f[0] == "%begin" {
                            block = Some((format!("{} {} {}", f[1], f[2], f[3]), Vec::new()));
                        }
                    }
                    Some((id, out)) => {
                        let end = line.strip_prefix("%end ").map(|r| (r == id.as_str(), true));
                        let err = line
                            .strip_prefix("%error ")
                            .map(|r| (r == id.as_str(), false));
                        match end.or(err) {
                            Some((true, ok)) => {
                                let ours = id.ends_with(" 1");
                                let text = out.join("\n");
                                block = None;
                                if ours {
                                    let reply = p.lock().ok().and_then(|mut q| q.pop_front());
                                    if let Some(r) = reply {
                                        let _ = r.send(if ok { Ok(text) } else { Err(text) });
                                    }
                                }
                            }
                            _ => out.push(line),
                        }
                    }
                }
            }
            b.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut q) = p.lock() {
                q.clear();
            }
        });
        Ok(Self {
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            broken,
            _child: child,
        })
    }

    /// Whether the connection has failed.
    pub fn is_broken(&self) -> bool {
        self.broken.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs one tmux command; its output without the trailing newline.
    pub async fn call(&self, args: &[&str], timeout: Duration) -> Result<String, ControlError> {
        if self.is_broken() || !args.iter().all(|a| quotable(a)) {
            return Err(ControlError::Broken);
        }
        let mut line = args
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        line.push('\n');
        let (tx, rx) = oneshot::channel();
        {
            // Queue and write under one lock: replies come in write order.
            let mut stdin = self.stdin.lock().await;
            self.pending
                .lock()
                .map_err(|_| ControlError::Broken)?
                .push_back(tx);
            if stdin.write_all(line.as_bytes()).await.is_err() {
                self.broken
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(ControlError::Broken);
            }
        }
        // If this future is dropped before its reply arrives (a caller's own
        // timeout), the reply would be taken for the next command's: the
        // guard then marks the connection broken.
        let mut guard = BreakUnlessAnswered(Some(Arc::clone(&self.broken)));
        let result = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(out))) => Ok(out),
            Ok(Ok(Err(e))) => Err(ControlError::Failed(e)),
            _ => return Err(ControlError::Broken),
        };
        guard.0 = None;
        result
    }
}

struct BreakUnlessAnswered(Option<Arc<std::sync::atomic::AtomicBool>>);

impl Drop for BreakUnlessAnswered {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("broken", &self.is_broken())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_arguments_go_on_a_control_line() {
        assert!(super::quotable("#{pane_dead}|#{pane_pid}"));
        assert!(super::quotable("/run/torch-agent/dev/paste.buf"));
        assert!(!super::quotable("it's"));
        assert!(!super::quotable("two\nlines"));
    }
}
