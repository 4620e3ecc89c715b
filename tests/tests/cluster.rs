//! Hubs as nodes of one cluster: two or three sandboxes (each a real
//! systemd with its own hub and store) and Debian's Redis on a unix socket
//! they all see, or with TLS. The registry agrees on every node, a name is
//! unique across the cluster, messages cross nodes once each and in order
//! through faults, a node that goes away shows lost and gets its messages
//! when back, and a Redis outage leaves each node working alone.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use torch_tests::redis::{Redis, Tls};
use torch_tests::{wait_until, Sandbox};

fn node(label: &str, node: &str, redis: &Redis, shared: &Path) -> Result<Sandbox> {
    torch_tests::redis::cluster_node(label, node, redis, shared)
}

fn add_users(redis: &Redis) -> Result<()> {
    redis.add_node_users(&["node-a", "node-b"])
}

/// The rows of `torch status --json` on `sb`.
fn status(sb: &Sandbox) -> Result<Vec<Value>> {
    let json: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    Ok(json["agents"].as_array().cloned().unwrap_or_default())
}

/// `name`'s (node, active state) in `sb`'s status, if listed.
fn seen(sb: &Sandbox, name: &str) -> Result<Option<(String, String)>> {
    Ok(status(sb)?
        .into_iter()
        .find(|a| a["name"] == name)
        .map(|a| {
            (
                a["node"].as_str().unwrap_or_default().to_string(),
                a["active_state"].as_str().unwrap_or_default().to_string(),
            )
        }))
}

fn wait_seen(sb: &Sandbox, name: &str, node: &str, state: &str) -> Result<()> {
    wait_until(
        &format!("{name} on node {node} {state} in {}", sb.name()),
        Duration::from_secs(20),
        || Ok(seen(sb, name)?.is_some_and(|(n, s)| n == node && s == state)),
    )
    .with_context(|| format!("status: {:?}", status(sb)))
}

/// `torch spawn` of an echo agent `name` (on `node`, when given), its
/// record in its own home.
fn echo_spawn(name: &str, node: Option<&str>, role: &str, parent: Option<&str>) -> Vec<String> {
    let mut args = vec!["spawn", name, "--role", role, "--workdir", "/srv/work"];
    if let Some(n) = node {
        args.extend(["--node", n]);
    }
    if let Some(p) = parent {
        args.extend(["--parent", p]);
    }
    let record = torch_tests::fleet::record_path(name);
    args.extend([
        "--",
        torch_tests::fleet::TEST_AGENT,
        "echo",
        "--record",
        &record,
    ]);
    args.into_iter().map(str::to_string).collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Checks that a spawn of `name` on `sb`, node `here`, is refused: node
/// `owner` holds the name.
fn refused_as_taken(sb: &Sandbox, here: &str, name: &str, owner: &str) -> Result<()> {
    let spawn = echo_spawn(name, Some(here), "orchestrator", None);
    let (ok, out) = sb.torch_status(&strs(&spawn))?;
    ensure!(
        !ok && out.contains(&format!("already exists on node {owner}")),
        "{out}"
    );
    Ok(())
}

#[test]
fn nodes_share_one_registry_and_unique_names() -> Result<()> {
    let shared = PathBuf::from(format!("/srv/torch-tests/cluster-{}", std::process::id()));
    let mut redis = Redis::start(&shared)?;
    add_users(&redis)?;
    let a = node("cluster-a", "node-a", &redis, &shared)?;
    let b = node("cluster-b", "node-b", &redis, &shared)?;
    a.spawn_echo("alpha", "orchestrator", None)?;
    b.spawn_echo("beta", "orchestrator", None)?;

    // Each node shows the whole fleet, each agent with its node.
    wait_seen(&a, "beta", "node-b", "active")?;
    wait_seen(&b, "alpha", "node-a", "active")?;
    ensure!(seen(&a, "alpha")?.is_some_and(|(n, _)| n == "node-a"));
    // Each node signed in as its own user, which reaches Torch's keys only.
    let clients = redis.cli(&["CLIENT", "LIST"])?;
    ensure!(
        clients.contains("user=torch-node-a") && clients.contains("user=torch-node-b"),
        "{clients}"
    );
    let keys = redis.cli(&["KEYS", "*"])?;
    ensure!(keys.lines().all(|k| k.starts_with("torch:")), "{keys}");
    let table = a.torch(&["status"])?;
    ensure!(
        table.contains("NODE") && table.contains("node-b"),
        "{table}"
    );
    let dir: Value = serde_json::from_str(&b.torch(&["agents", "--json"])?)?;
    let names: Vec<(&str, &str)> = dir["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or(""),
                e["node"].as_str().unwrap_or(""),
            )
        })
        .collect();
    ensure!(
        names.contains(&("alpha", "node-a")) && names.contains(&("beta", "node-b")),
        "{names:?}"
    );

    // The web dashboard of either node shows the whole fleet, each agent
    // with its node.
    b.systemctl(&["enable", "--now", "torch-web.socket"])?;
    let web = b.run(&[
        "curl",
        "-sSf",
        "--max-time",
        "15",
        "http://127.0.0.1:9467/api/status",
    ])?;
    let web: Value = serde_json::from_str(&web)?;
    let shown = web["agents"].as_array().cloned().unwrap_or_default();
    ensure!(
        shown
            .iter()
            .any(|a| a["name"] == "alpha" && a["node"] == "node-a"),
        "{web:#}"
    );

    // A name is unique across the cluster.
    refused_as_taken(&b, "node-b", "alpha", "node-a")?;

    spawned_on_the_other_node(&a, &b)?;

    // A node whose hub stops is lost after three missed heartbeats, and back
    // once it publishes again.
    b.systemctl(&["stop", "torch.service"])?;
    wait_seen(&a, "beta", "node-b", "lost")?;
    b.start_hub()?;
    wait_seen(&a, "beta", "node-b", "active")?;

    through_a_redis_outage(&a, &b, &mut redis)?;
    placed_by_load_or_parent(&a, &b)?;
    forgotten_for_good(&a, &b, &redis)
}

/// `torch spawn --node`: the agent runs on the other node, which the
/// registry then shows, and messages reach it; what is refused.
fn spawned_on_the_other_node(a: &Sandbox, b: &Sandbox) -> Result<()> {
    // Spawned on the other node, by its name: the agent runs there, the
    // registry says so, and messages reach it.
    let far = echo_spawn("far", Some("node-b"), "orchestrator", None);
    let far: Vec<&str> = strs(&far);
    let said = a.torch(&far)?;
    ensure!(said.contains("torch-agent@far.service"), "{said}");
    ensure!(b.unit_property("torch-agent@far.service", "ActiveState")? == "active");
    wait_seen(a, "far", "node-b", "active")?;
    a.torch(&["send", "--wait", "far", "made on node-a"])?;
    ensure!(b.records("far")? == ["made on node-a"]);
    // Its name is taken there: a second spawn anywhere is refused.
    let (ok, out) = a.torch_status(&far)?;
    ensure!(
        !ok && out.contains("node node-b: agent far already exists"),
        "{out}"
    );
    let nowhere = echo_spawn("far", Some("nowhere"), "orchestrator", None);
    let (ok, out) = a.torch_status(&strs(&nowhere))?;
    ensure!(
        !ok && out.contains("no node nowhere in the cluster"),
        "{out}"
    );
    // An agent spawns on its own node only.
    let helper = echo_spawn("helper", Some("node-b"), "orchestrator", None);
    let (ok, out) = a.torch_as("alpha", &strs(&helper))?;
    ensure!(
        !ok && out.contains("may spawn on its own node only"),
        "{out}"
    );
    Ok(())
}

/// Redis killed, then back empty.
fn through_a_redis_outage(a: &Sandbox, b: &Sandbox, redis: &mut Redis) -> Result<()> {
    // Redis away: each node goes on alone; a spawn, whose name cannot be
    // checked, is refused with the reason, and works once Redis is back.
    redis.pause()?;
    a.spawn_echo("gamma", "orchestrator", None)
        .err()
        .map(|e| e.to_string())
        .filter(|e| e.contains("cannot check the name gamma across the cluster"))
        .context("a spawn without Redis was not refused for its name")?;
    ensure!(
        seen(a, "alpha")?.is_some(),
        "alpha gone from node-a's status"
    );
    let (ok, out) = a.torch_status(&["send", "--wait", "alpha", "still here"])?;
    ensure!(ok, "{out}");
    // Unheard from Redis, the other node is lost from here.
    wait_seen(a, "beta", "node-b", "lost")?;
    redis.resume()?;
    add_users(redis)?;
    // The new Redis is empty: each node publishes itself and claims its
    // names again.
    wait_seen(b, "alpha", "node-a", "active")?;
    wait_seen(a, "beta", "node-b", "active")?;
    a.spawn_echo("gamma", "orchestrator", None)?;
    refused_as_taken(b, "node-b", "gamma", "node-a")?;

    // Retired, its name is free for another node.
    a.torch(&["retire", "gamma"])?;
    b.torch(&strs(&echo_spawn(
        "gamma",
        Some("node-b"),
        "orchestrator",
        None,
    )))?;
    wait_seen(a, "gamma", "node-b", "active")?;
    Ok(())
}

/// Where an operator's spawn goes with `--node auto`, and with a parent on
/// the other node.
fn placed_by_load_or_parent(a: &Sandbox, b: &Sandbox) -> Result<()> {
    // With `--node auto`, the operator's spawn goes to the node with the
    // fewest agents: node-a has one, node-b three. Named no node, one with a
    // parent on another node goes there.
    b.torch(&strs(&echo_spawn(
        "placed",
        Some("auto"),
        "orchestrator",
        None,
    )))?;
    ensure!(a.unit_property("torch-agent@placed.service", "ActiveState")? == "active");
    let under = echo_spawn("under-far", None, "project-manager", Some("far"));
    a.torch(&strs(&under))?;
    ensure!(b.unit_property("torch-agent@under-far.service", "ActiveState")? == "active");
    below_a_parent_elsewhere(a, b)
}

/// The operator puts an engineer of node-a below a project manager of
/// node-b: they message each other, each node's policy taking the parent
/// across, and the engineer still reaches no further than its parent.
fn below_a_parent_elsewhere(a: &Sandbox, b: &Sandbox) -> Result<()> {
    wait_seen(a, "under-far", "node-b", "active")?;
    let eng = echo_spawn("eng-a", Some("node-a"), "engineer", Some("under-far"));
    a.torch(&strs(&eng))?;
    ensure!(a.unit_property("torch-agent@eng-a.service", "ActiveState")? == "active");
    wait_seen(b, "eng-a", "node-a", "active")?;
    let (ok, out) = a.torch_in_unit("eng-a", &["send", "--wait", "under-far", "up the tree"])?;
    ensure!(ok, "{out}");
    let (ok, out) = b.torch_in_unit("under-far", &["send", "--wait", "eng-a", "down the tree"])?;
    ensure!(ok, "{out}");
    let got = a.records("eng-a")?;
    ensure!(
        got.len() == 1 && got[0].ends_with("down the tree"),
        "{got:?}"
    );
    let (ok, out) = a.torch_in_unit("eng-a", &["send", "far", "over my parent"])?;
    ensure!(!ok && out.contains("policy 'hierarchy' refuses"), "{out}");
    // The parent is not retired while it has an agent below it elsewhere.
    let (ok, out) = b.torch_status(&["retire", "under-far"])?;
    ensure!(!ok && out.contains("eng-a (node node-a)"), "{out}");
    // An agent may not put one below a parent elsewhere.
    let helper = echo_spawn("helper-a", None, "engineer", Some("under-far"));
    let (ok, out) = a.torch_in_unit("eng-a", &strs(&helper))?;
    ensure!(!ok, "{out}");
    Ok(())
}

/// `torch node forget`: what is refused; a lost node forgotten, its names
/// free and what waited for its agents failed.
fn forgotten_for_good(a: &Sandbox, b: &Sandbox, redis: &Redis) -> Result<()> {
    for (who, node, why) in [
        ("operator", "node-b", "node node-b is not lost"),
        ("operator", "node-a", "node node-a is this node"),
        ("operator", "nowhere", "no node nowhere in the cluster"),
        ("alpha", "node-b", "agent alpha may not call ForgetNode"),
    ] {
        let forget = ["node", "forget", node];
        let (ok, out) = match who {
            "operator" => a.torch_status(&forget)?,
            agent => a.torch_in_unit(agent, &forget)?,
        };
        ensure!(!ok && out.contains(why), "{who} forgetting {node}: {out}");
    }
    b.systemctl(&["stop", "torch.service"])?;
    wait_seen(a, "beta", "node-b", "lost")?;
    a.torch(&["send", "beta", "never delivered"])?;
    wait_until(
        "the message in node-b's inbox",
        Duration::from_secs(10),
        || Ok(redis.cli(&["XLEN", "torch:inbox:node-b"])? == "1"),
    )?;
    let said = a.torch(&["node", "forget", "node-b"])?;
    ensure!(
        said.contains("forgot node node-b")
            && said.contains("messages dropped from its inbox: 1;")
            && said.contains("messages of this node failed: 1"),
        "{said}"
    );
    ensure!(seen(a, "beta")?.is_none(), "status: {:?}", status(a)?);
    let history = a.torch(&["messages", "--agent", "beta", "--json"])?;
    ensure!(history.contains("node node-b was forgotten"), "{history}");
    // Its names are free: node-a may run a beta of its own.
    a.spawn_echo("beta", "orchestrator", None)?;
    Ok(())
}

/// Sends `prefix-0` .. `prefix-{n-1}` to `to` from `sender` of `sb` (an
/// agent there, or `operator`), one `torch send` each, as fast as they
/// return. A send the hub was not there to take (killed, restarting) is
/// made again, as a script would: nothing was stored then.
fn burst(sb: &Sandbox, sender: &str, to: &str, prefix: &str, n: usize) -> Result<()> {
    for i in 0..n {
        let text = format!("{prefix}-{i}");
        wait_until(&format!("{text} taken"), Duration::from_secs(60), || {
            let (ok, out) = sb.torch_as(sender, &["send", to, &text])?;
            ensure!(ok || out.contains("hub"), "{out}");
            Ok(ok)
        })?;
    }
    Ok(())
}

/// Waits until `name` on `sb` recorded `n` messages; all it recorded.
fn wait_records(sb: &Sandbox, name: &str, n: usize) -> Result<Vec<String>> {
    wait_until(
        &format!("{n} messages recorded by {name}"),
        Duration::from_secs(120),
        || Ok(sb.records(name)?.len() >= n),
    )
    .with_context(|| format!("{name} recorded {:?}", sb.records(name).map(|r| r.len())))?;
    sb.records(name)
}

/// Checks that `got` holds exactly `prefix-0` .. `prefix-{n-1}` of each
/// prefix, each once and in order among its own.
fn each_once_in_order(got: &[String], runs: &[(&str, usize)]) -> Result<()> {
    let total: usize = runs.iter().map(|(_, n)| n).sum();
    ensure!(got.len() == total, "{} recorded, {total} sent", got.len());
    for (prefix, n) in runs {
        let mine: Vec<&str> = got
            .iter()
            .filter(|m| m.rsplit_once('-').is_some_and(|(p, _)| p == *prefix))
            .map(String::as_str)
            .collect();
        let want: Vec<String> = (0..*n).map(|i| format!("{prefix}-{i}")).collect();
        ensure!(mine == want, "{prefix}: {mine:?}");
    }
    Ok(())
}

#[test]
fn messages_cross_nodes_once_each_in_order_through_faults() -> Result<()> {
    let shared = PathBuf::from(format!(
        "/srv/torch-tests/cluster-msgs-{}",
        std::process::id()
    ));
    let mut redis = Redis::start(&shared)?;
    add_users(&redis)?;
    let a = node("cluster-msgs-a", "node-a", &redis, &shared)?;
    let b = node("cluster-msgs-b", "node-b", &redis, &shared)?;
    // An orchestrator on one node, a project manager on the other: the
    // hierarchy lets them message each other.
    a.spawn_echo("alpha", "orchestrator", None)?;
    b.spawn_echo("boss-b", "orchestrator", None)?;
    b.spawn_echo("beta", "project-manager", Some("boss-b"))?;
    b.spawn_echo("dev", "engineer", Some("beta"))?;
    wait_seen(&a, "beta", "node-b", "active")?;
    wait_seen(&b, "alpha", "node-a", "active")?;

    // 1,000 messages, both ways at once, from four senders (each node's
    // operator and agent); node-b's hub is killed part way and restarted by
    // systemd.
    const N: usize = 250;
    std::thread::scope(|s| -> Result<()> {
        let senders = [
            s.spawn(|| burst(&a, "operator", "beta", "OPA", N)),
            s.spawn(|| burst(&a, "alpha", "beta", "ALPHA", N)),
            s.spawn(|| burst(&b, "operator", "alpha", "OPB", N)),
            s.spawn(|| burst(&b, "beta", "alpha", "BETA", N)),
        ];
        wait_until("beta's first messages", Duration::from_secs(60), || {
            Ok(b.records("beta")?.len() >= N / 2)
        })?;
        b.systemctl(&["kill", "-s", "KILL", "torch.service"])?;
        for sender in senders {
            sender
                .join()
                .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
        }
        Ok(())
    })?;
    let to_beta = wait_records(&b, "beta", 2 * N)?;
    each_once_in_order(&to_beta, &[("OPA", N), ("ALPHA", N)])?;
    let to_alpha = wait_records(&a, "alpha", 2 * N)?;
    each_once_in_order(&to_alpha, &[("OPB", N), ("BETA", N)])?;
    let restarts = b.unit_property("torch.service", "NRestarts")?;
    ensure!(restarts == "1", "node-b's hub restarted {restarts} times");

    // Redis killed for 20 s during a burst, and back empty: what was not
    // handed over waits in the sender's store, what Redis lost is handed over
    // again when no answer came, and each arrives once, in order.
    std::thread::scope(|s| -> Result<()> {
        let sender = s.spawn(|| burst(&a, "operator", "beta", "OUT", 40));
        wait_until("the burst under way", Duration::from_secs(30), || {
            Ok(b.records("beta")?.len() > 2 * N + 5)
        })?;
        redis.pause()?;
        std::thread::sleep(Duration::from_secs(20));
        redis.resume()?;
        add_users(&redis)?;
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
        Ok(())
    })?;
    let to_beta = wait_records(&b, "beta", 2 * N + 40)?;
    each_once_in_order(&to_beta, &[("OPA", N), ("ALPHA", N), ("OUT", 40)])?;

    // A sender waiting for delivery hears it from the other node.
    let (ok, out) = a.torch_status(&["send", "--wait", "beta", "WAITED-0"])?;
    ensure!(ok, "{out}");
    ensure!(b.records("beta")?.last().map(String::as_str) == Some("WAITED-0"));
    // The sending node's policy, with the recipient as its node publishes
    // it: the orchestrator messages project managers only.
    let (ok, out) = a.torch_as("alpha", &["send", "dev", "no"])?;
    ensure!(
        !ok && out.contains("policy 'hierarchy' refuses alpha -> dev"),
        "{out}"
    );
    // A name nobody defines is still refused at once.
    let (ok, out) = a.torch_status(&["send", "nobody", "x"])?;
    ensure!(!ok, "{out}");
    Ok(())
}

/// Three nodes; node-c reaches Redis over TLS with a client certificate
/// (the server listens with TLS in node-c's network, for the others on its
/// socket). node-b powers off and comes back.
#[test]
fn a_node_that_goes_away_gets_its_messages_when_it_is_back() -> Result<()> {
    let pid = std::process::id();
    let shared = PathBuf::from(format!("/srv/torch-tests/cluster-away-{pid}"));
    let persist = PathBuf::from(format!("/srv/torch-tests/cluster-away-{pid}-b-state"));
    let _ = std::fs::remove_dir_all(&persist);
    std::fs::create_dir_all(&persist)?;
    let _gone = RemovedOnDrop(persist.clone());
    std::fs::create_dir_all(&shared)?;
    let c = Sandbox::boot_sharing("cluster-away-c", &shared, None)?;
    let tls = Tls::make(&shared.join("tls"))?;
    let redis = Redis::start_tls(&shared, &c, &tls)?;
    redis.add_node_users(&["node-a", "node-b", "node-c"])?;
    let c = torch_tests::redis::tls_node(c, "node-c", &tls)?;
    let a = node("cluster-away-a", "node-a", &redis, &shared)?;
    c.spawn_echo("gamma", "orchestrator", None)?;
    {
        let b = torch_tests::redis::cluster_node_on(
            "cluster-away-b1",
            "node-b",
            &redis,
            &shared,
            Some(&persist),
        )?;
        b.spawn_echo("beta", "orchestrator", None)?;
        // The registry agrees on all three nodes.
        for sb in [&a, &c] {
            wait_seen(sb, "beta", "node-b", "active")?;
        }
        for sb in [&a, &b] {
            wait_seen(sb, "gamma", "node-c", "active")?;
        }
        // node-c is the client on TCP (the server has no plain TCP port).
        let clients = redis.cli(&["CLIENT", "LIST"])?;
        ensure!(
            clients
                .lines()
                .any(|l| l.contains("user=torch-node-c") && l.contains("addr=127.0.0.1:")),
            "{clients}"
        );
        burst(&a, "operator", "beta", "BEFORE", 5)?;
        wait_records(&b, "beta", 5)?;
        a_pool_spreads(&a)?;
    } // node-b powers off: its sandbox stops, its store kept
    for sb in [&a, &c] {
        wait_seen(sb, "beta", "node-b", "lost")?;
    }
    // The pool's member lost with node-b is replaced on node-a.
    wait_member(&a, "crew-3", "node-a")?;
    // Messages for an agent of a lost node are taken, and wait, from
    // either node.
    burst(&a, "operator", "beta", "AWAY", 20)?;
    burst(&c, "operator", "beta", "FROM-C", 10)?;
    let b = torch_tests::redis::cluster_node_on(
        "cluster-away-b2",
        "node-b",
        &redis,
        &shared,
        Some(&persist),
    )?;
    // The machine back: its hub brings back the agents that ran, and each
    // message waiting for them arrives once, in order; none from before
    // comes again (the pane's record is new with the machine).
    b.systemctl(&["start", "torch.target"])?;
    let got = wait_records(&b, "beta", 30)?;
    each_once_in_order(&got, &[("AWAY", 20), ("FROM-C", 10)])?;
    wait_seen(&a, "beta", "node-b", "active")?;
    let (ok, out) = a.torch_status(&["send", "--wait", "beta", "BACK-0"])?;
    ensure!(ok, "{out}");
    // Its member back, the pool is one over its minimum: a member idle
    // for long enough is retired.
    wait_seen(&a, "crew-2", "node-b", "active")?;
    let crew = |sb: &Sandbox| -> Result<usize> {
        let rows = status(sb)?;
        Ok(rows
            .iter()
            .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("crew-")))
            .count())
    };
    wait_until(
        "the pool back to 2 members",
        Duration::from_secs(30),
        || Ok(crew(&a)? == 2),
    )
    .with_context(|| format!("{:?}", a.journal(&["-u", "torch", "-g", "pool"])))?;
    // And the TLS node's agent gets what the others send.
    burst(&b, "operator", "gamma", "TO-C", 5)?;
    let got = wait_records(&c, "gamma", 5)?;
    each_once_in_order(&got, &[("TO-C", 5)])?;
    a_task_for_a_worker_elsewhere(&a, &b, &c)
}

/// A directory of the test's, removed however the test ends.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pool run by node-a whose members may run on node-a and node-b, below
/// an orchestrator of node-c: its two members go one to each node.
const POOL: &str = r#"
[pools.crew]
role = "engineer"
parent = "gamma"
workdir = "/srv/work"
skills = ["go"]
profile = "shell"
min = 2
max = 3
idle_retire_after = "3s"
nodes = ["node-a", "node-b"]
command = ["bash", "--norc", "-c", "while printf 'crew> ' && IFS= read -r line; do :; done"]
"#;

fn a_pool_spreads(a: &Sandbox) -> Result<()> {
    a.run(&["mkdir", "-p", "/etc/torch/torch.toml.d"])?;
    a.write_file("/etc/torch/torch.toml.d/pool.toml", POOL.as_bytes(), 0o644)?;
    a.systemctl(&["restart", "torch.service"])?;
    wait_member(a, "crew-1", "node-a")?;
    wait_member(a, "crew-2", "node-b")
}

/// Waits until pool member `name` runs on `node`, as `sb` sees it.
fn wait_member(sb: &Sandbox, name: &str, node: &str) -> Result<()> {
    wait_until(
        &format!("{name} on {node}"),
        Duration::from_secs(60),
        || Ok(seen(sb, name)?.is_some_and(|(n, s)| n == node && s == "active")),
    )
    .with_context(|| format!("status: {:?}", status(sb)))
}

/// A task of node-a's ledger that only a worker of node-c can do goes to
/// it; the worker starts and finishes it from node-c.
fn a_task_for_a_worker_elsewhere(a: &Sandbox, b: &Sandbox, c: &Sandbox) -> Result<()> {
    c.spawn_echo("pm-c", "project-manager", Some("gamma"))?;
    let mut dev = echo_spawn("dev-c", None, "engineer", Some("pm-c"));
    let at = dev.iter().position(|x| x == "--").unwrap_or(dev.len());
    dev.splice(at..at, ["--skill".to_string(), "rust".to_string()]);
    c.torch(&strs(&dev))?;
    wait_seen(a, "dev-c", "node-c", "active")?;
    let said = a.torch(&[
        "task",
        "add",
        "--title",
        "Port the parser",
        "--skill",
        "rust",
    ])?;
    let id = said
        .trim()
        .strip_prefix("task #")
        .with_context(|| format!("task add said {said:?}"))?
        .to_string();
    let given = format!("Task #node-a:{id} for you");
    wait_until(
        "the task on dev-c's screen",
        Duration::from_secs(30),
        || Ok(c.records("dev-c")?.iter().any(|r| r.contains(&given))),
    )
    .with_context(|| format!("dev-c recorded {:?}", c.records("dev-c")))?;
    let task = format!("node-a:{id}");
    // The operator of node-c moves node-a's tasks on node-a, and an agent
    // of another node than the holder's moves none.
    let (ok, out) = c.torch_status(&["task", "start", &task])?;
    ensure!(!ok && out.contains("on node node-a"), "{out}");
    let (ok, out) = b.torch_in_unit("beta", &["task", "block", &task, "--reason", "mine now"])?;
    ensure!(
        !ok && out.contains("is not held by beta of node node-b"),
        "{out}"
    );
    for step in [
        vec!["task", "start", task.as_str()],
        vec!["task", "done", task.as_str(), "--summary", "ported"],
    ] {
        let (ok, out) = c.torch_in_unit("dev-c", &step)?;
        ensure!(ok, "{step:?}: {out}");
    }
    let shown: Value = serde_json::from_str(&a.torch(&["task", "show", &id, "--json"])?)?;
    ensure!(
        shown["state"] == "done" && shown["owner"] == "dev-c",
        "{shown}"
    );
    Ok(())
}
