//! The message path from `torch send` to the agent's pane against a real
//! systemd, D-Bus, SQLite and tmux: what is refused at Send, what fails at
//! once without holding the queue, what a shell agent is typed, and how a
//! broken definition is reported.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use torch_core::MAX_MESSAGE_BYTES;
use torch_tests::fleet::{boot_hub, ENVELOPE_FOR_SHELL};
use torch_tests::{wait_until, Sandbox};

/// A sandbox with the hub running on `config` as /etc/torch/torch.toml.
fn messages(sb: &Sandbox, agent: &str) -> Result<Vec<Value>> {
    sb.all_messages(agent)
}

/// Runs a shell line inside; returns (success, stdout + stderr).
fn sh_status(sb: &Sandbox, script: &str) -> Result<(bool, String)> {
    let out = sb.exec(&["/bin/sh", "-c", script])?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn undeliverable_messages_are_refused_or_failed_at_once() -> Result<()> {
    // The echo agent's profile is shell, which gets messages bare unless
    // told otherwise; with the header on, it stands in for an AI agent.
    let sb = boot_hub("undeliverable", ENVELOPE_FOR_SHELL)?;
    sb.spawn_echo("dev", "orchestrator", None)?;

    // Under the limit alone, over it with the header: refused at Send,
    // with the limit and the size, and nothing stored.
    let len = MAX_MESSAGE_BYTES - 10;
    sb.write_file("/tmp/big.txt", "x".repeat(len).as_bytes(), 0o644)?;
    let (ok, out) = sh_status(&sb, "torch send dev - < /tmp/big.txt")?;
    ensure!(
        !ok && out.contains(&format!("message is {len} bytes"))
            && out.contains(&format!("limit of {MAX_MESSAGE_BYTES} bytes")),
        "{out}"
    );
    ensure!(
        messages(&sb, "dev")?.is_empty(),
        "a refused message was stored"
    );

    // A message the hub accepted without counting the header (as hubs
    // before this check did, and as an upgraded hub finds in its store):
    // exactly 256 KiB, which the supervisor refuses once the header is on.
    let insert = "INSERT INTO messages (sender, recipient, body, kind, created_ms) \
                  VALUES ('operator', 'dev', hex(zeroblob(131072)), 'message', 0)";
    sb.run(&[
        "runuser",
        "-u",
        "torch",
        "--",
        "sqlite3",
        "-cmd",
        ".timeout 10000",
        "/var/lib/torch/torch.db",
        insert,
    ])?;
    // The next message kicks the courier: the big one fails on its first
    // attempt and this one follows it (`--wait` gives up after 120 s; the
    // old retries held the queue for 6.4 min).
    let (ok, out) = sb.torch_status(&["send", "--wait", "dev", "after the big one"])?;
    ensure!(ok, "the message after the undeliverable one: {out}");
    let stored = messages(&sb, "dev")?;
    let big = stored
        .iter()
        .find(|m| {
            m["body"]
                .as_str()
                .is_some_and(|b| b.len() == MAX_MESSAGE_BYTES)
        })
        .context("the inserted message")?;
    let reason = big["reason"].as_str().unwrap_or_default();
    ensure!(
        big["state"] == "failed"
            && big["attempts"] == 1
            && reason.contains("not retried")
            && reason.contains(&format!("the limit is {MAX_MESSAGE_BYTES} bytes")),
        "{big:#}"
    );
    let records = sb.records("dev")?;
    ensure!(
        records.len() == 1 && records[0].ends_with("from operator] after the big one"),
        "{records:?}"
    );
    Ok(())
}

#[test]
fn a_shell_agent_runs_the_command_it_is_sent() -> Result<()> {
    let sb = boot_hub("shell-envelope", "")?;
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    sb.torch(&[
        "spawn",
        "box",
        "--role",
        "orchestrator",
        "--workdir",
        "/srv/work",
        "--profile",
        "shell",
        "--",
        "bash",
        "-i",
    ])?;
    let file = "/var/lib/torch-agent/box/ran.txt";
    let (ok, out) = sb.torch_status(&["send", "--wait", "box", &format!("echo ran > {file}")])?;
    ensure!(ok, "{out}");
    // With a header in front, bash would still create the file (the
    // redirection comes first) but leave it empty.
    wait_until(
        "the command to write its file",
        Duration::from_secs(20),
        || Ok(sb.read_file(file).is_ok_and(|b| b == b"ran\n")),
    )?;
    // A check-in's note arrives as bare as a message.
    let checked = "/var/lib/torch-agent/box/checked.txt";
    sb.torch(&[
        "schedule",
        "box",
        "--in",
        "1s",
        "--note",
        &format!("echo checked > {checked}"),
    ])?;
    wait_until(
        "the check-in's command to write its file",
        Duration::from_secs(20),
        || Ok(sb.read_file(checked).is_ok_and(|b| b == b"checked\n")),
    )?;
    let screen = sb.torch(&["capture", "box"])?;
    ensure!(
        !screen.contains("command not found") && !screen.contains("[torch"),
        "{screen}"
    );
    Ok(())
}

#[test]
fn a_broken_definition_is_named_wherever_the_agent_is() -> Result<()> {
    let sb = boot_hub("broken-definition", "")?;
    sb.define_echo_agent("dev")?;
    sb.torch(&["start", "dev"])?;
    sb.torch(&["send", "--wait", "dev", "before the edit"])?;
    let pid = sb.unit_property("torch-agent@dev.service", "MainPID")?;

    // A bad edit in place: the string on line 2 loses its closing quote.
    let path = "/etc/torch/agents/dev.toml";
    let good = String::from_utf8(sb.read_file(path)?)?;
    let bad = good.replace("ready_pattern = \"echo> \"", "ready_pattern = \"echo> ");
    ensure!(bad != good, "{good}");
    sb.define_agent("dev", &bad)?;
    let at = format!("{path}:2: ");

    // The hub rereads a file edited in place within 2 s.
    let mut out = String::new();
    wait_until(
        "Send to name the broken file",
        Duration::from_secs(10),
        || {
            let (ok, o) = sb.torch_status(&["send", "dev", "after the edit"])?;
            out = o;
            Ok(!ok && out.contains("broken definition"))
        },
    )
    .with_context(|| out.clone())?;
    ensure!(
        out.contains(&at) && !out.contains("no agent named"),
        "{out}"
    );

    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    let dev = &status["agents"][0];
    ensure!(
        dev["name"] == "dev"
            && dev["active_state"] == "active"
            && dev["definition_error"]
                .as_str()
                .is_some_and(|e| e.starts_with(&at)),
        "{status:#}"
    );
    let tree = sb.torch(&["status"])?;
    ensure!(tree.contains(&format!("broken definition: {at}")), "{tree}");
    let list = sb.torch(&["list"])?;
    ensure!(list.contains(&format!("broken definition: {at}")), "{list}");

    for args in [
        vec!["restart", "dev"],
        vec!["schedule", "dev", "--in", "1h", "--note", "x"],
        vec!["retire", "dev"],
        vec![
            "spawn",
            "dev",
            "--role",
            "qa",
            "--workdir",
            "/",
            "--",
            "true",
        ],
    ] {
        let (ok, out) = sb.torch_status(&args)?;
        ensure!(
            !ok && out.contains("broken definition") && out.contains(&at),
            "torch {args:?}: {out}"
        );
    }
    // The refused restart left the running agent alone.
    ensure!(sb.unit_property("torch-agent@dev.service", "MainPID")? == pid);
    // A start that fails says why.
    sb.torch(&["stop", "dev"])?;
    let (ok, out) = sb.torch_status(&["start", "dev"])?;
    ensure!(
        !ok && out.contains("broken definition") && out.contains(&at),
        "{out}"
    );

    // Fixed, it is an agent like any other again.
    sb.define_agent("dev", &good)?;
    wait_until("Send to accept again", Duration::from_secs(10), || {
        Ok(sb.torch_status(&["send", "dev", "after the fix"])?.0)
    })?;
    sb.torch(&["start", "dev"])?;
    wait_until("the message after the fix", Duration::from_secs(30), || {
        Ok(sb
            .records("dev")?
            .last()
            .is_some_and(|r| r == "after the fix"))
    })?;
    // A shell-profile agent: the bare text, no header. (The sends before
    // the hub noticed the edit went through; they do not matter here.)
    let records = sb.records("dev")?;
    ensure!(
        records.first().is_some_and(|r| r == "before the edit")
            && records.last().is_some_and(|r| r == "after the fix"),
        "{records:?}"
    );
    Ok(())
}
