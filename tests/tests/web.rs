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

/// `POST /api/act` with `body` and `token`: the HTTP status and the answer.
fn act(sb: &Sandbox, token: &str, body: &Value) -> Result<(u16, String)> {
    let auth = format!("Authorization: Bearer {token}");
    let data = body.to_string();
    let url = format!("{BASE}/api/act");
    let out = sb.run(&[
        "curl",
        "-sS",
        "--max-time",
        "15",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        &data,
        &url,
    ])?;
    let (text, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    Ok((code.parse()?, text.to_string()))
}

/// Actions need the token of /etc/torch/web-token, which only the hub reads.
fn acting_takes_the_token(sb: &Sandbox) -> Result<()> {
    let send = serde_json::json!({"action": "send", "agent": "boss", "text": "from the web"});
    let (code, said) = act(sb, "", &send)?;
    ensure!(code == 403 && said.contains("read-only"), "{code} {said}");
    let token = "a-token-of-the-admins-0123456789";
    sb.write_file("/etc/torch/web-token", token.as_bytes(), 0o640)?;
    sb.run(&["chgrp", "torch", "/etc/torch/web-token"])?;
    let (code, said) = act(sb, "not-the-token-0123456789", &send)?;
    ensure!(code == 403 && said.contains("wrong token"), "{code} {said}");
    let (code, said) = act(sb, token, &send)?;
    ensure!(
        code == 200 && said.contains("to boss stored"),
        "{code} {said}"
    );
    wait_until("boss got it", Duration::from_secs(20), || {
        Ok(sb
            .records("boss")?
            .iter()
            .any(|r| r.contains("from the web")))
    })?;
    let bad = serde_json::json!({"action": "retire", "agent": "boss"});
    let (code, said) = act(sb, token, &bad)?;
    ensure!(code == 400, "{code} {said}");
    Ok(())
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
    acting_takes_the_token(&sb)?;
    // Read-only: its user may not send, nor read an agent's screen.
    for args in ["send boss hi", "capture boss"] {
        let out = sb.exec(&["sh", "-c", &format!("runuser -u torch-web -- torch {args}")])?;
        ensure!(!out.status.success(), "the web user could {args}");
    }
    Ok(())
}
