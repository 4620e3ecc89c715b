//! The work ledger at fleet scale: how fast the hub routes tasks to a
//! fleet of workers with thousands of tasks open, and how long a task
//! that becomes ready takes to reach an idle agent's screen. Everything
//! through the `torch` command, as a user (or an agent) would.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use torch_api::Task;
use torch_tests::{wait_until, Sandbox};

use crate::checks::parallel;
use crate::report::{ms, percentile, Report};

/// Tasks in `state`, as `torch task list` shows them to the operator.
fn tasks_in(sb: &Sandbox, state: &str) -> Result<Vec<Task>> {
    let out = sb.torch(&["task", "list", "--state", state, "--json"])?;
    serde_json::from_str(&out).context("torch task list --json")
}

/// Spawns `workers` echo workers (half rust, half frontend, capacity 1)
/// under one orchestrator, and `lat`, the only one with skill `latency`.
fn spawn_workers(sb: &Sandbox, workers: usize) -> Result<Duration> {
    sb.write_file(
        "/etc/torch/torch.toml",
        format!(
            "[quotas]\nmax_fleet = {}\nmax_children = {}\n[ledger]\nstall_after = \"1h\"\n",
            // Beside the fleet part's agents, when it ran first.
            workers * 3 + 50,
            workers + 10
        )
        .as_bytes(),
        0o644,
    )?;
    sb.systemctl(&["restart", "torch.service"])?;
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    sb.spawn_echo("lead", "orchestrator", None)?;
    let spawn = |name: &str, skill: &str| -> Result<()> {
        let record = torch_tests::fleet::record_path(name);
        let args = [
            "spawn",
            name,
            "--role",
            "engineer",
            "--parent",
            "lead",
            "--workdir",
            "/srv/work",
            "--skill",
            skill,
            "--",
            torch_tests::fleet::TEST_AGENT,
            "echo",
            "--record",
            &record,
        ];
        sb.torch(&args).map(drop)
    };
    spawn("lat", "latency")?;
    parallel(workers, 8, 50, "workers spawned", |i| {
        spawn(
            &format!("w{i}"),
            if i % 2 == 0 { "rust" } else { "frontend" },
        )
    })
}

/// Routes `open` tasks to `workers` workers and times the ready-to-screen
/// path `samples` times.
pub fn run(
    sb: &Sandbox,
    r: &mut Report,
    workers: usize,
    open: usize,
    samples: usize,
) -> Result<()> {
    spawn_workers(sb, workers)?;
    let load = parallel(open, 8, 1000, "tasks opened", |i| {
        let title = format!("job {i}");
        let skill = if i % 2 == 0 { "rust" } else { "frontend" };
        sb.torch(&["task", "add", "--title", &title, "--skill", skill])
            .map(drop)
    })?;
    wait_until(
        "every worker holding a task",
        Duration::from_secs(120),
        || Ok(tasks_in(sb, "assigned")?.len() == workers),
    )?;

    // Waves: the operator finishes what every worker holds, the hub gives
    // each the next task; from the first `done` to the last assignment.
    let (mut waves, mut tails) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let held: Vec<i64> = tasks_in(sb, "assigned")?.iter().map(|t| t.id).collect();
        let t0 = Instant::now();
        parallel(held.len(), 8, 1000, "tasks finished", |i| {
            let id = held[i].to_string();
            sb.torch(&["task", "done", &id, "--summary", "ok"])
                .map(drop)
        })?;
        let last_done = Instant::now();
        wait_until("the next wave assigned", Duration::from_secs(120), || {
            Ok(tasks_in(sb, "assigned")?.len() == workers)
        })?;
        waves.push(t0.elapsed());
        tails.push(last_done.elapsed());
    }
    waves.sort();
    tails.sort();
    let (wave, tail) = (percentile(&waves, 0.5), percentile(&tails, 0.5));
    let rate = workers as f64 / wave.as_secs_f64().max(1e-9);

    // Ready to screen: a task only `lat` can do, opened while it is idle,
    // until its echo agent recorded the assignment.
    let mut lat = Vec::new();
    for i in 0..samples {
        let title = format!("latency {i}");
        let t0 = Instant::now();
        let out = sb.torch(&["task", "add", "--title", &title, "--skill", "latency"])?;
        let id = out.trim().trim_start_matches("task #").to_string();
        let want = format!("Task #{id} for you");
        wait_until("the task on lat's screen", Duration::from_secs(30), || {
            Ok(sb.records("lat")?.iter().any(|m| m.contains(&want)))
        })?;
        lat.push(t0.elapsed());
        sb.torch(&["task", "done", &id, "--summary", "ok"])?;
    }
    lat.sort();
    report(r, (workers, open), load, (wave, tail, rate), &lat);
    Ok(())
}

fn report(
    r: &mut Report,
    (workers, open): (usize, usize),
    load: Duration,
    (wave, tail, rate): (Duration, Duration, f64),
    lat: &[Duration],
) {
    let (p50, p99) = (percentile(lat, 0.5), percentile(lat, 0.99));
    r.table(
        &[&format!("work ledger: {workers} workers, {open} open tasks"), "figure"],
        &[
            vec![
                format!("{open} tasks opened (`torch task add`, 8 callers)"),
                format!("{:.1} s ({:.0}/s)", load.as_secs_f64(), open as f64 / load.as_secs_f64().max(1e-9)),
            ],
            vec![
                format!("a wave: {workers} tasks finished (`torch task done`) and the next {workers} routed, median of 3"),
                format!("{:.2} s", wave.as_secs_f64()),
            ],
            vec![
                "of which from the last `done` returning to all routed (seen by polling `torch task list`)".into(),
                format!("{:.2} s", tail.as_secs_f64()),
            ],
            vec!["tasks finished and routed per second".into(), format!("{rate:.0}")],
            vec![
                format!("task ready to its assignment on an idle agent's screen, p50 / p99 of {}", lat.len()),
                format!("{} / {} ms", ms(p50), ms(p99)),
            ],
        ],
    );
}
