//! `torch-bench`: send latency of Torch against the naive tmux sender, in a
//! real systemd sandbox. Prints a Markdown table (for docs/benchmarks.md).
//!
//! Usage (as root, after `cargo build --workspace --bins`):
//! `target/debug/torch-bench [MESSAGES [FLEET [PENDING]]]` (defaults 200,
//! 50 and 1000; a fleet of 0 skips the fleet part).
//!
//! Torch: `torch send` (run inside the sandbox) returns once the text is
//! confirmed on the pane. Naive: `tmux send-keys -l TEXT; sleep 0.5; tmux
//! send-keys Enter`, the field's usual sender, which never checks; its
//! latency is taken to the moment the echo agent recorded the message.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use torch_tests::{wait_until, Sandbox};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Resident memory of `pid` inside the sandbox, in KiB.
fn rss_kib(sb: &Sandbox, pid: &str) -> Result<u64> {
    let status = String::from_utf8(sb.read_file(&format!("/proc/{pid}/status"))?)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// Average resident memory of the processes named `comm`, in KiB, and their count.
fn avg_rss(sb: &Sandbox, pattern: &str) -> Result<(u64, usize)> {
    let pids = sb.sh(&format!("pgrep -f '{pattern}' || true"))?;
    let pids: Vec<&str> = pids.split_whitespace().collect();
    let mut total = 0;
    for p in &pids {
        total += rss_kib(sb, p).unwrap_or(0);
    }
    Ok((total / pids.len().max(1) as u64, pids.len()))
}

/// Spawns `n` echo agents through the hub and reports time and memory.
fn fleet(sb: &Sandbox, n: usize) -> Result<()> {
    sb.write_file(
        "/etc/torch/torch.toml",
        format!("[quotas]\nmax_fleet = {}\n", n + 10).as_bytes(),
        0o644,
    )?;
    sb.systemctl(&["restart", "torch.service"])?;
    let t = Instant::now();
    for i in 0..n {
        sb.spawn_echo(&format!("f{i}"), "orchestrator", None)?;
        if (i + 1) % 10 == 0 {
            eprintln!(
                "spawned {}/{n} agents in {:.1} s",
                i + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
    let spawn = t.elapsed();
    for i in 0..n {
        sb.torch(&["send", &format!("f{i}"), "hello fleet"])?;
    }
    wait_until("fleet messages delivered", Duration::from_secs(120), || {
        Ok((0..n).all(|i| {
            sb.records(&format!("f{i}"))
                .map(|r| r.len() == 1)
                .unwrap_or(false)
        }))
    })?;
    let hub = sb.unit_property("torch.service", "MainPID")?;
    let hub_rss = rss_kib(sb, &hub)?;
    let (sup, sups) = avg_rss(sb, "^/usr/libexec/torch/torch-agent")?;
    let (tmux, tmuxes) = avg_rss(
        sb,
        "^tmux -u -S /run/torch-agent/[^ ]* -f [^ ]* new-session",
    )?;
    let (clients, nclients) = avg_rss(
        sb,
        "^tmux -u -S /run/torch-agent/[^ ]* -f [^ ]* -C attach-session",
    )?;
    println!();
    println!("| fleet of {n} echo agents | figure |");
    println!("| --- | ---: |");
    println!(
        "| spawn through the hub, sequential | {:.1} s ({:.0} ms per agent) |",
        spawn.as_secs_f64(),
        spawn.as_secs_f64() * 1000.0 / n as f64
    );
    println!(
        "| hub (torchd) resident memory | {:.1} MiB |",
        hub_rss as f64 / 1024.0
    );
    println!(
        "| supervisor resident memory, average of {sups} | {:.1} MiB |",
        sup as f64 / 1024.0
    );
    println!(
        "| tmux server resident memory, average of {tmuxes} | {:.1} MiB |",
        tmux as f64 / 1024.0
    );
    println!(
        "| tmux control client resident memory, average of {nclients} | {:.1} MiB |",
        clients as f64 / 1024.0
    );
    Ok(())
}

/// (intact, lost, damaged, out of per-sender order) for `senders` x `each`
/// messages "s{i}-m{j}" recorded by echo agent `name`.
fn tally(
    sb: &Sandbox,
    name: &str,
    senders: usize,
    each: usize,
) -> Result<(usize, usize, usize, usize)> {
    let got = sb.records(name)?;
    let mut next = vec![0usize; senders];
    let (mut intact, mut damaged, mut disorder) = (0, 0, 0);
    for r in &got {
        let parsed = r
            .strip_prefix('s')
            .and_then(|x| x.split_once("-m"))
            .and_then(|(i, j)| Some((i.parse::<usize>().ok()?, j.parse::<usize>().ok()?)));
        match parsed {
            Some((i, j)) if i < senders && j < each && *r == format!("s{i}-m{j}") => {
                intact += 1;
                if j != next[i] {
                    disorder += 1;
                }
                next[i] = j + 1;
            }
            _ => damaged += 1,
        }
    }
    Ok((
        intact,
        (senders * each).saturating_sub(intact),
        damaged,
        disorder,
    ))
}

/// 10 concurrent senders x `each` messages to one agent, Torch and naive.
fn contention(sb: &Sandbox, each: usize) -> Result<()> {
    const SENDERS: usize = 10;
    sb.define_echo_agent("cont")?;
    sb.define_echo_agent("naivec")?;
    sb.torch(&["start", "cont"])?;
    sb.torch(&["start", "naivec"])?;
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in 0..SENDERS {
            s.spawn(move || {
                for j in 0..each {
                    let _ = sb.torch(&["send", "--direct", "cont", &format!("s{i}-m{j}")]);
                }
            });
        }
    });
    let torch_time = t.elapsed();
    let sock = "/run/torch-agent/naivec/tmux.sock";
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in 0..SENDERS {
            s.spawn(move || {
                for j in 0..each {
                    let _ = sb.run(&[
                        "tmux",
                        "-S",
                        sock,
                        "send-keys",
                        "-t",
                        "%0",
                        "-l",
                        &format!("s{i}-m{j}"),
                    ]);
                    std::thread::sleep(Duration::from_millis(500));
                    let _ = sb.run(&["tmux", "-S", sock, "send-keys", "-t", "%0", "Enter"]);
                }
            });
        }
    });
    let naive_time = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    println!();
    println!("| {SENDERS} senders x {each} messages to one agent | intact | lost | damaged | out of order | time |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (label, name, time) in [
        ("torch send", "cont", torch_time),
        ("naive send-keys + sleep 0.5", "naivec", naive_time),
    ] {
        let (ok, lost, bad, disorder) = tally(sb, name, SENDERS, each)?;
        println!(
            "| {label} | {ok} | {lost} | {bad} | {disorder} | {:.1} s |",
            time.as_secs_f64()
        );
    }
    Ok(())
}

/// Time from SIGKILL of an agent program to the agent back with a message
/// queued meanwhile delivered.
fn recovery(sb: &Sandbox) -> Result<()> {
    sb.spawn_echo("phoenix", "orchestrator", None)?;
    let mut times = Vec::new();
    // Three rounds: the unit's start limit (5 in 2 minutes) is there to stop
    // crash loops, and a benchmark should not trip it.
    for round in 0..3 {
        let pid = sb.pane_pid("phoenix")?;
        let before = sb.records("phoenix")?.len();
        let t = Instant::now();
        sb.run(&["kill", "-KILL", pid.trim()])?;
        sb.torch(&["send", "phoenix", &format!("back {round}")])?;
        wait_until("recovery", Duration::from_secs(30), || {
            Ok(sb.records("phoenix")?.len() > before)
        })?;
        times.push(t.elapsed());
    }
    times.sort();
    println!();
    println!("| recovery (3 rounds) | median | max |");
    println!("| --- | ---: | ---: |");
    println!("| SIGKILL of the agent program to a message queued meanwhile delivered | {:.2} s | {:.2} s |", times[1].as_secs_f64(), times[2].as_secs_f64());
    Ok(())
}

/// Fire accuracy of `n` one-shot check-ins and the cost of `pending` ones.
fn schedules(sb: &Sandbox, n: usize, pending: usize) -> Result<()> {
    sb.spawn_echo("sched", "orchestrator", None)?;
    for i in 0..n {
        sb.torch(&[
            "schedule",
            "sched",
            "--in",
            &format!("{:.1}s", 3.0 + i as f64 * 0.2),
            "--note",
            &format!("tick {i}"),
        ])?;
    }
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&sb.torch(&["schedules", "--agent", "sched", "--json"])?)?;
    let due: std::collections::BTreeMap<i64, i64> = listed
        .iter()
        .filter_map(|s| Some((s["id"].as_i64()?, s["due_ms"].as_i64()?)))
        .collect();
    wait_until("all check-ins fired", Duration::from_secs(60), || {
        Ok(sb.records("sched")?.len() >= n)
    })?;
    let msgs: Vec<serde_json::Value> = serde_json::from_str(
        &sb.torch(&["messages", "--agent", "sched", "--json", "--limit", "1000"])?,
    )?;
    let mut late: Vec<i64> = msgs
        .iter()
        .filter_map(|m| {
            let id: i64 = m["sender"]
                .as_str()?
                .strip_prefix("schedule-")?
                .parse()
                .ok()?;
            Some(m["created_ms"].as_i64()? - due.get(&id)?)
        })
        .collect();
    late.sort();
    let t = Instant::now();
    for i in 0..pending {
        sb.torch(&[
            "schedule",
            "sched",
            "--in",
            &format!("{}s", 7200 + i),
            "--note",
            "pending",
        ])?;
        if (i + 1) % 250 == 0 {
            eprintln!(
                "{}/{pending} pending check-ins set in {:.1} s",
                i + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
    let create = t.elapsed();
    let timers =
        sb.sh("systemctl list-units --no-legend --plain 'torch-checkin@*.timer' | wc -l")?;
    let t = Instant::now();
    let listed = sb.torch(&["schedules", "--json"])?;
    let list_time = t.elapsed();
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed)?;
    let hub_rss = rss_kib(sb, &sb.unit_property("torch.service", "MainPID")?)?;
    let pid1_rss = rss_kib(sb, "1")?;
    println!();
    println!("| check-ins | figure |");
    println!("| --- | ---: |");
    if let (Some(first), Some(last)) = (late.first(), late.last()) {
        println!("| fire time minus due time, {} one-shot check-ins | min {first} ms, median {} ms, max {last} ms |", late.len(), late[late.len() / 2]);
    }
    println!(
        "| {pending} pending check-ins set through the CLI | {:.1} s ({:.1} ms each) |",
        create.as_secs_f64(),
        create.as_secs_f64() * 1000.0 / pending as f64
    );
    println!(
        "| timers systemd holds / schedules the hub lists | {} / {} |",
        timers.trim(),
        listed.len()
    );
    println!(
        "| `torch schedules` with {} pending | {:.0} ms |",
        listed.len(),
        list_time.as_secs_f64() * 1000.0
    );
    println!(
        "| hub resident memory with them | {:.1} MiB |",
        hub_rss as f64 / 1024.0
    );
    println!(
        "| systemd (PID 1) resident memory with them | {:.1} MiB |",
        pid1_rss as f64 / 1024.0
    );
    Ok(())
}

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("MESSAGES must be a number")?
        .unwrap_or(200);
    let naive_n = (n / 10).clamp(5, 20);
    let sb = Sandbox::boot("bench")?;
    let boot = sb.boot_time();
    sb.install_torch()?;
    sb.define_echo_agent("bench")?;
    sb.define_echo_agent("naive")?;
    sb.torch(&["start", "bench"])?;
    sb.torch(&["start", "naive"])?;

    let mut torch = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("benchmark message {i}: the quick brown fox");
        let t = Instant::now();
        sb.torch(&["send", "--direct", "bench", &text])?;
        torch.push(t.elapsed());
    }
    let got = sb.records("bench")?;
    let torch_ok = (0..n)
        .filter(|i| {
            got.get(*i).map(String::as_str)
                == Some(&*format!("benchmark message {i}: the quick brown fox"))
        })
        .count();

    // The naive sender, as the seed scripts do it, then we wait for the record.
    let sock = "/run/torch-agent/naive/tmux.sock";
    let mut naive = Vec::with_capacity(naive_n);
    for i in 0..naive_n {
        let text = format!("naive message {i}: the quick brown fox");
        let t = Instant::now();
        sb.run(&["tmux", "-S", sock, "send-keys", "-t", "%0", "-l", &text])?;
        std::thread::sleep(Duration::from_millis(500));
        sb.run(&["tmux", "-S", sock, "send-keys", "-t", "%0", "Enter"])?;
        wait_until("naive message recorded", Duration::from_secs(5), || {
            Ok(sb.records("naive")?.len() > i)
        })?;
        naive.push(t.elapsed());
    }
    let naive_ok = sb
        .records("naive")?
        .iter()
        .enumerate()
        .filter(|(i, r)| **r == format!("naive message {i}: the quick brown fox"))
        .count();
    if naive.is_empty() || torch.is_empty() {
        bail!("nothing measured");
    }
    torch.sort();
    naive.sort();
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!("sandbox boot: {} ms; {cores} cores", ms(boot));
    println!();
    println!("| sender | messages | intact | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, v, ok) in [
        ("torch send (verified)", &torch, torch_ok),
        ("naive send-keys + sleep 0.5", &naive, naive_ok),
    ] {
        println!(
            "| {name} | {} | {ok} | {} | {} | {} |",
            v.len(),
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(*v.last().unwrap_or(&Duration::ZERO))
        );
    }
    let ratio = percentile(&naive, 0.5).as_secs_f64() / percentile(&torch, 0.5).as_secs_f64();
    println!();
    println!("p50 ratio naive / torch: {ratio:.1}x");
    let fleet_size: usize = std::env::args()
        .nth(2)
        .map(|a| a.parse())
        .transpose()
        .context("FLEET must be a number")?
        .unwrap_or(50);
    sb.start_hub()?;
    if fleet_size > 0 {
        fleet(&sb, fleet_size)?;
    }
    let pending: usize = std::env::args()
        .nth(3)
        .map(|a| a.parse())
        .transpose()
        .context("PENDING must be a number")?
        .unwrap_or(1000);
    contention(&sb, 100)?;
    recovery(&sb)?;
    schedules(&sb, 20, pending)?;
    Ok(())
}
