//! The fleet across a reboot (a sandbox powered off and booted again on the
//! same /var/lib/torch, as a server keeps its disk) and a crashing hub.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use torch_tests::{wait_until, Sandbox};

fn active(sb: &Sandbox, name: &str) -> Result<String> {
    sb.unit_property(&format!("torch-agent@{name}.service"), "ActiveState")
}

/// Boots a sandbox on `persist` with Torch installed and `ops`, an agent
/// of the admin's, defined, and the agents' workdir made (only
/// /var/lib/torch outlives the reboot here).
fn boot(label: &str, persist: &Path) -> Result<Sandbox> {
    let sb = Sandbox::boot_with(label, Some(persist))?;
    sb.install_torch()?;
    sb.define_echo_agent("ops")?;
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    Ok(sb)
}

#[test]
fn a_reboot_brings_back_the_agents_that_ran() -> Result<()> {
    let persist = std::env::temp_dir().join(format!("torch-reboot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&persist);
    std::fs::create_dir_all(&persist)?;
    {
        let sb = boot("fleet1", &persist)?;
        sb.start_hub()?;
        sb.spawn_echo("boss", "orchestrator", None)?;
        sb.spawn_echo("pm", "project-manager", Some("boss"))?;
        sb.spawn_echo("dev", "engineer", Some("pm"))?;
        sb.torch(&["start", "ops"])?;
        // `torch stop` keeps an agent down across reboots.
        sb.torch(&["stop", "pm"])?;
        // A restart of the hub within the same boot starts nothing: an
        // agent stopped behind Torch's back stays down until asked.
        sb.systemctl(&["stop", "torch-agent@dev.service"])?;
        sb.systemctl(&["restart", "torch.service"])?;
        std::thread::sleep(Duration::from_secs(2));
        ensure!(
            active(&sb, "dev")? == "inactive",
            "a hub restart started dev"
        );
        sb.torch(&["start", "dev"])?;
        // From its pane, an agent may stop only itself and those below it.
        let (ok, out) = sb.torch_in_unit("dev", &["stop", "boss"])?;
        ensure!(
            !ok && out.contains("only itself and the agents below it"),
            "dev stopped its orchestrator: {out}"
        );
        ensure!(active(&sb, "boss")? == "active");
    } // the sandbox powers off here: systemd stops every agent
    let sb = boot("fleet2", &persist)?;
    // What a boot does: multi-user.target pulls in torch.target, which
    // pulls in the hub.
    sb.systemctl(&["start", "torch.target"])?;
    for name in ["boss", "dev", "ops"] {
        wait_until(
            &format!("{name} to be back"),
            Duration::from_secs(30),
            || Ok(active(&sb, name)? == "active"),
        )?;
    }
    ensure!(active(&sb, "pm")? != "active", "a stopped agent came back");
    sb.torch(&["send", "--wait", "boss", "good morning"])?;
    let got = sb.records("boss")?;
    ensure!(
        got.len() == 1 && got[0].ends_with("good morning"),
        "boss got {got:?}"
    );
    drop(sb);
    let _ = std::fs::remove_dir_all(&persist);
    Ok(())
}

#[test]
fn the_hub_comes_back_from_a_crash_loop() -> Result<()> {
    let sb = Sandbox::boot("crashloop")?;
    sb.install_torch()?;
    sb.start_hub()?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    // Killed as soon as it runs, six times: more than systemd's default
    // start limit (5 in 10 s) allows.
    for round in 0..6 {
        let mut pid = String::new();
        wait_until(
            &format!("hub start {round}"),
            Duration::from_secs(30),
            || {
                pid = sb.unit_property("torch.service", "MainPID")?;
                Ok(pid != "0")
            },
        )?;
        sb.run(&["kill", "-KILL", &pid])?;
        std::thread::sleep(Duration::from_millis(1300));
    }
    wait_until("the hub back", Duration::from_secs(30), || {
        Ok(sb.unit_property("torch.service", "ActiveState")? == "active")
    })?;
    sb.torch(&["send", "--wait", "boss", "still here"])?;
    ensure!(sb.records("boss")?.len() == 1);
    Ok(())
}

/// Spawns `n` engineers under each of `parents` at once, plus one named
/// `twin` per parent and round, all racing; returns the spawned names.
fn spawn_burst(sb: &Sandbox, parents: &str, n: u32) -> Result<Vec<String>> {
    sb.sh(&format!(
        "for p in {parents}; do for i in $(seq {n}); do \
           torch spawn $p-e$i --role engineer --parent $p --workdir /srv/work \
             -- /usr/local/bin/torch-test-agent echo >/dev/null 2>&1 & \
           torch spawn twin --role engineer --parent $p --workdir /srv/work \
             -- /usr/local/bin/torch-test-agent echo >/dev/null 2>&1 & \
         done; done; wait"
    ))?;
    let defs = sb.sh("ls /var/lib/torch/agents")?;
    Ok(defs
        .lines()
        .filter_map(|l| l.strip_suffix(".toml"))
        .map(str::to_string)
        .collect())
}

/// How many definitions name `parent` as theirs.
fn children(sb: &Sandbox, parent: &str) -> Result<usize> {
    let out = sb.sh(&format!(
        "grep -lx 'parent = \"{parent}\"' /var/lib/torch/agents/*.toml || true"
    ))?;
    Ok(out.lines().count())
}

#[test]
fn concurrent_spawns_never_pass_the_quotas() -> Result<()> {
    let sb = Sandbox::boot("quotarace")?;
    sb.install_torch()?;
    let quotas = |fleet: u32| {
        let toml = format!("[quotas]\nmax_children = 8\nmax_depth = 4\nmax_fleet = {fleet}\n");
        sb.write_file("/etc/torch/torch.toml", toml.as_bytes(), 0o644)
    };
    quotas(50)?;
    sb.start_hub()?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    let pms = ["pm1", "pm2", "pm3"];
    for pm in pms {
        sb.spawn_echo(pm, "project-manager", Some("boss"))?;
    }
    // 16 at once under each PM, racing for 8 places each.
    let names = spawn_burst(&sb, &pms.join(" "), 16)?;
    for pm in pms {
        let n = children(&sb, pm)?;
        ensure!(
            n == 8,
            "{pm} has {n} children under a limit of 8: {names:?}"
        );
    }
    // The same name at once is written once.
    let twin = sb.sh("grep -h '^parent' /var/lib/torch/agents/twin.toml")?;
    ensure!(twin.lines().count() == 1, "{twin}");
    ensure!(names.len() == 28, "{names:?}");

    // 16 at once racing for the fleet's last 4 places.
    quotas(33)?;
    sb.systemctl(&["restart", "torch.service"])?;
    sb.spawn_echo("pm4", "project-manager", Some("boss"))?;
    let names = spawn_burst(&sb, "pm4", 16)?;
    ensure!(
        names.len() == 33,
        "a fleet of {} under a limit of 33: {names:?}",
        names.len()
    );
    Ok(())
}

#[test]
fn a_send_whose_reply_was_lost_is_stored_and_delivered_once() -> Result<()> {
    let sb = Sandbox::boot("lostreply")?;
    sb.install_torch()?;
    // The hub SIGKILLs itself right after storing a text with CRASHME,
    // before it answers: the caller cannot know whether it was stored.
    sb.write_file(
        "/etc/systemd/system/torch.service.d/fault.conf",
        b"[Service]\nEnvironment=TORCH_FAULT=kill-after-store:CRASHME\n",
        0o644,
    )?;
    sb.systemctl(&["daemon-reload"])?;
    sb.start_hub()?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    for round in 0..3 {
        let restarts = sb.unit_property("torch.service", "NRestarts")?;
        let (ok, out) =
            sb.torch_status(&["send", "--wait", "boss", &format!("CRASHME {round}")])?;
        ensure!(ok, "round {round}: {out}");
        ensure!(out.contains("sending again with the same key"), "{out}");
        ensure!(
            sb.unit_property("torch.service", "NRestarts")? != restarts,
            "round {round}: the hub did not die"
        );
    }
    sb.torch(&["send", "--wait", "boss", "after the crashes"])?;
    let got = sb.records("boss")?;
    let bodies: Vec<&str> = got
        .iter()
        .map(|r| r.split("] ").last().unwrap_or(r))
        .collect();
    ensure!(
        bodies == ["CRASHME 0", "CRASHME 1", "CRASHME 2", "after the crashes"],
        "boss got {got:?}"
    );
    let stored = sb.all_messages("boss")?;
    ensure!(stored.len() == 4, "stored: {stored:?}");
    Ok(())
}
