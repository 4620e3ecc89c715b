//! An agent's own git worktree (`worktree = true`): agents in one project
//! then share no files, only the repository, each on its branch
//! `torch/NAME`. Made at the first start from the parent's branch, so a
//! PM's engineers build on the PM's work, not on whatever `origin/HEAD` is;
//! put away when the agent is retired, its branch kept.
//!
//! Git runs as the agent's own user, which must be able to write the
//! repository's `.git` (a project shared through the `torch-agent` group,
//! `core.sharedRepository = group`; see docs/security.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use torch_core::definition::{discover, AgentDefinition};
use torch_core::{paths, AgentName};

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("cannot run git (install it, or set worktree = false)")?;
    if !out.status.success() {
        bail!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The top of the repository holding `dir`.
fn top(dir: &Path) -> Result<PathBuf> {
    git(dir, &["rev-parse", "--show-toplevel"])
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "worktree = true, but {} is not in a git repository",
                dir.display()
            )
        })
}

/// The agent's worktree, made if it is not there yet; where it works.
pub fn prepare(name: &AgentName, def: &AgentDefinition, workdir: &Path) -> Result<PathBuf> {
    let path = paths::agent_worktree(name);
    if path.join(".git").exists() {
        return Ok(path);
    }
    let repo = top(workdir)?;
    // Made here, not by git: in a repository shared through a group, git
    // would set the new directory's set-group-id bit, which the unit's
    // RestrictSUIDSGID= refuses (inside the project, directories inherit
    // the bit instead).
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let branch = paths::agent_branch(name);
    let target = path.to_string_lossy();
    // Locked: other agents cannot see into this home, so to their git the
    // worktree looks gone, and a prune (`git gc` runs one) would drop it.
    if branch_exists(&repo, &branch) {
        // --force: a worktree whose directory went away (a home deleted by
        // hand) is still registered; pruning it here would, as this agent,
        // prune the other agents' worktrees too.
        git(
            &repo,
            &["worktree", "add", "--lock", "--force", &target, &branch],
        )?;
        tracing::info!("worktree {target} on its branch {branch}, kept from before");
    } else {
        let base = parent_branch(def, &repo);
        // Tracking its base, so `git status` in it and the reports of
        // `torch task done` show what it changed since.
        let track = if base == "HEAD" {
            "--no-track"
        } else {
            "--track"
        };
        git(
            &repo,
            &[
                "worktree", "add", "--lock", track, "-b", &branch, &target, &base,
            ],
        )?;
        tracing::info!("worktree {target} on a new branch {branch} from {base}");
    }
    Ok(path)
}

/// What a new worktree starts from: the parent's branch when the parent
/// works in a worktree of the same repository, else the branch checked out
/// in the repository itself.
fn parent_branch(def: &AgentDefinition, repo: &Path) -> String {
    let parent = def.parent.as_deref().and_then(|p| {
        let (_, found) = discover(&paths::agent_definition_dirs())
            .into_iter()
            .find(|(n, _)| n == p)?;
        let pdef = found.def.ok()?;
        let same_repo = pdef.workdir.as_deref().and_then(|w| top(w).ok()) == Some(repo.into());
        (pdef.worktree && same_repo).then(|| AgentName::parse(p).ok())?
    });
    match parent {
        Some(p) if branch_exists(repo, &paths::agent_branch(&p)) => paths::agent_branch(&p),
        _ => git(repo, &["symbolic-ref", "--quiet", "--short", "HEAD"])
            .unwrap_or_else(|_| "HEAD".into()),
    }
}

fn branch_exists(repo: &Path, branch: &str) -> bool {
    git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .is_ok()
}

/// Puts the worktree away for good (the agent is retired): what is not
/// committed is committed on its branch first, unless the agent opted out
/// of autocommit, which keeps a dirty worktree where it is. The branch
/// stays.
pub fn put_away(name: &AgentName, def: &AgentDefinition) -> Result<String> {
    let path = paths::agent_worktree(name);
    if !path.join(".git").exists() {
        return Ok("no worktree".into());
    }
    let dirty = !git(&path, &["status", "--porcelain"])?.is_empty();
    if dirty && !def.autocommit {
        return Ok(format!(
            "worktree {} kept: it has uncommitted work and autocommit = false",
            path.display()
        ));
    }
    if dirty {
        git(&path, &["add", "--all"])?;
        let author = torch_core::git::author(name.as_str());
        let message = format!("torch: work left by {name} when it was retired");
        git(&path, &torch_core::git::commit_args(&author, &message))?;
    }
    // From the repository's own directory: a worktree is not removed from
    // inside itself.
    let common = git(
        &path,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )?;
    let target = path.to_string_lossy();
    let common = Path::new(&common);
    git(common, &["worktree", "unlock", &target])?;
    git(common, &["worktree", "remove", "--force", &target])?;
    Ok(format!(
        "worktree {} removed; branch {} kept",
        path.display(),
        paths::agent_branch(name)
    ))
}
