//! The work ledger on the real sandbox: agents declare skills and capacity,
//! and find each other by skill from their panes (`torch agents`).

use std::time::Duration;

use anyhow::{ensure, Result};
use torch_api::Directory;
use torch_tests::fleet::{boot_hub, record_path, TEST_AGENT};
use torch_tests::{wait_until, Sandbox};

/// Spawns an echo agent with `skills` (and `capacity`, when given).
fn spawn_skilled(
    sb: &Sandbox,
    name: &str,
    role: &str,
    parent: &str,
    skills: &[&str],
    capacity: Option<u32>,
) -> Result<(bool, String)> {
    let record = record_path(name);
    let mut args = vec![
        "spawn",
        name,
        "--role",
        role,
        "--parent",
        parent,
        "--workdir",
        "/srv/work",
    ];
    for s in skills {
        args.extend(["--skill", s]);
    }
    let cap = capacity.map(|c| c.to_string());
    if let Some(c) = &cap {
        args.extend(["--capacity", c]);
    }
    args.extend(["--", TEST_AGENT, "echo", "--record", &record]);
    sb.torch_status(&args)
}

/// The names in a `torch agents --json` answer run as `agent` from its unit.
fn directory(sb: &Sandbox, agent: &str, filter: &[&str]) -> Result<Vec<String>> {
    let mut args = vec!["agents", "--json"];
    args.extend_from_slice(filter);
    let (ok, out) = sb.torch_in_unit(agent, &args)?;
    ensure!(ok, "torch agents {filter:?} as {agent}: {out}");
    let dir: Directory = serde_json::from_str(&out)?;
    Ok(dir.agents.into_iter().map(|a| a.name).collect())
}

#[test]
fn agents_declare_skills_and_find_each_other_by_them() -> Result<()> {
    let sb = boot_hub("skills", "")?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm1", "project-manager", Some("boss"))?;
    sb.spawn_echo("pm2", "project-manager", Some("boss"))?;
    let (ok, out) = spawn_skilled(&sb, "dev1", "engineer", "pm1", &["rust", "review"], Some(2))?;
    ensure!(ok, "{out}");
    let (ok, out) = spawn_skilled(&sb, "dev2", "engineer", "pm2", &["frontend", "rust"], None)?;
    ensure!(ok, "{out}");

    // Written into the definitions, shown in the status.
    let def = String::from_utf8(sb.read_file("/var/lib/torch/agents/dev1.toml")?)?;
    ensure!(
        def.contains("skills = [\"rust\", \"review\"]") && def.contains("capacity = 2"),
        "{def}"
    );
    let status = sb.torch(&["status", "--json"])?;
    ensure!(
        status.contains("\"skills\":[\"frontend\",\"rust\"]"),
        "{status}"
    );

    // From its pane, an engineer sees the whole fleet here (not only its
    // subtree, as in `status`), and filters by skill.
    let all = directory(&sb, "dev2", &[])?;
    ensure!(all == ["boss", "dev1", "dev2", "pm1", "pm2"], "{all:?}");
    ensure!(directory(&sb, "dev2", &["--skill", "review"])? == ["dev1"]);
    ensure!(directory(&sb, "dev2", &["--skill", "rust"])? == ["dev1", "dev2"]);
    ensure!(directory(&sb, "dev2", &["--skill", "rust", "--skill", "frontend"])? == ["dev2"]);
    ensure!(directory(&sb, "dev2", &["--skill", "go"])?.is_empty());
    wait_until("dev1 idle", Duration::from_secs(20), || {
        Ok(directory(&sb, "dev2", &["--skill", "review", "--idle"])? == ["dev1"])
    })?;
    sb.torch(&["stop", "dev1"])?;
    ensure!(directory(&sb, "dev2", &["--skill", "review", "--idle"])?.is_empty());
    let table = sb.torch(&["agents", "--skill", "rust"])?;
    ensure!(
        table.contains("dev2") && table.contains("frontend,rust"),
        "{table}"
    );

    // Bad skills and capacities are refused with the rule, nothing written.
    let (ok, out) = spawn_skilled(&sb, "dev3", "engineer", "pm1", &["Rust"], None)?;
    ensure!(!ok && out.contains("lowercase"), "{out}");
    let (ok, out) = spawn_skilled(&sb, "dev3", "engineer", "pm1", &["go"], Some(1000))?;
    ensure!(!ok && out.contains("capacity"), "{out}");
    ensure!(!sb
        .exec(&["test", "-e", "/var/lib/torch/agents/dev3.toml"])?
        .status
        .success());
    let (ok, out) = sb.torch_status(&["agents", "--skill", "a b"])?;
    ensure!(!ok && out.contains("skill"), "{out}");
    Ok(())
}
