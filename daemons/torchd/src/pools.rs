//! Pools (`[pools.NAME]` in `torch.toml`): the hub spawns members
//! (`NAME-1`, `NAME-2`, ...) while open tasks they could do have waited
//! longer than `scale_up_after`, up to `max` and within the quotas, and
//! retires members that sat idle holding no task for `idle_retire_after`,
//! down to `min` (their final transcripts kept, as for any retire). The
//! router then gives the tasks to the new members like to any worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use torch_api::PoolStatus;
use torch_core::policy::OPERATOR;
use torch_core::pool::{member_name, Pool};
use torch_core::AgentName;

use crate::access::may_control;
use crate::error::HubError;
use crate::fleet::SpawnRequest;
use crate::hub::{blocking, now_ms, Hub};
use crate::service;

/// How often each pool is looked at.
const TICK: Duration = Duration::from_secs(1);
/// How long a member spawned on another node counts before its node
/// publishes it (its next heartbeat, a few seconds).
const PUBLISHED_WITHIN: Duration = Duration::from_secs(60);

/// What the pools are doing, for `Pools`, and since when members are idle.
#[derive(Default)]
pub struct Pools {
    status: Mutex<BTreeMap<String, PoolStatus>>,
    idle_since: Mutex<HashMap<String, Instant>>,
    /// Members spawned on another node, by name: their node, of which
    /// pool, and when; they count until their node publishes them.
    placed: Mutex<HashMap<String, (String, String, Instant)>>,
}

impl Pools {
    /// Every pool's size, target and why, by name.
    pub fn status(&self) -> Vec<PoolStatus> {
        self.status
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Records `status`; whether its size, target or reason changed.
    fn set(&self, status: PoolStatus) -> bool {
        let Ok(mut s) = self.status.lock() else {
            return false;
        };
        let changed = s.get(&status.name).is_none_or(|old| {
            (old.size, old.target, &old.why) != (status.size, status.target, &status.why)
        });
        s.insert(status.name.clone(), status);
        changed
    }

    /// Notes `member` of `pool` spawned on `node`, another node.
    fn placed(&self, pool: &str, member: &str, node: &str) {
        if let Ok(mut p) = self.placed.lock() {
            p.insert(member.into(), (node.into(), pool.into(), Instant::now()));
        }
    }

    /// The members of `pool` spawned on other nodes that their node has not
    /// published yet (within [`PUBLISHED_WITHIN`]), beside those `seen`.
    fn not_yet_seen(&self, pool: &str, seen: &[Member]) -> Vec<Member> {
        let Ok(mut placed) = self.placed.lock() else {
            return Vec::new();
        };
        placed.retain(|name, (_, _, at)| {
            at.elapsed() < PUBLISHED_WITHIN && !seen.iter().any(|m| m.name == *name)
        });
        placed
            .iter()
            .filter(|(_, (_, p, _))| p == pool)
            .map(|(name, (node, _, _))| Member {
                name: name.clone(),
                held: 0,
                node: Some(node.clone()),
                lost: false,
                idle_there: false,
            })
            .collect()
    }

    /// How long `member` has been idle with no task, now that it is (or
    /// `None`, forgetting it, when it is not).
    fn idle_for(&self, member: &str, idle: bool) -> Option<Duration> {
        let mut map = self.idle_since.lock().ok()?;
        if !idle {
            map.remove(member);
            return None;
        }
        Some(
            map.entry(member.to_string())
                .or_insert_with(Instant::now)
                .elapsed(),
        )
    }
}

/// Scales every pool until the hub stops.
pub async fn run(hub: Arc<Hub>) {
    for (name, pool) in &hub.config.pools {
        if let Err(e) = pool.check(name) {
            tracing::error!("{e}; the pool is left alone");
        }
    }
    loop {
        tokio::time::sleep(TICK).await;
        for (name, pool) in &hub.config.pools {
            if pool.check(name).is_err() {
                continue;
            }
            let status = match scale(&hub, name, pool).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("pool {name}: {e}");
                    continue;
                }
            };
            let line = format!(
                "pool {name}: {} -> {} members: {}",
                status.size, status.target, status.why
            );
            let (size, target, why) = (status.size, status.target, status.why.clone());
            if hub.pools.set(status) {
                tracing::info!("{line}");
                hub.events.pool_changed(name, size, target, &why).await;
            }
        }
    }
}

/// One member of a pool, as a look found it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Tasks of this node's ledger it holds.
    pub held: usize,
    /// Its node, when another (a pool spread over nodes).
    pub node: Option<String>,
    /// Its node is lost: it does not count, and is replaced.
    pub lost: bool,
    /// Of another node: idle with no task there, as it last published.
    pub idle_there: bool,
}

/// What one look at a pool found.
struct Look {
    /// Its members, in the order of their numbers.
    members: Vec<Member>,
    /// Open tasks it could do that waited past `scale_up_after`.
    waiting: usize,
}

impl Look {
    /// The members that count: not lost with their node.
    fn live(&self) -> u32 {
        self.members.iter().filter(|m| !m.lost).count() as u32
    }
}

fn look(hub: &Hub, name: &str, pool: &Pool) -> Result<Look, HubError> {
    let fleet = hub.fleet.agents();
    let held = hub.store.held()?;
    let mut members: Vec<Member> = fleet
        .agents
        .iter()
        .filter(|(_, a)| a.def.pool.as_deref() == Some(name))
        .map(|(n, _)| Member {
            name: n.clone(),
            held: held.get(n).copied().unwrap_or(0),
            node: None,
            lost: false,
            idle_there: false,
        })
        .collect();
    members.extend(crate::pool_nodes::remote_members(hub, name, pool, &held));
    // Spawned elsewhere a moment ago: counted, so the pool does not spawn
    // again before the member's node publishes it.
    let pending = hub.pools.not_yet_seen(name, &members);
    members.extend(pending);
    members.sort_by_key(|m| member_number(name, &m.name));
    if !hub.store.any_open()? {
        return Ok(Look {
            members,
            waiting: 0,
        });
    }
    let before = now_ms() - pool.scale_up_after.as_millis() as i64;
    let parent = pool.parent.as_deref();
    let waiting = hub
        .store
        .tasks(Some("open"), 10_000)?
        .into_iter()
        .filter(|t| t.waiting_on.is_empty() && t.updated_ms <= before && pool.can_do(&t.skills))
        // Tasks an agent opened go to agents below it only.
        .filter(|t| {
            t.created_by == OPERATOR
                || parent.is_some_and(|p| may_control(&fleet, Some(&t.created_by), p))
        })
        .count();
    Ok(Look { members, waiting })
}

/// The number in a member's name, for ordering (`shop-dev-10` after `-9`).
fn member_number(pool: &str, member: &str) -> u32 {
    member
        .strip_prefix(pool)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

async fn scale(hub: &Arc<Hub>, name: &str, pool: &Pool) -> Result<PoolStatus, HubError> {
    let (h, n, p) = (Arc::clone(hub), name.to_string(), pool.clone());
    let look = blocking(move || look(&h, &n, &p)).await?;
    let size = look.live();
    let status = |target: u32, why: String| PoolStatus {
        name: name.to_string(),
        size,
        target,
        min: pool.min,
        max: pool.max,
        why,
    };
    if let Some(runner) = crate::pool_nodes::run_elsewhere(hub, pool) {
        return Ok(status(size, format!("run by node {runner}")));
    }
    let lost = look.members.len() as u32 - size;
    let (more, why) = if size < pool.min {
        let why = match lost {
            0 => format!("below its minimum of {}", pool.min),
            n => format!(
                "below its minimum of {} ({n} lost with their node)",
                pool.min
            ),
        };
        (pool.min - size, why)
    } else if look.waiting > 0 && size < pool.max {
        let why = format!(
            "{} tasks it can do waited over {}s",
            look.waiting,
            pool.scale_up_after.as_secs()
        );
        ((look.waiting as u32).min(pool.max - size), why)
    } else {
        (0, String::new())
    };
    if more > 0 {
        // A refused spawn (quotas, a missing parent) is the reason shown
        // until it changes, and tried again next time.
        return Ok(match grow(hub, name, pool, &look, more).await {
            Ok(()) => status(size + more, why),
            Err(e) => status(size + more, format!("{why}, but a spawn failed: {e}")),
        });
    }
    let retired = shrink(hub, name, pool, &look).await;
    let target = size - retired;
    let why = match (retired, look.waiting) {
        (0, 0) => "enough for the work".to_string(),
        (0, w) => format!("{w} tasks wait, but it is at its maximum of {}", pool.max),
        (r, _) => format!(
            "{r} idle over {}s retired",
            pool.idle_retire_after.as_secs()
        ),
    };
    Ok(status(target, why))
}

/// Spawns `more` members, with the lowest free numbers.
async fn grow(
    hub: &Arc<Hub>,
    name: &str,
    pool: &Pool,
    look: &Look,
    more: u32,
) -> Result<(), HubError> {
    let mut n = 1;
    // Where this round's spawns went, for spreading the next.
    let mut placed: Vec<Option<String>> = Vec::new();
    for _ in 0..more {
        let member = loop {
            let m = member_name(name, n).map_err(HubError::Refused)?;
            n += 1;
            if !look.members.iter().any(|x| x.name == m.as_str()) {
                break m;
            }
        };
        let node = crate::pool_nodes::place_member(hub, pool, &look.members, &placed);
        let req = SpawnRequest {
            name: member.to_string(),
            role: pool.role.as_str().to_string(),
            parent: pool.parent.clone().unwrap_or_default(),
            workdir: pool.workdir.to_string_lossy().into_owned(),
            profile: pool.profile.as_str().to_string(),
            command: pool.command.clone(),
            requester: OPERATOR.to_string(),
            env: Default::default(),
            skills: pool.skills.clone(),
            capacity: pool.capacity,
            worktree: pool.worktree,
            pool: Some(name.to_string()),
            node: node.clone().unwrap_or_default(),
            parent_elsewhere: false,
        };
        service::spawn(hub, req, "").await?;
        match &node {
            Some(n) => {
                hub.pools.placed(name, member.as_str(), n);
                tracing::info!("pool {name}: spawned {member} on node {n}");
            }
            None => tracing::info!("pool {name}: spawned {member}"),
        }
        placed.push(node);
    }
    Ok(())
}

/// Retires members idle with no task for long enough, the highest numbers
/// first, down to `min`; how many it retired.
async fn shrink(hub: &Arc<Hub>, name: &str, pool: &Pool, look: &Look) -> u32 {
    let mut size = look.live();
    let mut retired = 0;
    let members: Vec<Member> = look.members.iter().filter(|m| !m.lost).cloned().collect();
    // Asking each supervisor blocks: off the async workers.
    // A supervisor that does not answer (a busy machine) leaves its
    // member's idle time as it was, rather than starting it again. A
    // member of another node is as its node last published it.
    let idle: Vec<(Member, Option<bool>)> = blocking(move || {
        Ok(members
            .into_iter()
            .rev()
            .map(|m| {
                let idle = match &m.node {
                    Some(_) => Some(m.held == 0 && m.idle_there),
                    None => AgentName::parse(&m.name)
                        .ok()
                        .and_then(|a| service::activity(&a))
                        .map(|a| m.held == 0 && a == "idle"),
                };
                (m, idle)
            })
            .collect())
    })
    .await
    .unwrap_or_default();
    for (member, idle) in &idle {
        let Some(for_how_long) = idle.and_then(|i| hub.pools.idle_for(&member.name, i)) else {
            continue;
        };
        if size <= pool.min || for_how_long < pool.idle_retire_after {
            continue;
        }
        let done = match &member.node {
            Some(node) => crate::pool_nodes::retire_there(hub, node, &member.name, name).await,
            None => service::retire(hub, None, &member.name).await,
        };
        match done {
            Ok(transcript) => {
                tracing::info!(
                    "pool {name}: retired {}, idle {}s; transcript {transcript}",
                    member.name,
                    for_how_long.as_secs()
                );
                hub.pools.idle_for(&member.name, false);
                size -= 1;
                retired += 1;
            }
            Err(e) => tracing::warn!("pool {name}: cannot retire {}: {e}", member.name),
        }
    }
    retired
}
