//! A fleet spawned through the hub: spawn time, memory, idle CPU and
//! verified throughput.

use std::time::Duration;

use anyhow::{Context, Result};
use torch_tests::{wait_until, Sandbox};

use crate::checks::{inside, parallel};
use crate::report::{memory, memory_of, mib, Report};
use crate::Args;

/// CPU time used so far by the cgroup at `path` (inside the sandbox), in µs.
fn cpu_usec(sb: &Sandbox, path: &str) -> Result<u64> {
    let stat = sb.run(&["cat", &format!("/sys/fs/cgroup/{path}/cpu.stat")])?;
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no usage_usec for {path}"))
}

/// The cgroups of the agents and of the hub.
const AGENTS_CGROUP: &str = "system.slice/system-torch\\x2dagent.slice";
const HUB_CGROUP: &str = "system.slice/torch.service";
/// What the fleet makes work too: systemd (watchdog pings, STATUS=), the
/// bus daemon and logind (the signals that follow), journald.
const SYSTEM_CGROUPS: [&str; 4] = [
    "init.scope",
    "system.slice/dbus.service",
    "system.slice/systemd-logind.service",
    "system.slice/systemd-journald.service",
];

/// CPU time used so far by the services in [`SYSTEM_CGROUPS`], in µs.
fn system_usec(sb: &Sandbox) -> Result<u64> {
    SYSTEM_CGROUPS.iter().map(|c| cpu_usec(sb, c)).sum()
}

/// Spawns `args.fleet` echo agents, then measures memory, idle CPU and
/// throughput with them.
pub fn run(sb: &Sandbox, r: &mut Report, args: &Args) -> Result<()> {
    let n = args.fleet;
    sb.write_file(
        "/etc/torch/torch.toml",
        format!("[quotas]\nmax_fleet = {}\n", n + 20).as_bytes(),
        0o644,
    )?;
    sb.systemctl(&["restart", "torch.service"])?;
    let spawn = parallel(n, args.parallel, 20, "agents spawned", |i| {
        sb.spawn_echo(&format!("f{i}"), "orchestrator", None)
    })?;
    parallel(n, args.parallel, 50, "first messages sent", |i| {
        sb.torch(&["send", &format!("f{i}"), "hello fleet"])
            .map(drop)
    })?;
    wait_until("first messages delivered", Duration::from_secs(300), || {
        Ok((0..n).all(|i| sb.records(&format!("f{i}")).is_ok_and(|r| r.len() == 1)))
    })?;
    let hub = memory(sb, &sb.unit_property("torch.service", "MainPID")?)?;
    let (sup, sups) = memory_of(sb, "^/usr/libexec/torch/torch-agent")?;
    let (server, servers) = memory_of(
        sb,
        "^tmux -u -S /run/torch-agent/[^ ]* -f [^ ]* new-session",
    )?;
    let (client, clients) = memory_of(
        sb,
        "^tmux -u -S /run/torch-agent/[^ ]* -f [^ ]* -C attach-session",
    )?;
    let (agent, agents) = memory_of(sb, "^/usr/local/bin/torch-test-agent echo")?;

    // Idle: nothing sent, nothing scheduled; let the last deliveries settle.
    std::thread::sleep(Duration::from_secs(5));
    let usage = || -> Result<[u64; 3]> {
        Ok([
            cpu_usec(sb, AGENTS_CGROUP)?,
            cpu_usec(sb, HUB_CGROUP)?,
            system_usec(sb)?,
        ])
    };
    let before = usage()?;
    std::thread::sleep(Duration::from_secs(args.idle_secs));
    let after = usage()?;
    let share =
        |a: u64, b: u64| (b.saturating_sub(a)) as f64 / (args.idle_secs as f64 * 1e6) * 100.0;
    let (agents_cpu, hub_cpu, system_cpu) = (
        share(before[0], after[0]),
        share(before[1], after[1]),
        share(before[2], after[2]),
    );

    r.table(
        &[&format!("fleet of {n} echo agents"), "figure"],
        &[
            vec![
                format!(
                    "spawn through the hub (`torch spawn`, {} callers)",
                    args.parallel
                ),
                format!(
                    "{:.1} s ({:.0} ms per agent)",
                    spawn.as_secs_f64(),
                    spawn.as_secs_f64() * 1000.0 / n as f64
                ),
            ],
            vec!["hub (torchd) memory".into(), hub.show()],
            vec![format!("supervisor memory, average of {sups}"), sup.show()],
            vec![
                format!("tmux server memory, average of {servers}"),
                server.show(),
            ],
            vec![
                format!("tmux control client memory, average of {clients}"),
                client.show(),
            ],
            vec![
                format!("agent program (echo test agent) memory, average of {agents}"),
                agent.show(),
            ],
            vec![
                format!(
                    "idle CPU over {} s: agents' units (supervisors, tmux, programs)",
                    args.idle_secs
                ),
                format!("{agents_cpu:.2}% of one core"),
            ],
            vec![
                format!("idle CPU over {} s: hub", args.idle_secs),
                format!("{hub_cpu:.2}% of one core"),
            ],
            vec![
                format!(
                    "idle CPU over {} s: systemd, D-Bus, logind, journald",
                    args.idle_secs
                ),
                format!("{system_cpu:.2}% of one core"),
            ],
        ],
    );
    r.target(
        &format!("{n} agents spawned"),
        "<= 20 s",
        format!("{:.1} s", spawn.as_secs_f64()),
        Some(n >= 200 && spawn <= Duration::from_secs(20)),
    );
    r.target(
        "supervisor memory per agent (PSS)",
        "<= 4 MiB",
        format!("{} PSS ({} RSS)", mib(sup.pss), mib(sup.rss)),
        Some(sup.pss <= 4096),
    );
    r.target(
        "hub memory",
        "<= 40 MiB",
        format!("{} RSS", mib(hub.rss)),
        Some(hub.rss <= 40 * 1024),
    );
    let idle = agents_cpu + hub_cpu + system_cpu;
    r.target(
        &format!("idle fleet of {n}, CPU (with systemd, D-Bus, logind, journald)"),
        "<= 1% of one core",
        format!("{idle:.2}%"),
        Some(idle <= 1.0),
    );
    watched(sb, r, n, args.idle_secs, (hub_cpu, hub))?;
    throughput(sb, r, args.throughput_agents.min(n), args.per_agent)
}

/// The idle fleet of `n` again, with a web dashboard (its event stream open)
/// and a Prometheus-like scraper (every 5 s) attached: the hub's CPU and
/// memory against `without` (idle CPU share, memory) measured just before,
/// and what the two services themselves cost.
fn watched(
    sb: &Sandbox,
    r: &mut Report,
    n: usize,
    secs: u64,
    without: (f64, crate::report::Mem),
) -> Result<()> {
    sb.systemctl(&["start", "torch-metrics.socket", "torch-web.socket"])?;
    let scrape = || -> Result<Duration> {
        let t = std::time::Instant::now();
        sb.run(&[
            "curl",
            "-sSf",
            "-o",
            "/dev/null",
            "http://127.0.0.1:9466/metrics",
        ])?;
        Ok(t.elapsed())
    };
    // The first scrape starts the service; the second is timed.
    scrape()?;
    let one_scrape = scrape()?;
    sb.run(&[
        "curl",
        "-sSf",
        "-o",
        "/dev/null",
        "http://127.0.0.1:9467/api/status",
    ])?;
    let loop_ = "while :; do curl -s -o /dev/null http://127.0.0.1:9466/metrics; sleep 5; done";
    sb.run(&["systemd-run", "--unit", "bench-scraper", "sh", "-c", loop_])?;
    let events = "http://127.0.0.1:9467/api/events";
    sb.run(&[
        "systemd-run",
        "--unit",
        "bench-dashboard",
        "curl",
        "-sN",
        "-o",
        "/dev/null",
        events,
    ])?;
    std::thread::sleep(Duration::from_secs(5));
    let units = [
        HUB_CGROUP,
        "system.slice/torch-metrics.service",
        "system.slice/torch-web.service",
    ];
    let before: Vec<u64> = units
        .iter()
        .map(|u| cpu_usec(sb, u))
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_secs(secs));
    let after: Vec<u64> = units
        .iter()
        .map(|u| cpu_usec(sb, u))
        .collect::<Result<_>>()?;
    let share = |i: usize| after[i].saturating_sub(before[i]) as f64 / (secs as f64 * 1e6) * 100.0;
    let mem = |unit: &str| memory(sb, &sb.unit_property(unit, "MainPID")?);
    let (hub, metrics, web) = (
        mem("torch.service")?,
        mem("torch-metrics.service")?,
        mem("torch-web.service")?,
    );
    sb.systemctl(&["stop", "bench-scraper.service", "bench-dashboard.service"])?;
    r.table(
        &[
            &format!("idle fleet of {n}, watched"),
            "without",
            "with a dashboard and a scraper",
        ],
        &[
            vec![
                format!("hub CPU over {secs} s"),
                format!("{:.2}% of one core", without.0),
                format!("{:.2}% of one core", share(0)),
            ],
            vec!["hub memory".into(), without.1.show(), hub.show()],
            vec![
                "torch-metrics (a scrape every 5 s): CPU, memory".into(),
                String::new(),
                format!("{:.2}% of one core, {}", share(1), metrics.show()),
            ],
            vec![
                "torch-web (one page's event stream open): CPU, memory".into(),
                String::new(),
                format!("{:.2}% of one core, {}", share(2), web.show()),
            ],
            vec![
                format!("one scrape of /metrics ({n} agents' supervisors asked)"),
                String::new(),
                format!("{} ms", one_scrape.as_millis()),
            ],
        ],
    );
    Ok(())
}

/// Verified messages per second through the hub to the first `agents` of
/// the fleet.
fn throughput(sb: &Sandbox, r: &mut Report, agents: usize, per_agent: usize) -> Result<()> {
    let out = inside(
        sb,
        // 400 calls in flight over 8 connections: the system bus allows
        // 128 pending replies per connection and refuses more.
        &[
            "inner-throughput",
            "f",
            &agents.to_string(),
            &per_agent.to_string(),
            "400",
        ],
    )?;
    let num = |k: &str| out[k].as_f64().unwrap_or(0.0);
    let rate = num("intact") / num("done_secs").max(1e-9);
    r.table(
        &[
            &format!(
                "throughput: {} messages through the hub to {agents} agents",
                num("sent")
            ),
            "figure",
        ],
        &[
            vec![
                "refused / recorded / intact".into(),
                format!(
                    "{} / {} / {}",
                    num("refused"),
                    num("recorded"),
                    num("intact")
                ),
            ],
            vec![
                "first refusal".into(),
                out["first_error"].as_str().unwrap_or("none").to_string(),
            ],
            vec![
                "all accepted (stored) after".into(),
                format!(
                    "{:.2} s ({:.0}/s)",
                    num("accepted_secs"),
                    num("sent") / num("accepted_secs").max(1e-9)
                ),
            ],
            vec![
                "all verified on the agents after".into(),
                format!("{:.2} s", num("done_secs")),
            ],
            vec!["verified messages per second".into(), format!("{rate:.0}")],
        ],
    );
    r.target(
        &format!("verified messages per second across {agents} agents"),
        ">= 1000",
        format!("{rate:.0}"),
        Some(agents >= 100 && rate >= 1000.0 && num("intact") == num("sent")),
    );
    Ok(())
}
