//! Pools on the real sandbox: `[pools.NAME]` in torch.toml grows while
//! tasks its members can do wait, and shrinks back when they sit idle.

use std::time::Duration;

use anyhow::{ensure, Result};
use torch_api::{Directory, Task};
use torch_tests::fleet::boot_hub;
use torch_tests::{wait_until, Sandbox};

/// A pool of shell workers that take a second over each task, then report
/// it done from their pane.
const CONFIG: &str = r#"
[pools.shop-dev]
role = "engineer"
parent = "pm"
workdir = "/srv/work"
skills = ["rust"]
profile = "shell"
min = 1
max = 4
scale_up_after = "1s"
idle_retire_after = "3s"
command = ["bash", "--norc", "-c", '''
while printf 'worker> ' && IFS= read -r line; do
  case "$line" in
    'Task #'*' for you'*) id=${line#Task #}; id=${id%% *}; sleep 1
      torch task done "$id" --summary "done by $TORCH_AGENT" >/dev/null ;;
  esac
done''']
"#;

fn members(sb: &Sandbox) -> Result<Vec<String>> {
    let dir: Directory = serde_json::from_str(&sb.torch(&["agents", "--json"])?)?;
    Ok(dir
        .agents
        .into_iter()
        .map(|a| a.name)
        .filter(|n| n.starts_with("shop-dev-"))
        .collect())
}

#[test]
fn a_pool_grows_with_waiting_tasks_and_shrinks_when_idle() -> Result<()> {
    let sb = boot_hub("pools", CONFIG)?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm", "project-manager", Some("boss"))?;
    // Its minimum, once its parent exists.
    wait_until("the pool's first member", Duration::from_secs(20), || {
        Ok(members(&sb)? == ["shop-dev-1"])
    })?;

    // `torch events` follows the pool's scaling as it goes.
    sb.watch_events("pool-events", "/run/pool-events.log", &["--json"])?;
    let mut ids = Vec::new();
    for i in 0..40 {
        let out = sb.torch(&[
            "task",
            "add",
            "--title",
            &format!("job {i}"),
            "--skill",
            "rust",
        ])?;
        ids.push(out.trim().trim_start_matches("task #").parse::<i64>()?);
    }
    let mut most = 0;
    wait_until("all 40 tasks done", Duration::from_secs(120), || {
        most = most.max(members(&sb)?.len());
        let done: Vec<Task> =
            serde_json::from_str(&sb.torch(&["task", "list", "--state", "done", "--json"])?)?;
        Ok(done.len() == 40)
    })?;
    ensure!(
        most == 4,
        "the pool grew to {most} members, not to its maximum of 4"
    );
    let log = String::from_utf8_lossy(&sb.read_file("/run/pool-events.log")?).into_owned();
    let growth = log.lines().any(|l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|e| {
            e["kind"] == "pool_changed"
                && e["agents"][0] == "shop-dev"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("-> 4 members"))
        })
    });
    ensure!(
        growth,
        "no pool_changed event of its growth to 4 in:\n{log}"
    );
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        let t: Task =
            serde_json::from_str(&sb.torch(&["task", "show", &id.to_string(), "--json"])?)?;
        let dones = t.history.iter().filter(|c| c.state == "done").count();
        ensure!(dones == 1, "#{id} was done {dones} times");
        *by.entry(t.owner.unwrap_or_default()).or_default() += 1;
    }
    ensure!(
        by.len() > 1 && by.keys().all(|o| o.starts_with("shop-dev-")),
        "done by {by:?}"
    );

    // Idle again: back to its minimum (whichever member sat idle least).
    let r = wait_until("the pool back to 1", Duration::from_secs(60), || {
        Ok(members(&sb)?.len() == 1)
    });
    r.map_err(|e| {
        let status = sb.torch(&["status"]).unwrap_or_default();
        let hub = sb
            .journal(&[
                "-u",
                "torch.service",
                "-o",
                "short-precise",
                "--grep",
                "pool|retire",
            ])
            .unwrap_or_default();
        e.context(format!("{status}\nthe hub said:\n{hub}"))
    })?;
    // `torch status` shows the pool: name, size, target, bounds, why; the
    // tasks done, it keeps its minimum for want of work.
    wait_until(
        "torch status to show the pool at rest",
        Duration::from_secs(10),
        || {
            let status = sb.torch(&["status"])?;
            let line = status
                .lines()
                .find(|l| l.starts_with("shop-dev "))
                .unwrap_or_default()
                .to_string();
            let cols: Vec<&str> = line.split_whitespace().collect();
            Ok(cols.get(1..4) == Some(&["1", "1", "1-4"][..])
                && line.contains("enough for the work"))
        },
    )?;
    Ok(())
}
