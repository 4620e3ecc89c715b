//! Check-ins as systemd timers, against a real systemd: one-shot and
//! recurring, cancel, hub restart, reboot, hostile notes.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use torch_tests::{wait_until, Sandbox};

fn setup(sb: &Sandbox) -> Result<()> {
    sb.install_torch()?;
    headers_for_shells(sb)?;
    sb.start_hub()?;
    sb.spawn_echo("e1", "orchestrator", None)
}

/// The echo agents have the shell profile, which gets no header by
/// default; these tests read the check-in's header, so they turn it on (in
/// a drop-in, which `min_interval` does not replace).
fn headers_for_shells(sb: &Sandbox) -> Result<()> {
    sb.write_file(
        "/etc/torch/torch.toml.d/50-headers.toml",
        b"[delivery.envelope]\nshell = true\n",
        0o644,
    )
}

/// Lets recurring check-ins fire as often as `min` (`[schedules]
/// min_interval`, one minute by default): tests wait seconds, not minutes.
fn min_interval(sb: &Sandbox, min: &str) -> Result<()> {
    sb.write_file(
        "/etc/torch/torch.toml",
        format!("[schedules]\nmin_interval = \"{min}\"\n").as_bytes(),
        0o644,
    )?;
    sb.systemctl(&["restart", "torch.service"]).map(drop)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// When schedule `id`'s check-ins were stored (fired), Unix milliseconds.
fn firings(sb: &Sandbox, id: i64) -> Result<Vec<i64>> {
    let msgs: Vec<Value> = serde_json::from_str(&sb.torch(&["messages", "--json"])?)?;
    let sender = format!("schedule-{id}");
    Ok(msgs
        .iter()
        .filter(|m| m["sender"] == sender.as_str())
        .filter_map(|m| m["created_ms"].as_i64())
        .collect())
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
    min_interval(&sb, "1s")?;
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
    // In step: each tick one period after the previous one.
    let ticks = firings(&sb, id)?;
    for w in ticks.windows(2) {
        ensure!((w[1] - w[0] - 2000).abs() < 500, "ticks at {ticks:?}");
    }

    // The hub down for more than two periods: when it is back, one
    // catch-up tick, and the next a full period after it (not a second
    // one a second later, as when the next time was max(due + period,
    // now + 1 s)).
    sb.systemctl(&["stop", "torch.service"])?;
    std::thread::sleep(Duration::from_secs(5));
    let back = now_ms();
    sb.start_hub()?;
    wait_until(
        "two ticks after the restart",
        Duration::from_secs(15),
        || Ok(firings(&sb, id)?.iter().filter(|&&t| t > back).count() >= 2),
    )?;
    let after: Vec<i64> = firings(&sb, id)?
        .into_iter()
        .filter(|&t| t > back)
        .collect();
    eprintln!(
        "after the restart: catch-up {} ms after the start, the next {} ms after it",
        after[0] - back,
        after[1] - after[0]
    );
    ensure!(
        after[0] - back < 3000,
        "no catch-up at the start: {after:?}"
    );
    ensure!(
        (after[1] - after[0] - 2000).abs() < 500,
        "the tick after the catch-up came {} ms after it, not a period",
        after[1] - after[0]
    );
    // The timer that fell due while the hub was down found no hub: its
    // service failed, and stays listed as failed until reset.
    sb.systemctl(&["reset-failed", "torch-checkin@*"])?;

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

    // Far ones, cancelled: nothing left either.
    sb.torch(&["schedule", "e1", "--at", "23:59", "--note", "late"])?;
    sb.torch(&[
        "schedule",
        "e1",
        "--on-calendar",
        "Mon..Fri 09:00",
        "--note",
        "weekly",
    ])?;
    sb.torch(&["schedule", "e1", "--every", "30m", "--note", "rhythm"])?;
    ensure!(
        checkin_units(&sb)?
            .lines()
            .filter(|l| l.contains(".timer"))
            .count()
            == 3,
        "{}",
        checkin_units(&sb)?
    );
    // Listed as typed, with the next time in local time, as `date` shows
    // it, but without running `date` (not on this PATH) for each row.
    let table = sb.run(&["env", "PATH=/nonexistent", "/usr/bin/torch", "schedules"])?;
    for (when, note) in [
        ("at 23:59", "late"),
        ("on-calendar Mon..Fri 09:00", "weekly"),
        ("every 30m", "rhythm"),
    ] {
        let row = table
            .lines()
            .find(|l| l.ends_with(note))
            .with_context(|| format!("no {note} row:\n{table}"))?;
        ensure!(row.contains(&format!(" {when} ")), "{when}:\n{table}");
        let next = schedules(&sb)?
            .iter()
            .find(|s| s["note"] == note)
            .and_then(|s| s["next_ms"].as_i64())
            .context("next_ms")?;
        let local = sb.run(&[
            "date",
            "-d",
            &format!("@{}", next / 1000),
            "+%Y-%m-%d %H:%M:%S %Z",
        ])?;
        ensure!(row.contains(local.trim()), "{local} not in {row}");
    }
    ensure!(
        schedules(&sb)?.iter().any(|s| s["when"] == "every 30m"),
        "{:?}",
        schedules(&sb)?
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
fn recurring_check_ins_have_a_minimum_interval() -> Result<()> {
    let sb = Sandbox::boot("schedmin")?;
    setup(&sb)?;
    // The default: once a minute at most, for --every and calendars alike.
    for (args, want) in [
        (["--every", "30s"], "every 30s is too often"),
        (
            ["--on-calendar", "*-*-* *:*:*"],
            "on-calendar *-*-* *:*:* fires every 1s, which is too often",
        ),
        (
            ["--on-calendar", "*:*:0/10"],
            "on-calendar *:*:0/10 fires every 10s, which is too often",
        ),
    ] {
        let mut a = vec!["schedule", "e1"];
        a.extend(args);
        a.extend(["--note", "x"]);
        let (ok, out) = sb.torch_status(&a)?;
        ensure!(
            !ok && out.contains(want)
                && out.contains("at least 1m apart")
                && out.contains("`min_interval` under [schedules] in /etc/torch/torch.toml"),
            "{a:?}: {out}"
        );
    }
    // The hub refuses it, not only the CLI.
    let out = sb.exec(&[
        "busctl",
        "call",
        "org.torch.Torch1",
        "/org/torch/Torch1",
        "org.torch.Manager1",
        "Schedule",
        "sssss",
        "e1",
        "every",
        "10s",
        "x",
        "operator",
    ])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("every 10s is too often"),
        "{err}"
    );
    ensure!(schedules(&sb)?.is_empty(), "{:?}", schedules(&sb)?);
    // One-shots are not limited; a minute is allowed.
    sb.torch(&["schedule", "e1", "--in", "2s", "--note", "soon"])?;
    sb.torch(&["schedule", "e1", "--every", "1m", "--note", "minutely"])?;
    sb.torch(&["schedule", "e1", "--on-calendar", "minutely", "--note", "m"])?;
    wait_until("the one-shot", Duration::from_secs(15), || {
        Ok(sb.records("e1")?.iter().any(|r| r.ends_with("] soon")))
    })?;
    // The minimum is the administrator's.
    min_interval(&sb, "10s")?;
    sb.torch(&["schedule", "e1", "--every", "10s", "--note", "x"])?;
    let (ok, out) = sb.torch_status(&["schedule", "e1", "--every", "5s", "--note", "x"])?;
    ensure!(!ok && out.contains("at least 10s apart"), "{out}");
    ensure!(schedules(&sb)?.len() == 3, "{:?}", schedules(&sb)?);
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
        torch_tests::workspace_root().join("dist/usr/lib/systemd/system/torch-checkin@.timer"),
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
    // The users of the agents as their first start makes them (`fresh`
    // never started: it has none).
    sb.systemctl(&[
        "start",
        "torch-agent-user@dev.service",
        "torch-agent-user@ops.service",
    ])?;
    sb.sh("set -e
         for p in proj prot optout fresh; do mkdir -p /srv/$p; done
         cd /srv/fresh && git init -q -b feature && echo one > f.txt
         cd /srv/proj && git init -q --shared=group -b feature && echo one > a.txt
         cd /srv/prot && git init -q -b main && echo one > x.txt
         cd /srv/optout && git init -q -b feature && echo one > y.txt
         # shared through the agents' group, as docs/security.md says
         chgrp -R torch-agent /srv/proj && chmod -R g+rwX /srv/proj
         find /srv/proj -type d -exec chmod g+s {} +
         chown -R ta-ops /srv/prot")?;
    let agent = |name: &str, dir: &str, extra: &str| {
        sb.define_agent(name, &format!("command = [\"{}\", \"echo\", \"--record\", \"/var/lib/torch-agent/{name}/record.jsonl\"]\nworkdir = \"{dir}\"\n{extra}", torch_tests::fleet::TEST_AGENT))
    };
    agent("dev", "/srv/proj", "")?;
    agent("ops", "/srv/prot", "")?;
    agent("careful", "/srv/optout", "autocommit = false\n")?;
    agent("fresh", "/srv/fresh", "")?;
    sb.systemctl(&["start", "torch-autocommit.service"])?;
    // Git ran as the agent's own user.
    let owner = sb.run(&["stat", "-c", "%U", "/srv/proj/.git/index"])?;
    ensure!(owner.trim() == "ta-dev", "the index belongs to {owner}");
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
    ensure!(
        j.contains("/srv/fresh: skipped: its agent has no user yet"),
        "{j}"
    );

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
