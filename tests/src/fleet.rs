//! Torch inside a sandbox: install the fresh build, define agents, call the
//! CLI, read what the echo agent recorded.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{target_bin_dir, wait_until, workspace_root, Sandbox};

/// Where the scripted test agent is installed inside a sandbox.
pub const TEST_AGENT: &str = "/usr/local/bin/torch-test-agent";

/// The drop-in [`Sandbox::agent_dropin`] writes for every agent unit.
const AGENT_DROPIN: &str = "/etc/systemd/system/torch-agent@.service.d/test.conf";

/// `torch.toml` that types messages to shell-profile agents after their
/// header, as AI agents get them: the echo agents stand in for AI agents.
pub const ENVELOPE_FOR_SHELL: &str = "[delivery.envelope]\nshell = true\n";

/// Boots a sandbox with Torch installed, `config` as `/etc/torch/torch.toml`
/// and the hub running.
pub fn boot_hub(label: &str, config: &str) -> Result<Sandbox> {
    let sb = Sandbox::boot(label)?;
    sb.install_torch()?;
    sb.write_file("/etc/torch/torch.toml", config.as_bytes(), 0o644)?;
    sb.start_hub()?;
    Ok(sb)
}

/// Where an echo agent named `name` records its messages: its home, which
/// its own user may write (its /tmp is private).
pub fn record_path(name: &str) -> String {
    let instance = torch_core::AgentName::parse(name).map_or(name.to_string(), |n| n.instance());
    format!("/var/lib/torch-agent/{instance}/record.jsonl")
}

/// The messages in an echo agent's record file (one JSON string a line).
pub fn parse_records(raw: &str) -> Result<Vec<String>> {
    raw.lines()
        .map(|l| serde_json::from_str::<String>(l).with_context(|| format!("bad record {l:?}")))
        .collect()
}

/// Whether a command succeeded, and what it printed (stdout, then stderr).
fn said(out: &Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Sandbox {
    /// Installs the built binaries and unit files (`scripts/sandbox/install-torch.sh`).
    pub fn install_torch(&self) -> Result<()> {
        let script = workspace_root().join("scripts/sandbox/install-torch.sh");
        let out = Command::new(&script)
            .env("SDH_DIR", self.dir())
            // TORCH_BIN_DIR=target/release measures release builds.
            .env(
                "TORCH_BIN_DIR",
                std::env::var_os("TORCH_BIN_DIR").unwrap_or_else(|| target_bin_dir().into()),
            )
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "install-torch failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Writes `/etc/torch/agents/NAME.toml`.
    pub fn define_agent(&self, name: &str, toml: &str) -> Result<()> {
        self.write_file(
            &format!("/etc/torch/agents/{name}.toml"),
            toml.as_bytes(),
            0o644,
        )
    }

    /// Defines an echo agent recording into [`record_path`].
    pub fn define_echo_agent(&self, name: &str) -> Result<()> {
        self.define_agent(
            name,
            &format!(
                "command = [\"{TEST_AGENT}\", \"echo\", \"--record\", '{}']\nready_pattern = \"echo> \"\n",
                record_path(name)
            ),
        )
    }

    /// Writes a drop-in for every agent unit (e.g. a shorter watchdog) and reloads.
    pub fn agent_dropin(&self, body: &str) -> Result<()> {
        self.write_file(AGENT_DROPIN, body.as_bytes(), 0o644)?;
        self.systemctl(&["daemon-reload"]).map(drop)
    }

    /// Removes the drop-in of [`Sandbox::agent_dropin`] and reloads; agents
    /// started later run without it.
    pub fn remove_agent_dropin(&self) -> Result<()> {
        self.run(&["rm", "-f", AGENT_DROPIN])?;
        self.systemctl(&["daemon-reload"]).map(drop)
    }

    /// Runs `torch args...` inside; fails on a non-zero exit.
    pub fn torch(&self, args: &[&str]) -> Result<String> {
        let mut v = vec!["torch"];
        v.extend_from_slice(args);
        self.run(&v)
    }

    /// Runs `torch args...` inside and returns (success, stdout + stderr).
    pub fn torch_status(&self, args: &[&str]) -> Result<(bool, String)> {
        let mut v = vec!["torch"];
        v.extend_from_slice(args);
        Ok(said(&self.exec(&v)?))
    }

    /// The messages the echo agent `name` recorded, in order.
    pub fn records(&self, name: &str) -> Result<Vec<String>> {
        let raw = match self.read_file(&record_path(name)) {
            Ok(r) => r,
            Err(_) => return Ok(Vec::new()),
        };
        parse_records(&String::from_utf8(raw)?)
    }

    /// Waits until the agent's unit is active with the given restart count at least.
    pub fn wait_active(&self, name: &str, min_restarts: u32, timeout: Duration) -> Result<()> {
        let unit = format!("torch-agent@{name}.service");
        wait_until(
            &format!("{unit} active after {min_restarts} restarts"),
            timeout,
            || {
                let active = self.unit_property(&unit, "ActiveState")? == "active";
                let n: u32 = self.unit_property(&unit, "NRestarts")?.parse()?;
                Ok(active && n >= min_restarts)
            },
        )
    }

    /// Runs `script` in the shell of agent `name` (profile `shell`: as the
    /// agent, in its unit), its output kept in the agent's home as step
    /// `n`; whether it exited 0, and what it printed.
    pub fn in_pane(&self, name: &str, n: u32, script: &str) -> Result<(bool, String)> {
        let out = format!("/var/lib/torch-agent/{name}/step-{n}.out");
        let line = format!(
            "( {script} ) > {out}.tmp 2>&1; echo \"exit $?\" >> {out}.tmp; mv {out}.tmp {out}"
        );
        self.torch(&["send", "--direct", name, &line])?;
        wait_until(
            &format!("{name} ran {script:?}"),
            Duration::from_secs(20),
            || Ok(self.exec(&["test", "-e", &out])?.status.success()),
        )?;
        let said = String::from_utf8_lossy(&self.read_file(&out)?).into_owned();
        let (printed, status) = said
            .trim_end()
            .rsplit_once('\n')
            .unwrap_or(("", said.trim_end()));
        let printed = if printed.is_empty() {
            String::new()
        } else {
            format!("{printed}\n")
        };
        Ok((status == "exit 0", printed))
    }

    /// PID of the agent's program (the process in its pane).
    pub fn pane_pid(&self, name: &str) -> Result<String> {
        let sock = format!("/run/torch-agent/{name}/tmux.sock");
        let out = self.run(&[
            "tmux",
            "-S",
            &sock,
            "display-message",
            "-p",
            "-t",
            "%0",
            "#{pane_pid}",
        ])?;
        Ok(out.trim().to_string())
    }

    /// PID of the agent's tmux server.
    pub fn tmux_server_pid(&self, name: &str) -> Result<u32> {
        let sock = format!("/run/torch-agent/{name}/tmux.sock");
        let out = self.run(&["tmux", "-S", &sock, "display-message", "-p", "#{pid}"])?;
        Ok(out.trim().parse()?)
    }
}

impl Sandbox {
    /// Starts the hub (`torch.service`).
    pub fn start_hub(&self) -> Result<()> {
        self.systemctl(&["start", "torch.service"]).map(drop)
    }

    /// Runs `torch args...` as agent `agent` would from its pane
    /// (`TORCH_AGENT` set); returns (success, stdout + stderr).
    pub fn torch_as(&self, agent: &str, args: &[&str]) -> Result<(bool, String)> {
        let env = format!("TORCH_AGENT={agent}");
        let mut v = vec!["env", env.as_str(), "torch"];
        v.extend_from_slice(args);
        Ok(said(&self.exec(&v)?))
    }

    /// Spawns an echo agent through the hub (recording into [`record_path`]).
    pub fn spawn_echo(&self, name: &str, role: &str, parent: Option<&str>) -> Result<()> {
        self.run(&["mkdir", "-p", "/srv/work"])?;
        let record = record_path(name);
        let mut args = vec!["spawn", name, "--role", role, "--workdir", "/srv/work"];
        if let Some(p) = parent {
            args.extend(["--parent", p]);
        }
        args.extend(["--", TEST_AGENT, "echo", "--record", record.as_str()]);
        self.torch(&args).map(drop)
    }

    /// Starts agent `name` running the test agent's `hang` mode with
    /// `hang_after_secs`, and waits until the program stopped reading.
    pub fn start_hung_agent(&self, name: &str, hang_after_secs: u64) -> Result<()> {
        self.define_agent(
            name,
            &format!(
                "command = [\"{TEST_AGENT}\", \"hang\", \"--after\", \"1\"]\nhang_after_secs = {hang_after_secs}\n"
            ),
        )?;
        self.torch(&["start", name])?;
        wait_until("the agent to hang", Duration::from_secs(10), || {
            Ok(self
                .torch(&["capture", "--direct", name])?
                .contains("now hanging"))
        })
    }
}

impl Sandbox {
    /// Runs `torch args...` from inside agent `agent`'s unit (its cgroup),
    /// so the hub takes the caller for that agent, as for a command typed
    /// in its pane (`TORCH_AGENT` set, as the unit sets it); returns
    /// (success, stdout + stderr).
    pub fn torch_in_unit(&self, agent: &str, args: &[&str]) -> Result<(bool, String)> {
        let cg = self.unit_property(&format!("torch-agent@{agent}.service"), "ControlGroup")?;
        let mut v = vec![
            "sh".to_string(),
            "-c".to_string(),
            format!(
                "echo $$ > '/sys/fs/cgroup{cg}/cgroup.procs' && TORCH_AGENT='{agent}' exec torch \"$@\""
            ),
            "sh".to_string(),
        ];
        v.extend(args.iter().map(|a| a.to_string()));
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        Ok(said(&self.exec(&v)?))
    }
}

impl Sandbox {
    /// Every stored message to or from `agent`, oldest first, read page by
    /// page as a user would (`torch messages --before`).
    pub fn all_messages(&self, agent: &str) -> Result<Vec<serde_json::Value>> {
        let mut all = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let mut args = vec!["messages", "--agent", agent, "--limit", "1000", "--json"];
            let cursor = before.map(|b| b.to_string());
            if let Some(c) = &cursor {
                args.extend(["--before", c.as_str()]);
            }
            let page: Vec<serde_json::Value> = serde_json::from_str(&self.torch(&args)?)?;
            let Some(first) = page.first().and_then(|m| m["id"].as_i64()) else {
                break;
            };
            let done = page.len() < 1000;
            all.splice(0..0, page);
            if done {
                break;
            }
            before = Some(first);
        }
        Ok(all)
    }
}

impl Sandbox {
    /// Starts `torch events ARGS` as the transient unit `unit`, its lines
    /// written to `log`, and waits until it has subscribed (it says so on
    /// its standard error, in the journal).
    pub fn watch_events(&self, unit: &str, log: &str, args: &[&str]) -> Result<()> {
        let output = format!("StandardOutput=file:{log}");
        let mut argv = vec![
            "systemd-run",
            "--unit",
            unit,
            "-p",
            &output,
            "-p",
            "StandardError=journal",
            "torch",
            "events",
        ];
        argv.extend_from_slice(args);
        self.run(&argv)?;
        let mut said = String::new();
        let r = wait_until("torch events to subscribe", Duration::from_secs(10), || {
            said = self.journal(&["-u", unit, "-o", "cat"])?;
            Ok(said.contains("watching the hub's events"))
        });
        r.map_err(|e| e.context(format!("its journal: {said}")))
    }
}
