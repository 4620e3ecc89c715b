//! The hub's D-Bus API: `org.torch.Manager1` at `/org/torch/Torch1` on the
//! system bus as `org.torch.Torch1`. Documented in `docs/dbus.md`.
//!
//! A thin adapter: each method resolves its caller, calls one operation of
//! the hub (`service`, `lifecycle`, `schedule`), writes the audit line of
//! a mutating call and maps the hub's error to the documented D-Bus error.
//!
//! Structured answers (status, message lists) are JSON strings with a
//! documented schema: they evolve without breaking the method signatures.
//! Every mutating call, and every refused read, is logged with the
//! caller's uid, its agent (`TORCH_CALLER_AGENT=`) and `TORCH_AUDIT=1`.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use torch_api::OBJECT_PATH;
use torch_core::EnvVars;
use torch_systemd::JobKind;
use zbus::fdo;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use crate::caller::{Caller, Callers};
use crate::error::HubError;
use crate::events::{Emitting, Event, Sink};
use crate::fleet::SpawnRequest;
use crate::hub::Hub;
use crate::{access, lifecycle, schedule, service};

/// The object serving `org.torch.Manager1`.
pub struct Manager {
    /// Shared hub state.
    hub: Arc<Hub>,
    /// Who called, per bus connection.
    callers: Callers,
}

impl Manager {
    /// The API over `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Manager {
            hub,
            callers: Callers::default(),
        }
    }
}

/// The documented D-Bus errors: `InvalidArgs` for bad names and texts,
/// `AccessDenied` for identity, `Failed` for refusals and failures.
impl From<HubError> for fdo::Error {
    fn from(e: HubError) -> Self {
        match e {
            HubError::InvalidArgs(m) => fdo::Error::InvalidArgs(m),
            HubError::AccessDenied(m) => fdo::Error::AccessDenied(m),
            HubError::Refused(m)
            | HubError::Systemd(m)
            | HubError::Store(m)
            | HubError::Internal(m) => fdo::Error::Failed(m),
        }
    }
}

fn audit(caller: &Caller, method: &str, outcome: &str) {
    let uid = caller.uid();
    let shown = uid.map_or("unknown".to_string(), |u| u.to_string());
    // Agents share one uid: only the unit tells which agent called.
    let who = match caller.agent() {
        Some(a) => format!("agent {a} (uid {shown})"),
        None => format!("uid {shown}"),
    };
    tracing::info!(
        torch_audit = 1,
        caller_uid = uid.map_or(-1, i64::from),
        torch_caller_agent = caller.agent().unwrap_or(""),
        torch_method = method,
        "audit: {who} called {method}: {outcome}"
    );
}

/// A structured answer as JSON.
fn json(value: Result<impl Serialize, HubError>) -> fdo::Result<String> {
    serde_json::to_string(&value?).map_err(|e| fdo::Error::Failed(e.to_string()))
}

impl Manager {
    /// Resolves the caller, runs `op` for it, and logs the audit line
    /// `outcome` writes for `method` from the result as the caller sees it.
    async fn audited<T, F: Future<Output = Result<T, HubError>>>(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        method: &str,
        op: impl FnOnce(Caller) -> F,
        outcome: impl FnOnce(&fdo::Result<T>) -> String,
    ) -> fdo::Result<T> {
        let caller = self.callers.of(&self.hub.systemd, conn, hdr).await;
        let result = op(caller.clone()).await.map_err(fdo::Error::from);
        audit(&caller, method, &outcome(&result));
        result
    }

    /// Resolves the caller and runs the read `op` for it; only a refusal
    /// is logged (a line per status poll would drown the audit trail).
    async fn guarded<T, F: Future<Output = Result<T, HubError>>>(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        method: &str,
        op: impl FnOnce(Option<String>) -> F,
    ) -> fdo::Result<T> {
        let caller = self.callers.of(&self.hub.systemd, conn, hdr).await;
        let result = match caller.acting_agent() {
            Ok(actor) => op(actor).await,
            Err(e) => Err(e),
        };
        if let Err(HubError::AccessDenied(m)) = &result {
            audit(&caller, method, &format!("refused: {m}"));
        }
        result.map_err(fdo::Error::from)
    }

    /// Spawns `req` for the caller, who acts as `req.requester`.
    async fn spawn_as(
        &self,
        hdr: &Header<'_>,
        conn: &zbus::Connection,
        method: &str,
        mut req: SpawnRequest,
        brief: String,
        bad_env: Option<String>,
    ) -> fdo::Result<String> {
        let (name, requester) = (req.name.clone(), req.requester.clone());
        // Names only: the values are secrets and the audit line is public.
        let vars = if req.env.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = req.env.names().collect();
            format!(" with variables {}", names.join(", "))
        };
        let hub = &self.hub;
        let op = |c: Caller| async move {
            if let Some(e) = bad_env {
                return Err(HubError::InvalidArgs(e));
            }
            req.requester = c.act_as(&req.requester)?;
            service::spawn(hub, req, &brief).await
        };
        self.audited(conn, hdr, method, op, |res| match res {
            Ok(unit) => format!("{requester} spawned {name} ({unit}){vars}"),
            Err(e) => format!("{requester} could not spawn {name}: {e}"),
        })
        .await
    }

    async fn control(
        &self,
        hdr: &Header<'_>,
        conn: &zbus::Connection,
        kind: JobKind,
        name: &str,
    ) -> fdo::Result<()> {
        let verb = format!("{kind:?}");
        let hub = &self.hub;
        let op = |c: Caller| async move {
            lifecycle::control(hub, c.acting_agent()?.as_deref(), kind, name).await
        };
        self.audited(conn, hdr, &verb, op, |r| match r {
            Ok(()) => format!("{verb} {name}: done"),
            Err(e) => format!("{verb} {name}: refused or failed: {e}"),
        })
        .await
    }
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
        let (hub, f, t) = (&self.hub, &from, &to);
        let op = |c: Caller| async move { service::send(hub, &c.act_as(f)?, t, &text, None).await };
        self.audited(conn, &hdr, "Send", op, |r| match r {
            Ok(id) => format!("{from} -> {to} queued as #{id}"),
            Err(e) => format!("{from} -> {to} refused: {e}"),
        })
        .await
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
        let (hub, f, t, k) = (&self.hub, &from, &to, &key);
        let op = |c: Caller| async move {
            service::send(hub, &c.act_as(f)?, t, &text, Some(k.clone())).await
        };
        self.audited(conn, &hdr, "SendOnce", op, |r| match r {
            Ok(id) => format!("{from} -> {to} queued as #{id} (key {key})"),
            Err(e) => format!("{from} -> {to} refused: {e}"),
        })
        .await
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
            name,
            role,
            parent,
            workdir,
            profile,
            command,
            requester,
            env: EnvVars::default(),
        };
        self.spawn_as(&hdr, conn, "Spawn", req, brief, None).await
    }

    /// `Spawn`, with `env`, an environment file's text (`KEY=VALUE` lines),
    /// for the agent's program; the hub keeps it where only it and root
    /// read it.
    #[allow(clippy::too_many_arguments)]
    async fn spawn_with_env(
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
        env: String,
    ) -> fdo::Result<String> {
        let env = EnvVars::parse(&env);
        let req = SpawnRequest {
            name,
            role,
            parent,
            workdir,
            profile,
            command,
            requester,
            env: env.clone().unwrap_or_default(),
        };
        let bad = env.err().map(|e| format!("environment file: {e}"));
        self.spawn_as(&hdr, conn, "SpawnWithEnv", req, brief, bad)
            .await
    }

    /// Stops an agent, keeps its final transcript, and removes it; returns
    /// the transcript's path.
    async fn retire(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> fdo::Result<String> {
        let (hub, n) = (&self.hub, &name);
        let op =
            |c: Caller| async move { service::retire(hub, c.acting_agent()?.as_deref(), n).await };
        self.audited(conn, &hdr, "Retire", op, |r| match r {
            Ok(t) => format!("retired {name}, transcript {t}"),
            Err(e) => format!("could not retire {name}: {e}"),
        })
        .await
    }

    /// Starts an agent and waits until it is up; it comes back after a reboot.
    async fn start(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> fdo::Result<()> {
        self.control(&hdr, conn, JobKind::Start, &name).await
    }

    /// Stops an agent; it stays down across reboots until started again.
    async fn stop(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> fdo::Result<()> {
        self.control(&hdr, conn, JobKind::Stop, &name).await
    }

    /// Restarts an agent; it comes back after a reboot.
    async fn restart(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> fdo::Result<()> {
        self.control(&hdr, conn, JobKind::Restart, &name).await
    }

    /// The fleet as JSON (schema in docs/dbus.md).
    async fn status(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<String> {
        let hub = &self.hub;
        let op = |actor| async move { service::status(hub, actor).await };
        json(Ok(self.guarded(conn, &hdr, "Status", op).await?))
    }

    /// Messages to or from `agent` ("" for all) older than id `before`
    /// (0: the newest), newest last, at most `limit` (up to [`PAGE_MAX`]), as JSON.
    async fn messages(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        agent: String,
        before: i64,
        limit: u32,
    ) -> fdo::Result<String> {
        let agent = (!agent.is_empty()).then_some(agent);
        let hub = &self.hub;
        let op = |actor: Option<String>| async move {
            service::messages(hub, actor.as_deref(), agent, before, limit).await
        };
        json(Ok(self.guarded(conn, &hdr, "Messages", op).await?))
    }

    /// Messages addressed to `agent`, paged as for `Messages`, as JSON.
    async fn inbox(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        agent: String,
        before: i64,
        limit: u32,
    ) -> fdo::Result<String> {
        let hub = &self.hub;
        let op = |actor: Option<String>| async move {
            service::inbox(hub, actor.as_deref(), agent, before, limit).await
        };
        json(Ok(self.guarded(conn, &hdr, "Inbox", op).await?))
    }

    /// The agent's screen.
    async fn capture(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        agent: String,
    ) -> fdo::Result<String> {
        let (hub, a) = (&self.hub, &agent);
        let op =
            |actor: Option<String>| async move { service::capture(hub, actor.as_deref(), a).await };
        self.guarded(conn, &hdr, "Capture", op).await
    }

    /// Answers the question `agent` asks on screen (a permission prompt):
    /// `yes`, `no` or the number of a choice. The operator may answer for
    /// any agent, an agent only for the agents below it.
    async fn answer(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        agent: String,
        choice: String,
    ) -> fdo::Result<()> {
        let (hub, a, c) = (&self.hub, &agent, &choice);
        let op = |caller: Caller| async move {
            service::answer(hub, caller.acting_agent()?.as_deref(), a, c).await
        };
        self.audited(conn, &hdr, "Answer", op, |r| match r {
            Ok(()) => format!("answered {agent} with {choice:?}"),
            Err(e) => format!("answer to {agent} refused or failed: {e}"),
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
        let (hub, a, k, s, r) = (&self.hub, &agent, &kind, &spec, &requester);
        let op =
            |c: Caller| async move { service::schedule(hub, a, k, s, &note, &c.act_as(r)?).await };
        self.audited(conn, &hdr, "Schedule", op, |res| match res {
            Ok((id, _)) => format!("{requester} scheduled #{id} for {agent} ({kind} {spec})"),
            Err(e) => format!("{requester} could not schedule for {agent}: {e}"),
        })
        .await
    }

    /// Removes a schedule and its timer.
    async fn unschedule(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        id: i64,
    ) -> fdo::Result<()> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            service::unschedule(hub, c.acting_agent()?.as_deref(), id).await
        };
        self.audited(conn, &hdr, "Unschedule", op, |r| match r {
            Ok(()) => format!("#{id}: removed"),
            Err(e) => format!("#{id}: {e}"),
        })
        .await
    }

    /// Active schedules of `agent` ("" for all) as JSON.
    async fn schedules(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        agent: String,
    ) -> fdo::Result<String> {
        let agent = (!agent.is_empty()).then_some(agent);
        let hub = &self.hub;
        let op = |actor: Option<String>| async move {
            service::schedules(hub, actor.as_deref(), agent).await
        };
        json(Ok(self.guarded(conn, &hdr, "Schedules", op).await?))
    }

    /// Fires every check-in due by now (the timers call this); returns how many fired.
    async fn fire_due(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> fdo::Result<u32> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            access::operator_only(c.acting_agent()?.as_deref(), "FireDue")?;
            schedule::fire_due(hub).await.map(|n| n as u32)
        };
        self.audited(conn, &hdr, "FireDue", op, |r| match r {
            Ok(n) => format!("{n} fired"),
            Err(e) => e.to_string(),
        })
        .await
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

/// The hub's events as this interface's signals, on `conn`.
pub struct Signals(pub zbus::Connection);

impl Sink for Signals {
    fn emit<'a>(&'a self, event: Event<'a>) -> Emitting<'a> {
        Box::pin(async move {
            let Ok(e) = SignalEmitter::new(&self.0, OBJECT_PATH) else {
                return;
            };
            let _ = match event {
                Event::Queued { id, from, to } => Manager::message_queued(&e, id, from, to).await,
                Event::Delivered { id, to } => Manager::message_delivered(&e, id, to).await,
                Event::Failed { id, to, reason } => {
                    Manager::message_failed(&e, id, to, reason).await
                }
                Event::FleetChanged { agent, change } => {
                    Manager::fleet_changed(&e, agent, change).await
                }
            };
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_errors_become_the_documented_dbus_errors() {
        let cases = [
            (
                HubError::InvalidArgs("a".into()),
                fdo::Error::InvalidArgs("a".into()),
            ),
            (
                HubError::AccessDenied("b".into()),
                fdo::Error::AccessDenied("b".into()),
            ),
            (
                HubError::Refused("c".into()),
                fdo::Error::Failed("c".into()),
            ),
            (
                HubError::Systemd("d".into()),
                fdo::Error::Failed("d".into()),
            ),
            (HubError::Store("e".into()), fdo::Error::Failed("e".into())),
            (
                HubError::Internal("f".into()),
                fdo::Error::Failed("f".into()),
            ),
        ];
        for (hub, dbus) in cases {
            assert_eq!(fdo::Error::from(hub), dbus);
        }
    }
}
