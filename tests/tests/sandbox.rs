//! Proves the sandbox harness: boot a real systemd, install and start a unit, tear down.

use std::time::Duration;

use torch_tests::{wait_until, Sandbox};

#[test]
fn boots_runs_a_unit_and_stops() -> anyhow::Result<()> {
    let sb = Sandbox::boot("harness")?;
    eprintln!(
        "sandbox {} booted in {:?} (pid {})",
        sb.name(),
        sb.boot_time(),
        sb.pid()
    );

    let out = sb.exec(&["systemctl", "is-system-running"])?;
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        state == "running" || state == "degraded",
        "system state: {state:?}"
    );

    // The shared directory and the target dir are visible at the same path inside.
    std::fs::write(sb.share().join("hello"), b"from host")?;
    let inside = sb.run(&["cat", &sb.share().join("hello").to_string_lossy()])?;
    assert_eq!(inside, "from host");

    sb.write_file(
        "/etc/systemd/system/torch-harness-probe.service",
        b"[Unit]\nDescription=harness probe\n[Service]\nExecStart=/bin/sh -c 'echo probe-started; exec sleep infinity'\n",
        0o644,
    )?;
    sb.systemctl(&["daemon-reload"])?;
    sb.systemctl(&["start", "torch-harness-probe.service"])?;
    wait_until("probe unit active", Duration::from_secs(10), || {
        Ok(sb.unit_property("torch-harness-probe.service", "ActiveState")? == "active")
    })?;
    assert_eq!(
        sb.systemctl(&["is-active", "torch-harness-probe.service"])?
            .trim(),
        "active"
    );
    wait_until(
        "probe output in the journal",
        Duration::from_secs(10),
        || {
            Ok(sb
                .journal(&["-u", "torch-harness-probe.service", "-o", "cat"])?
                .contains("probe-started"))
        },
    )?;
    assert_eq!(sb.run_with_stdin(&["cat"], b"piped")?, "piped");
    assert!(sb
        .read_file("/etc/hostname")?
        .starts_with(sb.name().as_bytes()));

    let dir = sb.dir().to_path_buf();
    let pid = sb.pid();
    drop(sb);
    assert!(!dir.exists(), "{} left behind", dir.display());
    // Gone, or at most a zombie waiting to be reaped (its exe link is then unreadable).
    assert!(
        std::fs::read_link(format!("/proc/{pid}/exe")).is_err(),
        "systemd {pid} still running"
    );
    Ok(())
}
