//! Check-ins as systemd timers, against a real systemd: one-shot and
//! recurring, cancel, hub restart, reboot, hostile notes.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use torch_tests::{wait_until, Sandbox};

fn setup(sb: &Sandbox) -> Result<()> {
    sb.install_torch()?;
    sb.start_hub()?;
    sb.spawn_echo("e1", "orchestrator", None)
}

fn schedules(sb: &Sandbox) -> Result<Vec<Value>> {
    Ok(serde_json::from_str(&sb.torch(&["schedules", "--json"])?)?)
}

fn checkin_units(sb: &Sandbox) -> Result<String> {
    // Active units only: a stopped timer may stay loaded for a moment.
    sb.systemctl(&["list-units", "--no-legend", "--plain", "torch-checkin@*"])
}

#[test]
fn one_shot_recurring_and_cancel() -> Result<()> {
    let sb = Sandbox::boot("sched")?;
    setup(&sb)?;
    // An agent schedules its own check-in from its pane.
    let (ok, out) = sb.torch_as(
        "e1",
        &[
            "schedule",
            "self",
            "--in",
            "2s",
            "--note",
            "check the build",
        ],
    )?;
    ensure!(ok, "{out}");
    let list = schedules(&sb)?;
    let due = list[0]["due_ms"].as_i64().context("due_ms")?;
    ensure!(
        list[0]["next_ms"]
            .as_i64()
            .is_some_and(|n| (n - due).abs() < 1000),
        "systemd's next time differs: {list:?}"
    );
    let got = {
        wait_until("the check-in", Duration::from_secs(15), || {
            Ok(!sb.records("e1")?.is_empty())
        })?;
        sb.records("e1")?
    };
    ensure!(
        got[0].starts_with("[torch check-in #1, set by e1 at ")
            && got[0].ends_with("] check the build"),
        "{got:?}"
    );
    let msgs: Vec<Value> = serde_json::from_str(&sb.torch(&["messages", "--json"])?)?;
    let fired = msgs[0]["created_ms"].as_i64().context("created_ms")?;
    eprintln!(
        "one-shot check-in fired {} ms after its due time",
        fired - due
    );
    ensure!(
        (fired - due).abs() < 1000,
        "fired {} ms off its due time",
        fired - due
    );
    ensure!(
        schedules(&sb)?.is_empty(),
        "a one-shot schedule stayed active"
    );

    // Recurring.
    sb.torch(&["schedule", "e1", "--every", "2s", "--note", "tick"])?;
    wait_until("three ticks", Duration::from_secs(20), || {
        Ok(sb
            .records("e1")?
            .iter()
            .filter(|r| r.ends_with("] tick"))
            .count()
            >= 3)
    })?;
    let id = schedules(&sb)?[0]["id"].as_i64().context("id")?;
    sb.torch(&["unschedule", &id.to_string()])?;
    std::thread::sleep(Duration::from_secs(3));
    let ticks = sb
        .records("e1")?
        .iter()
        .filter(|r| r.ends_with("] tick"))
        .count();
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        sb.records("e1")?
            .iter()
            .filter(|r| r.ends_with("] tick"))
            .count()
            == ticks,
        "ticks went on after unschedule"
    );
    ensure!(
        checkin_units(&sb)?.trim().is_empty(),
        "units left behind: {}",
        checkin_units(&sb)?
    );

    // A far one, cancelled: nothing left either.
    sb.torch(&["schedule", "e1", "--at", "23:59", "--note", "late"])?;
    sb.torch(&[
        "schedule",
        "e1",
        "--on-calendar",
        "Mon..Fri 09:00",
        "--note",
        "weekly",
    ])?;
    ensure!(
        checkin_units(&sb)?
            .lines()
            .filter(|l| l.contains(".timer"))
            .count()
            == 2,
        "{}",
        checkin_units(&sb)?
    );
    for s in schedules(&sb)? {
        sb.torch(&["unschedule", &s["id"].to_string()])?;
    }
    ensure!(
        checkin_units(&sb)?.trim().is_empty(),
        "units left behind: {}",
        checkin_units(&sb)?
    );

    // Bad input is refused clearly.
    for (args, want) in [
        (vec!["--in", "1.5x"], "bad duration"),
        (vec!["--in", "0s"], "out of range"),
        (vec!["--at", "25:00"], "bad time"),
        (
            vec!["--on-calendar", "bogus expr"],
            "does not understand the calendar expression",
        ),
    ] {
        let mut a = vec!["schedule", "e1"];
        a.extend(args);
        a.extend(["--note", "x"]);
        let (ok, out) = sb.torch_status(&a)?;
        ensure!(!ok && out.contains(want), "{a:?}: {out}");
    }
    let (ok, out) = sb.torch_status(&["schedule", "ghost", "--in", "5s", "--note", "x"])?;
    ensure!(!ok && out.contains("no agent named"), "{out}");
    Ok(())
}

#[test]
fn hostile_notes_are_literal_and_never_reach_a_unit() -> Result<()> {
    let sb = Sandbox::boot("schednote")?;
    setup(&sb)?;
    let note = "line one\nExecStart=/bin/sh -c 'rm -rf /'\n%n %i %% \"quoted\" \\back\\slash $(id) `id` C-c";
    sb.torch(&["schedule", "e1", "--in", "30s", "--note", note])?;
    let list = schedules(&sb)?;
    let timer = list[0]["timer"].as_str().context("timer")?.to_string();
    let shown = sb.systemctl(&["cat", &timer])?;
    let template = String::from_utf8(std::fs::read(
        torch_tests::workspace_root().join("units/torch-checkin@.timer"),
    )?)?;
    ensure!(
        shown.contains(template.trim()),
        "the timer is not the packaged template:\n{shown}"
    );
    ensure!(
        !shown.contains("rm -rf") && !shown.contains("quoted"),
        "{shown}"
    );
    ensure!(
        shown.matches("# /").count() == 1,
        "drop-ins appeared:\n{shown}"
    );
    let service = sb.systemctl(&["cat", &timer.replace(".timer", ".service")])?;
    ensure!(
        !service.contains("rm -rf") && service.contains("ExecStart=/usr/bin/torch fire-due"),
        "{service}"
    );
    sb.torch(&["unschedule", &list[0]["id"].to_string()])?;
    sb.torch(&["schedule", "e1", "--in", "1s", "--note", note])?;
    wait_until("the hostile note", Duration::from_secs(15), || {
        Ok(!sb.records("e1")?.is_empty())
    })?;
    let got = sb.records("e1")?;
    ensure!(got[0].ends_with(&format!("] {note}")), "{got:?}");
    Ok(())
}

/// Runs agent `name` as root, the documented per-agent override: its record
/// file lives in /var/lib/torch, the one directory that outlives the
/// sandbox's reboot, which the torch-agent user may not write.
/// Waits until the record file `record` holds `text`.
fn wait_recorded(sb: &Sandbox, record: &str, text: &str) -> Result<()> {
    wait_until(
        &format!("{text:?} recorded"),
        Duration::from_secs(20),
        || {
            Ok(sb
                .read_file(record)
                .map(|r| String::from_utf8_lossy(&r).contains(text))
                .unwrap_or(false))
        },
    )
}

fn root_agent(sb: &Sandbox, name: &str) -> Result<()> {
    sb.write_file(
        &format!("/etc/systemd/system/torch-agent@{name}.service.d/root.conf"),
        b"[Service]\nUser=root\nGroup=root\nCapabilityBoundingSet=CAP_DAC_OVERRIDE\n",
        0o644,
    )?;
    sb.systemctl(&["daemon-reload"]).map(drop)
}

#[test]
fn schedules_survive_a_hub_restart_and_a_reboot() -> Result<()> {
    let persist = std::env::temp_dir().join(format!("torch-persist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&persist);
    std::fs::create_dir_all(&persist)?;
    let record = "/var/lib/torch/e1.jsonl";
    {
        let sb = Sandbox::boot_with("reboot1", Some(&persist))?;
        sb.install_torch()?;
        sb.start_hub()?;
        root_agent(&sb, "e1")?;
        // Only /var/lib/torch outlives the reboot here: work there.
        sb.torch(&[
            "spawn",
            "e1",
            "--role",
            "orchestrator",
            "--workdir",
            "/var/lib/torch",
            "--",
            torch_tests::fleet::TEST_AGENT,
            "echo",
            "--record",
            record,
        ])?;
        // Survives a hub restart.
        sb.torch(&[
            "schedule",
            "e1",
            "--in",
            "3s",
            "--note",
            "across a hub restart",
        ])?;
        sb.systemctl(&["restart", "torch.service"])?;
        wait_recorded(&sb, record, "across a hub restart")?;
        // One due while the machine is down, one long after.
        sb.torch(&[
            "schedule",
            "e1",
            "--in",
            "3s",
            "--note",
            "due during the outage",
        ])?;
        sb.torch(&["schedule", "e1", "--in", "2h", "--note", "much later"])?;
        sb.torch(&["stop", "e1"])?;
    } // the sandbox powers off here
    std::thread::sleep(Duration::from_secs(4));
    let sb = Sandbox::boot_with("reboot2", Some(&persist))?;
    sb.install_torch()?;
    sb.start_hub()?;
    root_agent(&sb, "e1")?;
    sb.torch(&["start", "e1"])?;
    wait_recorded(&sb, record, "due during the outage")?;
    let text = String::from_utf8(sb.read_file(record)?)?;
    ensure!(text.matches("due during the outage").count() == 1, "{text}");
    ensure!(text.matches("across a hub restart").count() == 1, "{text}");
    let list = schedules(&sb)?;
    ensure!(
        list.len() == 1 && list[0]["note"] == "much later",
        "{list:?}"
    );
    let next = list[0]["next_ms"]
        .as_i64()
        .context("the late schedule has no timer after the reboot")?;
    ensure!((next - list[0]["due_ms"].as_i64().unwrap_or(0)).abs() < 1000);
    drop(sb);
    let _ = std::fs::remove_dir_all(&persist);
    Ok(())
}

/// `git -C repo args...` as root, who may read the agents' repositories only
/// with safe.directory.
fn git_args<'a>(repo: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["git", "-c", "safe.directory=*", "-C", repo];
    v.extend_from_slice(args);
    v
}

#[test]
fn autocommit_commits_work_in_progress_and_respects_protection() -> Result<()> {
    let sb = Sandbox::boot("autocommit")?;
    sb.install_torch()?;
    sb.sh("set -e
         for p in proj prot optout; do mkdir -p /srv/$p; done
         cd /srv/proj && git init -q -b feature && echo one > a.txt
         cd /srv/prot && git init -q -b main && echo one > x.txt
         cd /srv/optout && git init -q -b feature && echo one > y.txt
         chown -R torch-agent:torch-agent /srv/proj /srv/prot /srv/optout")?;
    let agent = |name: &str, dir: &str, extra: &str| {
        sb.define_agent(name, &format!("command = [\"{}\", \"echo\", \"--record\", \"/var/lib/torch-agent/{name}.jsonl\"]\nworkdir = \"{dir}\"\n{extra}", torch_tests::fleet::TEST_AGENT))
    };
    agent("dev", "/srv/proj", "")?;
    agent("ops", "/srv/prot", "")?;
    agent("careful", "/srv/optout", "autocommit = false\n")?;
    sb.systemctl(&["start", "torch-autocommit.service"])?;
    let head = sb.run(&git_args(
        "/srv/proj",
        &["log", "-1", "--format=%an <%ae>|%s"],
    ))?;
    ensure!(
        head.trim() == "dev <dev@torch.invalid>|torch: work in progress (dev)",
        "{head}"
    );
    ensure!(
        sb.exec(&git_args("/srv/prot", &["log", "-1"]))?
            .status
            .code()
            != Some(0),
        "a protected branch was committed"
    );
    ensure!(
        sb.exec(&git_args("/srv/optout", &["log", "-1"]))?
            .status
            .code()
            != Some(0),
        "an opted-out project was committed"
    );
    let j = sb.journal(&["-u", "torch-autocommit.service", "-o", "cat"])?;
    ensure!(
        j.contains("/srv/prot: skipped: branch main is protected"),
        "{j}"
    );
    ensure!(j.contains("/srv/optout: skipped: careful opted out"), "{j}");
    ensure!(j.contains("/srv/proj: committed"), "{j}");

    // Nothing new: no commit. A merge in progress: left alone.
    sb.systemctl(&["start", "torch-autocommit.service"])?;
    sb.sh("cd /srv/proj && echo two >> a.txt && git -c safe.directory='*' rev-parse HEAD > .git/MERGE_HEAD")?;
    sb.systemctl(&["start", "torch-autocommit.service"])?;
    let count = sb.run(&git_args("/srv/proj", &["rev-list", "--count", "HEAD"]))?;
    ensure!(count.trim() == "1", "{count} commits");
    let j = sb.journal(&["-u", "torch-autocommit.service", "-o", "cat"])?;
    ensure!(
        j.contains("nothing to commit on feature")
            && j.contains("skipped on feature: a merge is in progress"),
        "{j}"
    );
    sb.sh("rm /srv/proj/.git/MERGE_HEAD")?;
    sb.systemctl(&["start", "torch-autocommit.service"])?;
    let count = sb.run(&git_args("/srv/proj", &["rev-list", "--count", "HEAD"]))?;
    ensure!(count.trim() == "2", "{count} commits");

    // The timer is installed with the promised period, and status shows projects.
    ensure!(
        sb.unit_property("torch-autocommit.timer", "TimersMonotonic")?
            .contains("30min"),
        "{}",
        sb.unit_property("torch-autocommit.timer", "TimersMonotonic")?
    );
    sb.start_hub()?;
    let status = sb.torch(&["status"])?;
    ensure!(
        status.contains("/srv/proj")
            && status.contains("feature")
            && status.contains("torch: work in progress"),
        "{status}"
    );
    Ok(())
}
