//! Forgetting a node that is gone for good: the registry drops it, its
//! names are free again, and what waited for it is dropped. `torch:forgotten`
//! tells every node, so that each fails the messages it holds for it; a
//! node that publishes again is taken off that set.

use redis::Script;

use crate::{
    agents_key, beat_key, free_key, seen_key, streams, ClusterError, Registry, LOST_AFTER,
};
use crate::{FORGOTTEN, NAMES, NODES};

/// What forgetting a node did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgot {
    /// Agent names it held, now free.
    pub names: u64,
    /// Entries of its inbox stream dropped (messages for its agents).
    pub waiting: u64,
}

/// Why a node cannot be forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unforgettable {
    /// No node of that name ever published.
    Unknown,
    /// It published within the lost threshold: it is not gone.
    Alive,
}

impl Registry {
    /// Forgets `node`, which must be lost (unheard for [`LOST_AFTER`] of
    /// its heartbeats) and not this node.
    pub async fn forget(&self, node: &str) -> Result<Result<Forgot, Unforgettable>, ClusterError> {
        let result = self.forget_once(node).await;
        self.checked(result).await
    }

    /// The nodes forgotten and not heard since.
    pub async fn forgotten(&self) -> Result<Vec<String>, ClusterError> {
        let result = async {
            let mut conn = self.connection().await?;
            let nodes: Vec<String> = redis::cmd("SMEMBERS")
                .arg(FORGOTTEN)
                .query_async(&mut conn)
                .await?;
            Ok(nodes)
        }
        .await;
        self.checked(result).await
    }

    async fn forget_once(&self, node: &str) -> Result<Result<Forgot, Unforgettable>, ClusterError> {
        let mut conn = self.connection().await?;
        // One script: a node that publishes while it runs is either seen
        // alive or forgotten whole, never half.
        let script = Script::new(
            r"local member = redis.call('SISMEMBER', KEYS[1], ARGV[1])
              local seen = redis.call('GET', KEYS[5])
              if member == 0 and not seen then return {-1, 0, 0} end
              if seen then
                local t = redis.call('TIME')
                local now = t[1] * 1000 + math.floor(t[2] / 1000)
                local beat = tonumber(redis.call('GET', KEYS[11]) or ARGV[2])
                if now - tonumber(seen) <= beat * tonumber(ARGV[3]) then return {-2, 0, 0} end
              end
              local waiting = redis.call('XLEN', KEYS[7])
              local names = 0
              local all = redis.call('HGETALL', KEYS[2])
              for i = 1, #all, 2 do
                if all[i + 1] == ARGV[1] then
                  redis.call('HDEL', KEYS[2], all[i])
                  names = names + 1
                end
              end
              redis.call('SREM', KEYS[1], ARGV[1])
              redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11])
              redis.call('SADD', KEYS[3], ARGV[1])
              return {0, names, waiting}",
        );
        let beat = self.heartbeat.as_millis() as u64;
        let (status, names, waiting): (i64, u64, u64) = script
            .key(NODES)
            .key(NAMES)
            .key(FORGOTTEN)
            .key(agents_key(node))
            .key(seen_key(node))
            .key(free_key(node))
            .key(streams::inbox(node))
            .key(streams::acks(node))
            .key(streams::requests(node))
            .key(streams::replies(node))
            .key(beat_key(node))
            .arg(node)
            .arg(beat)
            .arg(LOST_AFTER)
            .invoke_async(&mut conn)
            .await?;
        Ok(match status {
            -1 => Err(Unforgettable::Unknown),
            -2 => Err(Unforgettable::Alive),
            _ => Ok(Forgot { names, waiting }),
        })
    }
}
