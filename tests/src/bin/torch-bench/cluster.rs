//! Messages across the nodes of a cluster: `torch send --wait` (the CLI as
//! a process, as a user times it) to an echo agent of the same node and to
//! one of another node, through Debian's Redis on a unix socket, on two
//! sandboxes of their own. The same-node sends are the yardstick, measured
//! in the same run, alternately with the cross-node ones.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use torch_tests::redis::{cluster_node, cluster_node_on, Redis};
use torch_tests::wait_until;

use crate::checks::{inside, parallel};
use crate::report::{ms, percentile, Report};

pub fn run(r: &mut Report, samples: usize) -> Result<()> {
    let shared = PathBuf::from(format!("/srv/torch-bench/cluster-{}", std::process::id()));
    let redis = Redis::start(&shared)?;
    redis.add_node_users(&["node-a", "node-b"])?;
    let a = cluster_node("bench-node-a", "node-a", &redis, &shared)?;
    let b = cluster_node("bench-node-b", "node-b", &redis, &shared)?;
    a.spawn_echo("near", "orchestrator", None)?;
    b.spawn_echo("far", "orchestrator", None)?;
    wait_until("node-a sees far", Duration::from_secs(30), || {
        Ok(a.torch(&["agents", "--json"])?.contains("\"far\""))
    })?;
    // One of each first: both agents up and reading.
    for to in ["near", "far"] {
        a.torch(&["send", "--wait", to, "warm"])?;
    }
    let (mut near, mut far) = (Vec::new(), Vec::new());
    for i in 0..samples {
        for (to, times) in [("near", &mut near), ("far", &mut far)] {
            let t = Instant::now();
            a.torch(&["send", "--wait", to, &format!("sample {i}")])?;
            times.push(t.elapsed());
        }
    }
    ensure!(
        b.records("far")?.len() == samples + 1,
        "far recorded {:?}",
        b.records("far")?.len()
    );
    near.sort();
    far.sort();
    let row = |what: &str, t: &[Duration]| {
        vec![
            what.to_string(),
            t.len().to_string(),
            ms(percentile(t, 0.5)),
            ms(percentile(t, 0.99)),
        ]
    };
    r.table(
        &[
            "`torch send --wait` from node-a, to the delivery told back",
            "samples",
            "p50 (ms)",
            "p99 (ms)",
        ],
        &[
            row("an agent of node-a (same node)", &near),
            row("an agent of node-b (through Redis)", &far),
        ],
    );
    let ratio = percentile(&far, 0.5).as_secs_f64() / percentile(&near, 0.5).as_secs_f64();
    r.line(format!(
        "Across nodes, p50 is {ratio:.1} times the same node's: two trips through Redis (the message, then its delivery told back), each read at once by a blocked XREADGROUP."
    ));
    Ok(())
}

/// The nodes of the throughput part, and the first letter of their agents'
/// names.
const NODES: [(&str, &str); 3] = [("node-a", "a"), ("node-b", "b"), ("node-c", "c")];

/// Three nodes of `agents` echo agents each: verified messages per second
/// when each node sends to its own agents, then when each sends to the next
/// node's agents through Redis, all three nodes at once both times.
pub fn throughput(r: &mut Report, agents: usize, per_agent: usize, threads: usize) -> Result<()> {
    let pid = std::process::id();
    let shared = PathBuf::from(format!("/srv/torch-bench/cluster-tp-{pid}"));
    let redis = Redis::start(&shared)?;
    redis.add_node_users(&NODES.map(|(n, _)| n))?;
    // Each store on the host's disk, as in the fleet part.
    let states: Vec<PathBuf> = NODES
        .iter()
        .map(|(n, _)| std::env::temp_dir().join(format!("torch-bench-{n}-{pid}")))
        .collect();
    let mut nodes = Vec::new();
    for ((node, _), state) in NODES.iter().zip(&states) {
        std::fs::create_dir_all(state)?;
        let sb = cluster_node_on(
            &format!("bench-tp-{node}"),
            node,
            &redis,
            &shared,
            Some(state),
        )?;
        let quota = format!("[quotas]\nmax_fleet = {}\n", agents + 10);
        sb.run(&["mkdir", "-p", "/etc/torch/torch.toml.d"])?;
        sb.write_file(
            "/etc/torch/torch.toml.d/bench.toml",
            quota.as_bytes(),
            0o644,
        )?;
        sb.systemctl(&["restart", "torch.service"])?;
        nodes.push(sb);
    }
    let spawn = parallel(agents * 3, threads, 50, "agents spawned on 3 nodes", |i| {
        let (sb, letter) = (&nodes[i % 3], NODES[i % 3].1);
        sb.spawn_echo(&format!("{letter}{}", i / 3), "orchestrator", None)
    })?;
    // Every node sees all the others' agents, and each agent is up and
    // reading: one message from its own node.
    for sb in &nodes {
        wait_until(
            "the whole fleet in the registry",
            Duration::from_secs(120),
            || {
                let json = sb.torch(&["agents", "--json"])?;
                Ok(NODES
                    .iter()
                    .all(|(_, l)| json.contains(&format!("\"{l}{}\"", agents - 1))))
            },
        )?;
    }
    parallel(agents * 3, threads, 100, "first messages sent", |i| {
        let name = format!("{}{}", NODES[i % 3].1, i / 3);
        nodes[i % 3].torch(&["send", &name, "hello"]).map(drop)
    })?;
    let all = |n: usize| -> Result<bool> {
        Ok((0..agents * 3).all(|i| {
            let name = format!("{}{}", NODES[i % 3].1, i / 3);
            nodes[i % 3].records(&name).is_ok_and(|r| r.len() >= n)
        }))
    };
    wait_until("first messages delivered", Duration::from_secs(300), || {
        all(1)
    })?;
    let same = phase(&nodes, agents, per_agent, 0)?;
    let across = phase(&nodes, agents, per_agent, 1)?;
    report(r, agents, spawn, &same, &across);
    drop(nodes);
    for state in states {
        let _ = std::fs::remove_dir_all(state);
    }
    Ok(())
}

/// What one phase of the throughput part measured.
struct Phase {
    sent: usize,
    refused: usize,
    intact: usize,
    accepted: Duration,
    done: Duration,
}

/// Each node sends `per_agent` messages to every agent of the node `shift`
/// places after it (0: its own), all nodes at once; timed until every
/// message is in its agent's record, where the agent runs.
fn phase(
    nodes: &[torch_tests::Sandbox],
    agents: usize,
    per_agent: usize,
    shift: usize,
) -> Result<Phase> {
    let target = |i: usize| (i + shift) % nodes.len();
    let names = |t: usize| (0..agents).map(move |a| format!("{}{a}", NODES[t].1));
    let before: Vec<Vec<usize>> = (0..nodes.len())
        .map(|t| {
            names(t)
                .map(|n| nodes[t].records(&n).map(|r| r.len()))
                .collect()
        })
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    let outs: Vec<Result<serde_json::Value>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..nodes.len())
            .map(|i| {
                let prefix = NODES[target(i)].1;
                let (agents, per_agent) = (agents.to_string(), per_agent.to_string());
                s.spawn(move || {
                    let args = ["inner-send", prefix, &agents, &per_agent, "400"];
                    inside(&nodes[i], &args)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a sender panicked")))
            })
            .collect()
    });
    let accepted = t0.elapsed();
    let mut refused = 0;
    for out in outs {
        refused += out?["refused"].as_u64().unwrap_or(0) as usize;
    }
    let sent = nodes.len() * agents * per_agent;
    let intact = |_: ()| -> Result<usize> {
        let mut n = 0;
        for (t, sb) in nodes.iter().enumerate() {
            for (name, b) in names(t).zip(&before[t]) {
                let got = sb.records(&name)?;
                n += crate::inner::intact_records(&name, per_agent, got.get(*b..).unwrap_or(&[]));
            }
        }
        Ok(n)
    };
    wait_until("every message verified", Duration::from_secs(600), || {
        Ok(intact(())? + refused >= sent)
    })?;
    Ok(Phase {
        sent,
        refused,
        intact: intact(())?,
        accepted,
        done: t0.elapsed(),
    })
}

fn report(r: &mut Report, agents: usize, spawn: Duration, same: &Phase, across: &Phase) {
    let row = |what: &str, p: &Phase| {
        vec![
            what.to_string(),
            format!("{} / {} / {}", p.sent, p.refused, p.intact),
            format!("{:.2} s", p.accepted.as_secs_f64()),
            format!("{:.2} s", p.done.as_secs_f64()),
            format!("{:.0}", p.intact as f64 / p.done.as_secs_f64().max(1e-9)),
        ]
    };
    r.line(format!(
        "3 nodes of {agents} echo agents each ({} in all), spawned through their hubs in {:.1} s.",
        agents * 3,
        spawn.as_secs_f64()
    ));
    r.table(
        &[
            "all three nodes at once, each sending",
            "sent / refused / intact",
            "all accepted after",
            "all verified after",
            "verified messages per second",
        ],
        &[
            row("to its own agents (same node)", same),
            row("to the next node's agents (through Redis)", across),
        ],
    );
    let rate = |p: &Phase| p.intact as f64 / p.done.as_secs_f64().max(1e-9);
    r.line(format!(
        "Across nodes, the fleet's verified rate is {:.2} times the same-node rate measured in the same run.",
        rate(across) / rate(same).max(1e-9)
    ));
}
