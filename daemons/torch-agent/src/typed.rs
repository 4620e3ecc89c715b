//! The messages this agent was sent, by the hub's id, that the supervisor
//! pressed Enter on: kept on disk in the agent's state directory, so a new
//! supervisor (after a crash, a kill, a lost tmux server) answers the hub's
//! retry "duplicate" instead of typing the message a second time.
//!
//! An id is written and synced before the first Enter: from then on it is
//! never typed again, whatever happens (at most once into the pane). Whether
//! the program then showed it took the message is written afterwards,
//! without a sync: only the journal line about an unconfirmed message
//! depends on it. Each id is kept with a hash of its text, so a hub with a
//! fresh store that hands out the same ids again is not refused.
//!
//! The file holds one JSON object a line, rewritten compactly at start and
//! whenever it has grown to twice [`KEEP`] lines.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use torch_core::{paths, AgentName};

/// How many ids are kept. The hub retries only the oldest message it has
/// not been told about, so the last few would do; the rest is slack.
pub const KEEP: usize = 10_000;

/// What became of a message after its id was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Recorded before Enter; nothing known since.
    Enter,
    /// The screen changed after Enter: the program took it.
    Taken,
    /// Enter was pressed, but the program never showed it took the message
    /// (it died, tmux died, or it ignored every Enter).
    Unsure,
}

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    id: String,
    /// [`text_hash`] of the message, in hex.
    text: String,
    state: Outcome,
}

/// Why the file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot {doing} {path}: {source}; until that is fixed, a restart of this agent may type its last message again (check the state directory's owner and free space)")]
pub struct TypedError {
    doing: &'static str,
    path: String,
    source: std::io::Error,
}

/// The ids of messages typed into this agent, bounded to [`KEEP`].
pub struct TypedIds {
    /// `None`: kept in memory only (the file could not be opened).
    file: Option<(PathBuf, File)>,
    /// Lines in the file.
    lines: usize,
    /// Ids kept ([`KEEP`]; smaller in unit tests).
    keep: usize,
    entries: HashMap<String, (u64, Outcome)>,
    order: VecDeque<String>,
}

/// FNV-1a: stable across Rust versions and builds, unlike std's hasher,
/// because the file outlives the binary that wrote it.
fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn io_error<'a>(
    doing: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> TypedError + 'a {
    move |source| TypedError {
        doing,
        path: path.display().to_string(),
        source,
    }
}

impl TypedIds {
    /// Loads the ids in `path` (creating it and its directory, private to
    /// the agent's user) and keeps it up to date from now on. Also returns
    /// the ids whose outcome the previous run never learned, oldest first.
    pub fn open(path: &Path) -> Result<(Self, Vec<String>), TypedError> {
        Self::open_keeping(path, KEEP)
    }

    /// Kept in memory only, for when the file cannot be used.
    pub fn in_memory() -> Self {
        Self::empty(KEEP)
    }

    fn empty(keep: usize) -> Self {
        Self {
            file: None,
            lines: 0,
            keep,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn open_keeping(path: &Path, keep: usize) -> Result<(Self, Vec<String>), TypedError> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error("create the directory of", path))?;
        }
        let mut ids = Self::empty(keep);
        let mut unsure = Vec::new();
        match std::fs::read_to_string(path) {
            Ok(raw) => {
                // A line cut short by a crash, or anything else unreadable,
                // is skipped; the rewrite below drops it.
                for line in raw.lines() {
                    if let Ok(l) = serde_json::from_str::<Line>(line) {
                        if let Ok(hash) = u64::from_str_radix(&l.text, 16) {
                            ids.remember(l.id, hash, l.state);
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("read", path)(e)),
        }
        for id in &ids.order {
            if let Some(entry) = ids.entries.get_mut(id) {
                if entry.1 == Outcome::Enter {
                    entry.1 = Outcome::Unsure;
                    unsure.push(id.clone());
                }
            }
        }
        ids.rewrite(path)?;
        Ok((ids, unsure))
    }

    /// What became of message `id` with `text`, if it was typed before.
    pub fn seen(&self, id: &str, text: &str) -> Option<Outcome> {
        self.entries
            .get(id)
            .filter(|(hash, _)| *hash == text_hash(text))
            .map(|(_, outcome)| *outcome)
    }

    /// Records, durably, that Enter is about to be pressed on message `id`.
    /// On an error the id is still kept in memory.
    pub fn entering(&mut self, id: &str, text: &str) -> Result<(), TypedError> {
        let hash = text_hash(text);
        self.remember(id.to_string(), hash, Outcome::Enter);
        self.append(id, hash, Outcome::Enter, true)
    }

    /// Records what became of message `id` after Enter (nothing when it was
    /// never entered). Not synced: losing it loses only a journal line.
    pub fn settle(&mut self, id: &str, outcome: Outcome) -> Result<(), TypedError> {
        let Some(&(hash, _)) = self.entries.get(id) else {
            return Ok(());
        };
        self.remember(id.to_string(), hash, outcome);
        self.append(id, hash, outcome, false)
    }

    fn remember(&mut self, id: String, hash: u64, outcome: Outcome) {
        match self.entries.get(&id) {
            Some((h, _)) if *h == hash => {}
            Some(_) => {
                // The same id for another text: a new message, kept as the newest.
                self.order.retain(|o| *o != id);
                self.order.push_back(id.clone());
            }
            None => {
                if self.order.len() >= self.keep {
                    if let Some(old) = self.order.pop_front() {
                        self.entries.remove(&old);
                    }
                }
                self.order.push_back(id.clone());
            }
        }
        self.entries.insert(id, (hash, outcome));
    }

    fn append(
        &mut self,
        id: &str,
        hash: u64,
        state: Outcome,
        sync: bool,
    ) -> Result<(), TypedError> {
        if self.lines >= 2 * self.keep {
            if let Some(path) = self.file.as_ref().map(|(p, _)| p.clone()) {
                return self.rewrite(&path);
            }
        }
        let Some((path, file)) = self.file.as_mut() else {
            return Ok(());
        };
        let line = line(id, hash, state);
        file.write_all(line.as_bytes())
            .map_err(io_error("write to", path))?;
        if sync {
            file.sync_data().map_err(io_error("sync", path))?;
        }
        self.lines += 1;
        Ok(())
    }

    /// Replaces the file with one line per kept id, atomically.
    fn rewrite(&mut self, path: &Path) -> Result<(), TypedError> {
        let mut text = String::new();
        for id in &self.order {
            if let Some((hash, state)) = self.entries.get(id) {
                text.push_str(&line(id, *hash, *state));
            }
        }
        let new = path.with_extension("new");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&new)
            .map_err(io_error("create", &new))?;
        f.write_all(text.as_bytes())
            .map_err(io_error("write to", &new))?;
        f.sync_all().map_err(io_error("sync", &new))?;
        std::fs::rename(&new, path).map_err(io_error("replace", path))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error("sync the directory of", path))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_error("open", path))?;
        self.file = Some((path.to_path_buf(), file));
        self.lines = self.order.len();
        Ok(())
    }
}

/// The ids of messages typed into agent `name` before, from its state
/// directory, with a journal line for each message whose fate the previous
/// run never learned: it is not typed again, so the operator must judge.
/// An unreadable file leaves the ids in memory only, as the journal says.
pub fn load(name: &AgentName) -> TypedIds {
    let path = paths::typed_ids_file(&paths::agent_state_dir(name), name);
    match TypedIds::open(&path) {
        Ok((ids, unsure)) => {
            for id in unsure {
                tracing::warn!(
                    "message {id} was submitted (Enter pressed) when the agent last stopped, and the agent never showed it took it; it is not typed again. If the agent did not get it, send it again (`torch messages --agent {name}` shows it)"
                );
            }
            ids
        }
        Err(e) => {
            tracing::warn!("{e}");
            TypedIds::in_memory()
        }
    }
}

fn line(id: &str, hash: u64, state: Outcome) -> String {
    let l = Line {
        id: id.to_string(),
        text: format!("{hash:016x}"),
        state,
    };
    // A struct of strings always serializes.
    let mut s = serde_json::to_string(&l).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("torch-typed-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("sub").join("a.typed")
    }

    #[test]
    fn ids_survive_a_restart_and_unconfirmed_ones_are_reported() {
        let path = temp_path("restart");
        let (mut ids, unsure) = TypedIds::open(&path).unwrap();
        assert!(unsure.is_empty());
        ids.entering("m1", "one").unwrap();
        ids.settle("m1", Outcome::Taken).unwrap();
        ids.entering("m2", "two").unwrap();
        drop(ids);
        let (ids, unsure) = TypedIds::open(&path).unwrap();
        assert_eq!(unsure, ["m2"]);
        assert_eq!(ids.seen("m1", "one"), Some(Outcome::Taken));
        assert_eq!(ids.seen("m2", "two"), Some(Outcome::Unsure));
        // Another text under a known id is a new message.
        assert_eq!(ids.seen("m1", "other"), None);
        assert_eq!(ids.seen("m3", "three"), None);
        drop(ids);
        // Reported once: the rewrite stored the verdict.
        let (_, unsure) = TypedIds::open(&path).unwrap();
        assert!(unsure.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let path = temp_path("torn");
        let (mut ids, _) = TypedIds::open(&path).unwrap();
        ids.entering("m1", "one").unwrap();
        drop(ids);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":\"m2\",\"te").unwrap();
        let (mut ids, unsure) = TypedIds::open(&path).unwrap();
        assert_eq!(unsure, ["m1"]);
        ids.entering("m3", "three").unwrap();
        drop(ids);
        let raw = std::fs::read_to_string(&path).unwrap();
        assert_eq!(raw.lines().count(), 2, "{raw}");
    }

    #[test]
    fn the_file_stays_bounded() {
        let path = temp_path("bounded");
        let keep = 10;
        let (mut ids, _) = TypedIds::open_keeping(&path, keep).unwrap();
        for i in 0..(3 * keep) {
            let id = format!("m{i}");
            ids.entering(&id, "x").unwrap();
            ids.settle(&id, Outcome::Taken).unwrap();
            let raw = std::fs::read_to_string(&path).unwrap();
            assert!(raw.lines().count() <= 2 * keep, "{raw}");
        }
        assert!(ids.seen("m0", "x").is_none());
        assert!(ids.seen(&format!("m{}", 3 * keep - 1), "x").is_some());
        drop(ids);
        let (ids, _) = TypedIds::open_keeping(&path, keep).unwrap();
        assert_eq!(ids.order.len(), keep);
    }
}
