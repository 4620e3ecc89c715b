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

use crate::wait_until;

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
