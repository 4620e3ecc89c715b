//! The other pinned agent CLIs as agents (Gemini CLI, Codex CLI, opencode,
//! Aider), as the Claude Code part measures Claude: each CLI in Torch's units, talking to
//! the stand-in of its model API on the sandbox's loopback; messages by
//! `torch send`, each after the last turn ended, timed to the turn the
//! stand-in recorded, and how soon `torch status` shows what the CLI's hooks
//! (opencode: its plugin; Aider: its input history and notifications) said.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use torch_tests::llm::{
    spawn_cli_as, PinnedCli, Standin, AIDER, CODEX, GEMINI, OPENCODE, STANDIN_UNIT,
};
use torch_tests::{wait_until, Sandbox};

use crate::checks::inside;
use crate::claude::{gaps, pct};
use crate::report::Report;

/// The stand-in waits this long before it answers a timed message, as in the
/// Claude Code part.
const REPLY_DELAY_MS: u64 = 300;

/// Runs the part: `turns` messages to one agent of each pinned CLI.
pub fn run(sb: &Sandbox, r: &mut Report, turns: usize) -> Result<()> {
    if turns == 0 {
        return Ok(());
    }
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for cli in [&GEMINI, &CODEX, &OPENCODE, &AIDER] {
        let version = cli.version()?;
        if !cli.bin()?.exists() {
            notes.push(format!(
                "{} {version}: **not measured**: not installed (scripts/setup-clis.sh installs it).",
                cli.name
            ));
            continue;
        }
        let out = one(sb, cli, turns)?;
        rows.extend(table_rows(&format!("{} {version}", cli.name), turns, &out));
        notes.push(format!(
            "{} {version}: {} of {turns} messages reached the stand-in, {} requests glued.",
            cli.name, out["arrived"], out["glued"]
        ));
    }
    r.table(
        &[
            "agent CLI, stand-in API: from ... to ...",
            "count",
            "p50 ms",
            "p99 ms",
        ],
        &rows,
    );
    r.line("");
    r.line(format!(
        "{} Status polled every 20 ms (`torch status --json`, a process each time); the stand-in answered each timed message after {REPLY_DELAY_MS} ms.",
        notes.join(" ")
    ));
    Ok(())
}

/// `turns` messages to one agent of `cli`, on a stand-in of its own (a
/// fresh record, so the timed turns' tokens are this CLI's alone); the inner
/// part's output.
fn one(sb: &Sandbox, cli: &PinnedCli, turns: usize) -> Result<Value> {
    let _ = sb.systemctl(&["stop", STANDIN_UNIT]);
    let record_dir = sb.share().join("llm");
    let _ = std::fs::remove_file(record_dir.join("record.jsonl"));
    let llm = Standin::start(sb)?;
    llm.set_script(&json!([
        {"when": "BENCH-", "reply": "done", "delay_ms": REPLY_DELAY_MS}
    ]))?;
    let agents = cli.prepare_agents(sb, &llm, &json!({}))?;
    let name = format!("bench-{}", agents.profile);
    spawn_cli_as(sb, &agents, &name, &["--role", "orchestrator"])?;
    wait_until(
        &format!("{name} idle"),
        std::time::Duration::from_secs(180),
        || {
            let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
            Ok(status["agents"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["name"] == name.as_str()))
                .is_some_and(|a| a["agent_state"] == "idle"))
        },
    )?;
    let record = llm.record_path();
    let record = record.to_str().context("the record path is not UTF-8")?;
    let n = turns.to_string();
    let out = inside(
        sb,
        &["inner-claude-turns", record, &name, "torch", &n, "60000"],
    )?;
    sb.torch(&["retire", &name])?;
    sb.remove_agent_dropin()?;
    sb.systemctl(&["stop", STANDIN_UNIT])?;
    Ok(out)
}

fn table_rows(cli: &str, n: usize, out: &Value) -> Vec<Vec<String>> {
    let row = |what: &str, count: String, v: &[f64]| {
        vec![format!("{cli}: {what}"), count, pct(v, 0.5), pct(v, 0.99)]
    };
    let alone = out["alone"].as_u64().unwrap_or_default();
    let idle = gaps(out, "ended", "idle");
    let working = gaps(out, "request", "working");
    vec![
        row(
            "`torch send` to the turn at the stand-in",
            format!("{alone} of {n} once, alone"),
            &gaps(out, "sent", "request"),
        ),
        row(
            "reply's end to `torch status` idle",
            format!("{} turns", idle.len()),
            &idle,
        ),
        row(
            "turn at the stand-in to `torch status` working (below 0: shown before)",
            format!("{} turns", working.len()),
            &working,
        ),
    ]
}
