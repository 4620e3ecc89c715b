//! The web dashboard in a real browser: Debian's headless Chromium, driven through
//! chromedriver (the W3C WebDriver protocol, over HTTP on the sandbox's loopback), opens
//! the page against a sandbox fleet, shows each agent, redraws a stopped agent as down
//! without a reload, and saves a screenshot (`target/web-dashboard.png`, the README's).

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use torch_tests::fleet::boot_hub;
use torch_tests::{wait_until, workspace_root, Sandbox};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DRIVER: &str = "http://127.0.0.1:9515";

/// One WebDriver call, made with curl inside the sandbox.
fn webdriver(sb: &Sandbox, method: &str, path: &str, body: &Value) -> Result<Value> {
    let url = format!("{DRIVER}{path}");
    let data = body.to_string();
    let mut args = vec!["curl", "-sS", "--max-time", "60", "-X", method, &url];
    if method == "POST" {
        args.extend(["-H", "Content-Type: application/json", "-d", &data]);
    }
    let answer: Value = serde_json::from_str(&sb.run(&args)?)?;
    if let Some(error) = answer["value"]["error"].as_str() {
        bail!("webdriver {path}: {error}: {}", answer["value"]["message"]);
    }
    Ok(answer["value"].clone())
}

/// The state the page shows for `agent`.
fn shown_state(sb: &Sandbox, session: &str, agent: &str) -> Result<String> {
    let script = format!(
        "const td = document.querySelector('tr[data-agent=\"{agent}\"] .state'); return td ? td.textContent : '';"
    );
    let v = webdriver(
        sb,
        "POST",
        &format!("/session/{session}/execute/sync"),
        &json!({"script": script, "args": []}),
    )?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

#[test]
fn the_web_dashboard_updates_live_in_chromium() -> Result<()> {
    if !std::path::Path::new(CHROMEDRIVER).exists() {
        if std::env::var("TORCH_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1") {
            bail!("{CHROMEDRIVER} is missing and TORCH_REQUIRE_CHROMIUM=1; apt-get install chromium chromium-driver");
        }
        eprintln!(
            "SKIPPED: {CHROMEDRIVER} is not installed (apt-get install chromium chromium-driver)"
        );
        return Ok(());
    }
    let sb = boot_hub("web-browser", "")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm", "project-manager", Some("boss"))?;
    sb.spawn_echo("dev1", "engineer", Some("pm"))?;
    sb.spawn_echo("dev2", "engineer", Some("pm"))?;
    sb.systemctl(&["enable", "--now", "torch-web.socket"])?;
    sb.run(&[
        "systemd-run",
        "--unit",
        "chromedriver",
        CHROMEDRIVER,
        "--port=9515",
    ])?;
    wait_until("chromedriver", Duration::from_secs(20), || {
        Ok(webdriver(&sb, "GET", "/status", &Value::Null).is_ok_and(|v| v["ready"] == true))
    })?;
    let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1200,520"]}}}});
    let session = webdriver(&sb, "POST", "/session", &caps)?;
    let session = session["sessionId"]
        .as_str()
        .context("no session id")?
        .to_string();
    let at = |p: &str| format!("/session/{session}{p}");
    webdriver(
        &sb,
        "POST",
        &at("/url"),
        &json!({"url": "http://127.0.0.1:9467/"}),
    )?;
    wait_until("every agent shown", Duration::from_secs(20), || {
        Ok(["boss", "pm", "dev1", "dev2"]
            .iter()
            .all(|a| shown_state(&sb, &session, a).is_ok_and(|s| s == "idle")))
    })?;
    sb.torch(&["stop", "dev2"])?;
    wait_until("dev2 down on the page", Duration::from_secs(20), || {
        Ok(shown_state(&sb, &session, "dev2")? == "down")
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let png = webdriver(&sb, "GET", &at("/screenshot"), &Value::Null)?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().context("no screenshot")?)
        .context("the screenshot is not base64")?;
    ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(
        workspace_root().join("target").join("web-dashboard.png"),
        png,
    )?;
    let _ = webdriver(&sb, "DELETE", &at(""), &Value::Null);
    Ok(())
}
