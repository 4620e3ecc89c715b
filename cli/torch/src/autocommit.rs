//! `torch autocommit`: commits work in progress in every agent's project,
//! run by `torch-autocommit.timer` (the seed's "commit every 30 minutes",
//! done by the system instead of by prompt).
//!
//! For each git repository that holds an agent's working directory: on the
//! current branch only, never on a protected one, never forced or pushed,
//! skipped while a merge, rebase, cherry-pick or revert is in progress or
//! when an agent opted out; authored as the agent. One line per project
//! goes to the journal.
//!
//! Run by root (the timer's unit), git runs as the first agent's own user
//! (`ta-NAME`), with that user's groups: the work is that agent's, and a
//! repository's configuration and hooks then run with its rights only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use torch_core::config::{config_files, Config};
use torch_core::definition::discover;
use torch_core::paths;

/// A git repository and the agents working in it.
pub struct Project {
    /// The repository's top directory.
    pub root: PathBuf,
    /// Agents whose working directory is inside it, with their opt-in.
    pub agents: Vec<(String, bool)>,
}

/// Who git runs as: the caller, or (when the caller is root) an agent's user.
enum RunAs {
    Caller,
    Agent(String),
}

impl RunAs {
    /// As the first agent of `p`, when root; `None` when that agent has no
    /// user yet (it never started).
    fn for_project(p: &Project) -> Option<RunAs> {
        if !nix::unistd::Uid::effective().is_root() {
            return Some(RunAs::Caller);
        }
        let name = torch_core::AgentName::parse(&p.agents.first()?.0).ok()?;
        let user = paths::agent_user(&name);
        matches!(nix::unistd::User::from_name(&user), Ok(Some(_))).then_some(RunAs::Agent(user))
    }

    fn command(&self) -> Command {
        match self {
            RunAs::Caller => Command::new("git"),
            RunAs::Agent(user) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .args(["--init-groups", "--reset-env", "--", "git"]);
                cmd
            }
        }
    }
}

fn git(run_as: &RunAs, dir: &Path, args: &[&str]) -> Result<String> {
    // Projects shared through a group hold files of several users; git's
    // check of the repository's owner is what the group is there to pass.
    let out = run_as
        .command()
        .args(["-c", "safe.directory=*", "-C"])
        .arg(dir)
        .args(args)
        .output()
        .context("cannot run git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The repository holding `dir`: the nearest ancestor with a `.git`. Found
/// by looking at the file system, not by running git, which would obey the
/// repository's own configuration (see [`last_commits`]).
fn repo_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// The projects of all defined agents, by repository.
pub fn projects() -> Vec<Project> {
    let mut by_root: BTreeMap<PathBuf, Vec<(String, bool)>> = BTreeMap::new();
    for (name, found) in discover(&paths::agent_definition_dirs()) {
        let Ok(def) = found.def else { continue };
        let worktree = match def.worktree {
            true => torch_core::AgentName::parse(&name)
                .ok()
                .map(|n| paths::agent_worktree(&n)),
            false => None,
        };
        let Some(root) = worktree.or(def.workdir).as_deref().and_then(repo_root) else {
            continue;
        };
        by_root
            .entry(root)
            .or_default()
            .push((name, def.autocommit));
    }
    by_root
        .into_iter()
        .map(|(root, agents)| Project { root, agents })
        .collect()
}

/// What happened to one project.
fn commit_project(p: &Project, config: &Config, dry_run: bool) -> Result<String> {
    if let Some((who, _)) = p.agents.iter().find(|(_, on)| !on) {
        return Ok(format!("skipped: {who} opted out (autocommit = false)"));
    }
    let Some(run_as) = RunAs::for_project(p) else {
        return Ok("skipped: its agent has no user yet (it never started)".into());
    };
    let git = |args: &[&str]| git(&run_as, &p.root, args);
    let Ok(branch) = git(&["symbolic-ref", "--quiet", "--short", "HEAD"]) else {
        return Ok("skipped: HEAD is detached".into());
    };
    if config.autocommit.protects(&branch) {
        return Ok(format!(
            "skipped: branch {branch} is protected (autocommit.protected_branches in torch.toml)"
        ));
    }
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    for (marker, what) in [
        ("MERGE_HEAD", "a merge"),
        ("rebase-merge", "a rebase"),
        ("rebase-apply", "a rebase"),
        ("CHERRY_PICK_HEAD", "a cherry-pick"),
        ("REVERT_HEAD", "a revert"),
    ] {
        if git_dir.join(marker).exists() {
            return Ok(format!("skipped on {branch}: {what} is in progress"));
        }
    }
    if git(&["status", "--porcelain"])?.is_empty() {
        return Ok(format!("nothing to commit on {branch}"));
    }
    let names: Vec<&str> = p.agents.iter().map(|(n, _)| n.as_str()).collect();
    let author = torch_core::git::author(names[0]);
    if dry_run {
        return Ok(format!("would commit on {branch} as {author}"));
    }
    git(&["add", "--all"])?;
    let message = format!(
        "torch: work in progress ({})\n\nAutomatic commit by torch-autocommit.timer; nothing was pushed.",
        names.join(", ")
    );
    git(&torch_core::git::commit_args(&author, &message))?;
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    Ok(format!("committed {head} on {branch} as {}", names[0]))
}

/// Runs one autocommit round; fails when a commit failed.
pub fn run(dry_run: bool) -> Result<()> {
    let config = Config::load(&config_files()).map_err(anyhow::Error::msg)?;
    let mut failed = 0;
    for p in projects() {
        match commit_project(&p, &config, dry_run) {
            Ok(line) => println!("autocommit {}: {line}", p.root.display()),
            Err(e) => {
                failed += 1;
                println!("<3>autocommit {}: failed: {e:#}", p.root.display());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} projects could not be committed; see the lines above");
    }
    Ok(())
}

/// Last commit of each project, for `torch status`: (root, branch, when).
///
/// Read from `.git/HEAD` and the reflog as plain files: `torch status` often
/// runs as root in repositories the agents own, and running git there would
/// obey their configuration (hooks, fsmonitor) with root's rights.
pub fn last_commits() -> Vec<(PathBuf, String, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    projects()
        .into_iter()
        .map(|p| {
            let git_dir = p.root.join(".git");
            let head = std::fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default();
            let branch = head
                .trim()
                .strip_prefix("ref: refs/heads/")
                .unwrap_or("(detached)")
                .to_string();
            let log = std::fs::read_to_string(git_dir.join("logs/HEAD")).unwrap_or_default();
            let when = log.lines().rev().find_map(|l| {
                let (meta, msg) = l.split_once('\t')?;
                let mut parts = meta.rsplitn(3, ' ');
                let _tz = parts.next()?;
                let secs: i64 = parts.next()?.parse().ok()?;
                Some(format!("{} ago ({})", ago(now - secs), msg))
            });
            (p.root, branch, when.unwrap_or_else(|| "no commits".into()))
        })
        .collect()
}

fn ago(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}min", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
