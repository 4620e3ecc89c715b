//! The compatibility matrix of `docs/compatibility.md`, produced by the suite: each test of
//! a real agent CLI that passes records what it verified ([`record`]), and `torch-compat`
//! renders the records as the matrix, checks the document against it (`scripts/test.sh`
//! runs it after the suite) or writes it there.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::llm::PinnedCli;
use crate::workspace_root;

/// What a test of a real CLI verified, one column of the matrix each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// Spawned in a workdir it never saw, its brief was its first turn: no dialog stood in
    /// the way.
    StartsReady,
    /// Twenty briefs at spawn, each once and alone in its turn.
    TwentyBriefs,
    /// One line, five hostile lines, five messages during a slow reply: each once, whole,
    /// in order, one turn each.
    Messages,
    /// Idle decided by the CLI's own channel (hooks, plugin, notifications), as `torch
    /// explain` says.
    OwnChannel,
    /// The conversation went on after `kill -9` of the CLI and of its supervisor.
    Resume,
    /// Permission requests approved and denied by `[permissions]`.
    Policy,
    /// A question (a permission prompt) held messages until `torch answer`.
    Answer,
    /// A 429 held messages until its reset, then the agent went on.
    RateLimit,
    /// Input and output tokens per agent.
    Tokens,
    /// Cost per agent, as the CLI computes it.
    Cost,
}

impl Capability {
    /// Every column, in order.
    pub const ALL: [Capability; 10] = [
        Capability::StartsReady,
        Capability::TwentyBriefs,
        Capability::Messages,
        Capability::OwnChannel,
        Capability::Resume,
        Capability::Policy,
        Capability::Answer,
        Capability::RateLimit,
        Capability::Tokens,
        Capability::Cost,
    ];

    /// The record's file name, and the column's key.
    fn key(self) -> &'static str {
        match self {
            Capability::StartsReady => "starts-ready",
            Capability::TwentyBriefs => "twenty-briefs",
            Capability::Messages => "messages",
            Capability::OwnChannel => "own-channel",
            Capability::Resume => "resume",
            Capability::Policy => "policy",
            Capability::Answer => "answer",
            Capability::RateLimit => "rate-limit",
            Capability::Tokens => "tokens",
            Capability::Cost => "cost",
        }
    }

    /// The column's heading.
    fn heading(self) -> &'static str {
        match self {
            Capability::StartsReady => "starts with no dialog",
            Capability::TwentyBriefs => "briefs at spawn",
            Capability::Messages => "messages whole, in order, one turn each",
            Capability::OwnChannel => "state from its own channel",
            Capability::Resume => "resumes after kill -9",
            Capability::Policy => "permissions by policy",
            Capability::Answer => "questions held for `torch answer`",
            Capability::RateLimit => "429 held until its reset",
            Capability::Tokens => "tokens",
            Capability::Cost => "cost",
        }
    }
}

/// Where the records go: `TORCH_COMPAT_DIR`, else `target/compat` of the workspace.
pub fn records_dir() -> PathBuf {
    std::env::var_os("TORCH_COMPAT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("compat"))
}

/// Records that a test verified `capability` of `cli`, with `result` as the matrix shows
/// it ("yes", "20/20").
pub fn record(cli: &PinnedCli, capability: Capability, result: &str) -> Result<()> {
    let dir = records_dir().join(cli.dir());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(capability.key());
    fs::write(&file, format!("{} {result}\n", cli.version()?))
        .with_context(|| format!("writing {}", file.display()))
}

/// Records "yes" for each of `capabilities` of `cli`.
pub fn verified(cli: &PinnedCli, capabilities: &[Capability]) -> Result<()> {
    capabilities.iter().try_for_each(|c| record(cli, *c, "yes"))
}

/// The matrix of the CLIs in `clis` as the records in `dir` say: a row per CLI at its
/// pinned version, "not verified" where no test of that version recorded the column.
pub fn matrix(clis: &[&PinnedCli], dir: &Path) -> Result<String> {
    let mut out = String::from("| CLI | version |");
    for c in Capability::ALL {
        out.push_str(&format!(" {} |", c.heading()));
    }
    out.push_str("\n| --- | --- |");
    out.push_str(&" --- |".repeat(Capability::ALL.len()));
    out.push('\n');
    for cli in clis {
        let version = cli.version()?;
        let found = recorded(&dir.join(cli.dir()), &version)?;
        out.push_str(&format!("| {} | {version} |", cli.name));
        for c in Capability::ALL {
            let cell = found.get(&c).map_or("not verified", String::as_str);
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    Ok(out)
}

/// The results recorded in `dir` for `version`.
fn recorded(dir: &Path, version: &str) -> Result<BTreeMap<Capability, String>> {
    let mut found = BTreeMap::new();
    for c in Capability::ALL {
        let file = dir.join(c.key());
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        if let Some((v, result)) = text.trim().split_once(' ') {
            if v == version {
                found.insert(c, result.to_string());
            }
        }
    }
    Ok(found)
}

/// The markers around the matrix in the document.
pub const BEGIN: &str =
    "<!-- compat-matrix: written by torch-compat from the suite's records; do not edit -->";
/// The end marker.
pub const END: &str = "<!-- end of compat-matrix -->";

/// `doc` with `table` between the markers.
pub fn replace_matrix(doc: &str, table: &str) -> Result<String> {
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        bail!("the document has no matrix markers ({BEGIN} ... {END})");
    };
    if end < begin {
        bail!("the matrix's end marker comes before its beginning");
    }
    Ok(format!("{}{BEGIN}\n{table}{}", &doc[..begin], &doc[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_goes_between_the_markers() {
        let doc = format!("intro\n{BEGIN}\nold\n{END}\nrest\n");
        let new = replace_matrix(&doc, "| new |\n").unwrap();
        assert_eq!(new, format!("intro\n{BEGIN}\n| new |\n{END}\nrest\n"));
        assert!(replace_matrix("no markers", "x").is_err());
    }
}
