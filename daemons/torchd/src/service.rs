//! The hub's operations, for a caller already identified: the D-Bus layer
//! resolves who acts and passes the name; nothing here knows of D-Bus.
//! Start, stop and restart are in `lifecycle`, check-ins in `schedule`.

use std::path::Path;
use std::sync::Arc;

use torch_api::{AgentEntry, AgentStatus, Directory, FleetStatus, PAGE_MAX};
use torch_core::message::check_typed_size;
use torch_core::policy::OPERATOR;
use torch_core::protocol::{self, Request, Response};
use torch_core::{paths, validate_message, AgentName};
use torch_store::Store;
use torch_systemd::JobKind;

use crate::access::{self, Kind};
use crate::cluster;
use crate::courier;
use crate::error::HubError;
use crate::fleet::{self, Fleet, SpawnRequest};
use crate::hub::{blocking, Hub};
use crate::lifecycle;
use crate::schedule;

/// A send key: what a client retries a `SendOnce` with.
fn valid_key(key: &str) -> Result<(), HubError> {
    if (1..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    Err(HubError::InvalidArgs(
        "send key: use 1 to 128 printable ASCII characters, e.g. a random hex string".into(),
    ))
}

fn valid_sender(from: &str) -> Result<String, HubError> {
    if from == OPERATOR {
        return Ok(from.to_string());
    }
    AgentName::parse(from)
        .map(|n| n.to_string())
        .map_err(|e| HubError::InvalidArgs(format!("sender: {e}")))
}

fn agent_name(name: &str) -> Result<AgentName, HubError> {
    AgentName::parse(name).map_err(|e| HubError::InvalidArgs(e.to_string()))
}

/// Stores a message from `from` (who acts) to `to`, once per sender and
/// `key` if one is given, and hands it to the courier; returns its id.
pub async fn send(
    hub: &Arc<Hub>,
    from: &str,
    to: &str,
    text: &str,
    key: Option<String>,
) -> Result<i64, HubError> {
    if let Some(k) = &key {
        valid_key(k)?;
    }
    let from = valid_sender(from)?;
    let to = AgentName::parse(to)
        .map_err(|e| HubError::InvalidArgs(format!("recipient: {e}")))?
        .to_string();
    let text = validate_message(text).map_err(|e| HubError::InvalidArgs(e.to_string()))?;
    let elsewhere = cluster::where_is(hub, &to);
    let (h, f, t) = (Arc::clone(hub), from.clone(), to.clone());
    let id = blocking(move || {
        let fleet = h.fleet.agents();
        if let (false, Some((node, agent))) = (fleet.agents.contains_key(&t), elsewhere) {
            return send_to_node(&h, &fleet, (&f, &agent, &node), &text, key.as_deref());
        }
        let recipient = fleet::check_route(&h.config, &fleet, &f, &t).map_err(HubError::Refused)?;
        // Refused here, not by the supervisor after the message was
        // accepted: no retry could deliver it.
        let with_header = h.config.envelope(recipient.def.profile);
        let header = courier::max_added_len("message", &f, with_header, &text);
        check_typed_size(&text, header).map_err(|e| HubError::InvalidArgs(e.to_string()))?;
        let (id, stored) = match &key {
            Some(k) => h.store.enqueue_once(&f, &t, &text, "message", k)?,
            None => (h.store.enqueue(&f, &t, &text, "message")?, true),
        };
        if stored {
            crate::fault::after_store(&text);
        }
        Ok(id)
    })
    .await?;
    // The kick also tells clients (MessageQueued, from `signals`).
    hub.courier.kick(&to);
    if hub.cluster.is_some() {
        hub.forward_now.notify_one();
    }
    Ok(id)
}

/// Stores a message from `from` for `to`, an agent of `node`, to hand
/// over: the route checked here by this node's policy (and by that node's
/// when it arrives); once per `key` as for a local recipient.
fn send_to_node(
    hub: &Hub,
    fleet: &Fleet,
    (from, to, node): (&str, &torch_cluster::RemoteAgent, &str),
    text: &str,
    key: Option<&str>,
) -> Result<i64, HubError> {
    fleet::check_route_to_node(&hub.config, fleet, from, to).map_err(HubError::Refused)?;
    // Its profile is not published: the longest header it may get.
    let header = courier::max_added_len("message", from, true, text);
    check_typed_size(text, header).map_err(|e| HubError::InvalidArgs(e.to_string()))?;
    let id = match key {
        Some(k) => {
            let (id, _) =
                hub.store
                    .enqueue_once_for(from, &to.name, text, "message", k, Some(node))?;
            id
        }
        None => hub.store.enqueue_for_node(from, &to.name, text, node)?,
    };
    Ok(id)
}

/// Writes a new agent's definition for `req.requester` (who acts), queues
/// its brief and starts it; returns its unit.
pub async fn spawn(hub: &Arc<Hub>, mut req: SpawnRequest, brief: &str) -> Result<String, HubError> {
    let requester = valid_sender(&req.requester)?;
    if req.requester == OPERATOR && req.pool.is_none() {
        if let Some(node) = cluster::place(hub, &req.node, &req.parent, !req.env.is_empty()) {
            tracing::info!("spawn: {} goes to node {node}", req.name);
            req.node = node;
        }
    }
    if !req.node.is_empty() && cluster::node_name(hub).as_deref() != Some(req.node.as_str()) {
        return crate::placement::spawn_elsewhere(hub, req, brief).await;
    }
    // The operator may put an agent below a parent of another node.
    if req.requester == OPERATOR && !req.parent.is_empty() {
        let (h, p) = (Arc::clone(hub), req.parent.clone());
        let here = blocking(move || Ok(h.fleet.agents().agents.contains_key(&p))).await?;
        if !here && cluster::where_is(hub, &req.parent).is_none() {
            // Spawned there since this node last read the registry?
            let _ = cluster::refresh(hub).await;
        }
        req.parent_elsewhere = !here && cluster::where_is(hub, &req.parent).is_some();
    }
    cluster::claim(hub, &req.name).await?;
    let brief = if brief.is_empty() {
        None
    } else {
        Some(validate_message(brief).map_err(|e| HubError::InvalidArgs(format!("brief: {e}")))?)
    };
    let wanted = req.name.clone();
    let h = Arc::clone(hub);
    let made = blocking(move || {
        let check_brief = |def: &torch_core::AgentDefinition| match &brief {
            Some(b) => {
                let with_header = h.config.envelope(def.profile);
                let header = courier::max_added_len("brief", &requester, with_header, b);
                check_typed_size(b, header).map_err(|e| format!("brief: {e}"))
            }
            None => Ok(()),
        };
        let (name, path) = fleet::reserve_spawn(&h.fleet, &h.config, &req, check_brief)
            .map_err(HubError::Refused)?;
        tracing::info!("spawn: wrote {}", path.display());
        if let Some(b) = brief {
            // Queued before the start: the courier types it once the
            // agent's prompt is up.
            h.store.enqueue(&requester, name.as_str(), &b, "brief")?;
        }
        Ok(name)
    })
    .await;
    let name = match made {
        Ok(name) => name,
        Err(e) => {
            // The name claimed for the cluster goes back, unless an agent
            // of this node has it.
            let h = Arc::clone(hub);
            let w = wanted.clone();
            if !blocking(move || Ok(h.fleet.agents().agents.contains_key(&w))).await? {
                cluster::release(hub, &wanted).await;
            }
            return Err(e);
        }
    };
    fleet::unit_job(&hub.systemd, JobKind::Start, &name)
        .await
        .map_err(HubError::Systemd)?;
    lifecycle::set_wanted(hub, name.as_str(), true).await?;
    hub.courier.kick(name.as_str());
    hub.events.fleet_changed(name.as_str(), "spawned").await;
    Ok(name.unit())
}

/// Stops an agent for `actor` (an agent retires only those below it),
/// keeps its final transcript, and removes it; returns the transcript's
/// path.
pub async fn retire(hub: &Arc<Hub>, actor: Option<&str>, name: &str) -> Result<String, HubError> {
    let agent = agent_name(name)?;
    let h = Arc::clone(hub);
    let fleet = blocking(move || Ok(h.fleet.agents())).await?;
    // Never itself, however far its role reaches.
    let acting = match actor == Some(agent.as_str()) {
        true => actor,
        false => access::reach(&hub.config.access, &fleet, actor, Kind::Acts),
    };
    access::below(&fleet, acting, agent.as_str(), "retire")?;
    let entry = fleet
        .get(agent.as_str())
        .map_err(HubError::Refused)?
        .clone();
    let mut children: Vec<String> = fleet
        .agents
        .values()
        .filter(|a| a.def.parent.as_deref() == Some(agent.as_str()))
        .map(|a| a.name.to_string())
        .collect();
    // And below it on other nodes: once it is gone, an agent given its
    // name would be their parent.
    children.extend(cluster::children_elsewhere(hub, agent.as_str()));
    if !children.is_empty() {
        return Err(HubError::Refused(format!(
            "{name} still has agents below it ({}); retire them first",
            children.join(", ")
        )));
    }
    let (a, dir) = (agent.clone(), hub.state_dir.clone());
    let transcript = match blocking(move || Ok(fleet::save_transcript(&a, &dir))).await? {
        Ok(p) => p.display().to_string(),
        Err(e) => {
            tracing::warn!("no final transcript for {name}: {e}");
            format!("(none: {e})")
        }
    };
    lifecycle::set_wanted(hub, agent.as_str(), false).await?;
    // Its supervisor, stopping, sees the marker and puts its worktree away.
    let _marker = entry.def.worktree.then(|| RetiringMarker::new(&agent));
    fleet::unit_job(&hub.systemd, JobKind::Stop, &agent)
        .await
        .map_err(HubError::Systemd)?;
    let (h, n) = (Arc::clone(hub), name.to_string());
    let by = actor.unwrap_or(OPERATOR).to_string();
    let given_up = blocking(move || {
        let given_up = h.store.fail_queued(&n, "agent retired")?;
        remove_definition(&h, &agent, &entry.path)?;
        // What it held goes back to the ledger for another agent.
        let freed = h.store.release_tasks(&n, &by, "its holder was retired")?;
        if !freed.is_empty() {
            tracing::info!("retire {n}: tasks {freed:?} are open again");
            h.ledger_changed.notify_one();
        }
        Ok(given_up)
    })
    .await?;
    for id in given_up {
        hub.events.failed(id, name, "agent retired").await;
    }
    let (h, n) = (Arc::clone(hub), name.to_string());
    let schedules = blocking(move || Ok(h.store.active_schedules(Some(&n))?)).await?;
    for s in schedules {
        if let Err(e) = schedule::cancel(hub, s.id).await {
            tracing::warn!("retire {name}: check-in #{}: {e}", s.id);
        }
    }
    cluster::release(hub, name).await;
    hub.events.fleet_changed(name, "retired").await;
    Ok(transcript)
}

/// [`paths::retiring_marker`] while a retire runs, gone with it however it
/// ends.
struct RetiringMarker(std::path::PathBuf);

impl RetiringMarker {
    fn new(agent: &AgentName) -> Self {
        let path = paths::retiring_marker(agent);
        if let Err(e) = std::fs::write(&path, b"") {
            tracing::warn!(
                "retire {agent}: cannot write {} ({e}); its worktree stays",
                path.display()
            );
        }
        RetiringMarker(path)
    }
}

impl Drop for RetiringMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Removes a retired agent's definition and environment file when the hub
/// wrote them; an admin's stay.
fn remove_definition(hub: &Hub, agent: &AgentName, path: &Path) -> Result<(), HubError> {
    if !path.starts_with(paths::SPAWNED_AGENTS_DIR) {
        tracing::warn!(
            "{agent} is stopped; its definition {} (and environment file, if any) belong to the admin and stay",
            path.display()
        );
        return Ok(());
    }
    std::fs::remove_file(path)
        .map_err(|e| HubError::Internal(format!("cannot remove {}: {e}", path.display())))?;
    hub.fleet.invalidate();
    let env = paths::spawned_env_file(agent);
    torch_core::envfile::remove(&env).map_err(|e| {
        HubError::Internal(format!(
            "{agent} is retired but its environment file {} stays ({e}); remove it as root",
            env.display()
        ))
    })
}

/// Sets a check-in for `agent` by `requester` (who acts); returns its id
/// and first due time.
pub async fn schedule(
    hub: &Arc<Hub>,
    agent: &str,
    kind: &str,
    spec: &str,
    note: &str,
    requester: &str,
) -> Result<(i64, i64), HubError> {
    use torch_core::schedule::{check_calendar, parse_clock, parse_duration, When};
    let requester = valid_sender(requester)?;
    let name = agent_name(agent)?;
    let invalid = HubError::InvalidArgs;
    let when = match kind {
        "in" => When::In(parse_duration(spec).map_err(invalid)?),
        "every" => When::Every(parse_duration(spec).map_err(invalid)?),
        "at" => When::At(parse_clock(spec).map_err(invalid)?),
        "calendar" => When::Calendar(check_calendar(spec).map_err(invalid)?),
        _ => {
            return Err(HubError::InvalidArgs(format!(
                "unknown schedule kind {kind:?}: use in, at, every or calendar"
            )))
        }
    };
    let note = validate_message(note).map_err(|e| HubError::InvalidArgs(format!("note: {e}")))?;
    let (h, n, r) = (Arc::clone(hub), name.to_string(), requester.clone());
    blocking(move || {
        let fleet = h.fleet.agents();
        let target = fleet.get(&n).map_err(HubError::Refused)?;
        if r != OPERATOR && r != n && target.def.parent.as_deref() != Some(r.as_str()) {
            return Err(HubError::Refused(format!(
                "agent {r} may schedule check-ins for itself and its own agents only"
            )));
        }
        Ok(())
    })
    .await?;
    schedule::create(hub, name.as_str(), &when, spec.trim(), &note, &requester).await
}

/// Every agent unit systemd has loaded, with its state.
async fn agent_units(hub: &Hub) -> Result<Vec<torch_systemd::UnitState>, HubError> {
    hub.systemd
        .list("torch-agent@*.service")
        .await
        .map_err(|e| HubError::Systemd(e.to_string()))
}

/// The fleet as `actor` may see it: every defined agent, broken
/// definitions included, for the operator, with the other nodes' agents
/// when this hub is one of a cluster; itself and the agents below it for
/// an agent.
pub async fn status(hub: &Arc<Hub>, actor: Option<String>) -> Result<FleetStatus, HubError> {
    let operator = actor.is_none();
    let mut agents = local_status(hub, actor).await?;
    if operator {
        agents.extend(cluster::remote_rows(hub));
    }
    Ok(FleetStatus { version: 1, agents })
}

/// This node's agents as `actor` may see them.
pub async fn local_status(
    hub: &Arc<Hub>,
    actor: Option<String>,
) -> Result<Vec<AgentStatus>, HubError> {
    let units = agent_units(hub).await?;
    let h = Arc::clone(hub);
    let mut rows = blocking(move || {
        let fleet = h.fleet.agents();
        let seeing = access::reach(&h.config.access, &fleet, actor.as_deref(), Kind::Sees);
        status_rows(&fleet, seeing, &h.store, &units)
    })
    .await?;
    if let Some(node) = cluster::node_name(hub) {
        for row in &mut rows {
            row.node.clone_from(&node);
        }
    }
    Ok(rows)
}

/// Every agent with a usable definition, what it can do and its state,
/// for any caller: the directory agents find their peers in, on every node
/// of a cluster.
pub async fn directory(hub: &Arc<Hub>) -> Result<Directory, HubError> {
    let rows = local_status(hub, None).await?;
    let mut agents: Vec<AgentEntry> = rows
        .into_iter()
        .filter(|r| r.definition_error.is_none())
        .map(|r| AgentEntry {
            state: r.agent_state.unwrap_or(r.active_state),
            name: r.name,
            node: r.node,
            role: r.role,
            parent: r.parent,
            skills: r.skills,
            capacity: r.capacity,
        })
        .collect();
    agents.extend(cluster::remote_entries(hub));
    Ok(Directory { version: 1, agents })
}

/// The status rows of every defined agent `actor` may see, broken
/// definitions included.
fn status_rows(
    fleet: &Fleet,
    actor: Option<&str>,
    store: &Store,
    units: &[torch_systemd::UnitState],
) -> Result<Vec<AgentStatus>, HubError> {
    let mut out = Vec::new();
    let holders = store.holders()?;
    let names = fleet.agents.keys().chain(fleet.broken.keys());
    // Filtered before the supervisors are asked: nobody waits on rows
    // that are not shown.
    let names = names.filter(|n| access::may_control(fleet, actor, n));
    let mut names: Vec<&String> = names.collect();
    names.sort();
    for name in names {
        let Ok(agent) = AgentName::parse(name) else {
            continue;
        };
        let unit = agent.unit();
        let u = units.iter().find(|u| u.name == unit);
        let counts = store.counts(name)?;
        let held = holders.get(name.as_str()).map_or(&[][..], Vec::as_slice);
        let live = live(&agent);
        let (def, broken) = (fleet.agents.get(name), fleet.broken.get(name));
        let path = def.map(|a| &a.path).or(broken.map(|b| &b.path));
        out.push(AgentStatus {
            name: name.clone(),
            node: String::new(),
            role: def.map_or("unknown".into(), |a| a.def.role.as_str().into()),
            parent: def.and_then(|a| a.def.parent.clone()),
            profile: def.map_or("unknown".into(), |a| a.def.profile.as_str().into()),
            unit,
            active_state: u.map_or("inactive".into(), |u| u.active.clone()),
            sub_state: u.map_or("dead".into(), |u| u.sub.clone()),
            agent_state: live.activity,
            idle_secs: live.idle_secs,
            waiting_secs: live.waiting_secs,
            question: live.question,
            signal: live.signal,
            screen_state: live.screen,
            tokens: live.tokens,
            cost_microusd: live.cost_microusd,
            queued: counts.queued,
            delivered: counts.delivered,
            failed: counts.failed,
            definition: path.map(|p| p.display().to_string()).unwrap_or_default(),
            definition_error: broken.map(|b| b.error.clone()),
            skills: def.map(|a| a.def.skills.clone()).unwrap_or_default(),
            capacity: def.map_or(0, |a| a.def.capacity),
            tasks: held.iter().map(|&(id, _)| id).collect(),
            stalled_tasks: held
                .iter()
                .filter(|&&(_, s)| s)
                .map(|&(id, _)| id)
                .collect(),
        });
    }
    Ok(out)
}

/// Whether `agent`'s supervisor reads it idle (at its prompt).
pub fn is_idle(agent: &AgentName) -> bool {
    activity(agent).as_deref() == Some("idle")
}

/// What `agent`'s supervisor reads (idle, working...), `None` when it does
/// not answer (the agent is not running).
pub fn activity(agent: &AgentName) -> Option<String> {
    live(agent).activity
}

/// What an agent's supervisor says of it, as `Status` shows it; all empty
/// when it does not answer.
#[derive(Default)]
struct Live {
    activity: Option<String>,
    idle_secs: Option<u64>,
    waiting_secs: u64,
    question: String,
    signal: String,
    screen: Option<String>,
    tokens: Option<torch_api::Tokens>,
    cost_microusd: Option<u64>,
}

fn live(agent: &AgentName) -> Live {
    let answer = protocol::call(
        &paths::control_socket(agent),
        &Request::Status,
        std::time::Duration::from_secs(2),
    );
    let Ok(Response::Status {
        activity,
        idle_secs,
        waiting_secs,
        question,
        signal,
        screen,
        tokens,
        cost_microusd,
        ..
    }) = answer
    else {
        return Live::default();
    };
    Live {
        activity: Some(activity),
        idle_secs: Some(idle_secs),
        waiting_secs,
        question,
        signal,
        screen: (!screen.is_empty()).then_some(screen),
        tokens: tokens.map(|t| torch_api::Tokens {
            input: t.input,
            output: t.output,
            cache_read: t.cache_read,
            cache_write: t.cache_write,
        }),
        cost_microusd,
    }
}

/// Store rows as the API shows them (a store change is not an API change).
fn api_messages(rows: Vec<torch_store::Message>) -> Vec<torch_api::Message> {
    rows.into_iter()
        .map(|m| torch_api::Message {
            id: m.id,
            sender: m.sender,
            recipient: m.recipient,
            body: m.body,
            kind: m.kind,
            created_ms: m.created_ms,
            state: m.state.as_str().to_string(),
            attempts: m.attempts,
            delivered_ms: m.delivered_ms,
            reason: m.reason,
        })
        .collect()
}

/// A page cursor from the API: an id, or 0 (or less) for the newest.
fn cursor(before: i64) -> Option<i64> {
    (before > 0).then_some(before)
}

/// Messages to or from `agent` (all for `None`) older than id `before`,
/// newest last, at most `limit`, if `actor` may read them.
pub async fn messages(
    hub: &Arc<Hub>,
    actor: Option<&str>,
    agent: Option<String>,
    before: i64,
    limit: u32,
) -> Result<Vec<torch_api::Message>, HubError> {
    let fleet = hub.fleet.agents();
    let seeing = access::reach(&hub.config.access, &fleet, actor, Kind::Sees);
    access::messages(&fleet, seeing, agent.as_deref())?;
    let store = Arc::clone(&hub.store);
    blocking(move || {
        let rows =
            store.history_page(agent.as_deref(), cursor(before), limit.clamp(1, PAGE_MAX))?;
        Ok(api_messages(rows))
    })
    .await
}

/// Messages addressed to `agent`, paged as [`messages`], if `actor` may
/// read them.
pub async fn inbox(
    hub: &Arc<Hub>,
    actor: Option<&str>,
    agent: String,
    before: i64,
    limit: u32,
) -> Result<Vec<torch_api::Message>, HubError> {
    let fleet = hub.fleet.agents();
    let seeing = access::reach(&hub.config.access, &fleet, actor, Kind::Sees);
    access::subtree(&fleet, seeing, &agent, "read the inbox of")?;
    let store = Arc::clone(&hub.store);
    blocking(move || {
        let rows = store.inbox_page(&agent, cursor(before), limit.clamp(1, PAGE_MAX))?;
        Ok(api_messages(rows))
    })
    .await
}

/// Answers the question agent `name` asks on screen, for `actor` (an
/// agent may answer only for the agents below it, never for itself).
pub async fn answer(
    hub: &Arc<Hub>,
    actor: Option<&str>,
    name: &str,
    choice: &str,
) -> Result<(), HubError> {
    let agent = agent_name(name)?;
    let fleet = hub.fleet.agents();
    let acting = access::reach(&hub.config.access, &fleet, actor, Kind::Acts);
    if actor == Some(agent.as_str()) || !access::may_control(&fleet, acting, agent.as_str()) {
        return Err(HubError::AccessDenied(format!(
            "agent {} may answer only for the agents below it, not for {name}",
            actor.unwrap_or_default()
        )));
    }
    let request = Request::Answer {
        choice: choice.to_string(),
    };
    blocking(move || {
        let socket = paths::control_socket(&agent);
        match protocol::call(&socket, &request, std::time::Duration::from_secs(10)) {
            Ok(Response::Answered) => Ok(()),
            Ok(Response::Error { message, .. }) if message.starts_with("malformed request") => {
                Err(HubError::Refused(format!(
                    "agent {agent}'s supervisor is too old to answer ({message}); restart the agent (`torch restart {agent}`)"
                )))
            }
            Ok(Response::Error { message, .. }) => Err(HubError::Refused(message)),
            Ok(other) => Err(HubError::Internal(format!("unexpected answer {other:?}"))),
            Err(e) => Err(HubError::Refused(e.to_string())),
        }
    })
    .await
}

/// The agent's screen, from its supervisor, if `actor` may see it.
pub async fn capture(hub: &Arc<Hub>, actor: Option<&str>, agent: &str) -> Result<String, HubError> {
    let name = agent_name(agent)?;
    let fleet = hub.fleet.agents();
    let seeing = access::reach(&hub.config.access, &fleet, actor, Kind::Sees);
    access::subtree(&fleet, seeing, name.as_str(), "capture")?;
    blocking(move || {
        match protocol::call(
            &paths::control_socket(&name),
            &Request::Capture { history: 0 },
            std::time::Duration::from_secs(10),
        ) {
            Ok(Response::Screen { text }) => Ok(text),
            Ok(Response::Error { message, .. }) => Err(HubError::Refused(message)),
            Ok(other) => Err(HubError::Internal(format!("unexpected answer {other:?}"))),
            Err(e) => Err(HubError::Refused(e.to_string())),
        }
    })
    .await
}

/// Active schedules of `agent` (all for `None`) that `actor` may see: an
/// agent, those of itself and the agents below it, and those it set.
pub async fn schedules(
    hub: &Arc<Hub>,
    actor: Option<&str>,
    agent: Option<String>,
) -> Result<Vec<torch_api::Schedule>, HubError> {
    let fleet = hub.fleet.agents();
    let seeing = access::reach(&hub.config.access, &fleet, actor, Kind::Sees);
    if let Some(a) = &agent {
        access::subtree(&fleet, seeing, a, "list the check-ins of")?;
    }
    let all = schedule::list(hub, agent).await?;
    Ok(all
        .into_iter()
        .filter(|s| {
            actor == Some(s.created_by.as_str()) || access::may_control(&fleet, seeing, &s.agent)
        })
        .collect())
}

/// Removes schedule `id` for `actor`: an agent, one it set or one of
/// itself or an agent below it.
pub async fn unschedule(hub: &Arc<Hub>, actor: Option<&str>, id: i64) -> Result<(), HubError> {
    if actor.is_some() {
        let s = torch_store::call(&hub.store, move |st| st.schedule(id)).await?;
        // A missing one is the cancel's to explain.
        if let Some(s) = s {
            let fleet = hub.fleet.agents();
            let acting = access::reach(&hub.config.access, &fleet, actor, Kind::Acts);
            access::unschedule(&fleet, acting, id, &s.agent, &s.created_by)?;
        }
    }
    schedule::cancel(hub, id).await
}
