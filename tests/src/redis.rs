//! A Redis server of the test's own for the cluster tests: Debian's Redis
//! (the server binary `redis-tools` ships as `redis-check-rdb`, which is
//! `redis-server` when started under that name; installing the
//! `redis-server` package would start a server on this machine), on a unix
//! socket in a directory the test's sandboxes share, nothing on disk.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{wait_until, Sandbox};

/// Debian's Redis server binary.
const SERVER: &str = "/usr/bin/redis-check-rdb";

/// A running Redis server, stopped (by its pid) when dropped.
pub struct Redis {
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    /// Starts a server listening on `redis.sock` in `dir` (created, open to
    /// every user: the hubs run as `torch`).
    pub fn start(dir: &Path) -> Result<Redis> {
        if !Path::new(SERVER).exists() {
            bail!(
                "{SERVER} is missing: apt-get install redis-tools (scripts/setup-debian.sh does)"
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut redis = Redis {
            dir: dir.to_path_buf(),
            child: None,
        };
        redis.resume()?;
        Ok(redis)
    }

    /// The socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// The URL hubs are given.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Runs `redis-cli` against the server; what it printed.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Gives each of `nodes` its Redis user `torch-NODE` (password `secret
    /// of NODE`), limited to Torch's keys and the commands the hub uses, as
    /// docs/cluster.md has them.
    pub fn add_node_users(&self, nodes: &[&str]) -> Result<()> {
        for node in nodes {
            let user = format!("torch-{node}");
            let password = format!(">secret of {node}");
            let said = self.cli(&[
                "ACL",
                "SETUSER",
                &user,
                "on",
                &password,
                "resetkeys",
                "~torch:*",
                "resetchannels",
                "-@all",
                "+@read",
                "+@write",
                "+@scripting",
                "+@connection",
                "+time",
                "-@dangerous",
            ])?;
            if said != "OK" {
                bail!("ACL SETUSER {user}: {said}");
            }
        }
        Ok(())
    }

    /// Stops the server (SIGKILL: an outage, not a shutdown).
    pub fn pause(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("stopping redis")?;
            child.wait().context("waiting for redis")?;
        }
        Ok(())
    }

    /// Starts the server again, empty, on the same socket.
    pub fn resume(&mut self) -> Result<()> {
        let socket = self.socket();
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(SERVER)
            .arg0("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "777",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis")?;
        self.child = Some(child);
        wait_until("redis answers", Duration::from_secs(10), || {
            Ok(self.cli(&["ping"]).is_ok_and(|p| p == "PONG"))
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.pause();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Boots a sandbox as node `node` of the cluster on `redis` (whose socket
/// is in `shared`), Torch installed and its hub running. It signs in as its
/// own Redis user ([`Redis::add_node_users`]), its password in a file only
/// the hub's user reads. (A systemd credential is read first, but
/// credentials come out empty in the test sandbox's systemd, whatever the
/// unit.)
pub fn cluster_node(label: &str, node: &str, redis: &Redis, shared: &Path) -> Result<Sandbox> {
    cluster_node_on(label, node, redis, shared, None)
}

/// [`cluster_node`] whose `/var/lib/torch` is the host directory `persist`
/// when given: booted again on it, the node is the same machine rebooted.
pub fn cluster_node_on(
    label: &str,
    node: &str,
    redis: &Redis,
    shared: &Path,
    persist: Option<&Path>,
) -> Result<Sandbox> {
    let sb = Sandbox::boot_sharing(label, shared, persist)?;
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    sb.install_torch()?;
    let config = format!(
        "[cluster]\nnode = \"{node}\"\nredis = \"{}?user=torch-{node}\"\npassword_file = \"/etc/torch/redis-password\"\nheartbeat_secs = 1\n",
        redis.url()
    );
    sb.write_file("/etc/torch/torch.toml", config.as_bytes(), 0o644)?;
    let password = format!("secret of {node}\n");
    sb.write_file("/etc/torch/redis-password", password.as_bytes(), 0o640)?;
    sb.run(&["chgrp", "torch", "/etc/torch/redis-password"])?;
    sb.start_hub()?;
    Ok(sb)
}
