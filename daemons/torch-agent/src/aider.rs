//! Aider's own channels for one agent, prepared before it starts, so it
//! starts with no question and reports its turns to the supervisor.
//!
//! Aider has no hooks, but three of its options are channels Torch can
//! read, each given a file of the agent's own (in its state directory, so
//! agents sharing a workdir never read each other's):
//! - `--input-history-file`: Aider appends each prompt it takes (one entry,
//!   a `# time` line then the prompt's lines each after a `+`) the moment
//!   Enter takes it. An entry is a prompt taken (UserPromptSubmit).
//! - `--notifications-command`: run each time Aider waits for its user
//!   after the model answered, at its prompt or at a question; it reports a
//!   Stop (a question on screen still reads asking, as for any hook).
//! - `--analytics-log`: Aider logs a `message_send` event with each
//!   answer's tokens and cost even with analytics off (`--no-analytics`,
//!   which also keeps it from asking to collect them).
//!
//! Also given, as arguments so the user's `.aider.conf.yml` is never
//! rewritten: no update check, release notes or model warnings (each a
//! question or a URL to open). A workdir outside any git repository gets
//! `--no-git`, else Aider asks whether to create one; inside one, Aider's
//! files are ignored through the repository's own `info/exclude` rather
//! than asking to add them to `.gitignore`.
//! With `--chat-history-file` kept per agent, a restart resumes the
//! conversation with `--restore-chat-history`.
//!
//! Aider's questions (run a shell command, add or create a file) show on
//! its screen only; [`answer_questions`] reads them there and answers them
//! as `[permissions]` says, with the keys Aider reads.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use torch_core::{hooks, paths, AgentName};

use crate::cli_config::{hook_command, shell_quote};
use crate::hooks::{Decision, HookFeed};
use crate::state::Shared;
use torch_core::profile::Activity;

/// The files Aider writes for Torch to read.
#[derive(Debug, Clone)]
pub struct Files {
    input_history: PathBuf,
    events: PathBuf,
    chat: PathBuf,
}

/// Prepares the agent's Aider files; the arguments to add to its command.
pub fn prepare(
    name: &AgentName,
    workdir: &Path,
    control_socket: &Path,
) -> anyhow::Result<(Vec<String>, Files)> {
    let dir = paths::agent_state_dir(name).join("aider");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = Files {
        input_history: dir.join("input.history"),
        events: dir.join("events.jsonl"),
        chat: dir.join("chat.history.md"),
    };
    let stop = format!(
        "printf '%s' {} | {}",
        shell_quote(&json!({"hook_event_name": "Stop"}).to_string()),
        hook_command("--hook", control_socket)?
    );
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut args: Vec<String> = [
        "--no-check-update",
        "--no-show-release-notes",
        "--no-show-model-warnings",
        "--no-analytics",
        "--notifications",
    ]
    .map(String::from)
    .into();
    args.extend([
        "--notifications-command".into(),
        stop,
        "--analytics-log".into(),
        s(&files.events),
        "--input-history-file".into(),
        s(&files.input_history),
        "--chat-history-file".into(),
        s(&files.chat),
    ]);
    args.extend(git_args(workdir));
    Ok((args, files))
}

/// `--no-git` outside a repository; inside one, `--no-gitignore` with
/// Aider's files ignored in the repository's `info/exclude`.
fn git_args(workdir: &Path) -> Vec<String> {
    let common = Command::new("git")
        .arg("-C")
        .arg(workdir)
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .output();
    let dir = match common {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => {
            tracing::info!(
                "{} is in no git repository: Aider runs with --no-git",
                workdir.display()
            );
            return vec!["--no-git".into()];
        }
    };
    if let Err(e) = exclude_aider_files(&dir.join("info").join("exclude")) {
        tracing::warn!(
            "cannot ignore Aider's files in the repository ({e:#}); they may show as untracked"
        );
    }
    vec!["--no-gitignore".into()]
}

/// The pattern Aider itself adds to `.gitignore`.
const AIDER_FILES: &str = ".aider*";

fn exclude_aider_files(exclude: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(exclude).unwrap_or_default();
    if text.lines().any(|l| l.trim() == AIDER_FILES) {
        return Ok(());
    }
    if let Some(parent) = exclude.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    std::fs::write(exclude, format!("{text}{sep}{AIDER_FILES}\n"))
        .with_context(|| format!("cannot write {}", exclude.display()))
}

/// How often the files are looked at: a prompt is confirmed this much
/// after Aider took it, at most.
const POLL: Duration = Duration::from_millis(25);

/// Reads what Aider appends to its files, for as long as the supervisor
/// runs, and hands it to `hooks` as the hook events it means.
pub async fn watch(files: Files, hooks: Arc<HookFeed>) {
    // What was there before this start was heard by an earlier one.
    let mut prompts = Tail::at_end(&files.input_history);
    // Tokens are the agent's totals, so its whole log counts.
    let mut events = Tail::at_start(&files.events);
    let mut history = HistoryEntries::default();
    let mut usage = Usage::default();
    let mut session_said = false;
    loop {
        tokio::time::sleep(POLL).await;
        let text = prompts.read_new();
        for prompt in history.take(&text) {
            if !session_said {
                session_said = true;
                hooks.hear(&json!({
                    "hook_event_name": "SessionStart",
                    "session_id": "aider",
                    "transcript_path": files.chat,
                    "source": "startup",
                }));
            }
            hooks.hear(&json!({"hook_event_name": "UserPromptSubmit", "prompt": prompt}));
        }
        if usage.take(&events.read_new()) {
            hooks.hear(&usage.status_line());
        }
    }
}

/// How often the screen is looked at for a question (read again only
/// after new output, so an idle agent costs nothing).
const QUESTION_POLL: Duration = Duration::from_millis(250);

/// Answers each question Aider asks on its screen as the agent's
/// `[permissions]` say: approve types `y`, deny `n`; escalated, the
/// question stays for `torch answer` and is named in `torch status`.
pub async fn answer_questions(shared: Arc<Shared>) {
    let mut decided: Option<String> = None;
    loop {
        tokio::time::sleep(QUESTION_POLL).await;
        if shared.activity().await != Activity::Asking {
            if decided.take().is_some() {
                shared.hooks.question_gone();
            }
            continue;
        }
        let Ok(screen) = shared.screen.read().await else {
            continue;
        };
        let Some(what) = question_of(&screen.rows) else {
            continue;
        };
        if decided.as_deref() == Some(what.as_str()) {
            continue;
        }
        decided = Some(what.clone());
        let choice = match shared.hooks.decide(what) {
            Some(Decision::Allow) => "yes",
            Some(Decision::Deny) => "no",
            None => continue,
        };
        if let torch_core::protocol::Response::Error { message, .. } =
            crate::control::answer_question(choice, &shared).await
        {
            tracing::warn!("cannot answer Aider's question: {message}");
        }
    }
}

/// What the question at the bottom of `rows` asks: its words before the
/// choices, and the line above it, where Aider names what it asks about
/// (`Run shell command: touch x`).
fn question_of(rows: &[String]) -> Option<String> {
    let mut lines = rows
        .iter()
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .rev();
    let question = lines.next()?;
    let asked = question
        .split(" (Y)es/(N)o")
        .next()?
        .trim_end_matches('?')
        .trim();
    if asked.is_empty() || asked == question {
        return None;
    }
    match lines.next() {
        Some(subject) if !subject.starts_with('─') => Some(format!("{asked}: {subject}")),
        _ => Some(asked.to_string()),
    }
}

/// A file read from an offset on.
struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    fn at_end(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map_or(0, |m| m.len());
        Self {
            path: path.to_path_buf(),
            offset,
        }
    }

    fn at_start(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
        }
    }

    /// The whole lines appended since the last read (a line still being
    /// written waits for the next).
    fn read_new(&mut self) -> String {
        // A stat, not an open, while nothing was added: this runs 40 times a
        // second per agent.
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if len == self.offset {
            return String::new();
        }
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return String::new();
        };
        if len < self.offset {
            // Truncated or replaced: read it anew.
            self.offset = 0;
        }
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return String::new();
        }
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        String::from_utf8_lossy(&bytes[..whole]).into_owned()
    }
}

/// Prompts from Aider's input history (prompt_toolkit's file format). An
/// entry ends where the next begins, or when no line follows it in the
/// next read: Aider writes one whole entry at once.
#[derive(Default)]
struct HistoryEntries {
    open: Option<Vec<String>>,
}

impl HistoryEntries {
    /// The prompts that `text`, the lines appended since the last call,
    /// complete.
    fn take(&mut self, text: &str) -> Vec<String> {
        let mut done = Vec::new();
        if text.is_empty() {
            done.extend(self.open.take().map(|lines| lines.join("\n")));
            return done;
        }
        for line in text.lines() {
            if line.starts_with("# ") {
                done.extend(self.open.replace(Vec::new()).map(|l| l.join("\n")));
            } else if let (Some(rest), Some(open)) = (line.strip_prefix('+'), self.open.as_mut()) {
                open.push(rest.to_string());
            }
        }
        done
    }
}

/// The tokens and cost of Aider's answers, from its `message_send` events.
#[derive(Default)]
struct Usage {
    input: u64,
    output: u64,
    cost: f64,
}

impl Usage {
    /// Adds the events in `text`; whether any counted.
    fn take(&mut self, text: &str) -> bool {
        let mut any = false;
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if event["event"] != "message_send" {
                continue;
            }
            let p = &event["properties"];
            let n = |k: &str| p[k].as_u64().unwrap_or(0);
            self.input += n("prompt_tokens");
            self.output += n("completion_tokens");
            self.cost += p["cost"].as_f64().filter(|c| c.is_finite()).unwrap_or(0.0);
            any = true;
        }
        any
    }

    fn status_line(&self) -> serde_json::Value {
        json!({
            "hook_event_name": hooks::STATUS_LINE,
            "cost": {"total_cost_usd": self.cost},
            "tokens": {"input": self.input, "output": self.output, "cache_read": 0, "cache_write": 0},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_name_what_they_ask_about() {
        let rows = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let shell = rows(&[
            "Tokens: 2.3k sent, 12 received.",
            "touch asked.txt",
            "Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]: ",
            "",
        ]);
        assert_eq!(
            question_of(&shell).as_deref(),
            Some("Run shell command: touch asked.txt")
        );
        let bare = rows(&["─────", "Create new file? (Y)es/(N)o [Yes]:"]);
        assert_eq!(question_of(&bare).as_deref(), Some("Create new file"));
        assert_eq!(question_of(&rows(&["diff> "])), None);
        assert_eq!(question_of(&rows(&[])), None);
    }

    #[test]
    fn history_entries_are_prompts_whole() {
        let mut h = HistoryEntries::default();
        let first = "\n# 2026-11-27 15:10:17.160569\n+[torch message #1] one $(id)\n+\tsecond\n";
        assert!(h.take(first).is_empty(), "open until the next read");
        assert_eq!(h.take(""), vec!["[torch message #1] one $(id)\n\tsecond"]);
        let two = "\n# t1\n+a\n\n# t2\n+b\n++plus\n";
        assert_eq!(h.take(two), vec!["a"]);
        assert_eq!(h.take(""), vec!["b\n+plus"]);
        assert!(h.take("").is_empty());
        // An empty prompt is an entry too.
        assert!(h.take("\n# t3\n+\n").is_empty());
        assert_eq!(h.take(""), vec![""]);
    }

    #[test]
    fn usage_sums_message_send_events() {
        let mut u = Usage::default();
        let log = r#"{"event": "launched", "properties": {}}
{"event": "message_send", "properties": {"prompt_tokens": 631, "completion_tokens": 1, "cost": 0.5}}
not json
{"event": "message_send", "properties": {"prompt_tokens": 9, "completion_tokens": 4, "cost": 0}}
"#;
        assert!(u.take(log));
        assert!(!u.take("{\"event\": \"launched\"}\n"));
        let line = u.status_line();
        assert_eq!(line["tokens"]["input"], 640);
        assert_eq!(line["tokens"]["output"], 5);
        assert_eq!(line["cost"]["total_cost_usd"], 0.5);
    }

    #[test]
    fn tail_reads_whole_lines_only() {
        let dir = std::env::temp_dir().join(format!("torch-aider-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, "old\n").unwrap();
        let mut t = Tail::at_end(&path);
        std::fs::write(&path, "old\nnew\npart").unwrap();
        assert_eq!(t.read_new(), "new\n");
        std::fs::write(&path, "old\nnew\npartial\n").unwrap();
        assert_eq!(t.read_new(), "partial\n");
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(t.read_new(), "x\n", "a truncated file is read anew");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn aider_files_are_excluded_once() {
        let dir = std::env::temp_dir().join(format!("torch-aider-ex-{}", std::process::id()));
        let exclude = dir.join("info").join("exclude");
        exclude_aider_files(&exclude).unwrap();
        std::fs::write(&exclude, "# git's own\n*.o").unwrap();
        exclude_aider_files(&exclude).unwrap();
        exclude_aider_files(&exclude).unwrap();
        assert_eq!(
            std::fs::read_to_string(&exclude).unwrap(),
            "# git's own\n*.o\n.aider*\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
