//! Torch's tmux layer: one private tmux server per agent.
//!
//! Every command goes to the agent's own socket (`-S`) with our own config
//! (`-f`), so neither the user's `~/.tmux.conf` nor their default server is
//! ever touched, and every command has a time limit: a hung tmux server must
//! show up as an error the supervisor can act on, never as a hung supervisor.

mod control;

/// What systemd hands the supervisor alone (`sd_notify`'s socket, the
/// watchdog, socket activation), and the marker of an enclosing tmux client.
/// Removed from every tmux client we start: the server inherits the first
/// client's environment and passes it on to the pane, whose program must
/// not be able to send READY or WATCHDOG for the supervisor or take its
/// sockets.
const SUPERVISOR_ONLY_ENV: [&str; 7] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "TMUX",
];

/// Starts a tmux client on `socket` with `config`, without the
/// supervisor's own environment (see [`SUPERVISOR_ONLY_ENV`]).
fn tmux_command(socket: &Path, config: &Path) -> Command {
    let mut cmd = Command::new("tmux");
    // -u: UTF-8 both ways, whatever locale the service manager gave us.
    cmd.arg("-u").arg("-S").arg(socket).arg("-f").arg(config);
    for var in SUPERVISOR_ONLY_ENV {
        cmd.env_remove(var);
    }
    cmd
}

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The tmux configuration for an agent's private server, written by the
/// supervisor next to the socket and passed with `-f`.
///
/// `shell` becomes `default-shell`: tmux exports it as `SHELL` to the
/// program (agent CLIs run their tools with it) and starts it in any window
/// a person opens with `torch attach`. Without it tmux takes the login
/// shell of the agents' system user, `/usr/sbin/nologin`.
pub fn config(shell: &Path) -> String {
    // A double-quoted tmux string: backslash escapes, `$` expands.
    let shell = shell
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$");
    format!(
        "\
# Written by torch-agent; the server is private to one agent.
# Keep a dead pane so the supervisor can log its last screen.
set -g remain-on-exit on
set -g status off
set -g history-limit 20000
set -g default-terminal screen-256color
set -g default-shell \"{shell}\"
# Paste and keys reach the program at once.
set -s escape-time 0
# Sessions outlive detached clients; the supervisor decides when to stop.
set -g destroy-unattached off
set -s exit-empty off
# No `window-size manual`: tmux 3.3a exits at start-up with it (seen here).
"
    )
}

/// Why a tmux command failed.
#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    /// tmux could not be started at all.
    #[error("cannot run tmux: {0} (is tmux installed?)")]
    Spawn(std::io::Error),
    /// tmux did not answer in time: the server is hung or overloaded.
    #[error("tmux did not answer within {0:?} (`{1}`)")]
    Timeout(Duration, String),
    /// The server is not running (killed, or never started).
    #[error("the agent's tmux server is gone: {0}")]
    NoServer(String),
    /// tmux answered with an error.
    #[error("tmux `{cmd}` failed: {stderr}")]
    Failed {
        /// The tmux command.
        cmd: String,
        /// What tmux printed.
        stderr: String,
    },
}

/// What the supervisor needs to know about the agent's pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneInfo {
    /// The program has exited (the pane is kept by `remain-on-exit`).
    pub dead: bool,
    /// Exit status of the program when it exited.
    pub dead_status: Option<i32>,
    /// Signal that killed the program, when one did.
    pub dead_signal: Option<i32>,
    /// PID of the program in the pane.
    pub pid: u32,
    /// The pane's terminal (`/dev/pts/N`).
    pub tty: String,
}

/// The pane's screen with the cursor position, one element per row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Screen {
    /// Rows of the visible screen, trailing spaces trimmed by tmux.
    pub rows: Vec<String>,
    /// Cursor row, 0-based from the top of the screen.
    pub cursor_y: usize,
}

impl Screen {
    /// The rows from `above` rows over the cursor down to the cursor's row,
    /// joined without separators, which undoes soft wrapping of a long line.
    pub fn near_cursor(&self, above: usize) -> String {
        let end = (self.cursor_y + 1).min(self.rows.len());
        let start = end.saturating_sub(above + 1);
        self.rows[start..end].concat()
    }
}

/// Appends the program's environment (`-e K=V`) and argv (after `--`) to a
/// new-session or respawn-pane command.
///
/// tmux executes a command of several words directly, but hands a command
/// of one word to `default-shell -c`, which for a system user is often
/// `/usr/sbin/nologin`, and which would also split a path with spaces. So a
/// one-word command goes through `/bin/sh -c 'exec "$0"'`: the shell execs
/// the word as it is, and the pane's process is the program itself.
fn push_program(args: &mut Vec<OsString>, env: &[(String, String)], argv: &[String]) {
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}").into());
    }
    args.push("--".into());
    if let [only] = argv {
        args.extend(["/bin/sh", "-c", "exec \"$0\""].map(OsString::from));
        args.push(only.into());
    } else {
        args.extend(argv.iter().map(OsString::from));
    }
}

/// A handle on one agent's private tmux server.
#[derive(Debug, Clone)]
pub struct Tmux {
    socket: PathBuf,
    config: PathBuf,
    timeout: Duration,
    control: Arc<std::sync::Mutex<Option<Arc<control::Control>>>>,
}

impl Tmux {
    /// A handle for the server at `socket`, configured by `config`.
    pub fn new(socket: &Path, config: &Path, timeout: Duration) -> Self {
        Self {
            socket: socket.to_path_buf(),
            config: config.to_path_buf(),
            timeout,
            control: Arc::default(),
        }
    }

    /// Opens a persistent control-mode connection to the session of
    /// `target`; later commands use it instead of a tmux process each,
    /// falling back to processes if it ever fails.
    pub async fn connect_control(&self, target: &str) -> Result<(), TmuxError> {
        let c = control::Control::attach(&self.socket, &self.config, target)
            .await
            .map_err(TmuxError::Spawn)?;
        // A first round trip proves the connection works.
        c.call(&["display-message", "-p", "ok"], self.timeout)
            .await
            .map_err(|_| TmuxError::Failed {
                cmd: "attach-session -C".into(),
                stderr: "control mode did not answer".into(),
            })?;
        if let Ok(mut slot) = self.control.lock() {
            *slot = Some(Arc::new(c));
        }
        Ok(())
    }

    /// The control connection, while it works.
    fn control(&self) -> Option<Arc<control::Control>> {
        let mut slot = self.control.lock().ok()?;
        if slot.as_ref().is_some_and(|c| c.is_broken()) {
            tracing::warn!("tmux control connection failed; using a tmux process per command");
            *slot = None;
        }
        slot.clone()
    }

    /// The server's socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs one tmux command line (may hold `;`-separated commands) and
    /// returns its standard output.
    pub async fn run<I, S>(&self, args: I, stdin: Option<&[u8]>) -> Result<String, TmuxError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let shown = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        // kill-server ends the control connection before it can answer.
        if stdin.is_none() && shown != "kill-server" {
            if let Some(c) = self.control() {
                let strs: Option<Vec<&str>> = args.iter().map(|a| a.to_str()).collect();
                if let Some(strs) = strs {
                    // On a control line a quoted ";" is an argument, so a
                    // command sequence goes as one line per command.
                    let mut all = String::new();
                    let mut done = true;
                    for part in strs.split(|a| *a == ";") {
                        match c.call(part, self.timeout).await {
                            Ok(out) => {
                                // Same shape as a tmux client's stdout.
                                all.push_str(&out);
                                if !out.is_empty() {
                                    all.push('\n');
                                }
                            }
                            Err(control::ControlError::Failed(stderr)) => {
                                return Err(TmuxError::Failed { cmd: shown, stderr });
                            }
                            Err(control::ControlError::Broken) => {
                                done = false;
                                break;
                            }
                        }
                    }
                    if done {
                        return Ok(all);
                    }
                }
            }
        }
        let mut cmd = tmux_command(&self.socket, &self.config);
        cmd.args(&args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env(
                "LANG",
                std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".into()),
            )
            .kill_on_drop(true);
        let work = async {
            let mut child = cmd.spawn().map_err(TmuxError::Spawn)?;
            if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
                // A write error shows up as tmux's own failure below.
                let _ = pipe.write_all(data).await;
                drop(pipe);
            }
            child.wait_with_output().await.map_err(TmuxError::Spawn)
        };
        let out = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| TmuxError::Timeout(self.timeout, shown.clone()))??;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.contains("no server running")
            || stderr.contains("error connecting")
            || stderr.contains("server exited")
            || stderr.contains("lost server")
        {
            return Err(TmuxError::NoServer(stderr));
        }
        Err(TmuxError::Failed { cmd: shown, stderr })
    }

    /// Starts the server with one session running `argv`, returns the pane id.
    pub async fn new_session(
        &self,
        session: &str,
        size: (u16, u16),
        workdir: &Path,
        env: &[(String, String)],
        argv: &[String],
    ) -> Result<String, TmuxError> {
        let mut args: Vec<OsString> = vec![
            "new-session".into(),
            "-d".into(),
            "-P".into(),
            "-F".into(),
            "#{pane_id}".into(),
            "-s".into(),
            session.into(),
            "-x".into(),
            size.0.to_string().into(),
            "-y".into(),
            size.1.to_string().into(),
            "-c".into(),
            workdir.into(),
        ];
        push_program(&mut args, env, argv);
        Ok(self.run(args, None).await?.trim().to_string())
    }

    /// Replaces the pane's program with `argv` (used after output piping is
    /// set up, so not one byte of the program's output is missed).
    pub async fn respawn(
        &self,
        pane: &str,
        workdir: &Path,
        env: &[(String, String)],
        argv: &[String],
    ) -> Result<(), TmuxError> {
        let mut args: Vec<OsString> = vec![
            "respawn-pane".into(),
            "-k".into(),
            "-t".into(),
            pane.into(),
            "-c".into(),
            workdir.into(),
        ];
        push_program(&mut args, env, argv);
        self.run(args, None).await.map(drop)
    }

    /// Copies everything the pane prints to `shell_command`'s stdin.
    pub async fn pipe_pane(&self, pane: &str, shell_command: &str) -> Result<(), TmuxError> {
        self.run(["pipe-pane", "-O", "-t", pane, shell_command], None)
            .await
            .map(drop)
    }

    /// Liveness of the pane's program; doubles as the server health probe.
    pub async fn pane_info(&self, pane: &str) -> Result<PaneInfo, TmuxError> {
        let out = self
            .run(
                [
                    "display-message",
                    "-p",
                    "-t",
                    pane,
                    "#{pane_dead}|#{pane_pid}|#{pane_dead_status}|#{pane_dead_signal}|#{pane_tty}",
                ],
                None,
            )
            .await?;
        // Fields may be empty (no exit status while alive): split on '|'.
        let mut it = out.trim_end().split('|');
        let dead = it.next() == Some("1");
        let pid = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let dead_status = it.next().and_then(|s| s.parse().ok());
        let dead_signal = it.next().and_then(|s| s.parse().ok());
        let tty = it.next().unwrap_or_default().to_string();
        Ok(PaneInfo {
            dead,
            dead_status,
            dead_signal,
            pid,
            tty,
        })
    }

    /// The visible screen and the cursor row, read in one tmux call.
    pub async fn screen(&self, pane: &str) -> Result<Screen, TmuxError> {
        let out = self
            .run(
                [
                    "capture-pane",
                    "-p",
                    "-t",
                    pane,
                    ";",
                    "display-message",
                    "-p",
                    "-t",
                    pane,
                    "#{cursor_y}",
                ],
                None,
            )
            .await?;
        let mut rows: Vec<String> = out.lines().map(str::to_string).collect();
        let cursor_y = rows.pop().and_then(|c| c.trim().parse().ok()).unwrap_or(0);
        Ok(Screen { rows, cursor_y })
    }

    /// The screen as text, with `history` lines of scrollback above it.
    pub async fn capture(&self, pane: &str, history: u32) -> Result<String, TmuxError> {
        let start = format!("-{history}");
        self.run(["capture-pane", "-p", "-J", "-t", pane, "-S", &start], None)
            .await
    }

    /// Pastes `text` as one bracketed paste (when the program asked for
    /// bracketed paste), literally: no key names are interpreted.
    pub async fn paste(&self, pane: &str, text: &str) -> Result<(), TmuxError> {
        if self.control().is_some() {
            // Control mode has no stdin for load-buffer: hand tmux a file.
            let file = self.socket.with_file_name("paste.buf");
            std::fs::write(&file, text.as_bytes()).map_err(TmuxError::Spawn)?;
            let path = file.to_string_lossy().into_owned();
            self.run(["load-buffer", "-b", "torch-msg", path.as_str()], None)
                .await?;
            return self
                .run(
                    ["paste-buffer", "-p", "-d", "-b", "torch-msg", "-t", pane],
                    None,
                )
                .await
                .map(drop);
        }
        self.run(
            [
                "load-buffer",
                "-b",
                "torch-msg",
                "-",
                ";",
                "paste-buffer",
                "-p",
                "-d",
                "-b",
                "torch-msg",
                "-t",
                pane,
            ],
            Some(text.as_bytes()),
        )
        .await
        .map(drop)
    }

    /// Presses Enter in the pane.
    pub async fn press_enter(&self, pane: &str) -> Result<(), TmuxError> {
        self.run(["send-keys", "-t", pane, "Enter"], None)
            .await
            .map(drop)
    }

    /// Presses one key, by tmux's name for it (`Escape`, `Enter`, `1`).
    /// Only for keys the caller chose, never for text from outside.
    pub async fn send_key(&self, pane: &str, key: &str) -> Result<(), TmuxError> {
        self.run(["send-keys", "-t", pane, key], None)
            .await
            .map(drop)
    }

    /// PID of the tmux server.
    pub async fn server_pid(&self) -> Result<u32, TmuxError> {
        let out = self.run(["display-message", "-p", "#{pid}"], None).await?;
        out.trim().parse().map_err(|_| TmuxError::Failed {
            cmd: "display-message".into(),
            stderr: format!("unexpected server pid {out:?}"),
        })
    }

    /// Stops the server and every program in it.
    pub async fn kill_server(&self) -> Result<(), TmuxError> {
        self.run(["kill-server"], None).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmux_clients_never_get_the_supervisors_environment() {
        let cmd = tmux_command(Path::new("/run/x/tmux.sock"), Path::new("/run/x/tmux.conf"));
        let removed: Vec<_> = cmd
            .as_std()
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for var in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
        ] {
            assert!(removed.iter().any(|r| r == var), "{var} is passed on");
        }
    }

    #[test]
    fn near_cursor_joins_wrapped_rows() {
        let s = Screen {
            rows: vec!["a".into(), "bc".into(), "de".into(), "".into()],
            cursor_y: 2,
        };
        assert_eq!(s.near_cursor(1), "bcde");
        assert_eq!(s.near_cursor(10), "abcde");
        let empty = Screen::default();
        assert_eq!(empty.near_cursor(3), "");
    }

    #[test]
    fn one_word_commands_are_execed_by_sh_not_the_login_shell() {
        let mut one = Vec::new();
        push_program(&mut one, &[], &["/opt/my agent".to_string()]);
        assert_eq!(one, ["--", "/bin/sh", "-c", "exec \"$0\"", "/opt/my agent"]);
        let mut two = Vec::new();
        let env = [("A".to_string(), "1".to_string())];
        push_program(&mut two, &env, &["claude".to_string(), "-c".to_string()]);
        assert_eq!(two, ["-e", "A=1", "--", "claude", "-c"]);
    }

    #[test]
    fn config_quotes_the_shell() {
        let c = config(Path::new("/opt/a \"b\" $HOME"));
        assert!(
            c.contains("set -g default-shell \"/opt/a \\\"b\\\" \\$HOME\"\n"),
            "{c}"
        );
    }
}
