//! Hubs on several machines as one fleet, through a Redis-compatible server
//! (Redis, Valkey): the registry of nodes and their agents, and the names
//! agents hold across the cluster.
//!
//! Every key is under `torch:` (an ACL user limited to `~torch:*` is
//! enough):
//! - `torch:nodes`, a set: every node that ever published;
//! - `torch:node:NODE:agents`, a string: the node's agents as JSON, replaced
//!   whole at each heartbeat;
//! - `torch:node:NODE:seen`, a string: when the node last published, in ms
//!   of the Redis server's clock, so the machines' clocks need not agree;
//! - `torch:node:NODE:free`, a string: the node's free memory then, in KiB,
//!   for placing spawns;
//! - `torch:node:NODE:heartbeat`, a string: its heartbeat period, in ms: it
//!   is lost after three of its own;
//! - `torch:names`, a hash: agent name to the node that holds it. A name is
//!   claimed before a spawn and released at retirement, so two nodes never
//!   run agents of the same name;
//! - `torch:inbox:NODE`, a stream: messages for the node's agents, read by
//!   the node through the consumer group `hubs`, each entry deleted once
//!   the node has stored it;
//! - `torch:acks:NODE`, a stream: how messages the node sent elsewhere
//!   ended, read and deleted the same way;
//! - `torch:requests:NODE` and `torch:replies:NODE`, streams: what other
//!   nodes ask of this node's hub (a spawn there) and its answers to
//!   what this node asked, read and deleted the same way;
//! - `torch:forgotten`, a set: nodes forgotten by `torch node forget` and
//!   not heard since, so every node fails what it holds for them.
//!
//! A node unheard for [`LOST_AFTER`] heartbeats is lost: its agents show
//! `lost` on the other nodes. The registry never blocks a hub: without
//! Redis, each call fails fast and the hub goes on alone.

use std::path::Path;
use std::time::Duration;

mod forget;
mod streams;
pub use forget::{Forgot, Unforgettable};
pub use streams::{Ack, Entries, Envelope, Reply, Request};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use torch_core::config::Cluster;

/// Heartbeats missed before a node counts as lost.
pub const LOST_AFTER: u32 = 3;
/// How long one call to Redis may take, connecting included.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The systemd credential holding the Redis password, if any
/// (`LoadCredential=redis-password:...` in a drop-in for torchd).
pub const PASSWORD_CREDENTIAL: &str = "redis-password";

const NODES: &str = "torch:nodes";
const NAMES: &str = "torch:names";
const FORGOTTEN: &str = "torch:forgotten";

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL in `[cluster]` cannot be used.
    #[error("[cluster] redis = {url:?}: {why}; use redis://[USER@]HOST[:PORT], rediss://[USER@]HOST[:PORT] (TLS) or unix:///PATH")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// `password_file` cannot be read.
    #[error("[cluster] password_file {file}: {why}; make it readable by the hub's user (torch), e.g. chgrp torch and chmod 0640")]
    Password {
        /// The file.
        file: String,
        /// Why.
        why: String,
    },
    /// A TLS file of `[cluster]` cannot be used.
    #[error("[cluster] {key} = {file}: {why}")]
    Tls {
        /// The setting.
        key: &'static str,
        /// The file.
        file: String,
        /// Why, and what to do.
        why: String,
    },
    /// Redis did not answer or refused.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis held something Torch did not write.
    #[error("Redis key {key} holds what Torch cannot read: {why}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why.
        why: String,
    },
}

/// One agent as its node publishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteAgent {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The agent above it.
    pub parent: Option<String>,
    /// What it can do.
    pub skills: Vec<String>,
    /// Tasks it takes at once.
    pub capacity: u32,
    /// idle, working... as its node reads it.
    pub state: String,
    /// Messages waiting for it on its node.
    pub queued: i64,
    /// Tasks of its node's ledger it holds.
    pub held: u32,
    /// The pool it is a member of.
    pub pool: Option<String>,
}

/// One node as the registry has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Its name.
    pub node: String,
    /// Milliseconds since it last published, by Redis's clock.
    pub age_ms: u64,
    /// Unheard for [`LOST_AFTER`] heartbeats.
    pub lost: bool,
    /// Its free memory when it last published, in KiB.
    pub free_kib: u64,
    /// Its agents, as it last published them.
    pub agents: Vec<RemoteAgent>,
}

/// Who holds an agent name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node.
    Ours,
    /// Another node, by name.
    Taken(String),
}

/// This node's handle on the registry. Cheap to clone; it connects on first
/// use and again after Redis comes back.
#[derive(Clone)]
pub struct Registry {
    client: redis::Client,
    conn: std::sync::Arc<tokio::sync::Mutex<Option<ConnectionManager>>>,
    /// A connection of its own for each stream read with a blocking read:
    /// Redis answers one client's commands in turn, so a blocked read holds
    /// every other command of its connection behind it.
    reading:
        std::sync::Arc<tokio::sync::Mutex<std::collections::HashMap<String, ConnectionManager>>>,
    node: String,
    heartbeat: Duration,
}

impl Registry {
    /// The registry of `cluster`, with the password of `credentials` (the
    /// unit's credentials directory) when it holds one, else of the
    /// cluster's `password_file`.
    pub fn new(
        cluster: &Cluster,
        node: &str,
        credentials: Option<&Path>,
    ) -> Result<Self, ClusterError> {
        let bad = |why: String| ClusterError::BadUrl {
            url: cluster.redis.clone(),
            why,
        };
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(cluster.redis.as_str())
                .map_err(|e| bad(e.to_string()))?;
        let password = match credentials.and_then(read_password) {
            Some(p) => Some(p),
            None => match &cluster.password_file {
                Some(file) => Some(read_password_file(file)?),
                None => None,
            },
        };
        if let Some(password) = password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = open_client(cluster, info)?;
        Ok(Self {
            client,
            conn: Default::default(),
            reading: Default::default(),
            node: node.to_string(),
            heartbeat: Duration::from_secs(cluster.heartbeat_secs.max(1)),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The time between heartbeats.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    async fn connection(&self) -> Result<ConnectionManager, ClusterError> {
        self.connect(&self.conn, CALL_TIMEOUT).await
    }

    async fn reading_connection(&self, stream: &str) -> Result<ConnectionManager, ClusterError> {
        let mut all = self.reading.lock().await;
        if let Some(conn) = all.get(stream) {
            return Ok(conn.clone());
        }
        let conn = self.open(CALL_TIMEOUT + streams::READ_BLOCK).await?;
        all.insert(stream.to_string(), conn.clone());
        Ok(conn)
    }

    async fn connect(
        &self,
        slot: &tokio::sync::Mutex<Option<ConnectionManager>>,
        timeout: Duration,
    ) -> Result<ConnectionManager, ClusterError> {
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.open(timeout).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn open(&self, timeout: Duration) -> Result<ConnectionManager, ClusterError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        Ok(ConnectionManager::new_with_config(self.client.clone(), config).await?)
    }

    /// Publishes this node's agents, its free memory and its heartbeat;
    /// whether Redis knew this node before (not: a new node, or a Redis that
    /// came back empty, which lost the names claimed and what its streams
    /// held).
    pub async fn publish(
        &self,
        agents: &[RemoteAgent],
        free_kib: u64,
    ) -> Result<bool, ClusterError> {
        let result = self.publish_once(agents, free_kib).await;
        self.checked(result).await
    }

    /// Every node but this one, with its agents.
    pub async fn others(&self) -> Result<Vec<NodeView>, ClusterError> {
        let result = self.others_once().await;
        self.checked(result).await
    }

    /// Claims `name` for this node, unless another node holds it.
    pub async fn claim(&self, name: &str) -> Result<Claim, ClusterError> {
        let result = self.claim_once(name).await;
        self.checked(result).await
    }

    /// The Redis server's clock, in Unix milliseconds: the clock of stream
    /// entry ids, whatever the machines' clocks say.
    pub async fn now_ms(&self) -> Result<u64, ClusterError> {
        let result = async {
            let mut conn = self.connection().await?;
            let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
            Ok(secs * 1000 + micros / 1000)
        }
        .await;
        self.checked(result).await
    }

    /// Gives `name` up, if this node holds it.
    pub async fn release(&self, name: &str) -> Result<(), ClusterError> {
        let result = self.release_once(name).await;
        self.checked(result).await
    }

    /// Drops the connection after a failure of the connection itself, so
    /// the next call connects afresh (Redis may have come back).
    async fn checked<T>(&self, result: Result<T, ClusterError>) -> Result<T, ClusterError> {
        if let Err(ClusterError::Redis(e)) = &result {
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
            {
                *self.conn.lock().await = None;
                self.reading.lock().await.clear();
            }
        }
        result
    }

    async fn publish_once(
        &self,
        agents: &[RemoteAgent],
        free_kib: u64,
    ) -> Result<bool, ClusterError> {
        let json = serde_json::to_string(agents).map_err(|e| ClusterError::Corrupt {
            key: agents_key(&self.node),
            why: e.to_string(),
        })?;
        let mut conn = self.connection().await?;
        let script = Script::new(
            r"local known = redis.call('EXISTS', KEYS[3])
              local t = redis.call('TIME')
              redis.call('SADD', KEYS[1], ARGV[1])
              redis.call('SET', KEYS[2], ARGV[2])
              redis.call('SET', KEYS[3], t[1] * 1000 + math.floor(t[2] / 1000))
              redis.call('SET', KEYS[4], ARGV[3])
              redis.call('SREM', KEYS[5], ARGV[1])
              redis.call('SET', KEYS[6], ARGV[4])
              return known",
        );
        let known: i64 = script
            .key(NODES)
            .key(agents_key(&self.node))
            .key(seen_key(&self.node))
            .key(free_key(&self.node))
            .key(FORGOTTEN)
            .key(beat_key(&self.node))
            .arg(&self.node)
            .arg(json)
            .arg(free_kib)
            .arg(self.heartbeat.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(known == 1)
    }

    async fn others_once(&self) -> Result<Vec<NodeView>, ClusterError> {
        let mut conn = self.connection().await?;
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now_ms = secs * 1000 + micros / 1000;
        let mut nodes: Vec<String> = conn.smembers(NODES).await?;
        nodes.retain(|n| *n != self.node);
        nodes.sort();
        let mut out = Vec::new();
        for node in nodes {
            let (seen, agents, free, beat): (
                Option<u64>,
                Option<String>,
                Option<u64>,
                Option<u64>,
            ) = redis::pipe()
                .get(seen_key(&node))
                .get(agents_key(&node))
                .get(free_key(&node))
                .get(beat_key(&node))
                .query_async(&mut conn)
                .await?;
            // Lost after three of the node's own heartbeats (this node's
            // period for one that does not say).
            let beat = beat.unwrap_or(self.heartbeat.as_millis() as u64);
            let lost_after = beat * u64::from(LOST_AFTER);
            let agents = match agents {
                Some(json) => serde_json::from_str(&json).map_err(|e| ClusterError::Corrupt {
                    key: agents_key(&node),
                    why: e.to_string(),
                })?,
                None => Vec::new(),
            };
            let age_ms = seen.map_or(u64::MAX, |s| now_ms.saturating_sub(s));
            out.push(NodeView {
                lost: age_ms > lost_after,
                free_kib: free.unwrap_or(0),
                node,
                age_ms,
                agents,
            });
        }
        Ok(out)
    }

    async fn claim_once(&self, name: &str) -> Result<Claim, ClusterError> {
        let mut conn = self.connection().await?;
        let script = Script::new(
            r"local owner = redis.call('HGET', KEYS[1], ARGV[1])
              if not owner then
                redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
                return ARGV[2]
              end
              return owner",
        );
        let owner: String = script
            .key(NAMES)
            .arg(name)
            .arg(&self.node)
            .invoke_async(&mut conn)
            .await?;
        Ok(if owner == self.node {
            Claim::Ours
        } else {
            Claim::Taken(owner)
        })
    }

    async fn release_once(&self, name: &str) -> Result<(), ClusterError> {
        let mut conn = self.connection().await?;
        let script = Script::new(
            r"if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
                return redis.call('HDEL', KEYS[1], ARGV[1])
              end
              return 0",
        );
        let _: i64 = script
            .key(NAMES)
            .arg(name)
            .arg(&self.node)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

fn agents_key(node: &str) -> String {
    format!("torch:node:{node}:agents")
}

fn seen_key(node: &str) -> String {
    format!("torch:node:{node}:seen")
}

fn beat_key(node: &str) -> String {
    format!("torch:node:{node}:heartbeat")
}

fn free_key(node: &str) -> String {
    format!("torch:node:{node}:free")
}

/// The Redis password in the credentials directory, trailing newline cut.
fn read_password(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(PASSWORD_CREDENTIAL)).ok()?;
    Some(text.trim_end_matches(['\n', '\r']).to_string())
}

/// The client of `info`: over TLS (`rediss://`) with the certificate
/// authority and client certificate `cluster` names, if any.
fn open_client(
    cluster: &Cluster,
    info: redis::ConnectionInfo,
) -> Result<redis::Client, ClusterError> {
    let bad = |why: String| ClusterError::BadUrl {
        url: cluster.redis.clone(),
        why,
    };
    let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    let files = [&cluster.ca_file, &cluster.cert_file, &cluster.key_file];
    if !tls {
        if files.iter().any(|f| f.is_some()) {
            return Err(bad(
                "ca_file, cert_file and key_file are for TLS, which needs rediss://".into(),
            ));
        }
        return redis::Client::open(info).map_err(|e| bad(e.to_string()));
    }
    let root_cert = match &cluster.ca_file {
        Some(f) => Some(read_tls_file("ca_file", f)?),
        None => None,
    };
    let client_tls = match (&cluster.cert_file, &cluster.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read_tls_file("cert_file", cert)?,
            client_key: read_tls_file("key_file", key)?,
        }),
        (None, None) => None,
        _ => return Err(bad("cert_file and key_file go together".into())),
    };
    let certificates = redis::TlsCertificates {
        client_tls,
        root_cert,
    };
    redis::Client::build_with_tls(info, certificates).map_err(|e| bad(e.to_string()))
}

fn read_tls_file(key: &'static str, file: &Path) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(file).map_err(|e| ClusterError::Tls {
        key,
        file: file.display().to_string(),
        why: format!("{e}; give a PEM file readable by the hub's user (torch)"),
    })
}

/// The password in `[cluster] password_file`, trailing newline cut.
fn read_password_file(file: &Path) -> Result<String, ClusterError> {
    let text = std::fs::read_to_string(file).map_err(|e| ClusterError::Password {
        file: file.display().to_string(),
        why: e.to_string(),
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(url: &str) -> Cluster {
        Cluster {
            node: None,
            redis: url.into(),
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            heartbeat_secs: 5,
        }
    }

    #[test]
    fn urls_are_checked_when_read() {
        assert!(Registry::new(&cluster("redis://127.0.0.1:6379"), "a", None).is_ok());
        assert!(Registry::new(&cluster("unix:///run/redis/redis.sock"), "a", None).is_ok());
        assert!(Registry::new(&cluster("rediss://r:6380"), "a", None).is_ok());
        let tls_only = Cluster {
            ca_file: Some("/etc/torch/ca.pem".into()),
            ..cluster("redis://r:6379")
        };
        let err = Registry::new(&tls_only, "a", None)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("rediss://")));
        let missing = Cluster {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..cluster("rediss://r:6380")
        };
        let err = Registry::new(&missing, "a", None)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("ca_file") && e.contains("PEM")));
        let half = Cluster {
            cert_file: Some("/etc/torch/node.pem".into()),
            ..cluster("rediss://r:6380")
        };
        let err = Registry::new(&half, "a", None).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("go together")));
        let bad = Registry::new(&cluster("http://x"), "a", None)
            .err()
            .map(|e| e.to_string());
        assert!(bad.is_some_and(|e| e.contains("redis://")));
    }

    #[test]
    fn the_password_comes_from_the_credential_without_its_newline() {
        let dir = std::env::temp_dir().join(format!("torch-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(PASSWORD_CREDENTIAL), "s3cret\n").unwrap();
        assert_eq!(read_password(&dir).as_deref(), Some("s3cret"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read_password(&dir), None);
    }
}
