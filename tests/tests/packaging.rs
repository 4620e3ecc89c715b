//! The packages: the .deb installed, upgraded, removed and purged with apt
//! in a real systemd sandbox; lintian; the .rpm checked with Debian's rpm
//! tools. Needs `scripts/package.sh` first (scripts/test.sh runs it).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use torch_tests::{target_bin_dir, wait_until, workspace_root, Sandbox};

/// The package file in `dir` with this suffix, built by scripts/package.sh.
fn package(dir: &str, suffix: &str) -> Result<PathBuf> {
    let dir = workspace_root().join(dir);
    let found = std::fs::read_dir(&dir)
        .with_context(|| format!("{} is missing: run scripts/package.sh first", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(suffix));
    found.with_context(|| {
        format!(
            "no *{suffix} in {}: run scripts/package.sh first",
            dir.display()
        )
    })
}

fn apt(sb: &Sandbox, args: &[&str]) -> Result<String> {
    let mut v = vec![
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-y",
        "-q",
    ];
    v.extend_from_slice(args);
    sb.run(&v)
}

#[test]
fn deb_installs_upgrades_removes_and_purges() -> Result<()> {
    let first = package("target/debian", "-1_amd64.deb")?;
    let second = package("target/debian/upgrade", "-2_amd64.deb")?;
    let sb = Sandbox::boot("deb")?;
    let share = sb.share();
    for p in [&first, &second] {
        std::fs::copy(p, share.join(p.file_name().context("name")?))?;
    }
    let agent = std::fs::read(target_bin_dir().join("torch-test-agent"))?;
    sb.write_file("/usr/local/bin/torch-test-agent", &agent, 0o755)?;
    let deb = |p: &PathBuf| {
        share
            .join(p.file_name().unwrap_or_default())
            .display()
            .to_string()
    };

    apt(&sb, &["install", &deb(&first)])?;
    ensure!(
        sb.unit_property("torch.service", "ActiveState")? == "active",
        "the hub did not start on install"
    );
    ensure!(sb.unit_property("torch.service", "User")? == "torch");
    ensure!(sb.unit_property("torch-autocommit.timer", "ActiveState")? == "active");
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    sb.torch(&[
        "spawn",
        "e1",
        "--role",
        "orchestrator",
        "--workdir",
        "/srv/work",
        "--",
        "/usr/local/bin/torch-test-agent",
        "echo",
        "--record",
        "/var/lib/torch-agent/e1/record.jsonl",
    ])?;
    sb.torch(&["send", "--wait", "e1", "before the upgrade"])?;
    sb.torch(&[
        "schedule",
        "e1",
        "--in",
        "2h",
        "--note",
        "kept across the upgrade",
    ])?;
    let man = sb.run(&["sh", "-c", "ls /usr/share/man/man1/torch.1.gz /usr/share/man/man1/torch-schedule.1.gz /usr/share/bash-completion/completions/torch"])?;
    ensure!(man.lines().count() == 3, "{man}");

    // Upgrade with a message queued for a stopped agent and a schedule pending.
    sb.torch(&["stop", "e1"])?;
    sb.torch(&["send", "e1", "queued across the upgrade"])?;
    let hub = sb.unit_property("torch.service", "MainPID")?;
    apt(&sb, &["install", &deb(&second)])?;
    let version = sb.run(&["dpkg-query", "-W", "-f", "${Version}", "torch"])?;
    ensure!(version == "0.1.0-2", "installed version {version}");
    ensure!(sb.unit_property("torch.service", "ActiveState")? == "active");
    ensure!(
        sb.unit_property("torch.service", "MainPID")? != hub,
        "the hub was not restarted by the upgrade"
    );
    let schedules = sb.torch(&["schedules"])?;
    ensure!(schedules.contains("kept across the upgrade"), "{schedules}");
    sb.torch(&["start", "e1"])?;
    wait_until(
        "the queued message after the upgrade",
        Duration::from_secs(20),
        || {
            Ok(
                String::from_utf8_lossy(&sb.read_file("/var/lib/torch-agent/e1/record.jsonl")?)
                    .contains("queued across the upgrade"),
            )
        },
    )?;

    // Remove: everything stops, the state stays.
    apt(&sb, &["remove", "torch"])?;
    for unit in [
        "torch.service",
        "torch-agent@e1.service",
        "torch-autocommit.timer",
    ] {
        let state = sb.unit_property(unit, "ActiveState")?;
        ensure!(state != "active", "{unit} is still {state} after remove");
    }
    let timers = sb.systemctl(&["list-units", "--no-legend", "--plain", "torch-checkin@*"])?;
    ensure!(
        timers.trim().is_empty(),
        "timers left after remove: {timers}"
    );
    ensure!(
        sb.root().join("var/lib/torch/torch.db").exists(),
        "remove deleted the state"
    );
    ensure!(
        sb.root().join("etc/torch/torch.toml").exists(),
        "remove deleted the admin's configuration"
    );

    // Purge: the state goes.
    apt(&sb, &["purge", "torch"])?;
    ensure!(
        !sb.root().join("var/lib/torch").exists(),
        "purge kept /var/lib/torch"
    );
    ensure!(
        !sb.root().join("etc/torch/torch.toml").exists(),
        "purge kept /etc/torch/torch.toml"
    );
    Ok(())
}

/// Every file under dist/, as the absolute path it is installed at.
fn dist_files() -> Result<Vec<String>> {
    let dist = workspace_root().join("dist");
    let out = Command::new("find")
        .arg(".")
        .args(["-type", "f"])
        .current_dir(&dist)
        .output()
        .context("cannot list dist/")?;
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix('.'))
        .map(str::to_string)
        .collect();
    files.sort();
    ensure!(files.len() > 10, "dist/ holds only {files:?}");
    Ok(files)
}

#[test]
fn the_deb_holds_all_of_dist() -> Result<()> {
    let deb = package("target/debian", "-1_amd64.deb")?;
    let out = Command::new("dpkg-deb").arg("-c").arg(&deb).output()?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|p| p.strip_prefix('.'))
        .collect();
    for f in dist_files()? {
        ensure!(
            files.contains(&f.as_str()),
            "{f} missing from the deb:\n{listing}"
        );
    }
    Ok(())
}

#[test]
fn lintian_finds_no_errors() -> Result<()> {
    let deb = package("target/debian", "-1_amd64.deb")?;
    let out = Command::new("lintian")
        .arg(&deb)
        .output()
        .context("cannot run lintian (apt-get install lintian)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    ensure!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    Ok(())
}

#[test]
fn rpm_lists_scripts_requires_and_installs_into_a_scratch_root() -> Result<()> {
    let rpm = package("target/generate-rpm", ".x86_64.rpm")?;
    let run = |args: &[&str]| -> Result<String> {
        let out = Command::new("rpm")
            .args(args)
            .arg(&rpm)
            .output()
            .context("cannot run rpm (apt-get install rpm)")?;
        if !out.status.success() {
            bail!("rpm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let files = run(&["-qpl"])?;
    let mut want = dist_files()?;
    want.extend(
        [
            "/usr/bin/torch",
            "/usr/libexec/torch/torchd",
            "/usr/libexec/torch/torch-metrics",
            "/usr/libexec/torch/torch-alerts",
            "/usr/libexec/torch/torch-web",
            "/usr/libexec/torch/torch-agent",
            "/usr/share/man/man1/torch.1.gz",
            "/usr/share/doc/torch/dbus.md",
        ]
        .map(String::from),
    );
    for f in &want {
        ensure!(
            files.lines().any(|l| l == f),
            "{f} missing from the rpm:\n{files}"
        );
    }
    let scripts = run(&["-qp", "--scripts"])?;
    ensure!(
        scripts.contains("postinstall")
            && scripts.contains("systemd-sysusers")
            && scripts.contains("preuninstall"),
        "{scripts}"
    );
    let requires = run(&["-qpR"])?;
    ensure!(
        ["tmux", "dbus", "systemd", "polkit"]
            .iter()
            .all(|r| requires.lines().any(|l| l.starts_with(r))),
        "{requires}"
    );
    let configs = run(&["-qpc"])?;
    ensure!(configs.contains("/etc/torch/torch.toml"), "{configs}");

    let root = std::env::temp_dir().join(format!("torch-rpm-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let out = Command::new("rpm")
        .arg("-i")
        .arg("--root")
        .arg(&root)
        .args(["--nodeps", "--noscripts"])
        .arg(&rpm)
        .output()?;
    ensure!(
        out.status.success(),
        "rpm -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in files.lines().filter(|l| l.contains("torch")) {
        ensure!(
            root.join(f.trim_start_matches('/')).exists(),
            "{f} did not land in the scratch root"
        );
    }
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
