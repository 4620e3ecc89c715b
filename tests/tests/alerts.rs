//! Alerts reach a webhook: `torch-alerts.service` in the real sandbox hears the hub's
//! alert of a stalled task and posts it to a receiver on loopback (the stand-in, which
//! records what it gets).

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use torch_tests::llm::Standin;
use torch_tests::{wait_until, Sandbox};

#[test]
fn a_stalled_agent_alerts_the_webhook() -> Result<()> {
    let sb = Sandbox::boot("alerts")?;
    sb.install_torch()?;
    let receiver = Standin::start(&sb)?;
    // A task idle for 2 s stalls at once (no nudges first).
    let config = format!(
        "[ledger]\nstall_after = \"2s\"\nnudges = 0\n[alerts]\nwebhook = \"{}/webhook\"\ntimeout = \"5s\"\n",
        receiver.base_url()
    );
    sb.write_file("/etc/torch/torch.toml", config.as_bytes(), 0o644)?;
    sb.start_hub()?;
    sb.systemctl(&["start", "torch-alerts.service"])?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("e1", "engineer", Some("boss"))?;
    sb.torch(&["task", "add", "--title", "never done", "--assign", "e1"])?;
    let mut posted: Vec<Value> = Vec::new();
    let r = wait_until("the webhook got the alert", Duration::from_secs(60), || {
        posted = receiver
            .requests()?
            .into_iter()
            .filter(|r| r["path"] == "/webhook")
            .map(|r| r["body"].clone())
            .collect();
        Ok(!posted.is_empty())
    });
    r.map_err(|e| {
        let journal = sb
            .journal(&["-u", "torch-alerts.service", "-o", "cat"])
            .unwrap_or_default();
        e.context(format!("torch-alerts said: {journal}"))
    })?;
    let alert = &posted[0];
    ensure!(
        alert["agent"] == "e1"
            && alert["alert"]
                .as_str()
                .is_some_and(|t| t.contains("stalled"))
            && alert["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Torch alert on ")),
        "{alert:#}"
    );
    // An agent whose unit fails (here a program that does not exist: a broken
    // definition stops it at once, as a crash loop does after five starts).
    sb.define_agent(
        "broken",
        "command = [\"/nonexistent/program\"]\nworkdir = \"/srv\"\n",
    )?;
    let _ = sb.systemctl(&["start", "torch-agent@broken.service"]);
    let r = wait_until(
        "the webhook got the failure",
        Duration::from_secs(60),
        || {
            Ok(receiver.requests()?.iter().any(|r| {
                r["path"] == "/webhook"
                    && r["body"]["agent"] == "broken"
                    && r["body"]["alert"]
                        .as_str()
                        .is_some_and(|t| t.contains("failed"))
            }))
        },
    );
    r.map_err(|e| e.context(format!("{:#?}", receiver.requests().unwrap_or_default())))?;
    Ok(())
}

#[test]
fn without_a_webhook_torch_alerts_says_what_to_set() -> Result<()> {
    let sb = Sandbox::boot("alerts-none")?;
    sb.install_torch()?;
    sb.start_hub()?;
    let _ = sb.systemctl(&["start", "torch-alerts.service"]);
    let mut said = String::new();
    wait_until("torch-alerts to stop", Duration::from_secs(20), || {
        said = sb.journal(&["-u", "torch-alerts.service", "-o", "cat"])?;
        Ok(said.contains("no webhook is set"))
    })?;
    let result = sb.unit_property("torch-alerts.service", "ExecMainStatus")?;
    ensure!(result.trim() == "78", "exit status {result}: {said}");
    Ok(())
}
