//! A git worktree per agent (`torch spawn --worktree`) on the real
//! sandbox: made at the first start from the parent's branch, committed
//! into by autocommit as the agent, put away at retire with its branch kept.

use anyhow::{ensure, Result};
use torch_api::Task;
use torch_tests::fleet::boot_hub;
use torch_tests::Sandbox;

const REPO: &str = "/srv/shop";

/// Git in the shared repository, as root.
fn git(sb: &Sandbox, args: &[&str]) -> Result<String> {
    let mut argv = vec!["git", "-c", "safe.directory=*", "-C", REPO];
    argv.extend_from_slice(args);
    Ok(sb.run(&argv)?.trim().to_string())
}

fn spawn(sb: &Sandbox, name: &str, role: &str, parent: &str) -> Result<()> {
    sb.torch(&[
        "spawn",
        name,
        "--role",
        role,
        "--parent",
        parent,
        "--workdir",
        REPO,
        "--worktree",
        "--profile",
        "shell",
        "--",
        "bash",
        "--norc",
    ])
    .map(drop)
}

#[test]
fn agents_work_in_worktrees_of_their_own() -> Result<()> {
    let sb = boot_hub("worktrees", "")?;
    // A repository the agents share, as docs/security.md says.
    sb.sh("set -e
         install -d -g torch-agent -m 2770 /srv/shop && cd /srv/shop
         git init -q --shared=group -b main && echo v1 > README
         git add README && git -c user.name=admin -c user.email=a@x commit -q -m start
         chgrp -R torch-agent . && chmod -R g+rwX . && find . -type d -exec chmod g+s {} +")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    spawn(&sb, "pm", "project-manager", "boss")?;
    let (ok, here) = sb.in_pane("pm", 1, "pwd; git branch --show-current")?;
    ensure!(
        ok && here == "/var/lib/torch-agent/pm/worktree\ntorch/pm\n",
        "{here}"
    );
    sb.in_pane(
        "pm",
        2,
        "echo plan > PLAN && git add PLAN && git -c user.name=pm -c user.email=pm@x commit -q -m plan",
    )?;

    // An engineer starts from its PM's branch, not from main.
    spawn(&sb, "dev", "engineer", "pm")?;
    let (ok, seen) = sb.in_pane("dev", 1, "git branch --show-current; cat PLAN")?;
    ensure!(ok && seen == "torch/dev\nplan\n", "{seen}");
    ensure!(
        git(&sb, &["log", "-1", "--format=%s", "torch/dev"])? == "plan",
        "torch/dev does not start at the PM's commit"
    );

    // Autocommit commits in the worktree, as the agent.
    sb.in_pane("dev", 2, "echo code > main.rs")?;
    sb.systemctl(&["start", "torch-autocommit.service"])?;
    let head = git(&sb, &["log", "-1", "--format=%an|%s", "torch/dev"])?;
    ensure!(head == "dev|torch: work in progress (dev)", "{head}");
    let owner = sb.run(&[
        "stat",
        "-c",
        "%U",
        "/var/lib/torch-agent/dev/worktree/main.rs",
    ])?;
    ensure!(owner.trim() == "ta-dev", "{owner}");
    ensure!(git(&sb, &["branch", "--show-current"])? == "main");

    // Its report names the branch and what it changed since the PM's.
    let out = sb.torch(&["task", "add", "--title", "write main.rs", "--assign", "dev"])?;
    let id = out.trim().trim_start_matches("task #").to_string();
    let (ok, said) = sb.in_pane(
        "dev",
        3,
        &format!("torch task done {id} --summary 'wrote it' --files main.rs"),
    )?;
    ensure!(ok, "{said}");
    let t: Task = serde_json::from_str(&sb.torch(&["task", "show", &id, "--json"])?)?;
    let note = t.history.last().map(|c| c.note.clone()).unwrap_or_default();
    ensure!(
        note.starts_with("wrote it\nBranch: torch/dev\nChanges against torch/pm:\n")
            && note.contains("main.rs | 1 +")
            && note.ends_with("\nFiles: main.rs"),
        "{note}"
    );

    // Retired: what it left is committed on its branch, the worktree goes,
    // the branch stays.
    sb.in_pane("dev", 4, "echo unfinished > notes.txt")?;
    sb.torch(&["retire", "dev"])?;
    ensure!(
        !sb.root().join("var/lib/torch-agent/dev/worktree").exists(),
        "the worktree is still there"
    );
    let last = git(&sb, &["log", "-1", "--format=%an|%s", "torch/dev"])?;
    ensure!(
        last == "dev|torch: work left by dev when it was retired",
        "{last}"
    );
    ensure!(git(&sb, &["show", "torch/dev:notes.txt"])? == "unfinished");
    let list = git(&sb, &["worktree", "list"])?;
    ensure!(!list.contains("/dev/worktree"), "{list}");
    Ok(())
}
