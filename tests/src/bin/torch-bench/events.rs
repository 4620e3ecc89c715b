//! How soon `torch events` prints what happens: a message stored and
//! delivered (timed from the store's own times), and an alert an agent
//! reports from its unit (timed from just before `busctl` starts, so the
//! process's start is counted).

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use torch_tests::Sandbox;

use crate::report::{ms, percentile, Report};

const LOG: &str = "/run/bench-events.log";
const TIMES: &str = "/run/bench-report-times";

/// Sends `n` messages and `n` reported alerts through the hub with `torch
/// events --json` watching, and reports the lags.
pub fn run(sb: &Sandbox, r: &mut Report, n: usize) -> Result<()> {
    sb.spawn_echo("ev", "orchestrator", None)?;
    sb.watch_events("bench-events", LOG, &["--json"])?;
    for i in 0..n {
        sb.torch(&["send", "--wait", "ev", &format!("lag {i}")])?;
    }
    report_alerts(sb, n)?;
    std::thread::sleep(Duration::from_secs(1));
    let events: Vec<Value> = String::from_utf8_lossy(&sb.read_file(LOG)?)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let messages: Vec<Value> =
        serde_json::from_str(&sb.torch(&["messages", "--agent", "ev", "--json"])?)?;
    let lag = |kind: &str, time: &str| -> Vec<Duration> {
        let mut out: Vec<Duration> = messages
            .iter()
            .filter_map(|m| {
                let at = m[time].as_i64()?;
                let e = events
                    .iter()
                    .find(|e| e["kind"] == kind && e["id"] == m["id"])?;
                Some(Duration::from_millis(
                    (e["at_ms"].as_i64()? - at).max(0) as u64
                ))
            })
            .collect();
        out.sort();
        out
    };
    let rows = vec![
        row(
            "message stored (`MessageQueued`)",
            lag("message_queued", "created_ms"),
        ),
        row(
            "message delivered (`MessageDelivered`)",
            lag("message_delivered", "delivered_ms"),
        ),
        row(
            "alert reported from an agent's unit (`Alert`)",
            alert_lags(sb, &events)?,
        ),
    ];
    r.table(
        &[
            "torch events: from when it happened to the line printed",
            "samples",
            "p50 (ms)",
            "p99 (ms)",
        ],
        &rows,
    );
    sb.systemctl(&["stop", "bench-events.service"])?;
    sb.torch(&["retire", "ev"]).map(drop)
}

fn row(what: &str, lags: Vec<Duration>) -> Vec<String> {
    vec![
        what.to_string(),
        lags.len().to_string(),
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
    ]
}

/// `n` alerts reported from the agent's unit, a tenth of a second apart
/// (within the hub's rate), each after writing the time it began.
fn report_alerts(sb: &Sandbox, n: usize) -> Result<()> {
    let cg = sb.unit_property("torch-agent@ev.service", "ControlGroup")?;
    let call = format!(
        "busctl call {} {} {} Report sss alert '' \"lag $i\"",
        torch_api::BUS_NAME,
        torch_api::OBJECT_PATH,
        torch_api::INTERFACE
    );
    let script = format!(
        "echo $$ > '/sys/fs/cgroup{cg}/cgroup.procs' && for i in $(seq 0 {}); do date +%s%3N >> {TIMES}; {call} || exit 1; sleep 0.1; done",
        n - 1
    );
    sb.run(&["sh", "-c", &script]).map(drop)
}

fn alert_lags(sb: &Sandbox, events: &[Value]) -> Result<Vec<Duration>> {
    let times = String::from_utf8_lossy(&sb.read_file(TIMES)?).into_owned();
    let mut out = Vec::new();
    for (i, t) in times.lines().enumerate() {
        let began: i64 = t.trim().parse().context("a report's time")?;
        let text = format!("lag {i}");
        if let Some(at) = events
            .iter()
            .find(|e| e["kind"] == "alert" && e["detail"] == text.as_str())
            .and_then(|e| e["at_ms"].as_i64())
        {
            out.push(Duration::from_millis((at - began).max(0) as u64));
        }
    }
    out.sort();
    Ok(out)
}
