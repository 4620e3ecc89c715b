//! Torch's integration-test harness.
//!
//! The development and CI machines do not run systemd as PID 1, so every integration test
//! boots its own real systemd in a sandbox (own PID/mount/cgroup/UTS/IPC/net namespaces, an
//! overlay of the host root) with `scripts/sandbox/start.sh`, and tears it down on drop with
//! `scripts/sandbox/stop.sh`. [`Sandbox`] wraps that: run commands inside, read and write
//! files in its root, query units and the journal.
//!
//! The cargo target directory (see [`target_bin_dir`]) is bind-mounted at the same path inside
//! every sandbox, so binaries built after boot are visible there as they are on the host.
//!
//! The crate also ships `torch-test-agent`, a scripted terminal "agent" for tests, and
//! `torch-test-llm`, a stand-in of the Anthropic Messages API (see [`anthropic`] and [`llm`]).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub mod anthropic;
pub mod compat;
pub mod fleet;
pub mod gemini;
pub mod llm;
pub mod openai;
pub mod redis;

/// Parent directory of every sandbox's state directory.
pub const SANDBOX_BASE: &str = "/tmp/torch-sdh";

/// Maximum length of a sandbox name (it is the hostname and the cgroup name).
const MAX_NAME_LEN: usize = 40;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Directory holding the workspace's debug binaries: `$CARGO_TARGET_DIR/debug` if that is
/// set, else `<workspace>/target/debug`.
pub fn target_bin_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            let dir = if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            };
            dir.join("debug")
        }
        _ => workspace_root().join("target").join("debug"),
    }
}

/// Polls `f` every 50 ms until it returns `Ok(true)`, failing after `timeout`.
///
/// An `Err` from `f` does not stop the polling; the last one is reported in the timeout
/// error, which also names `what`.
pub fn wait_until<F: FnMut() -> Result<bool>>(
    what: &str,
    timeout: Duration,
    mut f: F,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err: Option<anyhow::Error> = None;
    loop {
        match f() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_err {
                Some(e) => {
                    anyhow!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running sandboxed systemd, stopped (and its state directory removed) on drop.
#[derive(Debug)]
pub struct Sandbox {
    name: String,
    dir: PathBuf,
    pid: u32,
    boot_time: Duration,
    keep: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Makes a hostname-legal sandbox name `t-<label>-<pid>-<counter>` of at most 40 chars.
fn sandbox_name(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let suffix = format!("-{}-{}", std::process::id(), n);
    let mut clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let room = MAX_NAME_LEN.saturating_sub(2 + suffix.len());
    clean.truncate(room);
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "x" } else { clean };
    format!("t-{clean}{suffix}")
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Sandbox {
    /// Boots a fresh sandbox named after `label` (made unique per process and call).
    pub fn boot(label: &str) -> Result<Sandbox> {
        Self::boot_with(label, None)
    }

    /// Boots a sandbox whose `/var/lib/torch` is the host directory `persist`,
    /// so a later sandbox booted on the same directory sees the same state
    /// (a reboot, as far as Torch can tell).
    pub fn boot_with(label: &str, persist: Option<&Path>) -> Result<Sandbox> {
        Self::boot_opts(label, persist, None)
    }

    /// Boots a sandbox that sees the host directory `shared` at the same
    /// path (outside `/tmp`, which the hub's and agents' units make private),
    /// as several sandboxes of one test can; its `/var/lib/torch` is
    /// `persist` when given, as for [`Sandbox::boot_with`].
    pub fn boot_sharing(label: &str, shared: &Path, persist: Option<&Path>) -> Result<Sandbox> {
        Self::boot_opts(label, persist, Some(shared))
    }

    fn boot_opts(label: &str, persist: Option<&Path>, shared: Option<&Path>) -> Result<Sandbox> {
        let name = sandbox_name(label);
        let dir = Path::new(SANDBOX_BASE).join(&name);
        if dir.exists() {
            // Leftover of a crashed run with the same pid and counter: clean it up first.
            let _ = stop_script(&name, &dir);
            let _ = fs::remove_dir_all(&dir);
        }
        fs::create_dir_all(dir.join("share"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let bins = target_bin_dir();
        fs::create_dir_all(&bins).with_context(|| format!("creating {}", bins.display()))?;
        let mut binds = format!("{} {}", dir.join("share").display(), bins.display());
        if let Some(shared) = shared {
            binds.push_str(&format!(" {}", shared.display()));
        }
        let script = workspace_root().join("scripts/sandbox/start.sh");

        let t0 = Instant::now();
        let out = Command::new(&script)
            .env("SDH_NAME", &name)
            .env("SDH_DIR", &dir)
            .env("SDH_BINDS", &binds)
            .env_remove("SDH_PERSIST")
            .envs(persist.map(|p| ("SDH_PERSIST", p.as_os_str())))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        let boot_time = t0.elapsed();

        // From here on, Drop stops whatever start.sh left behind.
        let mut sb = Sandbox {
            name,
            dir,
            pid: 0,
            boot_time,
            keep: false,
        };
        if !out.status.success() {
            bail!(
                "sandbox {} failed to boot ({}):\n{}",
                sb.name,
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 30)
            );
        }
        let env_file = sb.dir.join("state/env");
        let env = fs::read_to_string(&env_file)
            .with_context(|| format!("reading {}", env_file.display()))?;
        sb.pid = env
            .lines()
            .find_map(|l| l.trim().strip_prefix("export SDH_PID="))
            .ok_or_else(|| anyhow!("no SDH_PID in {}", env_file.display()))?
            .trim()
            .parse()
            .with_context(|| format!("bad SDH_PID in {}", env_file.display()))?;
        sb.keep = std::env::var("TORCH_KEEP_SANDBOX").is_ok_and(|v| v == "1");
        Ok(sb)
    }

    /// The sandbox's name (its hostname and cgroup name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Host PID of the sandbox's systemd (PID 1 inside).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The sandbox's root directory seen from the host (`/proc/PID/root`).
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    /// The sandbox's state directory on the host (`/tmp/torch-sdh/<name>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A read-write directory shared with the sandbox, at the same path inside and outside.
    pub fn share(&self) -> PathBuf {
        self.dir.join("share")
    }

    /// How long `start.sh` took to boot the sandbox to `running`/`degraded`.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// Keeps the sandbox running after drop (for debugging); also set by
    /// `TORCH_KEEP_SANDBOX=1` at boot. Stop it later with `scripts/sandbox/stop.sh`.
    pub fn keep_on_drop(&mut self) {
        self.keep = true;
    }

    /// Runs `args` inside the sandbox (all its namespaces) with stdin null; any exit status.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {args:?} in sandbox {}", self.name))
    }

    /// Runs `args` inside the sandbox; fails unless it exits 0; returns its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.exec(args)?;
        self.check(args, out)
    }

    /// Runs `script` with `/bin/sh -c` inside the sandbox; returns its stdout.
    pub fn sh(&self, script: &str) -> Result<String> {
        self.run(&["/bin/sh", "-c", script])
    }

    /// Like [`Sandbox::run`], feeding `stdin` to the command.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Result<String> {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {args:?} in sandbox {}", self.name))?;
        let mut pipe = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
        let data = stdin.to_vec();
        // Write from a thread so a command that prints a lot before reading cannot deadlock us.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
        let out = child.wait_with_output().context("waiting for command")?;
        let _ = writer.join();
        self.check(args, out)
    }

    /// Writes `contents` to `path_inside` (absolute path inside the sandbox) with `mode`,
    /// creating parent directories.
    pub fn write_file(&self, path_inside: &str, contents: &[u8], mode: u32) -> Result<()> {
        let path = self.host_path(path_inside)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, contents)
            .with_context(|| format!("writing {path_inside} in sandbox {}", self.name))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {mode:o} {path_inside}"))?;
        Ok(())
    }

    /// Reads `path_inside` (absolute path inside the sandbox).
    pub fn read_file(&self, path_inside: &str) -> Result<Vec<u8>> {
        let path = self.host_path(path_inside)?;
        fs::read(&path).with_context(|| format!("reading {path_inside} in sandbox {}", self.name))
    }

    /// Runs `systemctl args...` inside; returns its stdout.
    pub fn systemctl(&self, args: &[&str]) -> Result<String> {
        let mut v = vec!["systemctl"];
        v.extend_from_slice(args);
        self.run(&v)
    }

    /// `systemctl show -P <prop> <unit>`, trimmed.
    pub fn unit_property(&self, unit: &str, prop: &str) -> Result<String> {
        Ok(self
            .systemctl(&["show", "-P", prop, unit])?
            .trim()
            .to_string())
    }

    /// Runs `journalctl --no-pager args...` inside; returns its stdout.
    pub fn journal(&self, args: &[&str]) -> Result<String> {
        let mut v = vec!["journalctl", "--no-pager"];
        v.extend_from_slice(args);
        self.run(&v)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.dir.join("bin/sdh-exec"));
        c.args(args);
        c
    }

    fn check(&self, args: &[&str], out: Output) -> Result<String> {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{args:?} in sandbox {} failed ({}):\n--- stdout:\n{}\n--- stderr:\n{}",
                self.name,
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    fn host_path(&self, path_inside: &str) -> Result<PathBuf> {
        let rel = path_inside
            .strip_prefix('/')
            .ok_or_else(|| anyhow!("path inside the sandbox must be absolute: {path_inside}"))?;
        Ok(self.root().join(rel))
    }
}

fn stop_script(name: &str, dir: &Path) -> Result<Output> {
    let script = workspace_root().join("scripts/sandbox/stop.sh");
    Ok(Command::new(script)
        .env("SDH_NAME", name)
        .env("SDH_DIR", dir)
        .stdin(Stdio::null())
        .output()?)
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "torch-tests: keeping sandbox {} (pid {}); stop: SDH_DIR={} {}",
                self.name,
                self.pid,
                self.dir.display(),
                workspace_root().join("scripts/sandbox/stop.sh").display()
            );
            return;
        }
        let _ = stop_script(&self.name, &self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hostname_legal_and_short() {
        let a = sandbox_name("Some Very_Long label that goes on and on and on");
        let b = sandbox_name("Some Very_Long label that goes on and on and on");
        assert_ne!(a, b);
        for n in [&a, &b, &sandbox_name(""), &sandbox_name("---")] {
            assert!(n.len() <= MAX_NAME_LEN, "{n}");
            assert!(n.starts_with("t-"), "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.contains("--"), "{n}");
        }
    }

    #[test]
    fn wait_until_reports_what_and_last_error() {
        let mut n = 0;
        wait_until("counter", Duration::from_secs(2), || {
            n += 1;
            Ok(n >= 3)
        })
        .unwrap();
        let e =
            wait_until("the moon", Duration::from_millis(120), || bail!("not yet")).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("the moon") && msg.contains("not yet"), "{msg}");
    }
}
