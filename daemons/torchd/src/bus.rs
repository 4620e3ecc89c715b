//! The hub's D-Bus API: `org.torch.Manager1` at `/org/torch/Torch1` on the
//! system bus as `org.torch.Torch1`. Documented in `docs/dbus.md`.
//!
//! Structured answers (status, message lists) are JSON strings with a
//! documented schema: they evolve without breaking the method signatures.
//! Every mutating call is logged with the caller's uid and `TORCH_AUDIT=1`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use torch_api::{AgentStatus, FleetStatus, PAGE_MAX};
use torch_core::config::Config;
use torch_core::message::check_typed_size;
use torch_core::policy::OPERATOR;
use torch_core::protocol::{self, Request, Response};
use torch_core::{paths, validate_message, AgentName};
use torch_store::Store;
use torch_systemd::{JobKind, Systemd, SystemdError};
use zbus::fdo;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use crate::courier::{self, Courier};
use crate::events::Events;
use crate::fleet::{self, Fleet, FleetCache, SpawnRequest};
use crate::lifecycle;
use crate::schedule;

/// Everything the API works on.
pub struct Hub {
    /// The message store.
    pub store: Arc<Store>,
    /// Delivery tasks.
    pub courier: Arc<Courier>,
    /// Signal emitter.
    pub events: Events,
    /// `torch.toml`.
    pub config: Config,
    /// systemd over D-Bus.
    pub systemd: Systemd,
    /// The hub's state directory.
    pub state_dir: PathBuf,
    /// The agent definitions (shared with the courier).
    pub fleet: Arc<FleetCache>,
    /// Who called, per bus connection.
    pub callers: Callers,
}

/// The object serving `org.torch.Manager1`.
pub struct Manager {
    /// Shared hub state.
    pub hub: Arc<Hub>,
}

/// Who is on the other end of a bus connection.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// Its uid, as the bus daemon saw it connect.
    uid: Option<u32>,
    /// The agent whose unit it runs in (`torch-agent@NAME.service`), if
    /// any: a process in an agent's pane is that agent, whatever it claims.
    agent: Option<String>,
}

/// Callers already looked up, by unique bus name. A unique name is never
/// reused and a connection keeps its process and uid, so one lookup (three
/// D-Bus calls) per connection is enough, not one per method call.
#[derive(Default)]
pub struct Callers {
    known: Mutex<HashMap<String, Caller>>,
}

/// Bound on remembered callers; the map starts over past it.
const CALLERS_KEPT: usize = 4096;

impl Callers {
    /// Who sent the call with header `hdr`.
    async fn of(&self, systemd: &Systemd, conn: &zbus::Connection, hdr: &Header<'_>) -> Caller {
        let Some(sender) = hdr.sender().map(|s| s.to_owned()) else {
            return Caller::default();
        };
        let key = sender.to_string();
        if let Some(c) = self.known.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return c;
        }
        let Ok(dbus) = fdo::DBusProxy::new(conn).await else {
            return Caller::default();
        };
        let (uid, pid) = tokio::join!(
            dbus.get_connection_unix_user(sender.clone().into()),
            dbus.get_connection_unix_process_id(sender.into())
        );
        let unit = match pid {
            Ok(pid) => Some(systemd.unit_of_pid(pid).await),
            Err(_) => None,
        };
        // systemd's answer, even "no unit for that process" (a process
        // outside any unit, e.g. in a container's root), is final; a failed
        // call is not.
        let settled = matches!(
            unit,
            Some(Ok(_)) | Some(Err(SystemdError::Bus(zbus::Error::MethodError(..))))
        );
        let caller = Caller {
            uid: uid.as_ref().ok().copied(),
            agent: match &unit {
                Some(Ok(u)) => AgentName::from_unit(u).map(|n| n.to_string()),
                _ => None,
            },
        };
        if uid.is_ok() && settled {
            if let Ok(mut known) = self.known.lock() {
                if known.len() >= CALLERS_KEPT {
                    known.clear();
                }
                known.insert(key, caller.clone());
            }
        }
        caller
    }
}

/// Who is acting: inside an agent's unit, that agent (claiming another name
/// is refused); elsewhere (an operator's shell), the name given.
async fn identity(
    hub: &Hub,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    claimed: &str,
) -> fdo::Result<String> {
    let caller = hub.callers.of(&hub.systemd, conn, hdr).await;
    match caller.agent {
        Some(agent) if agent != claimed => Err(fdo::Error::AccessDenied(format!(
            "you are agent {agent} (your process runs in torch-agent@{agent}.service); you cannot act as {claimed}"
        ))),
        Some(agent) => Ok(agent),
        // The agents' user outside any agent's unit (a process that left
        // it, or systemd could not say): it may not pick a name.
        None if caller.uid.is_some() && caller.uid == agents_uid() => {
            Err(fdo::Error::AccessDenied(format!(
                "your process runs as {AGENTS_USER} outside any agent's unit, so Torch cannot tell which agent you are; run torch from the agent's own pane"
            )))
        }
        None => Ok(claimed.to_string()),
    }
}

/// The agent calling, or `None` for the operator; the agents' user
/// outside any agent's unit is refused, as in [`identity`].
async fn acting_agent(
    hub: &Hub,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
) -> fdo::Result<Option<String>> {
    let caller = hub.callers.of(&hub.systemd, conn, hdr).await;
    if caller.agent.is_none() && caller.uid.is_some() && caller.uid == agents_uid() {
        return identity(hub, conn, hdr, OPERATOR).await.map(|_| None);
    }
    Ok(caller.agent)
}

/// The user agents run as (`User=` of torch-agent@.service).
const AGENTS_USER: &str = "torch-agent";

/// The uid of [`AGENTS_USER`], if that user exists.
fn agents_uid() -> Option<u32> {
    static UID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UID.get_or_init(|| {
        nix::unistd::User::from_name(AGENTS_USER)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    })
}

async fn audit(hub: &Hub, conn: &zbus::Connection, hdr: &Header<'_>, method: &str, outcome: &str) {
    let uid = hub.callers.of(&hub.systemd, conn, hdr).await.uid;
    let shown = uid.map_or("unknown".to_string(), |u| u.to_string());
    tracing::info!(
        torch_audit = 1,
        caller_uid = uid.map_or(-1, i64::from),
        torch_method = method,
        "audit: uid {shown} called {method}: {outcome}"
    );
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> fdo::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| fdo::Error::Failed(format!("internal task failed: {e}")))?
        .map_err(fdo::Error::Failed)
}

/// A send key: what a client retries a `SendOnce` with.
fn valid_key(key: &str) -> fdo::Result<()> {
    if (1..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    Err(fdo::Error::InvalidArgs(
        "send key: use 1 to 128 printable ASCII characters, e.g. a random hex string".into(),
    ))
}

fn valid_sender(from: &str) -> fdo::Result<String> {
    if from == OPERATOR {
        return Ok(from.to_string());
    }
    AgentName::parse(from)
        .map(|n| n.to_string())
        .map_err(|e| fdo::Error::InvalidArgs(format!("sender: {e}")))
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

/// The status rows of every defined agent, broken definitions included.
fn status_rows(
    fleet: &Fleet,
    store: &Store,
    units: &[torch_systemd::UnitState],
) -> Result<Vec<AgentStatus>, String> {
    let mut out = Vec::new();
    let names = fleet.agents.keys().chain(fleet.broken.keys());
    let mut names: Vec<&String> = names.collect();
    names.sort();
    for name in names {
        let Ok(agent) = AgentName::parse(name) else {
            continue;
        };
        let unit = agent.unit();
        let u = units.iter().find(|u| u.name == unit);
        let counts = store.counts(name).map_err(|e| e.to_string())?;
        let live = match protocol::call(
            &paths::control_socket(&agent),
            &Request::Status,
            std::time::Duration::from_secs(2),
        ) {
            Ok(Response::Status {
                activity,
                idle_secs,
                ..
            }) => Some((activity, idle_secs)),
            _ => None,
        };
        let (def, broken) = (fleet.agents.get(name), fleet.broken.get(name));
        let path = def.map(|a| &a.path).or(broken.map(|b| &b.path));
        out.push(AgentStatus {
            name: name.clone(),
            role: def.map_or("unknown".into(), |a| a.def.role.as_str().into()),
            parent: def.and_then(|a| a.def.parent.clone()),
            profile: def.map_or("unknown".into(), |a| a.def.profile.as_str().into()),
            unit,
            active_state: u.map_or("inactive".into(), |u| u.active.clone()),
            sub_state: u.map_or("dead".into(), |u| u.sub.clone()),
            agent_state: live.as_ref().map(|l| l.0.clone()),
            idle_secs: live.map(|l| l.1),
            queued: counts.queued,
            delivered: counts.delivered,
            failed: counts.failed,
            definition: path.map(|p| p.display().to_string()).unwrap_or_default(),
            definition_error: broken.map(|b| b.error.clone()),
        });
    }
    Ok(out)
}

#[zbus::interface(name = "org.torch.Manager1")]
impl Manager {
    /// Stores a message from `from` (an agent or "operator") to `to` and
    /// returns its id; delivery follows in the background.
    async fn send(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        from: String,
        to: String,
        text: String,
    ) -> fdo::Result<i64> {
        let result = match identity(&self.hub, conn, &hdr, &from).await {
            Ok(from) => self.do_send(from, to.clone(), text, None).await,
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(id) => format!("{from} -> {to} queued as #{id}"),
            Err(e) => format!("{from} -> {to} refused: {e}"),
        };
        audit(&self.hub, conn, &hdr, "Send", &outcome).await;
        result
    }

    /// Like `Send`, stored once per sender and `key`: a retry of a call whose
    /// reply was lost returns the first call's id and stores nothing.
    async fn send_once(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        from: String,
        to: String,
        text: String,
        key: String,
    ) -> fdo::Result<i64> {
        let result = match (
            identity(&self.hub, conn, &hdr, &from).await,
            valid_key(&key),
        ) {
            (Ok(from), Ok(())) => {
                self.do_send(from, to.clone(), text, Some(key.clone()))
                    .await
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        let outcome = match &result {
            Ok(id) => format!("{from} -> {to} queued as #{id} (key {key})"),
            Err(e) => format!("{from} -> {to} refused: {e}"),
        };
        audit(&self.hub, conn, &hdr, "SendOnce", &outcome).await;
        result
    }

    /// Writes a new agent's definition, queues its brief and starts it.
    #[allow(clippy::too_many_arguments)]
    async fn spawn(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        role: String,
        parent: String,
        workdir: String,
        profile: String,
        command: Vec<String>,
        brief: String,
        requester: String,
    ) -> fdo::Result<String> {
        let req = SpawnRequest {
            name: name.clone(),
            role,
            parent,
            workdir,
            profile,
            command,
            requester: requester.clone(),
        };
        let result = match identity(&self.hub, conn, &hdr, &requester).await {
            Ok(who) => {
                self.do_spawn(
                    SpawnRequest {
                        requester: who,
                        ..req
                    },
                    brief,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(unit) => format!("{requester} spawned {name} ({unit})"),
            Err(e) => format!("{requester} could not spawn {name}: {e}"),
        };
        audit(&self.hub, conn, &hdr, "Spawn", &outcome).await;
        result
    }

    /// Stops an agent, keeps its final transcript, and removes it; returns
    /// the transcript's path.
    async fn retire(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> fdo::Result<String> {
        let result = self.do_retire(&name).await;
        let outcome = match &result {
            Ok(t) => format!("retired {name}, transcript {t}"),
            Err(e) => format!("could not retire {name}: {e}"),
        };
        audit(&self.hub, conn, &hdr, "Retire", &outcome).await;
        result
    }

    /// Starts an agent and waits until it is up; it comes back after a reboot.
    async fn start(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> fdo::Result<()> {
        self.control(&hdr, conn, JobKind::Start, name).await
    }

    /// Stops an agent; it stays down across reboots until started again.
    async fn stop(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> fdo::Result<()> {
        self.control(&hdr, conn, JobKind::Stop, name).await
    }

    /// Restarts an agent; it comes back after a reboot.
    async fn restart(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> fdo::Result<()> {
        self.control(&hdr, conn, JobKind::Restart, name).await
    }

    /// The fleet as JSON (schema in docs/dbus.md).
    async fn status(&self) -> fdo::Result<String> {
        let systemd_units = self
            .hub
            .systemd
            .list("torch-agent@*.service")
            .await
            .map_err(|e| fdo::Error::Failed(e.to_string()))?;
        let hub = Arc::clone(&self.hub);
        let agents =
            blocking(move || status_rows(&hub.fleet.agents(), &hub.store, &systemd_units)).await?;
        serde_json::to_string(&FleetStatus { version: 1, agents })
            .map_err(|e| fdo::Error::Failed(e.to_string()))
    }

    /// Messages to or from `agent` ("" for all) older than id `before`
    /// (0: the newest), newest last, at most `limit` (up to [`PAGE_MAX`]), as JSON.
    async fn messages(&self, agent: String, before: i64, limit: u32) -> fdo::Result<String> {
        let store = Arc::clone(&self.hub.store);
        let list = blocking(move || {
            let a = (!agent.is_empty()).then_some(agent);
            store
                .history_page(a.as_deref(), cursor(before), limit.clamp(1, PAGE_MAX))
                .map(api_messages)
                .map_err(|e| e.to_string())
        })
        .await?;
        serde_json::to_string(&list).map_err(|e| fdo::Error::Failed(e.to_string()))
    }

    /// Messages addressed to `agent`, paged as for `Messages`, as JSON.
    async fn inbox(&self, agent: String, before: i64, limit: u32) -> fdo::Result<String> {
        let store = Arc::clone(&self.hub.store);
        let list = blocking(move || {
            store
                .inbox_page(&agent, cursor(before), limit.clamp(1, PAGE_MAX))
                .map(api_messages)
                .map_err(|e| e.to_string())
        })
        .await?;
        serde_json::to_string(&list).map_err(|e| fdo::Error::Failed(e.to_string()))
    }

    /// The agent's screen.
    async fn capture(&self, agent: String) -> fdo::Result<String> {
        let name = AgentName::parse(&agent).map_err(|e| fdo::Error::InvalidArgs(e.to_string()))?;
        blocking(move || {
            match protocol::call(
                &paths::control_socket(&name),
                &Request::Capture { history: 0 },
                std::time::Duration::from_secs(10),
            ) {
                Ok(Response::Screen { text }) => Ok(text),
                Ok(Response::Error { message, .. }) => Err(message),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Sets a check-in for `agent`: `kind` is `in`, `at`, `every` or
    /// `calendar`, `spec` a duration (`15m`), a clock time (`14:30`) or a
    /// calendar expression. A recurring one firing closer than `[schedules]
    /// min_interval` is refused. Returns the schedule id and its next fire
    /// time (Unix milliseconds, 0 if unknown).
    #[allow(clippy::too_many_arguments)]
    async fn schedule(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        agent: String,
        kind: String,
        spec: String,
        note: String,
        requester: String,
    ) -> fdo::Result<(i64, i64)> {
        let result = match identity(&self.hub, conn, &hdr, &requester).await {
            Ok(who) => self.do_schedule(&agent, &kind, &spec, &note, &who).await,
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok((id, _)) => format!("{requester} scheduled #{id} for {agent} ({kind} {spec})"),
            Err(e) => format!("{requester} could not schedule for {agent}: {e}"),
        };
        audit(&self.hub, conn, &hdr, "Schedule", &outcome).await;
        result
    }

    /// Removes a schedule and its timer.
    async fn unschedule(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        id: i64,
    ) -> fdo::Result<()> {
        let result = schedule::cancel(&self.hub, id)
            .await
            .map_err(fdo::Error::Failed);
        audit(
            &self.hub,
            conn,
            &hdr,
            "Unschedule",
            &format!(
                "#{id}: {}",
                match &result {
                    Ok(()) => "removed".to_string(),
                    Err(e) => e.to_string(),
                }
            ),
        )
        .await;
        result
    }

    /// Active schedules of `agent` ("" for all) as JSON.
    async fn schedules(&self, agent: String) -> fdo::Result<String> {
        let a = (!agent.is_empty()).then_some(agent);
        let list = schedule::list(&self.hub, a)
            .await
            .map_err(fdo::Error::Failed)?;
        serde_json::to_string(&list).map_err(|e| fdo::Error::Failed(e.to_string()))
    }

    /// Fires every check-in due by now (the timers call this); returns how many fired.
    async fn fire_due(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<u32> {
        let result = schedule::fire_due(&self.hub)
            .await
            .map_err(fdo::Error::Failed);
        audit(
            &self.hub,
            conn,
            &hdr,
            "FireDue",
            &match &result {
                Ok(n) => format!("{n} fired"),
                Err(e) => e.to_string(),
            },
        )
        .await;
        result.map(|n| n as u32)
    }

    /// The API version.
    #[zbus(property)]
    async fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// A message was stored.
    #[zbus(signal)]
    pub async fn message_queued(
        emitter: &SignalEmitter<'_>,
        id: i64,
        from: &str,
        to: &str,
    ) -> zbus::Result<()>;

    /// A message was confirmed on its recipient's screen.
    #[zbus(signal)]
    pub async fn message_delivered(
        emitter: &SignalEmitter<'_>,
        id: i64,
        to: &str,
    ) -> zbus::Result<()>;

    /// A message will not be delivered.
    #[zbus(signal)]
    pub async fn message_failed(
        emitter: &SignalEmitter<'_>,
        id: i64,
        to: &str,
        reason: &str,
    ) -> zbus::Result<()>;

    /// An agent was spawned or retired.
    #[zbus(signal)]
    pub async fn fleet_changed(
        emitter: &SignalEmitter<'_>,
        agent: &str,
        change: &str,
    ) -> zbus::Result<()>;
}

impl Manager {
    async fn do_schedule(
        &self,
        agent: &str,
        kind: &str,
        spec: &str,
        note: &str,
        requester: &str,
    ) -> fdo::Result<(i64, i64)> {
        use torch_core::schedule::{check_calendar, parse_clock, parse_duration, When};
        let requester = valid_sender(requester)?;
        let name = AgentName::parse(agent).map_err(|e| fdo::Error::InvalidArgs(e.to_string()))?;
        let invalid = fdo::Error::InvalidArgs;
        let when = match kind {
            "in" => When::In(parse_duration(spec).map_err(invalid)?),
            "every" => When::Every(parse_duration(spec).map_err(invalid)?),
            "at" => When::At(parse_clock(spec).map_err(invalid)?),
            "calendar" => When::Calendar(check_calendar(spec).map_err(invalid)?),
            _ => {
                return Err(fdo::Error::InvalidArgs(format!(
                    "unknown schedule kind {kind:?}: use in, at, every or calendar"
                )))
            }
        };
        let note =
            validate_message(note).map_err(|e| fdo::Error::InvalidArgs(format!("note: {e}")))?;
        let (n, r) = (name.to_string(), requester.clone());
        let hub = Arc::clone(&self.hub);
        blocking(move || {
            let fleet = hub.fleet.agents();
            let target = fleet.get(&n)?;
            if r != OPERATOR && r != n && target.def.parent.as_deref() != Some(r.as_str()) {
                return Err(format!(
                    "agent {r} may schedule check-ins for itself and its own agents only"
                ));
            }
            Ok(())
        })
        .await?;
        schedule::create(
            &self.hub,
            name.as_str(),
            &when,
            spec.trim(),
            &note,
            &requester,
        )
        .await
        .map_err(fdo::Error::InvalidArgs)
    }

    async fn control(
        &self,
        hdr: &Header<'_>,
        conn: &zbus::Connection,
        kind: JobKind,
        name: String,
    ) -> fdo::Result<()> {
        let result = match acting_agent(&self.hub, conn, hdr).await {
            Ok(actor) => lifecycle::control(&self.hub, actor.as_deref(), kind, &name).await,
            Err(e) => Err(e),
        };
        let verb = format!("{kind:?}");
        let outcome = match &result {
            Ok(()) => format!("{verb} {name}: done"),
            Err(e) => format!("{verb} {name}: refused or failed: {e}"),
        };
        audit(&self.hub, conn, hdr, &verb, &outcome).await;
        result
    }

    async fn do_send(
        &self,
        from: String,
        to: String,
        text: String,
        key: Option<String>,
    ) -> fdo::Result<i64> {
        let from = valid_sender(&from)?;
        let to_name = AgentName::parse(&to)
            .map_err(|e| fdo::Error::InvalidArgs(format!("recipient: {e}")))?
            .to_string();
        let text = validate_message(&text).map_err(|e| fdo::Error::InvalidArgs(e.to_string()))?;
        let config = self.hub.config.clone();
        let store = Arc::clone(&self.hub.store);
        let (f, t) = (from.clone(), to_name.clone());
        let hub = Arc::clone(&self.hub);
        let id = tokio::task::spawn_blocking(move || {
            let fleet = hub.fleet.agents();
            let to = fleet::check_route(&config, &fleet, &f, &t).map_err(fdo::Error::Failed)?;
            // Refused here, not by the supervisor after the message was
            // accepted: no retry could deliver it.
            let header = courier::max_header_len("message", &f, config.envelope(to.def.profile));
            check_typed_size(&text, header).map_err(|e| fdo::Error::InvalidArgs(e.to_string()))?;
            let (id, stored) = match &key {
                Some(k) => store.enqueue_once(&f, &t, &text, "message", k),
                None => store.enqueue(&f, &t, &text, "message").map(|id| (id, true)),
            }
            .map_err(|e| fdo::Error::Failed(e.to_string()))?;
            if stored {
                crate::fault::after_store(&text);
            }
            Ok::<_, fdo::Error>((id, stored))
        })
        .await
        .map_err(|e| fdo::Error::Failed(format!("internal task failed: {e}")))??;
        let (id, stored) = id;
        if stored {
            self.hub.events.queued(id, &from, &to_name).await;
        }
        self.hub.courier.kick(&to_name);
        Ok(id)
    }

    async fn do_spawn(&self, req: SpawnRequest, brief: String) -> fdo::Result<String> {
        let requester = valid_sender(&req.requester)?;
        let brief = if brief.is_empty() {
            None
        } else {
            Some(
                validate_message(&brief)
                    .map_err(|e| fdo::Error::InvalidArgs(format!("brief: {e}")))?,
            )
        };
        let config = self.hub.config.clone();
        let store = Arc::clone(&self.hub.store);
        let hub = Arc::clone(&self.hub);
        let name = blocking(move || {
            let check_brief = |def: &torch_core::AgentDefinition| match &brief {
                Some(b) => {
                    let with_header = config.envelope(def.profile);
                    let header = courier::max_header_len("brief", &requester, with_header);
                    check_typed_size(b, header).map_err(|e| format!("brief: {e}"))
                }
                None => Ok(()),
            };
            let (name, path) = fleet::reserve_spawn(&hub.fleet, &config, &req, check_brief)?;
            tracing::info!("spawn: wrote {}", path.display());
            if let Some(b) = brief {
                // Queued before the start: the courier types it once the
                // agent's prompt is up.
                store
                    .enqueue(&requester, name.as_str(), &b, "brief")
                    .map_err(|e| e.to_string())?;
            }
            Ok(name)
        })
        .await?;
        fleet::unit_job(&self.hub.systemd, JobKind::Start, &name)
            .await
            .map_err(fdo::Error::Failed)?;
        lifecycle::set_wanted(&self.hub, name.as_str(), true).await?;
        self.hub.courier.kick(name.as_str());
        self.hub
            .events
            .fleet_changed(name.as_str(), "spawned")
            .await;
        Ok(name.unit())
    }

    async fn do_retire(&self, name: &str) -> fdo::Result<String> {
        let agent = AgentName::parse(name).map_err(|e| fdo::Error::InvalidArgs(e.to_string()))?;
        let hub = Arc::clone(&self.hub);
        let fleet = blocking(move || Ok(hub.fleet.agents())).await?;
        let entry = fleet
            .get(agent.as_str())
            .map_err(fdo::Error::Failed)?
            .clone();
        let children: Vec<&str> = fleet
            .agents
            .values()
            .filter(|a| a.def.parent.as_deref() == Some(agent.as_str()))
            .map(|a| a.name.as_str())
            .collect();
        if !children.is_empty() {
            return Err(fdo::Error::Failed(format!(
                "{name} still has agents below it ({}); retire them first",
                children.join(", ")
            )));
        }
        let (a, dir) = (agent.clone(), self.hub.state_dir.clone());
        let transcript = blocking(move || Ok(fleet::save_transcript(&a, &dir))).await?;
        let transcript = match transcript {
            Ok(p) => p.display().to_string(),
            Err(e) => {
                tracing::warn!("no final transcript for {name}: {e}");
                format!("(none: {e})")
            }
        };
        lifecycle::set_wanted(&self.hub, agent.as_str(), false).await?;
        fleet::unit_job(&self.hub.systemd, JobKind::Stop, &agent)
            .await
            .map_err(fdo::Error::Failed)?;
        let store = Arc::clone(&self.hub.store);
        let n = name.to_string();
        let hub = Arc::clone(&self.hub);
        blocking(move || {
            store
                .fail_queued(&n, "agent retired")
                .map_err(|e| e.to_string())?;
            if entry.path.starts_with(paths::SPAWNED_AGENTS_DIR) {
                std::fs::remove_file(&entry.path)
                    .map_err(|e| format!("cannot remove {}: {e}", entry.path.display()))?;
                hub.fleet.invalidate();
            } else {
                tracing::warn!(
                    "{n} is stopped; its definition {} belongs to the admin and stays",
                    entry.path.display()
                );
            }
            Ok(())
        })
        .await?;
        let store = Arc::clone(&self.hub.store);
        let n = name.to_string();
        let schedules =
            blocking(move || store.active_schedules(Some(&n)).map_err(|e| e.to_string())).await?;
        for s in schedules {
            if let Err(e) = schedule::cancel(&self.hub, s.id).await {
                tracing::warn!("retire {name}: check-in #{}: {e}", s.id);
            }
        }
        self.hub.events.fleet_changed(name, "retired").await;
        Ok(transcript)
    }
}
