//! Agents as systemd units, against a real systemd, D-Bus, journald and tmux
//! booted in a sandbox per test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use torch_core::protocol::{self, Request, Response, PROTOCOL_VERSION};
use torch_tests::fleet::TEST_AGENT;
use torch_tests::{wait_until, Sandbox};

fn sandbox(label: &str) -> Result<Sandbox> {
    let sb = Sandbox::boot(label)?;
    eprintln!("sandbox {} booted in {:?}", sb.name(), sb.boot_time());
    sb.install_torch()?;
    Ok(sb)
}

fn tmux_processes(sb: &Sandbox) -> Result<usize> {
    Ok(sb.sh("pgrep -c -x tmux || true")?.trim().parse()?)
}

#[test]
fn start_stop_restart_and_fleet_target() -> Result<()> {
    let sb = sandbox("lifecycle")?;
    sb.define_echo_agent("e1")?;
    sb.define_echo_agent("e2")?;
    sb.torch(&["start", "e1"])?;
    sb.torch(&["start", "e2"])?;
    let unit = "torch-agent@e1.service";
    ensure!(sb.unit_property(unit, "ActiveState")? == "active");
    let status = sb.unit_property(unit, "StatusText")?;
    ensure!(status.contains("agent running"), "STATUS= says {status:?}");

    // The pane's program knows who it is.
    let pid = sb.unit_property(unit, "MainPID")?;
    let env = sb.sh(
        "for p in $(pgrep -f '^/usr/local/bin/torch-test-agent echo --record /var/lib/torch-agent/e1/record.jsonl'); do tr '\\0' '\\n' < /proc/$p/environ; done",
    )?;
    ensure!(
        env.contains("TORCH_AGENT=e1") && env.contains("TORCH_ROLE=engineer"),
        "pane env: {env}"
    );

    // Agents run unprivileged, in a sandbox: not as root, /usr read-only.
    let agent_pid = sb.pane_pid("e1")?;
    let user = sb.run(&["ps", "-o", "user=", "-p", agent_pid.trim()])?;
    ensure!(user.trim() == "ta-e1", "the agent runs as {user}");
    // Each agent its own user, its home its own.
    let other = sb.pane_pid("e2")?;
    let other_user = sb.run(&["ps", "-o", "user=", "-p", other.trim()])?;
    ensure!(other_user.trim() == "ta-e2", "e2 runs as {other_user}");
    let home = sb.run(&["stat", "-c", "%U %a", "/var/lib/torch-agent/e1"])?;
    ensure!(home.trim() == "ta-e1 700", "e1's home: {home}");
    let root_dir = sb.run(&[
        "sh",
        "-c",
        &format!("readlink /proc/{}/root", agent_pid.trim()),
    ])?;
    ensure!(root_dir.trim() == "/", "{root_dir}");
    let out = sb.exec(&[
        "nsenter",
        "-t",
        agent_pid.trim(),
        "-m",
        "-S",
        "follow",
        "touch",
        "/usr/torch-was-here",
    ])?;
    ensure!(!out.status.success(), "the agent could write /usr");
    let security = sb.exec(&["systemd-analyze", "security", "--no-pager", unit])?;
    let text = String::from_utf8_lossy(&security.stdout);
    let score = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default()
        .to_string();
    eprintln!("{score}");

    // The tmux server lives in the unit's cgroup.
    let cgroup = sb.unit_property(unit, "ControlGroup")?;
    let procs = sb.sh(&format!(
        "for p in $(cat '/sys/fs/cgroup{cgroup}/cgroup.procs'); do cat /proc/$p/comm; done"
    ))?;
    ensure!(procs.contains("tmux"), "unit cgroup holds: {procs}");

    sb.torch(&["restart", "e1"])?;
    let pid2 = sb.unit_property(unit, "MainPID")?;
    ensure!(pid != pid2, "restart kept MainPID {pid}");
    sb.torch(&["send", "--direct", "e1", "after restart"])?;
    ensure!(sb.records("e1")? == ["after restart"]);

    let list = sb.torch(&["list"])?;
    ensure!(
        list.contains("e1") && list.contains("e2") && list.contains("running"),
        "{list}"
    );

    sb.systemctl(&["stop", "torch.target"])?;
    // The target's stop job returns once queued work for its PartOf units
    // is under way; give them their moment to finish.
    for u in ["torch-agent@e1.service", "torch-agent@e2.service"] {
        wait_until(
            &format!("{u} inactive after stopping torch.target"),
            Duration::from_secs(10),
            || Ok(sb.unit_property(u, "ActiveState")? == "inactive"),
        )?;
    }
    ensure!(tmux_processes(&sb)? == 0, "tmux processes left after stop");
    ensure!(
        !sb.root().join("run/torch-agent/e1").exists(),
        "runtime dir left behind"
    );
    Ok(())
}

#[test]
fn watchdog_restarts_a_frozen_agent_and_a_hung_tmux() -> Result<()> {
    let sb = sandbox("watchdog")?;
    sb.agent_dropin("[Service]\nWatchdogSec=3s\nRestartSec=500ms\n")?;
    sb.start_hung_agent("frozen", 2)?;
    // Input arrives and is never read.
    sb.run(&[
        "tmux",
        "-S",
        "/run/torch-agent/frozen/tmux.sock",
        "send-keys",
        "-t",
        "%0",
        "are you there?",
        "Enter",
    ])?;
    sb.wait_active("frozen", 1, Duration::from_secs(30))?;
    let journal = sb.journal(&["-u", "torch-agent@frozen.service"])?;
    // The supervisor stops the hung agent itself rather than letting the
    // watchdog run out (and abort it).
    ensure!(
        journal.contains("stopping it so systemd restarts the agent"),
        "the supervisor did not stop the hung agent itself:\n{journal}"
    );
    ensure!(
        !journal.contains("Watchdog timeout"),
        "the hung agent waited for the watchdog:\n{journal}"
    );
    ensure!(
        journal.contains("has not read its input"),
        "supervisor did not say why:\n{journal}"
    );

    sb.define_echo_agent("e1")?;
    sb.torch(&["start", "e1"])?;
    let server = sb.tmux_server_pid("e1")?;
    sb.run(&["kill", "-STOP", &server.to_string()])?;
    sb.wait_active("e1", 1, Duration::from_secs(30))?;
    ensure!(
        sb.tmux_server_pid("e1")? != server,
        "tmux server was not replaced"
    );
    sb.torch(&["send", "--direct", "e1", "alive again"])?;
    ensure!(sb.records("e1")? == ["alive again"]);
    let journal = sb.journal(&["-u", "torch-agent@e1.service"])?;
    ensure!(
        journal.contains("does not answer"),
        "supervisor did not report the hung tmux:\n{journal}"
    );
    Ok(())
}

#[test]
fn killed_tmux_server_and_crashed_agent_are_restarted() -> Result<()> {
    let sb = sandbox("recovery")?;
    sb.agent_dropin("[Service]\nRestartSec=500ms\n")?;
    sb.define_echo_agent("e1")?;
    sb.torch(&["start", "e1"])?;
    let server = sb.tmux_server_pid("e1")?;
    sb.run(&["kill", "-KILL", &server.to_string()])?;
    sb.wait_active("e1", 1, Duration::from_secs(20))?;
    sb.torch(&["send", "--direct", "e1", "after sigkill"])?;
    ensure!(sb.records("e1")? == ["after sigkill"]);
    let journal = sb.journal(&["-u", "torch-agent@e1.service"])?;
    ensure!(journal.contains("tmux server is gone"), "{journal}");

    // The agent program killed outright.
    let pane_pid = sb.pane_pid("e1")?;
    sb.run(&["kill", "-KILL", pane_pid.trim()])?;
    sb.wait_active("e1", 2, Duration::from_secs(20))?;
    let logged = wait_until("kill logged", Duration::from_secs(10), || {
        Ok(sb
            .journal(&["-u", "torch-agent@e1.service", "-o", "cat"])?
            .contains("agent program was killed by signal 9")
            // tmux does not always learn the status of a killed pane (seen
            // under load); the death and the last screen are logged anyway.
            || sb
                .journal(&["-u", "torch-agent@e1.service", "-o", "cat"])?
                .contains("agent program ended (status unknown); its last screen:\n  | [echo] ready"))
    });
    if let Err(e) = logged {
        let j = sb.journal(&["-u", "torch-agent@e1.service", "-o", "short-precise"])?;
        anyhow::bail!("{e}; pane pid was {}; journal:\n{j}", pane_pid.trim());
    }
    sb.torch(&["send", "--direct", "e1", "after the kill"])?;

    sb.define_agent(
        "c1",
        &format!(
            "command = [\"{TEST_AGENT}\", \"crash\", \"--after\", \"1\", \"--code\", \"3\"]\n"
        ),
    )?;
    sb.torch(&["start", "c1"])?;
    sb.wait_active("c1", 1, Duration::from_secs(20))?;
    wait_until(
        "crash logged with last screen",
        Duration::from_secs(10),
        || {
            let j = sb.journal(&["-u", "torch-agent@c1.service", "-o", "cat"])?;
            Ok(
                j.contains("agent program exited with status 3")
                    && j.contains("crash: fatal error"),
            )
        },
    )?;
    Ok(())
}

#[test]
fn hostile_texts_arrive_byte_for_byte() -> Result<()> {
    let sb = sandbox("hostile")?;
    sb.define_echo_agent("e1")?;
    sb.torch(&["start", "e1"])?;
    let big: String = (0..1200)
        .map(|i| format!("line {i:04} ünïcødé ✓ {}\n", "abcdefghij".repeat(4)))
        .collect::<String>()[..64 * 1024 - 4]
        .to_string()
        + "end.";
    let big = {
        // keep it valid UTF-8 after the byte cut
        let mut b = big;
        while std::str::from_utf8(b.as_bytes()).is_err() {
            b.pop();
        }
        b
    };
    let texts: Vec<String> = vec![
        "C-c".into(),
        "Enter".into(),
        "; rm -rf /".into(),
        "$(id)".into(),
        "`id` 'single' \"double\" \\back\\slash".into(),
        "first line\nsecond line\n\tindented".into(),
        "ünïcødé ✓ 漢字 🚀".into(),
        "C-m Escape BSpace Tab".into(),
    ];
    for t in &texts {
        sb.torch(&["send", "--direct", "e1", t])?;
    }
    // The big one through standard input, as `torch send e1 -` users do.
    sb.run_with_stdin(
        &["torch", "send", "--direct", "e1", "-"],
        format!("{big}\n").as_bytes(),
    )?;
    let mut expected = texts.clone();
    expected.push(big.clone());
    let got = sb.records("e1")?;
    ensure!(
        got.len() == expected.len(),
        "got {} records, want {}",
        got.len(),
        expected.len()
    );
    for (g, e) in got.iter().zip(&expected) {
        ensure!(g == e, "record differs:\n got {g:?}\nwant {e:?}");
    }
    ensure!(big.len() > 60 * 1024);

    // Refused input gets a clear error and leaves the agent working.
    let (ok, out) = sb.torch_status(&["send", "--direct", "e1", "bell\x07"])?;
    ensure!(!ok && out.contains("control character U+0007"), "{out}");
    let huge = sb.exec(&[
        "sh",
        "-c",
        "head -c 307200 /dev/zero | tr '\\0' x | torch send --direct e1 -",
    ])?;
    let out = String::from_utf8_lossy(&huge.stderr);
    ensure!(!huge.status.success() && out.contains("limit"), "{out}");
    let (ok, out) = sb.torch_status(&["send", "bad name", "x"])?;
    ensure!(!ok && out.contains("contains ' '"), "{out}");
    let (ok, out) = sb.torch_status(&["send", "--direct", "nobody", "x"])?;
    ensure!(!ok && out.contains("cannot reach"), "{out}");
    sb.torch(&["send", "--direct", "e1", "still fine"])?;
    ensure!(sb.records("e1")?.last().map(String::as_str) == Some("still fine"));
    ensure!(sb.unit_property("torch-agent@e1.service", "NRestarts")? == "0");
    Ok(())
}

#[test]
fn concurrent_senders_never_lose_or_interleave() -> Result<()> {
    const SENDERS: usize = 10;
    const EACH: usize = 50;
    let sb = sandbox("concurrent")?;
    sb.define_echo_agent("e1")?;
    sb.torch(&["start", "e1"])?;
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..SENDERS)
            .map(|i| {
                let sb = &sb;
                s.spawn(move || -> Result<()> {
                    for j in 0..EACH {
                        let text = format!("sender {i} message {j}\nsecond line of {i}/{j}");
                        sb.torch(&["send", "--direct", "e1", &text])?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
        }
        Ok(())
    })?;
    let got = sb.records("e1")?;
    ensure!(
        got.len() == SENDERS * EACH,
        "{} of {} messages recorded",
        got.len(),
        SENDERS * EACH
    );
    let mut next: BTreeMap<usize, usize> = BTreeMap::new();
    for r in &got {
        let (i, j) =
            parse_message(r).ok_or_else(|| anyhow::anyhow!("interleaved or mangled: {r:?}"))?;
        let want = next.entry(i).or_insert(0);
        ensure!(j == *want, "sender {i}: got message {j}, expected {want}");
        *want += 1;
    }
    Ok(())
}

fn parse_message(r: &str) -> Option<(usize, usize)> {
    let (first, second) = r.split_once('\n')?;
    let rest = first.strip_prefix("sender ")?;
    let (i, j) = rest.split_once(" message ")?;
    let (i, j): (usize, usize) = (i.parse().ok()?, j.parse().ok()?);
    (second == format!("second line of {i}/{j}")).then_some((i, j))
}

#[test]
fn journal_holds_agent_output_bounded() -> Result<()> {
    let sb = sandbox("journal")?;
    sb.define_echo_agent("e1")?;
    sb.torch(&["start", "e1"])?;
    sb.torch(&["send", "--direct", "e1", "journal check"])?;
    let by_unit = sb.journal(&["-u", "torch-agent@e1.service", "-o", "cat"])?;
    ensure!(
        by_unit.contains("[echo] ready") && by_unit.contains("echo> journal check"),
        "{by_unit}"
    );
    let by_field = sb.journal(&["TORCH_AGENT=e1", "TORCH_STREAM=pane", "-o", "cat"])?;
    ensure!(by_field.contains("[echo] received 13 bytes"), "{by_field}");
    ensure!(
        !by_field.contains('\x1b'),
        "escape sequences in the journal"
    );
    let role = sb.journal(&["TORCH_AGENT=e1", "TORCH_ROLE=engineer", "-o", "cat"])?;
    ensure!(role.contains("[echo] ready"));

    sb.define_agent(
        "chatty",
        &format!("command = [\"{TEST_AGENT}\", \"chatty\", \"--lines\", \"100000\"]\n"),
    )?;
    sb.torch(&["start", "chatty"])?;
    wait_until(
        "chatty agent's flood reported",
        Duration::from_secs(20),
        || {
            let j = sb.journal(&["TORCH_AGENT=chatty", "-o", "cat"])?;
            Ok(j.contains("were not logged"))
        },
    )?;
    let lines = sb.journal(&["TORCH_AGENT=chatty", "TORCH_STREAM=pane", "-o", "cat"])?;
    let n = lines.lines().count();
    ensure!(
        n < 5_000,
        "{n} lines of a 100000-line flood reached the journal"
    );
    ensure!(!lines.contains('\x1b'), "escape sequences in the journal");
    ensure!(sb.unit_property("torch-agent@chatty.service", "ActiveState")? == "active");
    Ok(())
}

#[test]
fn broken_definitions_fail_with_one_clear_line() -> Result<()> {
    let sb = sandbox("brokendef")?;
    sb.define_agent("bad", "command = [\"/bin/cat\"]\n\ncomand = 1\n")?;
    let (ok, _) = sb.torch_status(&["start", "bad"])?;
    ensure!(!ok, "a broken definition started");
    let j = sb.journal(&["-u", "torch-agent@bad.service", "-o", "cat"])?;
    ensure!(
        j.contains("/etc/torch/agents/bad.toml:3: unknown field `comand`"),
        "{j}"
    );
    ensure!(
        sb.unit_property("torch-agent@bad.service", "NRestarts")? == "0",
        "a broken definition was retried"
    );

    let (ok, _) = sb.torch_status(&["start", "missing"])?;
    ensure!(!ok);
    let j = sb.journal(&["-u", "torch-agent@missing.service", "-o", "cat"])?;
    ensure!(
        j.contains("no definition for agent \"missing\": create /etc/torch/agents/missing.toml"),
        "{j}"
    );

    sb.define_agent("noprog", "command = [\"no-such-agent-program\"]\n")?;
    let (ok, _) = sb.torch_status(&["start", "noprog"])?;
    ensure!(!ok);
    let j = sb.journal(&["-u", "torch-agent@noprog.service", "-o", "cat"])?;
    ensure!(j.contains("not found in PATH"), "{j}");

    // The agent's /tmp is private: a program there cannot be seen.
    sb.write_file("/tmp/my-agent", b"#!/bin/sh\nexec cat\n", 0o755)?;
    sb.define_agent("intmp", "command = [\"/tmp/my-agent\"]\n")?;
    let (ok, _) = sb.torch_status(&["start", "intmp"])?;
    ensure!(!ok);
    let j = sb.journal(&["-u", "torch-agent@intmp.service", "-o", "cat"])?;
    ensure!(j.contains("private /tmp"), "{j}");
    Ok(())
}

#[test]
fn slow_prompts_and_swallowed_submits_are_handled() -> Result<()> {
    let sb = sandbox("slow")?;
    sb.define_agent(
        "s1",
        &format!("command = [\"{TEST_AGENT}\", \"slow\", \"--record\", \"/var/lib/torch-agent/s1/record.jsonl\", \"--startup\", \"2\", \"--swallow-enter-ms\", \"300\"]\nready_pattern = \"slow> \"\n"),
    )?;
    // No ready_pattern: the first paste is thrown away and must be repeated.
    sb.define_agent(
        "s2",
        &format!("command = [\"{TEST_AGENT}\", \"slow\", \"--record\", \"/var/lib/torch-agent/s2/record.jsonl\", \"--startup\", \"1\"]\n"),
    )?;
    sb.torch(&["start", "s1"])?;
    sb.torch(&["start", "s2"])?;
    let (ok, out) = sb.torch_status(&["send", "--direct", "s1", "patience\nis a virtue"])?;
    ensure!(ok, "{out}");
    ensure!(
        out.contains("submits"),
        "swallowed Enter was not retried: {out}"
    );
    ensure!(sb.records("s1")? == ["patience\nis a virtue"]);
    sb.torch(&["send", "--direct", "s2", "typed while loading"])?;
    ensure!(sb.records("s2")? == ["typed while loading"]);
    Ok(())
}

#[test]
fn unusual_names_use_systemd_escaping() -> Result<()> {
    let sb = sandbox("names")?;
    sb.define_echo_agent("dév-1")?;
    sb.torch(&["start", "dév-1"])?;
    let unit = r"torch-agent@d\xc3\xa9v-1.service";
    ensure!(sb.unit_property(unit, "ActiveState")? == "active");
    sb.torch(&["send", "--direct", "dév-1", "bonjour"])?;
    ensure!(sb.records("dév-1")? == ["bonjour"]);
    let list = sb.torch(&["list"])?;
    ensure!(list.contains("dév-1"), "{list}");
    let (ok, out) = sb.torch_status(&["start", "../etc"])?;
    ensure!(!ok && out.contains("contains '/'"), "{out}");

    // The longest name accepted runs: its user's name is as long as
    // useradd takes.
    let longest = format!("{}abcde", "数".repeat(2));
    sb.define_echo_agent(&longest)?;
    sb.torch(&["start", &longest])?;
    sb.torch(&["send", "--direct", &longest, "你好"])?;
    ensure!(sb.records(&longest)? == ["你好"]);
    // One letter more is refused with the reason, before systemd sees it.
    let (ok, out) = sb.torch_status(&["start", &"数".repeat(3)])?;
    ensure!(!ok && out.contains("the limit is 29"), "{out}");
    Ok(())
}

#[test]
fn one_word_commands_run_as_themselves() -> Result<()> {
    let sb = sandbox("oneword")?;
    // The agents' user logs in with /usr/sbin/nologin; a one-word command
    // must not go through it, and a path with a space must stay one word.
    sb.run(&["ln", "-s", "/bin/bash", "/usr/local/bin/my shell"])?;
    sb.define_agent(
        "solo",
        "command = [\"/usr/local/bin/my shell\"]\nprofile = \"shell\"\n",
    )?;
    sb.torch(&["start", "solo"])?;
    let shell = sb.run(&["getent", "passwd", "ta-solo"])?;
    ensure!(shell.trim_end().ends_with("nologin"), "{shell}");
    let unit = "torch-agent@solo.service";
    ensure!(sb.unit_property(unit, "NRestarts")? == "0");
    let pid = sb.pane_pid("solo")?;
    let comm = sb.run(&["ps", "-o", "comm=", "-p", &pid])?;
    ensure!(
        comm.trim() == "my shell",
        "the pane runs {comm:?}, not the program"
    );

    let out = "/var/lib/torch-agent/solo/out";
    sb.torch(&[
        "send",
        "--direct",
        "solo",
        &format!("echo \"$0|$SHELL\" > {out}"),
    ])?;
    wait_until(
        "the shell to run the command",
        Duration::from_secs(10),
        || Ok(sb.read_file(out).is_ok()),
    )?;
    let said = String::from_utf8(sb.read_file(out)?)?;
    ensure!(
        said.trim() == "/usr/local/bin/my shell|/bin/bash",
        "the shell says {said:?}"
    );
    Ok(())
}

/// One request line to a supervisor's control socket, and its reply line.
fn exchange(socket: &Path, line: &[u8]) -> Result<String> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(line)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply)
}

#[test]
fn supervisors_tell_old_and_new_hubs_their_protocol_version() -> Result<()> {
    let sb = sandbox("protocol")?;
    sb.define_echo_agent("p1")?;
    sb.torch(&["start", "p1"])?;
    let socket = sb.root().join("run/torch-agent/p1/control.sock");

    // A hub from before versions sends none, and reads the fields it knows
    // beside the supervisor's version.
    let old: serde_json::Value =
        serde_json::from_str(&exchange(&socket, b"{\"op\":\"status\"}\n")?)?;
    ensure!(
        old["result"] == "status" && old["state"] == "running" && old["pid"].as_u64() > Some(0),
        "{old}"
    );
    ensure!(old["version"] == PROTOCOL_VERSION, "{old}");

    // This build's hub sends its version and reads the supervisor's.
    let line = protocol::request_line(&Request::Capture { history: 0 })?;
    let reply = protocol::parse_reply(&exchange(&socket, &line)?)?;
    ensure!(reply.version == PROTOCOL_VERSION, "{reply:?}");
    ensure!(
        matches!(reply.response, Response::Screen { .. }),
        "{reply:?}"
    );
    Ok(())
}
