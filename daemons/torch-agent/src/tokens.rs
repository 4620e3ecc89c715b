//! Tokens an agent's conversation used, from its CLI's transcript, read
//! incrementally (from where the last read stopped):
//! - Claude Code's: each assistant message records the API's `usage`; a
//!   message written as several lines (one per content block, each with the
//!   same id and usage) counts once.
//! - Codex CLI's: each `token_count` event holds the thread's totals so far
//!   (`total_token_usage`), whose `input_tokens` include the cached ones.
//! - Gemini CLI's: each answer (`type: "gemini"`) records its `tokens`,
//!   whose `input` includes the cached ones; its thoughts are billed as
//!   output, its tool-use prompt as input.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde_json::Value;
use torch_core::protocol::Tokens;

/// At most this much of the transcript is read per update, so a status
/// request never stalls on a huge file; the rest is read by later updates.
const READ_LIMIT: u64 = 8 << 20;

fn from_usage(u: &Value) -> Tokens {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Tokens {
        input: n("input_tokens"),
        output: n("output_tokens"),
        cache_read: n("cache_read_input_tokens"),
        cache_write: n("cache_creation_input_tokens"),
    }
}

/// The totals a Codex `token_count` event holds, if `entry` is one.
fn codex_totals(entry: &Value) -> Option<Tokens> {
    let payload = &entry["payload"];
    if entry["type"] != "event_msg" || payload["type"] != "token_count" {
        return None;
    }
    let u = payload.pointer("/info/total_token_usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cached_input_tokens");
    Some(Tokens {
        input: n("input_tokens").saturating_sub(cached),
        output: n("output_tokens"),
        cache_read: cached,
        cache_write: n("cache_write_input_tokens"),
    })
}

/// The id and tokens of a Gemini CLI answer, if `entry` is one.
fn gemini_answer(entry: &Value) -> Option<(&str, Tokens)> {
    if entry["type"] != "gemini" {
        return None;
    }
    let u = entry.get("tokens")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cached");
    Some((
        entry["id"].as_str()?,
        Tokens {
            input: (n("input") + n("tool")).saturating_sub(cached),
            output: n("output") + n("thoughts"),
            cache_read: cached,
            cache_write: 0,
        },
    ))
}

fn add(all: &mut Tokens, o: Tokens) {
    all.input += o.input;
    all.output += o.output;
    all.cache_read += o.cache_read;
    all.cache_write += o.cache_write;
}

/// Counts the tokens of one transcript.
#[derive(Debug, Default)]
pub struct TokenCounter {
    path: Option<PathBuf>,
    offset: u64,
    /// Messages before the one being written.
    done: Tokens,
    /// The message whose lines are being read: its id and usage.
    current: Option<(String, Tokens)>,
}

impl TokenCounter {
    /// Counts `path` from its start (a new session's transcript); the same
    /// path again keeps counting where it was. Only JSON lines files are
    /// read: a CLI that keeps its sessions in a database (opencode) names
    /// that instead.
    pub fn follow(&mut self, path: PathBuf) {
        if path.extension().is_none_or(|e| e != "jsonl") {
            return;
        }
        if self.path.as_ref() != Some(&path) {
            *self = Self {
                path: Some(path),
                ..Self::default()
            };
        }
    }

    /// The transcript it counts, once a session reported one.
    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }

    /// The totals, after reading what was added to the transcript.
    pub fn totals(&mut self) -> Option<Tokens> {
        let path = self.path.clone()?;
        if let Err(e) = self.read_more(&path) {
            tracing::debug!("cannot read the transcript {}: {e}", path.display());
        }
        let mut all = self.done;
        if let Some((_, t)) = self.current {
            add(&mut all, t);
        }
        Some(all)
    }

    fn read_more(&mut self, path: &PathBuf) -> std::io::Result<()> {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        file.take(READ_LIMIT).read_to_end(&mut buf)?;
        // Only whole lines: the last may still be being written.
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in buf[..complete].split(|b| *b == b'\n') {
            self.take_line(line);
        }
        self.offset += complete as u64;
        Ok(())
    }

    fn take_line(&mut self, line: &[u8]) {
        let Ok(entry) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        if let Some(totals) = codex_totals(&entry) {
            self.done = totals;
            self.current = None;
            return;
        }
        let (id, tokens) = match gemini_answer(&entry) {
            Some(answer) => answer,
            None => {
                if entry.get("type").and_then(Value::as_str) != Some("assistant") {
                    return;
                }
                let message = &entry["message"];
                let (Some(id), Some(usage)) = (message["id"].as_str(), message.get("usage")) else {
                    return;
                };
                (id, from_usage(usage))
            }
        };
        match &mut self.current {
            Some((cur, t)) if cur == id => *t = tokens,
            _ => {
                if let Some((_, t)) = self.current.take() {
                    add(&mut self.done, t);
                }
                self.current = Some((id.to_string(), tokens));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_counts_once_and_reading_goes_on_where_it_stopped() {
        let dir = std::env::temp_dir().join(format!("torch-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.jsonl");
        let mut db = TokenCounter::default();
        db.follow(dir.join("opencode.db"));
        assert!(db.path().is_none(), "only JSON lines are read");
        let line = |id: &str, i: u64, o: u64| {
            format!(
                r#"{{"type":"assistant","message":{{"id":"{id}","usage":{{"input_tokens":{i},"output_tokens":{o},"cache_read_input_tokens":2}}}}}}"#
            )
        };
        let first = [
            r#"{"type":"user","message":{"content":"hi"}}"#.to_string(),
            line("m1", 10, 1),
            line("m1", 10, 5),
        ];
        std::fs::write(&path, first.join("\n") + "\n").unwrap();
        let mut c = TokenCounter::default();
        assert_eq!(c.totals(), None);
        c.follow(path.clone());
        let t = c.totals().unwrap();
        assert_eq!((t.input, t.output, t.cache_read), (10, 5, 2));
        let more = format!("{}\n{}", line("m2", 7, 3), r#"{"type":"assist"#);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, more.as_bytes()).unwrap();
        let t = c.totals().unwrap();
        assert_eq!((t.input, t.output, t.cache_read), (17, 8, 4));
        c.follow(path.clone());
        assert_eq!(c.totals().unwrap().output, 8, "same file: kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gemini_answers_count_once_each() {
        let dir = std::env::temp_dir().join(format!("torch-tokens-gemini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("session.jsonl");
        let answer = |id: &str, input: u64| {
            serde_json::json!({"id": id, "type": "gemini", "content": "ok",
                "tokens": {"input": input, "output": 1, "cached": 100, "thoughts": 2, "tool": 5, "total": input + 3}})
            .to_string()
        };
        let lines = [
            r#"{"sessionId":"s","kind":"main"}"#.to_string(),
            r#"{"id":"u1","type":"user","content":[{"text":"hi"}]}"#.to_string(),
            answer("g1", 12060),
            r#"{"$set":{"lastUpdated":"2026-11-27T15:33:49.666Z"}}"#.to_string(),
            answer("g2", 12100),
            answer("g2", 12100),
        ];
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let mut c = TokenCounter::default();
        c.follow(path);
        let t = c.totals().unwrap();
        assert_eq!((t.input, t.output, t.cache_read), (11965 + 12005, 6, 200));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn codex_token_counts_are_the_threads_totals() {
        let count = |i: u64, cached: u64, o: u64| {
            serde_json::json!({"type": "event_msg", "payload": {"type": "token_count", "info": {
                "total_token_usage": {"input_tokens": i, "cached_input_tokens": cached, "output_tokens": o},
                "last_token_usage": {"input_tokens": 1, "output_tokens": 1}}}})
            .to_string()
        };
        let mut c = TokenCounter::default();
        c.take_line(br#"{"type":"event_msg","payload":{"type":"token_count","info":null}}"#);
        c.take_line(count(100, 40, 3).as_bytes());
        c.take_line(br#"{"type":"response_item","payload":{"type":"message"}}"#);
        c.take_line(count(250, 90, 8).as_bytes());
        assert_eq!(
            c.done,
            Tokens {
                input: 160,
                output: 8,
                cache_read: 90,
                cache_write: 0
            }
        );
    }
}
