//! The hub (torchd) against a real systemd, D-Bus, journald and tmux:
//! hierarchy and policy, durable queues, a crash in the middle of a burst,
//! the bus policy and the audit trail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use torch_tests::fleet::{boot_hub, ENVELOPE_FOR_SHELL};
use torch_tests::{wait_until, Sandbox};

fn hub_sandbox(label: &str) -> Result<Sandbox> {
    boot_hub(label, ENVELOPE_FOR_SHELL)
}

fn messages(sb: &Sandbox, agent: &str) -> Result<Vec<Value>> {
    sb.all_messages(agent)
}

fn wait_records(sb: &Sandbox, agent: &str, n: usize, timeout: Duration) -> Result<Vec<String>> {
    wait_until(
        &format!("{n} messages recorded by {agent}"),
        timeout,
        || Ok(sb.records(agent)?.len() >= n),
    )?;
    sb.records(agent)
}

#[test]
fn hierarchy_policy_briefs_and_retire() -> Result<()> {
    let sb = hub_sandbox("hierarchy")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.write_file(
        "/tmp/brief.txt",
        b"You run the shop project.\nReport to boss daily.\n",
        0o644,
    )?;
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    sb.torch(&[
        "spawn",
        "pm",
        "--role",
        "project-manager",
        "--parent",
        "boss",
        "--workdir",
        "/srv/work",
        "--brief",
        "/tmp/brief.txt",
        "--",
        torch_tests::fleet::TEST_AGENT,
        "echo",
        "--record",
        "/var/lib/torch-agent/pm/record.jsonl",
    ])?;
    sb.spawn_echo("dev", "developer", Some("pm"))?;
    sb.spawn_echo("qa", "qa", Some("pm"))?;

    // The brief is the PM's first message.
    let pm = wait_records(&sb, "pm", 1, Duration::from_secs(20))?;
    ensure!(
        pm[0] == "[torch brief from operator] You run the shop project.\nReport to boss daily.",
        "{pm:?}"
    );

    // Along the policy.
    for (from, to, text) in [
        ("operator", "dev", "hi dev"),
        ("dev", "pm", "cart done"),
        ("pm", "boss", "status: green"),
        ("pm", "qa", "test the cart"),
        ("boss", "pm", "ship it"),
    ] {
        let (ok, out) = sb.torch_as(from, &["send", "--wait", to, text])?;
        ensure!(ok, "{from} -> {to} failed: {out}");
    }
    ensure!(sb
        .records("dev")?
        .iter()
        .any(|r| r.ends_with("from operator] hi dev")));
    ensure!(sb
        .records("pm")?
        .iter()
        .any(|r| r.ends_with("from dev] cart done")));
    ensure!(sb
        .records("boss")?
        .iter()
        .any(|r| r.ends_with("from pm] status: green")));
    ensure!(sb
        .records("qa")?
        .iter()
        .any(|r| r.ends_with("from pm] test the cart")));

    // Against it: refused with the rule's name, nothing stored or typed.
    let (ok, out) = sb.torch_as("dev", &["send", "boss", "skip the PM"])?;
    ensure!(
        !ok && out.contains("policy 'hierarchy' refuses dev -> boss"),
        "{out}"
    );
    let (ok, out) = sb.torch_as("boss", &["send", "dev", "micromanage"])?;
    ensure!(
        !ok && out.contains("orchestrator messages project managers only"),
        "{out}"
    );
    let (ok, out) = sb.torch_as("dev", &["send", "qa", "side channel"])?;
    ensure!(!ok && out.contains("refuses"), "{out}");
    ensure!(!sb
        .records("boss")?
        .iter()
        .any(|r| r.contains("skip the PM")));

    // Inside an agent's unit the hub knows who calls: dev cannot pose as boss.
    let cg = sb.unit_property("torch-agent@dev.service", "ControlGroup")?;
    let as_dev = |claim: &str, text: &str| {
        sb.exec(&[
            "sh",
            "-c",
            &format!("echo $$ > '/sys/fs/cgroup{cg}/cgroup.procs' && exec env TORCH_AGENT={claim} torch send pm '{text}'"),
        ])
    };
    let out = as_dev("boss", "posing as boss")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("you are agent dev"),
        "{err}"
    );
    let out = as_dev("dev", "really dev")?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An agent's user outside any agent's unit (a process that escaped it)
    // cannot pick a name, not even the operator's.
    let out = sb.exec(&[
        "runuser",
        "-u",
        "ta-dev",
        "--",
        "env",
        "TORCH_AGENT=operator",
        "torch",
        "send",
        "pm",
        "escaped",
    ])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("cannot tell which agent you are"),
        "{err}"
    );

    // Agents grow the tree below themselves only.
    let (ok, out) = sb.torch_as(
        "dev",
        &[
            "spawn",
            "helper",
            "--role",
            "developer",
            "--parent",
            "dev",
            "--workdir",
            "/srv/work",
            "--",
            torch_tests::fleet::TEST_AGENT,
            "echo",
            "--record",
            "/var/lib/torch-agent/helper/record.jsonl",
        ],
    )?;
    ensure!(ok, "{out}");
    let (ok, out) = sb.torch_as(
        "dev",
        &[
            "spawn",
            "rogue",
            "--role",
            "developer",
            "--parent",
            "pm",
            "--workdir",
            "/srv/work",
        ],
    )?;
    ensure!(!ok && out.contains("below itself"), "{out}");
    let (ok, out) = sb.torch_as(
        "operator",
        &[
            "spawn",
            "bad name",
            "--role",
            "qa",
            "--parent",
            "pm",
            "--workdir",
            "/srv/work",
        ],
    )?;
    ensure!(!ok && out.contains("contains ' '"), "{out}");

    // The status tree.
    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    let agents = status["agents"].as_array().context("agents")?;
    ensure!(agents.len() == 5, "{status}");
    let tree = sb.torch(&["status"])?;
    ensure!(
        tree.contains("boss")
            && tree.contains("  pm")
            && tree.contains("    dev")
            && tree.contains("      helper"),
        "{tree}"
    );

    // Retire: refused while it has children, then transcript kept and removed.
    let (ok, out) = sb.torch_as("operator", &["retire", "dev"])?;
    ensure!(!ok && out.contains("helper"), "{out}");
    sb.torch(&["schedule", "helper", "--in", "1h", "--note", "never fires"])?;
    let out = sb.torch(&["retire", "helper"])?;
    ensure!(
        sb.torch(&["schedules", "--agent", "helper", "--json"])?
            .trim()
            == "[]",
        "retire left schedules"
    );
    let timers = sb.systemctl(&["list-units", "--no-legend", "--plain", "torch-checkin@*"])?;
    ensure!(timers.trim().is_empty(), "retire left timers: {timers}");
    let transcript = out
        .rsplit("final transcript: ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    ensure!(
        transcript.starts_with("/var/lib/torch/transcripts/helper-"),
        "{out}"
    );
    ensure!(String::from_utf8(sb.read_file(&transcript)?)?.contains("[echo] ready"));
    ensure!(sb.unit_property("torch-agent@helper.service", "ActiveState")? == "inactive");
    ensure!(!sb.root().join("var/lib/torch/agents/helper.toml").exists());
    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    ensure!(status["agents"].as_array().map(Vec::len) == Some(4));
    Ok(())
}

#[test]
fn queue_waits_for_a_stopped_agent_and_drains_in_order() -> Result<()> {
    let sb = hub_sandbox("queue")?;
    sb.spawn_echo("dev", "orchestrator", None)?;
    sb.torch(&["stop", "dev"])?;
    for i in 0..5 {
        sb.torch(&["send", "dev", &format!("queued {i}")])?;
    }
    let stored = messages(&sb, "dev")?;
    ensure!(
        stored.len() == 5 && stored.iter().all(|m| m["state"] == "queued"),
        "{stored:?}"
    );
    ensure!(sb.records("dev")?.is_empty());
    let inbox = sb.torch(&["inbox", "dev"])?;
    ensure!(
        inbox.contains("queued 4") && inbox.contains("queued"),
        "{inbox}"
    );
    sb.torch(&["start", "dev"])?;
    let got = wait_records(&sb, "dev", 5, Duration::from_secs(30))?;
    for (i, r) in got.iter().enumerate() {
        ensure!(
            r.ends_with(&format!("from operator] queued {i}")),
            "out of order: {got:?}"
        );
    }
    wait_until("all marked delivered", Duration::from_secs(10), || {
        Ok(messages(&sb, "dev")?
            .iter()
            .all(|m| m["state"] == "delivered"))
    })?;
    Ok(())
}

#[test]
fn hub_killed_mid_burst_loses_and_repeats_nothing() -> Result<()> {
    const AGENTS: usize = 4;
    const EACH: usize = 500;
    let sb = hub_sandbox("burst")?;
    sb.write_file(
        "/etc/torch/torch.toml",
        format!("[policy]\nmode = \"open\"\n{ENVELOPE_FOR_SHELL}").as_bytes(),
        0o644,
    )?;
    sb.systemctl(&["restart", "torch.service"])?;
    let names: Vec<String> = (0..AGENTS).map(|i| format!("b{i}")).collect();
    for n in &names {
        sb.spawn_echo(n, "orchestrator", None)?;
    }
    let start = Instant::now();
    let hub_pid = sb.unit_property("torch.service", "MainPID")?;
    let count = std::sync::atomic::AtomicUsize::new(0);
    let accepted: Vec<Vec<(usize, i64)>> =
        std::thread::scope(|s| -> Result<Vec<Vec<(usize, i64)>>> {
            let senders: Vec<_> = names
                .iter()
                .map(|n| {
                    let sb = &sb;
                    let count = &count;
                    s.spawn(move || -> Result<Vec<(usize, i64)>> {
                        let mut ok = Vec::new();
                        for i in 0..EACH {
                            let out = sb.exec(&["torch", "send", n, &format!("burst {i}")])?;
                            let err = String::from_utf8_lossy(&out.stderr);
                            if out.status.success() {
                                let id = err
                                    .split('#')
                                    .nth(1)
                                    .and_then(|r| r.split_whitespace().next())
                                    .and_then(|x| x.parse().ok())
                                    .context("no id")?;
                                ok.push((i, id));
                                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        Ok(ok)
                    })
                })
                .collect();
            // SIGKILL the hub in the middle of the burst.
            wait_until(
                "a quarter of the burst accepted",
                Duration::from_secs(120),
                || Ok(count.load(std::sync::atomic::Ordering::Relaxed) >= AGENTS * EACH / 4),
            )?;
            sb.systemctl(&["kill", "-s", "KILL", "torch.service"])?;
            senders
                .into_iter()
                .map(|h| h.join().map_err(|_| anyhow::anyhow!("sender panicked"))?)
                .collect()
        })?;
    let new_pid = sb.unit_property("torch.service", "MainPID")?;
    ensure!(new_pid != hub_pid, "the hub was not restarted");
    let total_accepted: usize = accepted.iter().map(Vec::len).sum();
    let mut duplicated = 0;
    let mut lost = 0;
    let mut delivered = 0;
    for (n, acc) in names.iter().zip(&accepted) {
        let got = wait_records(&sb, n, acc.len(), Duration::from_secs(240))?;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &got {
            *seen.entry(r.as_str()).or_default() += 1;
        }
        duplicated += seen.values().filter(|c| **c > 1).count();
        for (i, id) in acc {
            let want = format!("[torch message #{id} from operator] burst {i}");
            match seen.get(want.as_str()) {
                Some(_) => delivered += 1,
                None => lost += 1,
            }
        }
        // Per recipient, delivery follows acceptance order.
        let order: Vec<i64> = got
            .iter()
            .filter_map(|r| r.split('#').nth(1)?.split_whitespace().next()?.parse().ok())
            .collect();
        ensure!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{n}: delivered out of order"
        );
    }
    eprintln!(
        "burst: {} sent, {total_accepted} accepted, {delivered} delivered, {duplicated} duplicated, {lost} lost, {:?} in all",
        AGENTS * EACH,
        start.elapsed()
    );
    ensure!(
        total_accepted > AGENTS * EACH / 2,
        "only {total_accepted} accepted"
    );
    ensure!(
        duplicated == 0 && lost == 0,
        "{duplicated} duplicated, {lost} lost"
    );
    Ok(())
}

#[test]
fn bus_policy_refuses_strangers_and_calls_are_audited() -> Result<()> {
    let sb = hub_sandbox("security")?;
    sb.spawn_echo("dev", "orchestrator", None)?;
    sb.torch(&["send", "dev", "audited"])?;
    let out = sb.exec(&[
        "runuser",
        "-u",
        "nobody",
        "--",
        "torch",
        "send",
        "dev",
        "from a stranger",
    ])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("refused"), "{err}");
    let out = sb.exec(&["runuser", "-u", "nobody", "--", "torch", "status"])?;
    ensure!(!out.status.success());
    // Introspection stays open to everyone.
    let intro = sb.run(&[
        "runuser",
        "-u",
        "nobody",
        "--",
        "busctl",
        "introspect",
        "org.torch.Torch1",
        "/org/torch/Torch1",
    ])?;
    ensure!(
        intro.contains("org.torch.Manager1") && intro.contains(".Send"),
        "{intro}"
    );
    // The hub itself runs unprivileged.
    ensure!(sb.unit_property("torch.service", "User")? == "torch");
    let pid = sb.unit_property("torch.service", "MainPID")?;
    let uid = sb.sh(&format!("stat -c %U /proc/{pid}"))?;
    ensure!(uid.trim() == "torch", "torchd runs as {uid}");
    // polkit lets the torch user manage agent units, and nothing else.
    let other = sb.exec(&[
        "runuser",
        "-u",
        "torch",
        "--",
        "busctl",
        "call",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "StopUnit",
        "ss",
        "dbus.service",
        "replace",
    ])?;
    ensure!(
        !other.status.success(),
        "the torch user could stop dbus.service"
    );
    ensure!(sb.unit_property("dbus.service", "ActiveState")? == "active");
    // The hub's sandbox: systemd's exposure score at most 3.0 (of 10).
    let out = sb.exec(&["systemd-analyze", "security", "--no-pager", "torch.service"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for torch.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no exposure level")?;
    eprintln!("systemd-analyze security torch.service: {score}");
    ensure!(score <= 3.0, "exposure {score}:\n{text}");
    let audit = sb.journal(&["TORCH_AUDIT=1", "-o", "verbose"])?;
    ensure!(
        audit.contains("called SendOnce: operator -> dev queued as #"),
        "{audit}"
    );
    ensure!(
        audit.contains("called Spawn") && audit.contains("CALLER_UID=0"),
        "{audit}"
    );
    ensure!(!audit.contains("from a stranger"));
    Ok(())
}

#[test]
fn messages_wait_while_the_agent_is_busy() -> Result<()> {
    let sb = hub_sandbox("hold")?;
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    sb.torch(&[
        "spawn",
        "slow",
        "--role",
        "orchestrator",
        "--workdir",
        "/srv/work",
        "--",
        torch_tests::fleet::TEST_AGENT,
        "slow",
        "--record",
        "/var/lib/torch-agent/slow/record.jsonl",
        "--startup",
        "4",
    ])?;
    sb.torch(&["send", "slow", "wait for me"])?;
    std::thread::sleep(Duration::from_millis(1500));
    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    ensure!(status["agents"][0]["agent_state"] == "working", "{status}");
    ensure!(messages(&sb, "slow")?[0]["state"] == "queued");
    ensure!(sb.records("slow")?.is_empty());
    let got = wait_records(&sb, "slow", 1, Duration::from_secs(30))?;
    ensure!(
        got == ["[torch message #1 from operator] wait for me"],
        "{got:?}"
    );
    let j = sb.journal(&["-u", "torch.service", "-o", "cat"])?;
    ensure!(
        j.contains("holding message #1 for slow: its screen shows it working"),
        "{j}"
    );
    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    ensure!(status["agents"][0]["agent_state"] == "idle", "{status}");
    Ok(())
}
