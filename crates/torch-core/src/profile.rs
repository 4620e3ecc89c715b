//! Reading an agent's state from its screen, per terminal program.
//!
//! Each profile (claude, codex, gemini, opencode, aider, shell) has regular
//! expressions for four states, tried on the bottom of the screen in this
//! order: `trouble` (crash text, rate limits), `asking` (a permission
//! question), `working`, `idle` (at its prompt). `torch.toml` may replace a
//! profile's lists (`[profiles.claude] working = ["..."]`). The hub holds
//! messages while an agent is working, asking or in trouble.

use serde::{Deserialize, Serialize};

use crate::Profile;

/// What the agent is doing, as its screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    /// At its prompt, ready for a message.
    Idle,
    /// Busy.
    Working,
    /// Waiting for an answer to a question (permission, confirmation).
    Asking,
    /// Showing an error, a crash or a rate limit.
    Trouble,
    /// Stopped by a rate or usage limit until it resets (its CLI said so).
    Limited,
    /// Nothing recognisable.
    Unknown,
}

impl Activity {
    /// The word used in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Idle => "idle",
            Activity::Working => "working",
            Activity::Asking => "asking",
            Activity::Trouble => "trouble",
            Activity::Limited => "limited",
            Activity::Unknown => "unknown",
        }
    }

    /// Whether a message should wait.
    pub fn holds_messages(self) -> bool {
        matches!(
            self,
            Activity::Working | Activity::Asking | Activity::Trouble | Activity::Limited
        )
    }
}

/// A profile's patterns, one list per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileRules {
    /// At the prompt.
    pub idle: Vec<String>,
    /// Busy.
    pub working: Vec<String>,
    /// Asking a question.
    pub asking: Vec<String>,
    /// In trouble.
    pub trouble: Vec<String>,
    /// What to report when nothing matches.
    pub otherwise: Option<Activity>,
    /// A row that frames the TUI's input box (Claude's `────` rule): when
    /// set, the patterns see only the TUI's own chrome, from the
    /// second-to-last such row down (input box, footer, or a dialog framed
    /// by one rule), never the conversation above it, where any word may
    /// appear.
    pub chrome: Option<String>,
    /// Arguments appended to the agent's command to resume the session its
    /// hooks last reported (`{session}` is its id); empty: never resume.
    pub resume: Vec<String>,
    /// Texts the TUI shows in an empty input box (between the last two
    /// `chrome` rows), which are not leftover input.
    pub placeholders: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The built-in rules of `profile`.
pub fn builtin(profile: Profile) -> ProfileRules {
    let common_trouble = [
        "(?i)rate limit",
        "(?i)usage limit",
        "(?i)\\bAPI Error\\b",
        "(?i)overloaded",
        "(?i)panicked at",
        "Traceback \\(most recent call last\\)",
    ];
    match profile {
        // Claude Code 2.1.332's chrome (field notes and captured screens):
        // the footer says the mode (`⏵⏵ auto mode on`, `⏸ manual mode on ·
        // ? for shortcuts`) and ends in `esc to interrupt` while it works;
        // dialogs have their own footers.
        Profile::Claude => ProfileRules {
            idle: strings(&[
                "\\? for shortcuts",
                "(?m)^\\s*(⏵⏵|⏸).* mode on",
                "(?m)^❯\\s*$",
            ]),
            working: strings(&["(?i)esc to interrupt"]),
            asking: strings(&[
                "Esc to cancel · Tab to amend",
                "Enter to confirm · Esc to cancel",
                "Do you want to proceed\\?",
                "(?m)^\\s*❯ 1\\. Yes",
            ]),
            // API retries show as working (the CLI retries by itself); a
            // final API error is the StopFailure hook's to report.
            trouble: vec![],
            otherwise: Some(Activity::Unknown),
            chrome: Some("^─{20,}\\s*$".into()),
            resume: strings(&["--resume", "{session}"]),
            placeholders: strings(&[
                "Press up to edit queued messages",
                "Resend your message to try again",
            ]),
        },
        // Codex CLI 0.171.0 (field notes): its footer reads `? for
        // shortcuts` at the prompt and `esc to interrupt` while it works.
        // Its TUI has no rule framing the input box, so no screen pattern
        // says `asking`: a question's words could be any reply's, and an
        // asking screen holds messages. Its PermissionRequest hook says it.
        Profile::Codex => ProfileRules {
            idle: strings(&["\\? for shortcuts"]),
            working: strings(&["(?i)esc to interrupt"]),
            asking: vec![],
            trouble: strings(&common_trouble),
            otherwise: Some(Activity::Unknown),
            chrome: None,
            resume: strings(&["resume", "{session}"]),
            placeholders: vec![],
        },
        Profile::Gemini => ProfileRules {
            idle: strings(&["(?i)type your message"]),
            working: strings(&["(?i)esc to cancel"]),
            asking: strings(&["(?i)allow execution", "(?i)apply this change"]),
            trouble: strings(&common_trouble),
            otherwise: Some(Activity::Unknown),
            chrome: None,
            // Gemini CLI 0.61.0 takes the session id its SessionStart hook gave.
            resume: strings(&["--resume", "{session}"]),
            placeholders: vec![],
        },
        // opencode 1.18.33 (field notes): in a session its bottom row reads
        // `ctrl+p commands` and its version, and `esc interrupt` while it
        // works; its first screen has its input box in the middle, and its
        // version ends the bottom row. Its plugin reports permissions; its
        // dialogs replace the input box and end in their own key hints
        // (`⇆ select  enter confirm`, or `enter confirm  esc cancel` for a
        // reason to reject), which `asking` reads: the TUI may still draw a
        // dialog the plugin already answered, and would take keys typed then.
        Profile::Opencode => ProfileRules {
            idle: strings(&["ctrl\\+p commands", "\\b\\d+\\.\\d+\\.\\d+\\z"]),
            working: strings(&["esc interrupt"]),
            asking: strings(&["⇆ select +enter confirm", "enter confirm +esc cancel"]),
            trouble: strings(&common_trouble),
            otherwise: Some(Activity::Unknown),
            chrome: None,
            resume: strings(&["--session", "{session}"]),
            placeholders: vec![],
        },
        // Aider 0.86.2 (field notes): its prompt is `> ` (`ask> `, `multi> `
        // in other modes) under a rule; its questions end `(Y)es/(N)o ...
        // [Yes]: `. A restart restores the agent's own chat history file.
        Profile::Aider => ProfileRules {
            idle: strings(&["(?m)^[\\w./-]*> ?\\z"]),
            working: strings(&["(?i)waiting for", "(?i)thinking"]),
            asking: strings(&["\\(Y\\)es/\\(N\\)o.*\\]: ?\\z"]),
            trouble: strings(&common_trouble),
            otherwise: Some(Activity::Unknown),
            chrome: None,
            resume: strings(&["--restore-chat-history"]),
            placeholders: vec![],
        },
        Profile::Shell => ProfileRules {
            // A shell (or REPL) waits at a prompt ending in $ # % or >; a
            // screen without one is running something.
            idle: strings(&["[$#%>]\\s*\\z"]),
            working: vec![],
            asking: strings(&[
                "(?i)\\[y/n\\]\\s*\\z",
                "(?i)\\(yes/no\\)",
                "(?i)password( for [^:]*)?:\\s*\\z",
            ]),
            trouble: vec![],
            otherwise: Some(Activity::Working),
            chrome: None,
            resume: vec![],
            placeholders: vec![],
        },
    }
}

/// Compiled rules. The default recognises nothing (always `unknown`).
#[derive(Debug, Clone)]
pub struct Classifier {
    tests: Vec<(Activity, regex::Regex)>,
    otherwise: Activity,
    chrome: Option<regex::Regex>,
    placeholders: Vec<String>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self {
            tests: Vec::new(),
            otherwise: Activity::Unknown,
            chrome: None,
            placeholders: Vec::new(),
        }
    }
}

/// Rows of the screen's bottom that the patterns see.
const TAIL_ROWS: usize = 15;

impl Classifier {
    /// Compiles `rules`; the error names the bad pattern.
    pub fn new(rules: &ProfileRules) -> Result<Self, String> {
        let mut tests = Vec::new();
        for (activity, list) in [
            (Activity::Trouble, &rules.trouble),
            (Activity::Asking, &rules.asking),
            (Activity::Working, &rules.working),
            (Activity::Idle, &rules.idle),
        ] {
            for p in list {
                let re = regex::Regex::new(p)
                    .map_err(|e| format!("profile pattern {p:?} for {}: {e}", activity.as_str()))?;
                tests.push((activity, re));
            }
        }
        let chrome = match &rules.chrome {
            Some(p) => Some(
                regex::Regex::new(p)
                    .map_err(|e| format!("profile pattern {p:?} for chrome: {e}"))?,
            ),
            None => None,
        };
        Ok(Self {
            tests,
            otherwise: rules.otherwise.unwrap_or(Activity::Unknown),
            chrome,
            placeholders: rules.placeholders.clone(),
        })
    }

    /// The state the screen shows. Only the bottom rows count, trimmed, so
    /// old output higher up cannot make a busy agent look idle.
    pub fn classify(&self, rows: &[String]) -> Activity {
        let end = rows
            .iter()
            .rposition(|r| !r.trim().is_empty())
            .map_or(0, |i| i + 1);
        let start = self
            .chrome_start(&rows[..end])
            .unwrap_or(end.saturating_sub(TAIL_ROWS))
            .max(end.saturating_sub(TAIL_ROWS));
        let tail = rows[start..end].join("\n");
        let tail = tail.trim_end();
        self.tests
            .iter()
            .find(|(_, re)| re.is_match(tail))
            .map_or(self.otherwise, |(a, _)| *a)
    }
}

impl Classifier {
    /// Where the TUI's chrome begins: the second-to-last framing row, or the
    /// last one when only one frames a dialog. `None` without a chrome
    /// pattern or when no row frames anything.
    fn chrome_start(&self, rows: &[String]) -> Option<usize> {
        let re = self.chrome.as_ref()?;
        let mut frames = rows
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, r)| re.is_match(r));
        let last = frames.next()?.0;
        Some(frames.next().map_or(last, |(i, _)| i))
    }

    /// The text left in the TUI's input box: the rows between the last two
    /// `chrome` rows, without the prompt sign (`❯`, `>`), trimmed; empty for
    /// an empty box or a placeholder. `None` without a framed input box.
    pub fn input_box(&self, rows: &[String]) -> Option<String> {
        let re = self.chrome.as_ref()?;
        let frames: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| re.is_match(r))
            .map(|(i, _)| i)
            .collect();
        let [.., top, bottom] = frames[..] else {
            return None;
        };
        let text = rows[top + 1..bottom].join("\n");
        let text = text.trim();
        let text = text
            .strip_prefix('❯')
            .or_else(|| text.strip_prefix('>'))
            .unwrap_or(text)
            .trim();
        let placeholder = self.placeholders.iter().any(|p| p == text);
        Some(if placeholder {
            String::new()
        } else {
            text.to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn shell_prompts_are_idle_and_anything_else_works() {
        let c = Classifier::new(&builtin(Profile::Shell)).unwrap();
        assert_eq!(
            c.classify(&rows("$ ls\nfile\nuser@host:~$ \n\n\n")),
            Activity::Idle
        );
        assert_eq!(c.classify(&rows("[echo] ready\necho>\n")), Activity::Idle);
        assert_eq!(
            c.classify(&rows("$ cargo build\n   Compiling x\n")),
            Activity::Working
        );
        assert_eq!(c.classify(&rows("loading...\n")), Activity::Working);
        assert_eq!(c.classify(&rows("Overwrite? [y/N] ")), Activity::Asking);
    }

    /// Bottom rows of Claude Code 2.1.332 in a 120-column tmux pane.
    const RULE: &str = "────────────────────────────────────────────────────────────";

    fn claude(above: &str, input: &str, footer: &str) -> Vec<String> {
        rows(&format!("{above}\n{RULE}\n{input}\n{RULE}\n{footer}\n"))
    }

    #[test]
    fn claude_screens_read_only_its_chrome() {
        let c = Classifier::new(&builtin(Profile::Claude)).unwrap();
        let auto = "  ⏵⏵ auto mode on (shift+tab to cycle) · ← for agents";
        let manual = "  ⏸ manual mode on · ? for shortcuts · ← for agents";
        assert_eq!(c.classify(&claude("● ok", "❯ ", auto)), Activity::Idle);
        assert_eq!(c.classify(&claude("", "❯ ", manual)), Activity::Idle);
        let working = "  ⏵⏵ auto mode on (shift+tab to cycle) · esc to interrupt";
        assert_eq!(
            c.classify(&claude("✽ Flummoxing…", "❯ ", working)),
            Activity::Working
        );
        assert_eq!(
            c.classify(&claude(
                "✢ Flummoxing…",
                "❯ Press up to edit queued messages",
                working
            )),
            Activity::Working
        );
        // The conversation may say anything: only the chrome counts.
        let talk = "● I added a rate limit; the old code hit API Error: 529 overloaded\n\
                    and the usage limit. Do you want to proceed? ❯ 1. Yes";
        assert_eq!(c.classify(&claude(talk, "❯ ", auto)), Activity::Idle);
        assert_eq!(
            c.classify(&claude(
                "✻ 429 rate limited · retrying in 7s · attempt 5/10",
                "❯ ",
                working
            )),
            Activity::Working
        );
        let dialog = rows(&format!(
            "● talk\n{RULE}\n Bash command\n   touch x\n Do you want to proceed?\n ❯ 1. Yes\n   2. No\n\n Esc to cancel · Tab to amend\n"
        ));
        assert_eq!(c.classify(&dialog), Activity::Asking);
        let trust = rows(&format!(
            "{RULE}\n Accessing workspace:\n ❯ 1. Yes, I trust this folder\n   2. No, exit\n\n Enter to confirm · Esc to cancel\n"
        ));
        assert_eq!(c.classify(&trust), Activity::Asking);
        assert_eq!(c.classify(&rows("something else\n")), Activity::Unknown);
        // The input box: empty, a placeholder, or text left in it.
        assert_eq!(c.input_box(&claude("", "❯ ", auto)).as_deref(), Some(""));
        let queued = claude("", "❯ Press up to edit queued messages", auto);
        assert_eq!(c.input_box(&queued).as_deref(), Some(""));
        let left = claude("", "❯ two\n  lines left", auto);
        assert_eq!(c.input_box(&left).as_deref(), Some("two\n  lines left"));
        assert_eq!(c.input_box(&rows("$ \n")), None);
    }

    #[test]
    fn opencode_screens_as_captured() {
        let c = Classifier::new(&builtin(Profile::Opencode)).unwrap();
        let blank = || std::iter::repeat_n(String::new(), 20);
        // The first screen: the input box and its footer mid-screen, the version below.
        let mut first = vec!["  ┃  Ask anything… \"Fix a TODO in the codebase\"".to_string()];
        first.push("      tab agents  ctrl+p commands".into());
        first.extend(blank());
        first.push("  /srv/oc                                      1.18.33".into());
        assert_eq!(c.classify(&first), Activity::Idle);
        let session = "   /srv/oc        8.1K  ctrl+p commands    • OpenCode 1.18.33";
        assert_eq!(
            c.classify(&rows(&format!("ok\n{session}\n"))),
            Activity::Idle
        );
        let working =
            "  ⬝⬝⬝⬝⬝⬝⬝⬝  esc interrupt\n   /srv/oc    ctrl+p commands    • OpenCode 1.18.33\n";
        assert_eq!(c.classify(&rows(working)), Activity::Working);
        // Its permission dialog, in place of the input box; the footer below
        // still reads as at the prompt.
        let dialog = "  ┃  △ Permission required\n  ┃    # Shell command\n  ┃  $ touch x\n  ┃   Allow once   Allow always   Reject        ctrl+f fullscreen  ⇆ select  enter confirm\n   /srv/oc    ctrl+p commands    • OpenCode 1.18.33\n";
        assert_eq!(c.classify(&rows(dialog)), Activity::Asking);
    }

    #[test]
    fn only_the_bottom_counts_and_bad_patterns_are_named() {
        let c = Classifier::new(&builtin(Profile::Shell)).unwrap();
        let mut screen = vec!["$ make".to_string()];
        screen.extend((0..20).map(|i| format!("line {i}")));
        assert_eq!(c.classify(&screen), Activity::Working);
        for p in [
            Profile::Claude,
            Profile::Codex,
            Profile::Gemini,
            Profile::Opencode,
            Profile::Aider,
            Profile::Shell,
        ] {
            assert!(Classifier::new(&builtin(p)).is_ok(), "{p:?}");
        }
        let bad = ProfileRules {
            idle: vec!["(".into()],
            ..Default::default()
        };
        assert!(Classifier::new(&bad).unwrap_err().contains("\"(\""));
    }
}
