//! Messages across the nodes of a cluster: `torch send --wait` (the CLI as
//! a process, as a user times it) to an echo agent of the same node and to
//! one of another node, through Debian's Redis on a unix socket, on two
//! sandboxes of their own. The same-node sends are the yardstick, measured
//! in the same run, alternately with the cross-node ones.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use torch_tests::redis::{cluster_node, Redis};
use torch_tests::wait_until;

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
