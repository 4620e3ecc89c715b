//! The agent CLI's conversation across restarts: the session id its
//! SessionStart hook reported is kept on disk, and the next start of the
//! same definition resumes it (the profile's `resume` arguments, Claude
//! Code's `--resume ID`), so a crash, a hang restart or a reboot does not
//! cost the agent what it was told.
//!
//! A record names the definition file and its modification time: a new or
//! edited definition (a retired agent spawned again under its name) starts
//! a fresh conversation.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use torch_core::AgentName;

/// What is kept of the last session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    session: String,
    /// The conversation's transcript: no transcript, nothing to resume.
    transcript: String,
    definition: PathBuf,
    definition_mtime_ns: u128,
}

/// Where the sessions of one agent's definition are kept.
#[derive(Debug, Clone)]
pub struct SessionStore {
    path: PathBuf,
    definition: PathBuf,
    definition_mtime_ns: u128,
}

fn mtime_ns(path: &Path) -> u128 {
    path.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

impl SessionStore {
    /// The store of agent `name`, defined in `definition`, under the
    /// agents' state directory `base`.
    pub fn new(base: &Path, name: &AgentName, definition: &Path) -> Self {
        Self {
            path: base
                .join(".torch-supervisor")
                .join(format!("{}.session", name.instance())),
            definition: definition.to_path_buf(),
            definition_mtime_ns: mtime_ns(definition),
        }
    }

    /// The session to resume: the last one of this very definition, whose
    /// transcript still exists.
    pub fn resumable(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let record: Record = serde_json::from_str(&text).ok()?;
        let same = record.definition == self.definition
            && record.definition_mtime_ns == self.definition_mtime_ns;
        (same && Path::new(&record.transcript).is_file()).then_some(record.session)
    }

    /// Keeps `session` as the one to resume.
    pub fn save(&self, session: &str, transcript: &str) -> std::io::Result<()> {
        let record = Record {
            session: session.to_string(),
            transcript: transcript.to_string(),
            definition: self.definition.clone(),
            definition_mtime_ns: self.definition_mtime_ns,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("session-tmp");
        std::fs::write(&tmp, serde_json::to_vec(&record)?)?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl SessionStore {
    /// Drops the record, so the next start begins a new conversation;
    /// whether there was one.
    pub fn forget(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }
}

/// The profile's resume arguments with `{session}` filled in.
pub fn resume_args(template: &[String], session: &str) -> Vec<String> {
    template
        .iter()
        .map(|a| a.replace("{session}", session))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_resumes_only_for_the_same_definition_with_its_transcript() {
        let dir = std::env::temp_dir().join(format!("torch-session-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let def = dir.join("a.toml");
        std::fs::write(&def, "command = [\"claude\"]\n").unwrap();
        let transcript = dir.join("s1.jsonl");
        let name = AgentName::parse("a").unwrap();
        let store = SessionStore::new(&dir, &name, &def);
        assert_eq!(store.resumable(), None);
        store.save("s1", &transcript.to_string_lossy()).unwrap();
        assert_eq!(store.resumable(), None, "no transcript yet");
        std::fs::write(&transcript, "{}\n").unwrap();
        assert_eq!(store.resumable().as_deref(), Some("s1"));
        // The definition written again (a new spawn under the same name).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&def, "command = [\"claude\"]\n").unwrap();
        assert_eq!(SessionStore::new(&dir, &name, &def).resumable(), None);
        assert!(store.forget() && !store.forget());
        assert_eq!(
            resume_args(&["--resume".into(), "{session}".into()], "s1"),
            ["--resume", "s1"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
