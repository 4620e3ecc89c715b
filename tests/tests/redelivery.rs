//! A restart never types a message twice: SIGKILL of the supervisor, of the
//! agent's tmux server or of the agent program right after the agent took a
//! message, while the hub still waits for the supervisor's confirmation,
//! several rounds in one sandbox; and the journal names each message whose
//! fate the supervisor could not confirm.
//!
//! The echo agent runs with `--ack-delay-ms`, so the message is in its record
//! well before its screen shows it taken: the kill lands in the window where
//! the hub has not been told, and the hub's retry meets a new supervisor.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use torch_tests::fleet::{record_path, TEST_AGENT};
use torch_tests::{wait_until, Sandbox};

/// Kills per test: the issue saw a re-type after 7 of 8 supervisor kills.
const ROUNDS: usize = 5;
/// How long the echo agent keeps its screen unchanged after recording.
const ACK_DELAY_MS: &str = "400";
/// Where the in-sandbox watcher says it is watching.
const ARMED: &str = "/run/torch-test-armed";

fn sandbox(label: &str, agent: &str) -> Result<Sandbox> {
    let sb = Sandbox::boot(label)?;
    sb.install_torch()?;
    // Many restarts in a minute are the point here, and quick ones.
    sb.agent_dropin("[Unit]\nStartLimitBurst=100\n[Service]\nRestartSec=200ms\n")?;
    sb.start_hub()?;
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    let record = record_path(agent);
    sb.torch(&[
        "spawn",
        agent,
        "--role",
        "orchestrator",
        "--workdir",
        "/srv/work",
        "--",
        TEST_AGENT,
        "echo",
        "--record",
        &record,
        "--ack-delay-ms",
        ACK_DELAY_MS,
    ])?;
    Ok(sb)
}

fn messages(sb: &Sandbox, agent: &str) -> Result<Vec<Value>> {
    let json = sb.torch(&["messages", "--agent", agent, "--limit", "1000", "--json"])?;
    Ok(serde_json::from_str(&json)?)
}

fn wait_all_delivered(sb: &Sandbox, agent: &str) -> Result<()> {
    wait_until("every message delivered", Duration::from_secs(30), || {
        Ok(messages(sb, agent)?
            .iter()
            .all(|m| m["state"] == "delivered"))
    })
}

/// Sends one message and SIGKILLs `pid` inside the sandbox the moment the
/// agent recorded it (a shell loop in the sandbox, armed before the send).
fn send_and_kill_on_arrival(sb: &Sandbox, agent: &str, text: &str, pid: u32) -> Result<()> {
    let before = sb.records(agent)?.len();
    let _ = sb.run(&["rm", "-f", ARMED]);
    let watcher = format!(
        "f={rec}; : > {ARMED}; i=0
         while [ \"$(cat \"$f\" 2>/dev/null | wc -l)\" -le {before} ]; do
           i=$((i+1)); [ $i -gt 3000 ] && {{ echo 'never arrived' >&2; exit 3; }}
           sleep 0.005
         done
         kill -KILL {pid}",
        rec = record_path(agent),
    );
    std::thread::scope(|s| {
        let watch = s.spawn(|| sb.sh(&watcher));
        wait_until("the watcher to arm", Duration::from_secs(10), || {
            Ok(sb.read_file(ARMED).is_ok())
        })?;
        sb.torch(&["send", agent, text])?;
        watch
            .join()
            .map_err(|_| anyhow::anyhow!("watcher thread panicked"))??;
        Ok(())
    })
}

/// Runs the rounds, killing what `target` names each time, then checks that
/// every message arrived exactly once and in order.
fn kill_rounds(sb: &Sandbox, agent: &str, target: impl Fn() -> Result<u32>) -> Result<()> {
    let unit = format!("torch-agent@{agent}.service");
    let mut sent = Vec::new();
    for round in 0..ROUNDS {
        sb.wait_active(agent, round as u32, Duration::from_secs(30))?;
        let text = format!("round {round}");
        send_and_kill_on_arrival(sb, agent, &text, target()?)
            .with_context(|| format!("round {round}"))?;
        sent.push(text);
        sb.wait_active(agent, round as u32 + 1, Duration::from_secs(30))?;
        wait_all_delivered(sb, agent)?;
    }
    for i in 0..3 {
        let text = format!("after {i}");
        sb.torch(&["send", agent, &text])?;
        sent.push(text);
    }
    wait_until("the later messages", Duration::from_secs(30), || {
        Ok(sb.records(agent)?.len() >= sent.len())
    })?;
    wait_all_delivered(sb, agent)?;
    let got: Vec<String> = sb
        .records(agent)?
        .iter()
        .map(|r| r.rsplit("] ").next().unwrap_or(r).to_string())
        .collect();
    let retyped: Vec<&String> = sent
        .iter()
        .filter(|t| got.iter().filter(|g| g == t).count() > 1)
        .collect();
    ensure!(
        retyped.is_empty(),
        "{} of {ROUNDS} killed messages typed again: {retyped:?}; the agent recorded {got:?}",
        retyped.len()
    );
    ensure!(got == sent, "recorded {got:?}, sent {sent:?}");
    let restarts: usize = sb.unit_property(&unit, "NRestarts")?.parse()?;
    ensure!(restarts == ROUNDS, "{restarts} restarts for {ROUNDS} kills");
    Ok(())
}

/// Checks that the agent's journal names each killed message by its hub id
/// (the rounds' messages are the first ones), with one of `lines`.
fn killed_messages_named(sb: &Sandbox, agent: &str, lines: &[&str]) -> Result<()> {
    let journal = sb.journal(&["-u", &format!("torch-agent@{agent}.service"), "-o", "cat"])?;
    for n in 1..=ROUNDS {
        let id = format!("torch-msg-{n}");
        ensure!(
            lines
                .iter()
                .any(|l| journal.contains(&l.replace("ID", &id))),
            "no line about {id}:\n{journal}"
        );
    }
    Ok(())
}

#[test]
fn supervisor_killed_after_the_agent_took_a_message_does_not_retype_it() -> Result<()> {
    let sb = sandbox("retype-sup", "dev")?;
    kill_rounds(&sb, "dev", || {
        Ok(sb
            .unit_property("torch-agent@dev.service", "MainPID")?
            .parse()?)
    })?;
    killed_messages_named(&sb, "dev", &["message ID was submitted"])
}

#[test]
fn tmux_killed_after_the_agent_took_a_message_does_not_retype_it() -> Result<()> {
    let sb = sandbox("retype-tmux", "dev")?;
    kill_rounds(&sb, "dev", || sb.tmux_server_pid("dev"))?;
    killed_messages_named(&sb, "dev", &["message ID was submitted"])
}

#[test]
fn program_killed_after_it_took_a_message_is_not_sent_it_again() -> Result<()> {
    let sb = sandbox("retype-prog", "dev")?;
    kill_rounds(&sb, "dev", || Ok(sb.pane_pid("dev")?.parse()?))?;
    // Whether the supervisor saw the screen change before the program died
    // decides which line names it.
    killed_messages_named(
        &sb,
        "dev",
        &[
            "message ID was submitted",
            "the last message delivered to it was ID,",
        ],
    )
}
