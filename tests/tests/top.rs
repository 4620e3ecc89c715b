//! `torch top` in a tmux pane of 80x24 in the real sandbox: its screen shows the tree
//! with each agent's state, follows a state change as the hub signals it, and sends a
//! message typed in it. The screen it ends with is kept in `target/top.txt` for the
//! README.

use std::time::Duration;

use anyhow::{ensure, Result};
use torch_tests::fleet::boot_hub;
use torch_tests::{wait_until, workspace_root, Sandbox};

/// The tmux server the test runs `torch top` in (not an agent's).
const TMUX: [&str; 3] = ["tmux", "-L", "top-test"];

fn screen(sb: &Sandbox) -> Result<String> {
    let mut args = TMUX.to_vec();
    args.extend(["capture-pane", "-p", "-t", "top"]);
    sb.run(&args)
}

fn keys(sb: &Sandbox, keys: &[&str]) -> Result<()> {
    let mut args = TMUX.to_vec();
    args.extend(["send-keys", "-t", "top"]);
    args.extend_from_slice(keys);
    sb.run(&args).map(drop)
}

fn wait_screen(sb: &Sandbox, what: &str, ok: impl Fn(&str) -> bool) -> Result<String> {
    let mut seen = String::new();
    let r = wait_until(what, Duration::from_secs(20), || {
        seen = screen(sb)?;
        Ok(ok(&seen))
    });
    r.map_err(|e| e.context(format!("the screen:\n{seen}")))?;
    Ok(seen)
}

/// The line of `agent` on the screen.
fn row<'a>(screen: &'a str, agent: &str) -> &'a str {
    screen
        .lines()
        .find(|l| {
            let inside = l.trim_start_matches(['│', '┌', ' ']);
            inside.split_whitespace().next() == Some(agent)
        })
        .unwrap_or("")
}

#[test]
fn torch_top_shows_the_tree_and_follows_the_fleet() -> Result<()> {
    let sb = boot_hub("top", "")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm", "project-manager", Some("boss"))?;
    sb.spawn_echo("dev1", "engineer", Some("pm"))?;
    let mut args = TMUX.to_vec();
    args.extend([
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "80",
        "-y",
        "24",
        "env",
        "TERM=xterm-256color",
        "torch",
        "top",
    ]);
    sb.run(&args)?;
    let shown = wait_screen(&sb, "the tree", |s| {
        ["boss", "pm", "dev1"]
            .iter()
            .all(|a| row(s, a).contains("idle"))
    })?;
    // Children under their parent, indented.
    let indent = |a: &str| row(&shown, a).find(a).unwrap_or(0);
    ensure!(
        indent("boss") < indent("pm") && indent("pm") < indent("dev1"),
        "{shown}"
    );
    // A state change, from the hub's signal.
    sb.torch(&["stop", "dev1"])?;
    wait_screen(&sb, "dev1 down", |s| row(s, "dev1").contains("down"))?;
    // Select pm (second row), type a message, send it.
    keys(&sb, &["Down", "s"])?;
    keys(&sb, &["-l", "hello from top"])?;
    keys(&sb, &["Enter"])?;
    wait_screen(&sb, "the message stored", |s| s.contains("to pm stored"))?;
    wait_until("pm got it", Duration::from_secs(20), || {
        Ok(sb
            .records("pm")?
            .iter()
            .any(|r| r.contains("hello from top")))
    })?;
    // Its details: screen, inbox, journal.
    keys(&sb, &["Enter"])?;
    let last = wait_screen(&sb, "the details", |s| {
        s.contains("inbox") && s.contains("operator: hello")
    })?;
    std::fs::write(workspace_root().join("target").join("top.txt"), &last)?;
    keys(&sb, &["q"])?;
    Ok(())
}
