//! Message history: read in pages, pruned past its retention.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use torch_tests::Sandbox;

fn ids(json: &str) -> Result<Vec<i64>> {
    let v: Vec<Value> = serde_json::from_str(json)?;
    Ok(v.iter().filter_map(|m| m["id"].as_i64()).collect())
}

#[test]
fn history_comes_in_pages_and_is_pruned() -> Result<()> {
    let sb = Sandbox::boot("history")?;
    sb.install_torch()?;
    sb.write_file(
        "/etc/torch/torch.toml",
        b"[retention]\nmessages = \"2s\"\n",
        0o644,
    )?;
    sb.start_hub()?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    for i in 0..5 {
        sb.torch(&["send", "--wait", "boss", &format!("m{i}")])?;
    }
    // For an agent that is down: queued, and kept however old.
    sb.define_echo_agent("away")?;
    sb.torch(&["send", "away", "kept"])?;

    let newest = ids(&sb.torch(&["inbox", "boss", "--limit", "2", "--json"])?)?;
    ensure!(newest.len() == 2 && newest[0] < newest[1], "{newest:?}");
    let before = newest[0].to_string();
    let older = ids(&sb.torch(&[
        "inbox", "boss", "--limit", "2", "--before", &before, "--json",
    ])?)?;
    ensure!(
        older.len() == 2 && older[1] < newest[0],
        "page before {before}: {older:?}"
    );
    ensure!(sb.all_messages("boss")?.len() == 5);
    let (ok, out) = sb.torch_status(&["messages", "--limit", "100000"])?;
    ensure!(!ok && out.contains("1..=1000"), "{out}");

    // Past the retention, the next pruning (at the hub's start, then
    // hourly) deletes what was delivered, never what waits.
    std::thread::sleep(Duration::from_secs(3));
    sb.systemctl(&["restart", "torch.service"])?;
    torch_tests::wait_until("history pruned", Duration::from_secs(10), || {
        Ok(sb.all_messages("boss")?.is_empty())
    })?;
    let left = sb.all_messages("away")?;
    ensure!(
        left.len() == 1 && left[0]["body"] == "kept" && left[0]["state"] == "queued",
        "{left:?}"
    );
    let j = sb.journal(&["-u", "torch.service", "-o", "cat"])?;
    ensure!(
        j.contains("retention: deleted 5 delivered or failed messages older than 2s"),
        "{j}"
    );
    Ok(())
}
