//! Send latency, contention, recovery and check-ins.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use torch_tests::{wait_until, Sandbox};

use crate::report::{memory, mib, ms, percentile, Report};

/// Runs a hidden `torch-bench` subcommand inside the sandbox; its JSON.
pub fn inside(sb: &Sandbox, args: &[&str]) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().context("the bench's path is not UTF-8")?;
    let mut v = vec![exe];
    v.extend_from_slice(args);
    let out = sb.run(&v)?;
    serde_json::from_str(&out).with_context(|| format!("bad output of {args:?}: {out}"))
}

fn durations(v: &Value) -> Vec<Duration> {
    let mut d: Vec<Duration> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(Duration::from_micros)
                .collect()
        })
        .unwrap_or_default();
    d.sort();
    d
}

/// One run of the inner latency part: `hub` sends through the hub and
/// `direct` sends to the supervisor, to echo agent "bench", and `naive` by
/// the naive sender to echo agent "naive".
struct Timed {
    hub: Vec<Duration>,
    /// The first send through the hub, the one right after its start.
    hub_first: Duration,
    hub_intact: Value,
    direct: Vec<Duration>,
    direct_intact: Value,
    naive: Vec<Duration>,
    naive_intact: Value,
}

fn timed(sb: &Sandbox, hub: usize, direct: usize, naive: usize) -> Result<Timed> {
    let (hub, direct, naive) = (hub.to_string(), direct.to_string(), naive.to_string());
    let out = inside(
        sb,
        &["inner-latency", "bench", "naive", &hub, &direct, &naive],
    )?;
    Ok(Timed {
        hub: durations(&out["hub_us"]),
        hub_first: Duration::from_micros(out["hub_us"][0].as_u64().unwrap_or_default()),
        hub_intact: out["hub_intact"].clone(),
        direct: durations(&out["direct_us"]),
        direct_intact: out["direct_intact"].clone(),
        naive: durations(&out["naive_us"]),
        naive_intact: out["naive_intact"].clone(),
    })
}

/// `n` as 1,000,000.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn latency_row(name: &str, v: &[Duration], intact: &Value) -> Vec<String> {
    vec![
        name.to_string(),
        v.len().to_string(),
        intact.to_string(),
        ms(percentile(v, 0.5)),
        ms(percentile(v, 0.99)),
        ms(v.last().copied().unwrap_or_default()),
    ]
}

/// The hub path's targets for one store size.
fn hub_targets(r: &mut Report, store: &str, v: &[Duration]) {
    let (p50, p99) = (percentile(v, 0.5), percentile(v, 0.99));
    r.target(
        &format!("send p50 through the hub, verified, {store}"),
        "<= 10 ms",
        format!("{} ms", ms(p50)),
        Some(p50 <= Duration::from_millis(10)),
    );
    r.target(
        &format!("send p99 through the hub, verified, {store}"),
        "<= 25 ms",
        format!("{} ms", ms(p99)),
        Some(p99 <= Duration::from_millis(25)),
    );
}

/// Send latency as a user sees it: `torch send --wait` through the hub
/// with an empty store and again with `stored` messages in it (filled into
/// `db`, the hub's database seen from the host), `torch send --direct`,
/// and the naive sender; all timed inside the sandbox.
pub fn latency(sb: &Sandbox, r: &mut Report, n: usize, stored: usize, db: &Path) -> Result<()> {
    let naive_n = (n / 10).clamp(5, 20);
    sb.define_echo_agent("bench")?;
    sb.define_echo_agent("naive")?;
    sb.start_hub()?;
    sb.torch(&["start", "bench"])?;
    sb.torch(&["start", "naive"])?;
    let empty = timed(sb, n, n, naive_n)?;
    let mut rows = vec![latency_row(
        "torch send --wait (through the hub, verified), empty store",
        &empty.hub,
        &empty.hub_intact,
    )];
    let mut full = None;
    if stored > 0 {
        sb.systemctl(&["stop", "torch.service"])?;
        let took = crate::store::fill(db, stored, "bench", "naive")?;
        sb.start_hub()?;
        let t = timed(sb, n, 0, 0)?;
        rows.push(latency_row(
            &format!(
                "torch send --wait (through the hub, verified), {} stored",
                thousands(stored)
            ),
            &t.hub,
            &t.hub_intact,
        ));
        full = Some((t.hub, t.hub_first, took));
    }
    rows.push(latency_row(
        "torch send --direct (to the supervisor, verified on the pane)",
        &empty.direct,
        &empty.direct_intact,
    ));
    rows.push(latency_row(
        "naive send-keys + sleep 0.5 + Enter",
        &empty.naive,
        &empty.naive_intact,
    ));
    r.table(
        &[
            "sender (timed inside the sandbox)",
            "messages",
            "intact",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
        &rows,
    );
    r.line("");
    let p50 = percentile(&empty.hub, 0.5);
    let ratio = percentile(&empty.naive, 0.5).as_secs_f64() / p50.as_secs_f64().max(1e-9);
    r.line(format!(
        "p50 ratio naive / torch send --wait (through the hub): {ratio:.1}x"
    ));
    hub_targets(r, "empty store", &empty.hub);
    if let Some((hub, first, took)) = &full {
        let stored = thousands(stored);
        r.line(format!(
            "Store filled with {stored} delivered messages (9 in 10 to `bench`, the rest from it) in {:.1} s, hub stopped; then the hub started on it.",
            took.as_secs_f64()
        ));
        r.line(format!(
            "First send after the hub started (in the table above): {} ms with an empty store, {} ms with {stored} stored.",
            ms(empty.hub_first),
            ms(*first)
        ));
        let flat = percentile(hub, 0.5).as_secs_f64() / p50.as_secs_f64().max(1e-9);
        r.line(format!(
            "p50 with {stored} stored / p50 with an empty store: {flat:.2}x"
        ));
        hub_targets(r, &format!("{stored} stored"), hub);
        r.target(
            &format!("flat: p50 with {stored} stored / empty store"),
            "<= 1.25x",
            format!("{flat:.2}x"),
            Some(flat <= 1.25),
        );
    }
    r.target(
        "p50 against the naive sender (through the hub)",
        ">= 50x",
        format!("{ratio:.1}x"),
        Some(ratio >= 50.0),
    );
    Ok(())
}

/// (intact, lost, damaged, out of per-sender order) for `senders` x `each`
/// messages "s{i}-m{j}" recorded by echo agent `name`.
fn tally(sb: &Sandbox, name: &str, senders: usize, each: usize) -> Result<[usize; 4]> {
    let got = sb.records(name)?;
    let mut next = vec![0usize; senders];
    let (mut intact, mut damaged, mut disorder) = (0, 0, 0);
    for rec in &got {
        let parsed = rec
            .strip_prefix('s')
            .and_then(|x| x.split_once("-m"))
            .and_then(|(i, j)| Some((i.parse::<usize>().ok()?, j.parse::<usize>().ok()?)));
        match parsed {
            Some((i, j)) if i < senders && j < each && *rec == format!("s{i}-m{j}") => {
                intact += 1;
                if j != next[i] {
                    disorder += 1;
                }
                next[i] = j + 1;
            }
            _ => damaged += 1,
        }
    }
    Ok([
        intact,
        (senders * each).saturating_sub(intact),
        damaged,
        disorder,
    ])
}

/// 10 concurrent senders x `each` messages to one agent, Torch and naive.
pub fn contention(sb: &Sandbox, r: &mut Report, each: usize) -> Result<()> {
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
                    let text = format!("s{i}-m{j}");
                    let _ = sb.run(&["tmux", "-S", sock, "send-keys", "-t", "%0", "-l", &text]);
                    std::thread::sleep(Duration::from_millis(500));
                    let _ = sb.run(&["tmux", "-S", sock, "send-keys", "-t", "%0", "Enter"]);
                }
            });
        }
    });
    let naive_time = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let mut rows = Vec::new();
    let mut torch_intact = 0;
    for (label, name, time) in [
        ("torch send", "cont", torch_time),
        ("naive send-keys + sleep 0.5", "naivec", naive_time),
    ] {
        let t = tally(sb, name, SENDERS, each)?;
        if name == "cont" {
            torch_intact = t[0];
        }
        let mut row = vec![label.to_string()];
        row.extend(t.iter().map(usize::to_string));
        row.push(format!("{:.1} s", time.as_secs_f64()));
        rows.push(row);
    }
    r.table(
        &[
            &format!("{SENDERS} senders x {each} messages to one agent"),
            "intact",
            "lost",
            "damaged",
            "out of order",
            "time",
        ],
        &rows,
    );
    let total = SENDERS * each;
    r.target(
        "intact under contention",
        "100%",
        format!("{torch_intact}/{total}"),
        Some(torch_intact == total),
    );
    Ok(())
}

/// Time from SIGKILL of an agent program to a message queued meanwhile
/// delivered, and from a hang to the agent restarted and ready.
pub fn recovery(sb: &Sandbox, r: &mut Report) -> Result<()> {
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

    // A hang: the program stops reading, input arrives and stays unread.
    const HANG_AFTER: u64 = 2;
    sb.start_hung_agent("frozen", HANG_AFTER)?;
    let watchdog = sb.unit_property("torch-agent@frozen.service", "WatchdogUSec")?;
    let t = Instant::now();
    // A message typed by Torch; the call fails once the supervisor is
    // restarted under it, which is the point.
    let hang = std::thread::scope(|s| {
        s.spawn(|| sb.torch(&["send", "--direct", "frozen", "are you there?"]));
        sb.wait_active("frozen", 1, Duration::from_secs(60))
            .map(|()| t.elapsed())
    })?;

    r.table(
        &["recovery", "median", "max"],
        &[
            vec![
                "SIGKILL of the agent program to a message queued meanwhile delivered (3 rounds)".into(),
                format!("{:.2} s", times[1].as_secs_f64()),
                format!("{:.2} s", times[2].as_secs_f64()),
            ],
            vec![
                format!("input left unread by a hung program to the agent restarted and ready (hang_after_secs = {HANG_AFTER}, WatchdogSec = {watchdog})"),
                format!("{:.2} s", hang.as_secs_f64()),
                "".into(),
            ],
        ],
    );
    r.target(
        "recovery after SIGKILL",
        "<= 3 s",
        format!("{:.2} s", times[2].as_secs_f64()),
        Some(times[2] <= Duration::from_secs(3)),
    );
    r.target(
        &format!("hang to restarted, beyond hang_after_secs ({HANG_AFTER} s)"),
        "(none set)",
        format!("{:.2} s", hang.as_secs_f64() - HANG_AFTER as f64),
        None,
    );
    Ok(())
}

/// Runs `f(i)` for i in 0..n on `threads` threads, printing progress every
/// `every` done.
pub fn parallel<F>(n: usize, threads: usize, every: usize, what: &str, f: F) -> Result<Duration>
where
    F: Fn(usize) -> Result<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let t = Instant::now();
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        f(i)?;
                        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if d.checked_rem(every) == Some(0) || d == n {
                            eprintln!("{what}: {d}/{n} in {:.1} s", t.elapsed().as_secs_f64());
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("{what}: a thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(t.elapsed())
}

/// Lateness (fire time minus due time, ms) of the check-ins of `agent`
/// whose ids are in `due`, and how many of those were stored more than once.
fn lateness(sb: &Sandbox, agent: &str, due: &BTreeMap<i64, i64>) -> Result<(Vec<i64>, usize)> {
    let msgs = sb.all_messages(agent)?;
    let fired: Vec<(i64, i64)> = msgs
        .iter()
        .filter_map(|m| {
            let id: i64 = m["sender"]
                .as_str()?
                .strip_prefix("schedule-")?
                .parse()
                .ok()?;
            Some((id, m["created_ms"].as_i64()? - due.get(&id)?))
        })
        .collect();
    let distinct: std::collections::BTreeSet<i64> = fired.iter().map(|(id, _)| *id).collect();
    let mut late: Vec<i64> = fired.iter().map(|(_, l)| *l).collect();
    late.sort();
    Ok((late, fired.len() - distinct.len()))
}

/// Sets `n` one-shot check-ins for `agent`, `gap` apart starting `lead` from
/// now, waits for them and returns their lateness and how many were stored
/// twice.
fn fire(sb: &Sandbox, agent: &str, n: usize, lead: f64, gap: f64) -> Result<(Vec<i64>, usize)> {
    let before = sb.records(agent)?.len();
    let start = Instant::now();
    for i in 0..n {
        // Relative to the start, whatever the CLI calls cost.
        let at = lead + i as f64 * gap - start.elapsed().as_secs_f64();
        sb.torch(&[
            "schedule",
            agent,
            "--in",
            &format!("{at:.2}s"),
            "--note",
            &format!("tick {i}"),
        ])?;
    }
    // The due times the hub asked systemd for (before the first fires).
    let listed: Vec<Value> =
        serde_json::from_str(&sb.torch(&["schedules", "--agent", agent, "--json"])?)?;
    let due: BTreeMap<i64, i64> = listed
        .iter()
        .filter_map(|s| Some((s["id"].as_i64()?, s["due_ms"].as_i64()?)))
        .collect();
    let wait = Duration::from_secs_f64(lead + n as f64 * gap + 30.0);
    wait_until("all check-ins fired", wait, || {
        Ok(sb.records(agent)?.len() >= before + n)
    })?;
    lateness(sb, agent, &due)
}

fn late_summary(late: &[i64]) -> String {
    match (late.first(), late.last()) {
        (Some(a), Some(b)) => format!("min {a} ms, median {} ms, max {b} ms", late[late.len() / 2]),
        _ => "none fired".into(),
    }
}

/// Fire accuracy of `n` one-shot check-ins, and what `pending` pending ones
/// cost.
pub fn schedules(sb: &Sandbox, r: &mut Report, n: usize, pending: usize) -> Result<()> {
    sb.spawn_echo("sched", "orchestrator", None)?;
    let (late, twice) = fire(sb, "sched", n, 5.0, 0.1)?;
    let create = parallel(pending, 8, 1000, "pending check-ins set", |i| {
        sb.torch(&[
            "schedule",
            "sched",
            "--in",
            &format!("{}s", 7200 + i),
            "--note",
            "pending",
        ])
        .map(drop)
    })?;
    let timers =
        sb.sh("systemctl list-units --no-legend --plain 'torch-checkin@*.timer' | wc -l")?;
    let t = Instant::now();
    let listed: Vec<Value> = serde_json::from_str(&sb.torch(&["schedules", "--json"])?)?;
    let list_time = t.elapsed();
    let armed = listed.iter().filter(|s| s["next_ms"].is_i64()).count();
    let hub = memory(sb, &sb.unit_property("torch.service", "MainPID")?)?;
    let pid1 = memory(sb, "1")?;
    let (late_loaded, twice_loaded) = fire(sb, "sched", 10, 5.0, 0.2)?;
    let twice = twice + twice_loaded;
    let worst = late
        .iter()
        .chain(&late_loaded)
        .map(|l| l.abs())
        .max()
        .unwrap_or(i64::MAX);
    r.table(
        &["check-ins", "figure"],
        &[
            vec![
                format!(
                    "fire time minus due time, {} one-shot check-ins 0.1 s apart",
                    late.len()
                ),
                late_summary(&late),
            ],
            vec![
                format!("{pending} pending check-ins set through the CLI, 8 callers"),
                format!(
                    "{:.1} s ({:.1} ms each)",
                    create.as_secs_f64(),
                    create.as_secs_f64() * 1000.0 / pending.max(1) as f64
                ),
            ],
            vec![
                "timers systemd holds / schedules the hub lists / armed".into(),
                format!("{} / {} / {armed}", timers.trim(), listed.len()),
            ],
            vec![
                format!("`torch schedules` with {} pending", listed.len()),
                format!("{:.0} ms", list_time.as_secs_f64() * 1000.0),
            ],
            vec!["hub (torchd) memory with them".into(), hub.show()],
            vec!["systemd (PID 1) memory with them".into(), pid1.show()],
            vec![
                format!(
                    "fire time minus due time, {} check-ins among them",
                    late_loaded.len()
                ),
                late_summary(&late_loaded),
            ],
        ],
    );
    r.line("");
    r.line(format!("Check-ins stored twice: {twice}."));
    r.target(
        "check-ins, fire time minus due time",
        "within 1 s",
        format!(
            "worst {worst} ms of {}, {twice} stored twice",
            late.len() + late_loaded.len()
        ),
        Some(worst <= 1000 && twice == 0 && late.len() + late_loaded.len() == n + 10),
    );
    r.target(
        &format!("{pending} pending check-ins: listing them"),
        "(none set)",
        format!(
            "{:.0} ms; PID 1 {}",
            list_time.as_secs_f64() * 1000.0,
            mib(pid1.rss)
        ),
        None,
    );
    Ok(())
}
