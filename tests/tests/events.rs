//! `torch events` on the real sandbox: each kind of event shows as it happens, from the
//! hub's signals, and `--agent` keeps those naming one agent.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use torch_api::{Message, Task};
use torch_tests::fleet::boot_hub;
use torch_tests::{wait_until, Sandbox};

fn events(sb: &Sandbox, log: &str) -> Result<Vec<Value>> {
    let raw = String::from_utf8_lossy(&sb.read_file(log)?).into_owned();
    Ok(raw
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The first event of `kind` with `id` (or naming `agent`, for fleet changes) and
/// `detail`, waited for.
fn seen(sb: &Sandbox, log: &str, kind: &str, key: &Value, detail: &str) -> Result<Value> {
    let mut found = None;
    wait_until(
        &format!("{kind} {key} {detail}"),
        Duration::from_secs(20),
        || {
            found = events(sb, log)?.into_iter().find(|e| {
                e["kind"] == kind
                    && (e["id"] == *key || e["agents"][0] == *key)
                    && e["detail"].as_str().unwrap_or("") == detail
            });
            Ok(found.is_some())
        },
    )?;
    Ok(found.unwrap_or_default())
}

/// Runs `busctl call` of the hub's `Report(args)` from inside agent `agent`'s unit, as a
/// process in its pane would, `times` times: one after another, or all at once with
/// `at_once`.
fn report_from(sb: &Sandbox, agent: &str, args: &str, times: u32, at_once: bool) -> Result<()> {
    let cg = sb.unit_property(&format!("torch-agent@{agent}.service"), "ControlGroup")?;
    let call = format!(
        "busctl call {} {} {} Report sss {args}",
        torch_api::BUS_NAME,
        torch_api::OBJECT_PATH,
        torch_api::INTERFACE
    );
    let each = if at_once {
        format!("{call} >/dev/null 2>&1 &")
    } else {
        format!("{call} || exit 1;")
    };
    let script = format!(
        "echo $$ > '/sys/fs/cgroup{cg}/cgroup.procs' && for i in $(seq {times}); do {each} done; wait"
    );
    sb.run(&["sh", "-c", &script]).map(drop)
}

/// A check-in fired; an alert and a state an agent reports (its supervisor does, and
/// so could anything in its pane) go out under its own name, at most 20 a second.
fn checkins_and_reports(sb: &Sandbox, log: &str) -> Result<()> {
    let out = sb.torch(&["schedule", "e2", "--in", "1s", "--note", "tick"])?;
    let id: i64 = out
        .split('#')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no check-in id in {out:?}"))?;
    let mut fired = None;
    wait_until("check-in fired", Duration::from_secs(20), || {
        fired = events(sb, log)?
            .into_iter()
            .find(|e| e["kind"] == "checkin_fired" && e["id"] == id);
        Ok(fired.is_some())
    })?;
    let fired = fired.unwrap_or_default();
    ensure!(
        fired["agents"][0] == "e2"
            && fired["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("message #")),
        "{fired}"
    );
    let before = now_ms();
    report_from(sb, "e2", "alert '' 'disk full'", 1, false)?;
    let alert = seen(sb, log, "alert", &"e2".into(), "disk full")?;
    eprintln!(
        "alert event {} ms after the report began",
        alert["at_ms"].as_i64().unwrap_or(0) - before
    );
    // A flood: 30 reports at once, of which the hub passes on 20 in each window of a
    // second. A window starts at least a second after the one before, so calls made within
    // S seconds fill at most S + 1 windows (one, on a machine that makes the 30 calls
    // within a second; each call waits for its answer).
    let flood = Instant::now();
    report_from(sb, "e2", "alert '' flood", 30, true)?;
    let windows = flood.elapsed().as_secs() as usize + 1;
    std::thread::sleep(Duration::from_millis(500));
    let floods = events(sb, log)?
        .iter()
        .filter(|e| e["kind"] == "alert" && e["detail"] == "flood")
        .count();
    ensure!(
        floods >= 1 && floods <= 20 * windows,
        "{floods} flood alerts passed on, of 30 made in {windows} window(s) of a second"
    );
    Ok(())
}

/// `--since` reads back what happened before it started, at the time it happened: the
/// message `m` queued and delivered, task `task` assigned; then goes on live.
fn replayed_since(sb: &Sandbox, m: &Message, task: i64) -> Result<()> {
    let log = "/run/events-since.log";
    sb.watch_events("events-since", log, &["--json", "--since", "10m"])?;
    let seen = events(sb, log)?;
    let at = |kind: &str, id: i64| {
        seen.iter()
            .find(|e| e["kind"] == kind && e["id"] == id)
            .and_then(|e| e["at_ms"].as_i64())
    };
    ensure!(
        at("message_queued", m.id) == Some(m.created_ms)
            && at("message_delivered", m.id).is_some()
            && at("task_changed", task).is_some(),
        "{seen:#?}"
    );
    sb.torch(&["send", "--wait", "e2", "after the replay"])?;
    wait_until(
        "a live event after the replay",
        Duration::from_secs(20),
        || Ok(events(sb, log)?.len() > seen.len()),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[test]
fn torch_events_shows_what_happens_as_it_happens() -> Result<()> {
    let sb = boot_hub("events", "")?;
    let (all, mine) = ("/run/events-all.log", "/run/events-e2.log");
    sb.watch_events("events-all", all, &["--json"])?;
    sb.watch_events("events-e2", mine, &["--json", "--agent", "e2"])?;

    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("e1", "engineer", Some("boss"))?;
    sb.spawn_echo("e2", "engineer", Some("boss"))?;
    seen(&sb, all, "fleet_changed", &"e1".into(), "spawned")?;

    sb.torch(&["send", "--wait", "e1", "hello"])?;
    let messages: Vec<Message> =
        serde_json::from_str(&sb.torch(&["messages", "--agent", "e1", "--json"])?)?;
    let m = messages
        .into_iter()
        .find(|m| m.body == "hello")
        .ok_or_else(|| anyhow::anyhow!("no message hello"))?;
    let queued = seen(&sb, all, "message_queued", &m.id.into(), "")?;
    ensure!(
        queued["agents"] == serde_json::json!(["operator", "e1"]),
        "{queued}"
    );
    let delivered = seen(&sb, all, "message_delivered", &m.id.into(), "")?;
    let lag_queued = queued["at_ms"].as_i64().unwrap_or(0) - m.created_ms;
    let lag_delivered =
        delivered["at_ms"].as_i64().unwrap_or(0) - m.delivered_ms.unwrap_or(i64::MAX);
    eprintln!("event after the store: queued {lag_queued} ms, delivered {lag_delivered} ms");
    ensure!(
        lag_queued >= 0 && lag_delivered >= 0,
        "{queued} {delivered} {m:?}"
    );

    let out = sb.torch(&["task", "add", "--title", "t", "--assign", "e1"])?;
    let id: i64 = out.trim().trim_start_matches("task #").parse()?;
    let t: Task = serde_json::from_str(&sb.torch(&["task", "show", &id.to_string(), "--json"])?)?;
    let assigned = seen(&sb, all, "task_changed", &id.into(), "assigned")?;
    let at = t
        .history
        .iter()
        .find(|c| c.state == "assigned")
        .map_or(0, |c| c.at_ms);
    eprintln!(
        "task event after the store: {} ms",
        assigned["at_ms"].as_i64().unwrap_or(0) - at
    );

    // Each supervisor tells its agent's state, which its spawn changed.
    let state = seen(&sb, all, "agent_changed", &"e2".into(), "idle")?;
    ensure!(!state["why"].as_str().unwrap_or("").is_empty(), "{state}");
    checkins_and_reports(&sb, all)?;

    // A message to a stopped agent waits; retiring the agent gives it up.
    sb.torch(&["stop", "e1"])?;
    seen(&sb, all, "agent_changed", &"e1".into(), "down")?;
    sb.torch(&["send", "e1", "never read"])?;
    sb.torch(&["retire", "e1"])?;
    seen(&sb, all, "fleet_changed", &"e1".into(), "retired")?;
    let failed = events(&sb, all)?
        .into_iter()
        .find(|e| e["kind"] == "message_failed" && e["agents"][0] == "e1");
    ensure!(
        failed
            .as_ref()
            .is_some_and(|e| e["detail"].as_str().is_some_and(|d| !d.is_empty())),
        "no message_failed for e1 with its reason: {failed:?}"
    );

    // --agent: only what names e2. Signals reach a watcher in the order the hub sent
    // them, so once the last message to e2 shows, the one to boss between would have too.
    for (to, text) in [
        ("e2", "for e2"),
        ("boss", "not for e2"),
        ("e2", "last for e2"),
    ] {
        sb.torch(&["send", "--wait", to, text])?;
    }
    let to_e2: Vec<Message> =
        serde_json::from_str(&sb.torch(&["messages", "--agent", "e2", "--json"])?)?;
    let last = to_e2
        .iter()
        .find(|m| m.body == "last for e2")
        .map(|m| m.id)
        .unwrap_or_default();
    let r = wait_until(
        "e2's last delivery in its own watch",
        Duration::from_secs(20),
        || {
            Ok(events(&sb, mine)?
                .iter()
                .any(|e| e["kind"] == "message_delivered" && e["id"] == last))
        },
    );
    r.map_err(|e| e.context(format!("{:#?}", events(&sb, mine).unwrap_or_default())))?;
    // Every message to e2 was seen queued and delivered there, whoever stored it (the
    // task e1 held went back to the ledger when e1 retired, and to e2); nothing else.
    replayed_since(&sb, &m, id)?;
    let mine_seen = events(&sb, mine)?;
    let names_e2 = |e: &Value| {
        e["agents"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "e2"))
    };
    ensure!(mine_seen.iter().all(names_e2), "{mine_seen:#?}");
    for m in to_e2.iter().filter(|m| m.recipient == "e2") {
        for kind in ["message_queued", "message_delivered"] {
            ensure!(
                mine_seen
                    .iter()
                    .any(|e| e["kind"] == kind && e["id"] == m.id),
                "no {kind} for #{} ({:?}): {mine_seen:#?}",
                m.id,
                m.body
            );
        }
    }
    Ok(())
}
