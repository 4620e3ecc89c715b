//! What a report says of the work besides its text: the branch it is on,
//! the files it touched, and the branch's changes against the branch it was
//! made from (`git diff --stat`), so whoever reads the report or reviews the
//! task sees them without asking.

use std::process::Command;

use torch_core::{paths, AgentName};

/// The most lines of `git diff --stat` a report carries (the summary line
/// last).
const STAT_LINES: usize = 40;

/// `note` with the work's branch (given, else the calling agent's own
/// worktree branch), its changes, and `files`.
pub fn describe(note: &str, branch: Option<String>, files: &[String]) -> String {
    let mut out = note.to_string();
    if let Some(branch) = branch.or_else(own_branch) {
        out.push_str(&format!("\nBranch: {branch}"));
        if let Some((base, stat)) = changes(&branch) {
            out.push_str(&format!("\nChanges against {base}:\n{stat}"));
        }
    }
    if !files.is_empty() {
        out.push_str(&format!("\nFiles: {}", files.join(", ")));
    }
    out
}

/// The branch of the calling agent's worktree, when it has one.
fn own_branch() -> Option<String> {
    let name = AgentName::parse(&std::env::var("TORCH_AGENT").ok()?).ok()?;
    paths::agent_worktree(&name)
        .join(".git")
        .exists()
        .then(|| paths::agent_branch(&name))
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// What `branch` changed since it left the branch it tracks, from the
/// repository the command runs in.
fn changes(branch: &str) -> Option<(String, String)> {
    let base = git(&[
        "rev-parse",
        "--abbrev-ref",
        &format!("{branch}@{{upstream}}"),
    ])?;
    let stat = git(&["diff", "--stat", &format!("{base}...{branch}")])?;
    let lines: Vec<&str> = stat.lines().collect();
    let shown = match lines.len() {
        n if n > STAT_LINES => {
            let mut kept = lines[..STAT_LINES - 1].to_vec();
            kept.push(lines[n - 1]);
            kept.join("\n")
        }
        _ => stat.clone(),
    };
    (!shown.is_empty()).then_some((base, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_listed_after_the_note() {
        let text = describe(
            "wrote it",
            Some("feature/x".into()),
            &["a.rs".into(), "b.rs".into()],
        );
        assert!(text.starts_with("wrote it\nBranch: feature/x"), "{text}");
        assert!(text.ends_with("\nFiles: a.rs, b.rs"), "{text}");
    }
}
