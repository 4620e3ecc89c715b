//! Claude Code as an agent: the real, pinned `claude` CLI in Torch's units,
//! talking to the stand-in of the model API (`torch-test-llm`) on the
//! sandbox's loopback (the sandbox has no other network). Messages by
//! `torch send` and by the naive tmux sender, briefs at spawn, and how soon
//! `torch status` shows what Claude's hooks said; each timed to what the
//! stand-in received or sent.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use torch_tests::llm::{claude_bin, claude_version, Standin, FAKE_API_KEY, STANDIN_UNIT};
use torch_tests::{wait_until, Sandbox};

use crate::checks::{inside, parallel};
use crate::report::Report;

/// The agents' API key, as an admin keeps it: a file only root reads.
const KEY_FILE: &str = "/root/claude.env";

/// The stand-in waits this long before it answers a timed message, so that
/// the turn lasts long enough for 20 ms polls of `torch status` to see the
/// agent working, and its end is apart from its start.
const REPLY_DELAY_MS: u64 = 300;

/// A naive message not at the stand-in after this long is taken as lost
/// (Claude Code took its Enter for part of a paste); it may still arrive
/// later, glued to the next.
const NAIVE_ARRIVE_MS: u64 = 3000;

/// Runs the Claude part: `turns` messages each way, `briefs` spawns.
pub fn run(sb: &Sandbox, r: &mut Report, turns: usize, briefs: usize) -> Result<()> {
    let claude = claude_bin()?;
    let version = claude_version()?;
    if !claude.exists() {
        r.line("");
        r.line(format!(
            "Claude Code as an agent: **not measured**: {} is not installed (scripts/setup-clis.sh claude-code installs it; scripts/bench.sh runs that first).",
            claude.display()
        ));
        return Ok(());
    }
    if turns + briefs == 0 {
        return Ok(());
    }
    let llm = setup(sb)?;
    let record = llm.record_path();
    let record = record.to_str().context("the record path is not UTF-8")?;
    let (torch, naive) = messages(sb, &claude, record, turns)?;
    let claude_arg = claude.to_str().context("claude's path is not UTF-8")?;
    let n = briefs.to_string();
    let brief_args = ["inner-claude-briefs", record, claude_arg, KEY_FILE, &n];
    let b = inside(sb, &brief_args)?;
    let names: Vec<String> = (1..=briefs).map(|i| format!("brief{i}")).collect();
    retire(sb, &names)?;
    // The parts after this one measure echo agents alone.
    sb.remove_agent_dropin()?;
    sb.systemctl(&["stop", STANDIN_UNIT])?;
    let out = Outputs {
        torch,
        naive,
        briefs: b,
    };
    report(r, &version, turns, briefs, &out);
    Ok(())
}

/// `turns` messages by `torch send` to one claude agent, and as many by the
/// naive sender to another; the inner parts' outputs.
fn messages(sb: &Sandbox, claude: &Path, record: &str, turns: usize) -> Result<(Value, Value)> {
    for name in ["cc", "ccnaive"] {
        spawn(sb, claude, name)?;
    }
    for name in ["cc", "ccnaive"] {
        wait_idle(sb, name)?;
    }
    let n = turns.to_string();
    let torch = inside(
        sb,
        &["inner-claude-turns", record, "cc", "torch", &n, "60000"],
    )?;
    let wait = NAIVE_ARRIVE_MS.to_string();
    let naive_args = ["inner-claude-turns", record, "ccnaive", "naive", &n, &wait];
    let naive = inside(sb, &naive_args)?;
    retire(sb, &["cc".into(), "ccnaive".into()])?;
    Ok((torch, naive))
}

/// The stand-in, every agent unit pointed at it (a drop-in, as an admin
/// would), and the key file.
fn setup(sb: &Sandbox) -> Result<Standin> {
    let llm = Standin::start(sb)?;
    sb.agent_dropin(&format!(
        "[Service]\nEnvironment=ANTHROPIC_BASE_URL={} DISABLE_TELEMETRY=1 \
         DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1\n",
        llm.base_url()
    ))?;
    let key = format!("ANTHROPIC_API_KEY={FAKE_API_KEY}\n");
    sb.write_file(KEY_FILE, key.as_bytes(), 0o600)?;
    llm.set_script(&json!([
        {"when": "BENCH-", "reply": "done", "delay_ms": REPLY_DELAY_MS}
    ]))?;
    Ok(llm)
}

/// Spawns claude orchestrator `name` through the hub, in a project
/// directory of its own.
fn spawn(sb: &Sandbox, claude: &Path, name: &str) -> Result<()> {
    let dir = format!("/srv/{name}");
    // Shared through the agents' group, as docs/security.md says.
    sb.run(&["install", "-d", "-g", "torch-agent", "-m", "2770", &dir])?;
    let claude = claude.to_string_lossy();
    sb.torch(&[
        "spawn",
        name,
        "--role",
        "orchestrator",
        "--workdir",
        &dir,
        "--profile",
        "claude",
        "--env-file",
        KEY_FILE,
        "--",
        &claude,
    ])
    .map(drop)
}

fn wait_idle(sb: &Sandbox, name: &str) -> Result<()> {
    wait_until(&format!("{name} idle"), Duration::from_secs(120), || {
        let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
        Ok(status["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["name"] == name))
            .is_some_and(|a| a["agent_state"] == "idle"))
    })
}

/// Stops and removes the agents (a few at a time), so that no claude is
/// left to take memory and CPU from the parts that follow.
fn retire(sb: &Sandbox, names: &[String]) -> Result<()> {
    parallel(names.len(), 4, 10, "claude agents retired", |i| {
        sb.torch(&["retire", &names[i]]).map(drop)
    })
    .map(drop)
}

/// Sorted milliseconds of `later - earlier` over the turns that have both.
pub(crate) fn gaps(turns: &Value, earlier: &str, later: &str) -> Vec<f64> {
    let mut v: Vec<f64> = turns["turns"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| Some(t[later].as_f64()? - t[earlier].as_f64()?))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(f64::total_cmp);
    v
}

/// The `p` quantile (0..=1) of sorted values.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i.min(sorted.len().saturating_sub(1))).copied()
}

/// The `p` quantile as "12.3"; "-" for none.
pub(crate) fn pct(sorted: &[f64], p: f64) -> String {
    quantile(sorted, p).map_or("-".into(), |v| format!("{v:.1}"))
}

fn row(label: String, count: String, v: &[f64]) -> Vec<String> {
    vec![label, count, pct(v, 0.5), pct(v, 0.99)]
}

/// The part's outputs: `torch send` turns, naive turns, briefs.
struct Outputs {
    torch: Value,
    naive: Value,
    briefs: Value,
}

fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_default()
}

/// Sorted milliseconds in the list `v[k]`.
fn sorted(v: &Value, k: &str) -> Vec<f64> {
    let mut out: Vec<f64> = v[k]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    out.sort_by(f64::total_cmp);
    out
}

fn report(r: &mut Report, version: &str, n: usize, briefs: usize, o: &Outputs) {
    let (idle, working) = (
        gaps(&o.torch, "ended", "idle"),
        gaps(&o.torch, "request", "working"),
    );
    let rows = vec![
        row(
            "`torch send` (the CLI, through the hub) to the request at the stand-in".into(),
            format!("{} of {n}", num(&o.torch, "alone")),
            &gaps(&o.torch, "sent", "request"),
        ),
        row(
            "naive `send-keys -l TEXT` then `send-keys Enter` to the request at the stand-in"
                .into(),
            format!("{} of {n}", num(&o.naive, "alone")),
            &gaps(&o.naive, "sent", "request"),
        ),
        row(
            format!("`torch spawn --brief`, {briefs} in a row, to the brief's request"),
            format!("{} of {briefs}", num(&o.briefs, "alone")),
            &sorted(&o.briefs, "latency_ms"),
        ),
        row(
            "reply's end at the stand-in to `torch status` showing idle (Stop hook)".into(),
            format!("{} turns", idle.len()),
            &idle,
        ),
        row(
            "request at the stand-in to `torch status` showing working (UserPromptSubmit hook; below 0: shown before the request)"
                .into(),
            format!("{} turns", working.len()),
            &working,
        ),
    ];
    r.table(
        &[
            &format!("Claude Code {version} as an agent, stand-in API"),
            "arrived once, alone",
            "p50 ms",
            "p99 ms",
        ],
        &rows,
    );
    notes(r, n, o);
}

/// What the table leaves out: lost and glued messages, how long `torch
/// spawn` itself took.
fn notes(r: &mut Report, n: usize, o: &Outputs) {
    r.line("");
    r.line(format!(
        "Naive sender: {} of {n} messages reached the stand-in at all, {} requests carried two or more of them (glued). `torch send`: {} of {n} reached it, {} requests glued.",
        num(&o.naive, "arrived"),
        num(&o.naive, "glued"),
        num(&o.torch, "arrived"),
        num(&o.torch, "glued"),
    ));
    let (torch, naive) = (
        gaps(&o.torch, "sent", "request"),
        gaps(&o.naive, "sent", "request"),
    );
    let ratio = |a: &[f64], b: &[f64]| match (quantile(a, 0.5), quantile(b, 0.5)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let cli = gaps(&o.torch, "sent", "returned");
    r.line(format!(
        "p50 ratio naive / `torch send`, to the request at the stand-in: {}. The `torch send` process itself returned (message stored by the hub) after p50 {} ms, p99 {} ms; the rest is delivery.",
        ratio(&naive, &torch),
        pct(&cli, 0.5),
        pct(&cli, 0.99),
    ));
    let polls = sorted(&o.torch, "status_ms");
    r.line(format!(
        "Each `torch status --json` in the state rows took p50 {} ms, p99 {} ms ({} calls).",
        pct(&polls, 0.5),
        pct(&polls, 0.99),
        polls.len(),
    ));
    let spawn = sorted(&o.briefs, "spawn_ms");
    r.line(format!(
        "`torch spawn` of a claude agent returned (unit started; Claude Code still starting) after p50 {} ms, p99 {} ms; the {} claude programs then started at once (load average {} when the last brief arrived). Status polled every 20 ms (`torch status --json`, a process each time); the stand-in answered each timed message after {REPLY_DELAY_MS} ms.",
        pct(&spawn, 0.5),
        pct(&spawn, 0.99),
        spawn.len(),
        o.briefs["loadavg"].as_str().unwrap_or("unknown"),
    ));
}
