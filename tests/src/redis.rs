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
    /// Listening with TLS on [`TLS_PORT`] too, in the network namespace
    /// of this process, with the certificates of this [`Tls`].
    tls: Option<(u32, Tls)>,
}

/// The port of a server started by [`Redis::start_tls`], on 127.0.0.1 of
/// the sandbox it listens in.
pub const TLS_PORT: u16 = 6380;

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
            tls: None,
        };
        redis.resume()?;
        Ok(redis)
    }

    /// [`Redis::start`], also listening with TLS (client certificates
    /// required) on 127.0.0.1:[`TLS_PORT`] of `sandbox`'s network: a hub
    /// there reaches it over TCP, the others by the socket.
    pub fn start_tls(dir: &Path, sandbox: &Sandbox, tls: &Tls) -> Result<Redis> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut redis = Redis {
            dir: dir.to_path_buf(),
            child: None,
            tls: Some((sandbox.pid(), tls.clone())),
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
        let child = self
            .server()
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

impl Redis {
    /// The server's command: in the TLS sandbox's network namespace, with
    /// its certificates, when it listens with TLS.
    fn server(&self) -> Command {
        let Some((pid, tls)) = &self.tls else {
            let mut cmd = Command::new(SERVER);
            cmd.arg0("redis-server");
            return cmd;
        };
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["--", "bash", "-c"])
            .arg(format!("exec -a redis-server {SERVER} \"$@\""))
            .arg("redis-server")
            .args(["--bind", "127.0.0.1", "--tls-port", &TLS_PORT.to_string()])
            .arg("--tls-cert-file")
            .arg(tls.file("server.crt"))
            .arg("--tls-key-file")
            .arg(tls.file("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(tls.file("ca.crt"))
            .args(["--tls-auth-clients", "yes"]);
        cmd
    }
}

/// Certificates made by openssl for a Redis server with TLS and its
/// clients: a certificate authority `ca.crt`, the server's `server.crt`
/// (for localhost and 127.0.0.1) and a client's `client.crt`, each with
/// its `.key`.
#[derive(Clone)]
pub struct Tls {
    dir: PathBuf,
}

impl Tls {
    /// Makes them in `dir`.
    pub fn make(dir: &Path) -> Result<Tls> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tls = Tls {
            dir: dir.to_path_buf(),
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        tls.openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=torch-test-ca",
                ],
            ]
            .concat(),
        )?;
        for (name, ext) in [
            (
                "server",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let csr = format!("{name}.csr");
            let key = format!("{name}.key");
            let crt = format!("{name}.crt");
            let ext_file = format!("{name}.ext");
            std::fs::write(dir.join(&ext_file), ext)?;
            tls.openssl(
                &[
                    &["req"],
                    &ec[..],
                    &[
                        "-keyout",
                        &key,
                        "-out",
                        &csr,
                        "-subj",
                        &format!("/CN=torch-test-{name}"),
                    ],
                ]
                .concat(),
            )?;
            tls.openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                &ext_file,
            ])?;
        }
        Ok(tls)
    }

    /// The path of one of its files.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn openssl(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .context("running openssl (apt-get install openssl)")?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
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
/// the hub's user reads (`password_file`).
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
    let server = format!(
        "redis = \"{}?user=torch-{node}\"\npassword_file = \"{PASSWORD}\"\n",
        redis.url()
    );
    start_node(sb, node, &server, &[])
}

/// Where a node's Redis password is written.
const PASSWORD: &str = "/etc/torch/redis-password";

/// Makes `sb` (booted sharing the directory of a server started by
/// [`Redis::start_tls`] in it) node `node`, which reaches the server over
/// TLS with the client certificate of `tls`, signed in as its own Redis
/// user with its password as the hub's systemd credential.
pub fn tls_node(sb: Sandbox, node: &str, tls: &Tls) -> Result<Sandbox> {
    sb.run(&["mkdir", "-p", "/etc/torch"])?;
    for (from, to, mode) in [
        ("ca.crt", "/etc/torch/redis-ca.crt", 0o644),
        ("client.crt", "/etc/torch/redis-client.crt", 0o644),
        ("client.key", "/etc/torch/redis-client.key", 0o640),
    ] {
        let pem = std::fs::read(tls.file(from)).with_context(|| format!("reading {from}"))?;
        sb.write_file(to, &pem, mode)?;
    }
    // The drop-in docs/cluster.md gives a node that reaches Redis over TCP,
    // the password a systemd credential (no password_file).
    let dropin = format!("[Service]\nPrivateNetwork=no\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\nIPAddressAllow=localhost\nLoadCredential=redis-password:{PASSWORD}\n");
    sb.run(&["mkdir", "-p", "/etc/systemd/system/torch.service.d"])?;
    sb.write_file(
        "/etc/systemd/system/torch.service.d/cluster.conf",
        dropin.as_bytes(),
        0o644,
    )?;
    let server = format!(
        "redis = \"rediss://torch-{node}@localhost:{TLS_PORT}\"\nca_file = \"/etc/torch/redis-ca.crt\"\ncert_file = \"/etc/torch/redis-client.crt\"\nkey_file = \"/etc/torch/redis-client.key\"\n"
    );
    start_node(sb, node, &server, &["/etc/torch/redis-client.key"])
}

/// Installs Torch in `sb` as node `node`, with the `[cluster]` lines
/// `server` for its Redis, and starts its hub; the hub's group (`torch`)
/// reads its password and the files of `secrets`.
fn start_node(sb: Sandbox, node: &str, server: &str, secrets: &[&str]) -> Result<Sandbox> {
    sb.run(&["mkdir", "-p", "/srv/work"])?;
    sb.install_torch()?;
    let config = format!("[cluster]\nnode = \"{node}\"\n{server}heartbeat_secs = 1\n");
    sb.write_file("/etc/torch/torch.toml", config.as_bytes(), 0o644)?;
    let password = format!("secret of {node}\n");
    sb.write_file(PASSWORD, password.as_bytes(), 0o640)?;
    sb.run(&[&["chgrp", "torch", PASSWORD], secrets].concat())?;
    sb.start_hub()?;
    Ok(sb)
}
