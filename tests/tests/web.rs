//! The web dashboard on the real sandbox: `torch-web.socket` enabled, the page, the
//! fleet's status and the hub's signals as server-sent events over HTTP on loopback; the
//! page shows a stopped agent's new state as it is signalled. Read-only: its user may
//! read the status and nothing else.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use torch_tests::fleet::boot_hub;
use torch_tests::{wait_until, Sandbox};

const BASE: &str = "http://127.0.0.1:9467";

fn get(sb: &Sandbox, path: &str) -> Result<String> {
    sb.run(&["curl", "-sSf", "--max-time", "15", &format!("{BASE}{path}")])
}

#[test]
fn the_web_dashboard_serves_the_fleet_live_and_read_only() -> Result<()> {
    let sb = boot_hub("web", "")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("e1", "engineer", Some("boss"))?;
    ensure!(
        get(&sb, "/").is_err(),
        "served before the socket was enabled"
    );
    sb.systemctl(&["enable", "--now", "torch-web.socket"])?;
    let page = get(&sb, "/")?;
    ensure!(page.contains("<title>Torch fleet</title>"), "{page}");
    let status: Value = serde_json::from_str(&get(&sb, "/api/status")?)?;
    let names: Vec<&str> = status["agents"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(names == ["boss", "e1"], "{status:#}");
    // The hub's signals, live.
    let url = format!("{BASE}/api/events");
    sb.run(&[
        "systemd-run",
        "--unit",
        "sse",
        "-p",
        "StandardOutput=file:/run/sse.log",
        "curl",
        "-sN",
        &url,
    ])?;
    let read = || -> Result<String> {
        Ok(String::from_utf8_lossy(&sb.read_file("/run/sse.log")?).into_owned())
    };
    wait_until("the event stream to open", Duration::from_secs(10), || {
        Ok(read()?.contains("event: hello"))
    })?;
    sb.torch(&["stop", "e1"])?;
    let mut seen = String::new();
    let r = wait_until("e1 down in the stream", Duration::from_secs(20), || {
        seen = read()?;
        Ok(seen.lines().any(|l| {
            l.starts_with("data: ")
                && serde_json::from_str::<Value>(&l[6..]).is_ok_and(|e| {
                    e["kind"] == "agent_changed" && e["agent"] == "e1" && e["state"] == "down"
                })
        }))
    });
    r.map_err(|e| e.context(seen.clone()))?;
    // Read-only: its user may not send, nor read an agent's screen.
    for args in ["send boss hi", "capture boss"] {
        let out = sb.exec(&["sh", "-c", &format!("runuser -u torch-web -- torch {args}")])?;
        ensure!(!out.status.success(), "the web user could {args}");
    }
    Ok(())
}
