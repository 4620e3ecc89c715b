//! The hub's D-Bus API: `org.torch.Manager1` at `/org/torch/Torch1` on the
//! system bus as `org.torch.Torch1`. Documented in `docs/dbus.md`.
//!
//! The hub's side of the interface torch-api declares ([`ManagerService`]),
//! served as its [`ManagerServer`]. A thin adapter: each method gets its
//! resolved caller, calls one operation of
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
use torch_api::{ManagerServer, ManagerService, SpawnSpec, TaskSpec, OBJECT_PATH};
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
use crate::{access, ledger, lifecycle, metrics, moves, reports, schedule, service, web};

/// The hub's side of `org.torch.Manager1`, served as a [`Server`].
pub struct Manager {
    /// Shared hub state.
    hub: Arc<Hub>,
    /// Who called, per bus connection.
    callers: Callers,
}

/// The D-Bus object serving the hub.
pub type Server = ManagerServer<Manager>;

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

/// The spec of a `Spawn` or `SpawnWithEnv` call: their fields, by the
/// order of their arguments (name, role, parent, workdir, profile,
/// requester), and the defaults of the rest.
fn spec_of(
    [name, role, parent, workdir, profile, requester]: [&str; 6],
    command: Vec<String>,
) -> SpawnSpec {
    SpawnSpec {
        name: name.to_string(),
        role: role.to_string(),
        parent: parent.to_string(),
        workdir: workdir.to_string(),
        profile: profile.to_string(),
        command,
        requester: requester.to_string(),
        ..SpawnSpec::default()
    }
}

/// `req` with the environment file's text `env` ("" for none), or the
/// reason that text is refused, which the spawn reports after its audit.
fn with_env(mut req: SpawnRequest, env: &str) -> (SpawnRequest, Option<String>) {
    match EnvVars::parse(env) {
        Ok(vars) => {
            req.env = vars;
            (req, None)
        }
        Err(e) => (req, Some(format!("environment file: {e}"))),
    }
}

/// A structured answer as JSON.
fn json(value: Result<impl Serialize, HubError>) -> fdo::Result<String> {
    serde_json::to_string(&value?).map_err(|e| fdo::Error::Failed(e.to_string()))
}

impl Manager {
    /// Runs `op` for `caller`, and logs the audit line `outcome` writes
    /// for `method` from the result as the caller sees it.
    async fn audited<T, F: Future<Output = Result<T, HubError>>>(
        &self,
        caller: Caller,
        method: &str,
        op: impl FnOnce(Caller) -> F,
        outcome: impl FnOnce(&fdo::Result<T>) -> String,
    ) -> fdo::Result<T> {
        let result = op(caller.clone()).await.map_err(fdo::Error::from);
        audit(&caller, method, &outcome(&result));
        result
    }

    /// Runs the read `op` for `caller`; only a refusal is logged (a line
    /// per status poll would drown the audit trail).
    async fn guarded<T, F: Future<Output = Result<T, HubError>>>(
        &self,
        caller: Caller,
        method: &str,
        op: impl FnOnce(Option<String>) -> F,
    ) -> fdo::Result<T> {
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
        caller: Caller,
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
        self.audited(caller, method, op, |res| match res {
            Ok(unit) => format!("{requester} spawned {name} ({unit}){vars}"),
            Err(e) => format!("{requester} could not spawn {name}: {e}"),
        })
        .await
    }

    async fn control(&self, caller: Caller, kind: JobKind, name: &str) -> fdo::Result<()> {
        let verb = format!("{kind:?}");
        let hub = &self.hub;
        let op = |c: Caller| async move {
            lifecycle::control(hub, c.acting_agent()?.as_deref(), kind, name).await
        };
        self.audited(caller, &verb, op, |r| match r {
            Ok(()) => format!("{verb} {name}: done"),
            Err(e) => format!("{verb} {name}: refused or failed: {e}"),
        })
        .await
    }
}

/// Each method: what it does is in torch-api, where its signature is.
impl ManagerService for Manager {
    type Caller = Caller;

    async fn caller(&self, conn: &zbus::Connection, hdr: &Header<'_>) -> Caller {
        self.callers.of(&self.hub.systemd, conn, hdr).await
    }

    async fn send(&self, caller: Caller, from: &str, to: &str, text: &str) -> fdo::Result<i64> {
        let hub = &self.hub;
        let op =
            |c: Caller| async move { service::send(hub, &c.act_as(from)?, to, text, None).await };
        self.audited(caller, "Send", op, |r| match r {
            Ok(id) => format!("{from} -> {to} queued as #{id}"),
            Err(e) => format!("{from} -> {to} refused: {e}"),
        })
        .await
    }

    async fn send_once(
        &self,
        caller: Caller,
        from: &str,
        to: &str,
        text: &str,
        key: &str,
    ) -> fdo::Result<i64> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            service::send(hub, &c.act_as(from)?, to, text, Some(key.to_string())).await
        };
        self.audited(caller, "SendOnce", op, |r| match r {
            Ok(id) => format!("{from} -> {to} queued as #{id} (key {key})"),
            Err(e) => format!("{from} -> {to} refused: {e}"),
        })
        .await
    }

    async fn spawn(
        &self,
        caller: Caller,
        name: &str,
        role: &str,
        parent: &str,
        workdir: &str,
        profile: &str,
        command: Vec<String>,
        brief: &str,
        requester: &str,
    ) -> fdo::Result<String> {
        let spec = spec_of([name, role, parent, workdir, profile, requester], command);
        self.spawn_as(caller, "Spawn", spec.into(), brief.to_string(), None)
            .await
    }

    async fn spawn_with_env(
        &self,
        caller: Caller,
        name: &str,
        role: &str,
        parent: &str,
        workdir: &str,
        profile: &str,
        command: Vec<String>,
        brief: &str,
        requester: &str,
        env: &str,
    ) -> fdo::Result<String> {
        let spec = spec_of([name, role, parent, workdir, profile, requester], command);
        let (req, bad) = with_env(spec.into(), env);
        self.spawn_as(caller, "SpawnWithEnv", req, brief.to_string(), bad)
            .await
    }

    async fn spawn_agent(
        &self,
        caller: Caller,
        spec: &str,
        brief: &str,
        env: &str,
    ) -> fdo::Result<String> {
        let spec: SpawnSpec = serde_json::from_str(spec)
            .map_err(|e| fdo::Error::InvalidArgs(format!("spawn spec: {e}")))?;
        let (req, bad) = with_env(spec.into(), env);
        self.spawn_as(caller, "SpawnAgent", req, brief.to_string(), bad)
            .await
    }

    async fn retire(&self, caller: Caller, name: &str) -> fdo::Result<String> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            service::retire(hub, c.acting_agent()?.as_deref(), name).await
        };
        self.audited(caller, "Retire", op, |r| match r {
            Ok(t) => format!("retired {name}, transcript {t}"),
            Err(e) => format!("could not retire {name}: {e}"),
        })
        .await
    }

    async fn forget_node(&self, caller: Caller, node: &str) -> fdo::Result<String> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            crate::forget::forget(hub, c.acting_agent()?.as_deref(), node).await
        };
        self.audited(caller, "ForgetNode", op, |r| match r {
            Ok(done) => done.clone(),
            Err(e) => format!("could not forget node {node}: {e}"),
        })
        .await
    }

    async fn start(&self, caller: Caller, name: &str) -> fdo::Result<()> {
        self.control(caller, JobKind::Start, name).await
    }

    async fn stop(&self, caller: Caller, name: &str) -> fdo::Result<()> {
        self.control(caller, JobKind::Stop, name).await
    }

    async fn restart(&self, caller: Caller, name: &str) -> fdo::Result<()> {
        self.control(caller, JobKind::Restart, name).await
    }

    async fn agents(&self, caller: Caller) -> fdo::Result<String> {
        let hub = &self.hub;
        let op = |_| async move { service::directory(hub).await };
        json(Ok(self.guarded(caller, "Agents", op).await?))
    }

    async fn pools(&self, caller: Caller) -> fdo::Result<String> {
        let hub = &self.hub;
        let op = |_| async move { Ok::<_, HubError>(hub.pools.status()) };
        json(Ok(self.guarded(caller, "Pools", op).await?))
    }

    async fn metrics(&self, caller: Caller) -> fdo::Result<String> {
        let hub = &self.hub;
        let result = match caller.may_read_metrics() {
            Ok(()) => metrics::render(hub).await,
            Err(e) => {
                audit(&caller, "Metrics", &format!("refused: {e}"));
                Err(e)
            }
        };
        result.map_err(fdo::Error::from)
    }

    async fn web_act(
        &self,
        caller: Caller,
        token: &str,
        action: &str,
        agent: &str,
        text: &str,
    ) -> fdo::Result<String> {
        let hub = &self.hub;
        let result = if caller.is_web_viewer() {
            match web::check_token(token) {
                Ok(()) => web::act(hub, action, agent, text).await,
                Err(e) => Err(e),
            }
        } else {
            Err(HubError::AccessDenied(
                "only the web dashboard's service acts through WebAct; use the other methods"
                    .into(),
            ))
        };
        let outcome = match &result {
            Ok(done) => format!("web dashboard: {done}"),
            Err(e) => format!("web dashboard: {action} {agent} refused or failed: {e}"),
        };
        audit(&caller, "WebAct", &outcome);
        result.map_err(fdo::Error::from)
    }

    async fn report(
        &self,
        caller: Caller,
        kind: &str,
        value: &str,
        detail: &str,
    ) -> fdo::Result<()> {
        let Some(agent) = caller.agent() else {
            let e = HubError::AccessDenied(
                "only an agent's supervisor reports, from the agent's unit".into(),
            );
            audit(&caller, "Report", &format!("refused: {e}"));
            return Err(e.into());
        };
        let report = reports::parse(kind, value, detail)?;
        reports::take(&self.hub, agent, report).await;
        Ok(())
    }

    async fn status(&self, caller: Caller) -> fdo::Result<String> {
        let hub = &self.hub;
        // The web dashboard sees the fleet as the operator does, and may
        // do nothing else.
        if caller.is_web_viewer() {
            return json(service::status(hub, None).await);
        }
        let op = |actor| async move { service::status(hub, actor).await };
        json(Ok(self.guarded(caller, "Status", op).await?))
    }

    async fn messages(
        &self,
        caller: Caller,
        agent: &str,
        before: i64,
        limit: u32,
    ) -> fdo::Result<String> {
        let agent = (!agent.is_empty()).then(|| agent.to_string());
        let hub = &self.hub;
        let op = |actor: Option<String>| async move {
            service::messages(hub, actor.as_deref(), agent, before, limit).await
        };
        json(Ok(self.guarded(caller, "Messages", op).await?))
    }

    async fn inbox(
        &self,
        caller: Caller,
        agent: &str,
        before: i64,
        limit: u32,
    ) -> fdo::Result<String> {
        let (hub, agent) = (&self.hub, agent.to_string());
        let op = |actor: Option<String>| async move {
            service::inbox(hub, actor.as_deref(), agent, before, limit).await
        };
        json(Ok(self.guarded(caller, "Inbox", op).await?))
    }

    async fn capture(&self, caller: Caller, agent: &str) -> fdo::Result<String> {
        let hub = &self.hub;
        let op = |actor: Option<String>| async move {
            service::capture(hub, actor.as_deref(), agent).await
        };
        self.guarded(caller, "Capture", op).await
    }

    async fn answer(&self, caller: Caller, agent: &str, choice: &str) -> fdo::Result<()> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            service::answer(hub, c.acting_agent()?.as_deref(), agent, choice).await
        };
        self.audited(caller, "Answer", op, |r| match r {
            Ok(()) => format!("answered {agent} with {choice:?}"),
            Err(e) => format!("answer to {agent} refused or failed: {e}"),
        })
        .await
    }

    async fn schedule(
        &self,
        caller: Caller,
        agent: &str,
        kind: &str,
        spec: &str,
        note: &str,
        requester: &str,
    ) -> fdo::Result<(i64, i64)> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            service::schedule(hub, agent, kind, spec, note, &c.act_as(requester)?).await
        };
        self.audited(caller, "Schedule", op, |res| match res {
            Ok((id, _)) => format!("{requester} scheduled #{id} for {agent} ({kind} {spec})"),
            Err(e) => format!("{requester} could not schedule for {agent}: {e}"),
        })
        .await
    }

    async fn unschedule(&self, caller: Caller, id: i64) -> fdo::Result<()> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            service::unschedule(hub, c.acting_agent()?.as_deref(), id).await
        };
        self.audited(caller, "Unschedule", op, |r| match r {
            Ok(()) => format!("#{id}: removed"),
            Err(e) => format!("#{id}: {e}"),
        })
        .await
    }

    async fn schedules(&self, caller: Caller, agent: &str) -> fdo::Result<String> {
        let agent = (!agent.is_empty()).then(|| agent.to_string());
        let hub = &self.hub;
        let op = |actor: Option<String>| async move {
            service::schedules(hub, actor.as_deref(), agent).await
        };
        json(Ok(self.guarded(caller, "Schedules", op).await?))
    }

    async fn task_add(&self, caller: Caller, spec: &str) -> fdo::Result<i64> {
        let spec: TaskSpec = serde_json::from_str(spec)
            .map_err(|e| fdo::Error::InvalidArgs(format!("task spec: {e}")))?;
        let (hub, title) = (&self.hub, spec.title.clone());
        let op = |c: Caller| async move {
            let requester = c.act_as(&spec.requester)?;
            ledger::add(hub, &requester, c.acting_agent()?.as_deref(), spec).await
        };
        self.audited(caller, "TaskAdd", op, |r| match r {
            Ok(id) => format!("task #{id} opened: {title}"),
            Err(e) => format!("task not opened: {e}"),
        })
        .await
    }

    async fn tasks(&self, caller: Caller, state: &str, mine: bool) -> fdo::Result<String> {
        let state = (!state.is_empty()).then(|| state.to_string());
        let hub = &self.hub;
        let op = |actor: Option<String>| async move {
            ledger::list(hub, actor.as_deref(), state, mine).await
        };
        json(Ok(self.guarded(caller, "Tasks", op).await?))
    }

    async fn task(&self, caller: Caller, id: i64) -> fdo::Result<String> {
        let hub = &self.hub;
        let op =
            |actor: Option<String>| async move { ledger::show(hub, actor.as_deref(), id).await };
        json(Ok(self.guarded(caller, "Task", op).await?))
    }

    async fn task_act(
        &self,
        caller: Caller,
        id: i64,
        action: &str,
        target: &str,
        note: &str,
    ) -> fdo::Result<()> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            moves::act(hub, c.acting_agent()?.as_deref(), id, action, target, note).await
        };
        self.audited(caller, "TaskAct", op, |r| match r {
            Ok(()) => format!("task #{id}: {action}"),
            Err(e) => format!("task #{id}: {action} refused or failed: {e}"),
        })
        .await
    }

    async fn task_act_on(
        &self,
        caller: Caller,
        node: &str,
        id: i64,
        action: &str,
        target: &str,
        note: &str,
    ) -> fdo::Result<()> {
        let here = crate::cluster::node_name(&self.hub);
        if node.is_empty() || here.as_deref() == Some(node) {
            return self.task_act(caller, id, action, target, note).await;
        }
        let hub = &self.hub;
        let op = |c: Caller| async move {
            let actor = c.acting_agent()?;
            let what = (action, target, note);
            crate::remote_tasks::act_elsewhere(hub, actor.as_deref(), node, id, what).await
        };
        self.audited(caller, "TaskActOn", op, |r| match r {
            Ok(()) => format!("task {node}:{id}: {action}"),
            Err(e) => format!("task {node}:{id}: {action} refused or failed: {e}"),
        })
        .await
    }

    async fn fire_due(&self, caller: Caller) -> fdo::Result<u32> {
        let hub = &self.hub;
        let op = |c: Caller| async move {
            access::operator_only(c.acting_agent()?.as_deref(), "FireDue")?;
            schedule::fire_due(hub).await.map(|n| n as u32)
        };
        self.audited(caller, "FireDue", op, |r| match r {
            Ok(n) => format!("{n} fired"),
            Err(e) => e.to_string(),
        })
        .await
    }
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
                Event::Queued { id, from, to } => Server::message_queued(&e, id, from, to).await,
                Event::Delivered { id, to } => Server::message_delivered(&e, id, to).await,
                Event::Failed { id, to, reason } => {
                    Server::message_failed(&e, id, to, reason).await
                }
                Event::FleetChanged { agent, change } => {
                    Server::fleet_changed(&e, agent, change).await
                }
                Event::TaskChanged { id, state, actor } => {
                    Server::task_changed(&e, id, state, actor).await
                }
                Event::AgentChanged {
                    agent,
                    state,
                    detail,
                } => Server::agent_changed(&e, agent, state, detail).await,
                Event::Alert { agent, text } => Server::alert(&e, agent, text).await,
                Event::CheckinFired { id, agent, message } => {
                    Server::checkin_fired(&e, id, agent, message).await
                }
                Event::PoolChanged {
                    pool,
                    size,
                    target,
                    why,
                } => Server::pool_changed(&e, pool, size, target, why).await,
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
