//! `org.torch.Manager1`, written once: the list at the bottom of this file
//! makes the client proxy ([`ManagerProxy`]), the trait the hub implements
//! ([`ManagerService`]) and the D-Bus object that serves it
//! ([`ManagerServer`]). A method changed here changes all three, so a
//! caller or the hub left behind fails to compile. The doc comments are
//! part of the introspection XML that docs/org.torch.Manager1.xml holds.

use std::future::Future;

use zbus::fdo;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

/// The D-Bus object serving `org.torch.Manager1` with the hub's `S`.
pub struct ManagerServer<S>(pub S);

// A reply is a token tree, not a `ty` fragment: zbus reads `()` and a
// tuple from their syntax, and a `ty` fragment would hide it and change
// the reply's D-Bus signature.
macro_rules! manager_interface {
    (
        methods {
            $(
                $(#[doc = $doc:literal])*
                fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:tt;
            )*
        }
        signals {
            $(
                $(#[doc = $sdoc:literal])*
                fn $signal:ident($($sarg:ident: $sty:ty),*);
            )*
        }
    ) => {
        /// Proxy for the hub's manager interface.
        #[zbus::proxy(
            interface = "org.torch.Manager1",
            default_service = "org.torch.Torch1",
            default_path = "/org/torch/Torch1"
        )]
        pub trait Manager {
            $(
                $(#[doc = $doc])*
                #[allow(clippy::too_many_arguments)]
                fn $name(&self, $($arg: $ty),*) -> zbus::Result<$ret>;
            )*
            /// The hub's version.
            #[zbus(property)]
            fn version(&self) -> zbus::Result<String>;
            $(
                $(#[doc = $sdoc])*
                #[zbus(signal)]
                fn $signal(&self, $($sarg: $sty),*) -> zbus::Result<()>;
            )*
        }

        /// What the hub does for each method of `org.torch.Manager1`. The
        /// server resolves the caller once per call ([`Self::caller`]) and
        /// hands it to the method; errors are the documented D-Bus errors.
        pub trait ManagerService: Send + Sync + 'static {
            /// Who called, as the hub knows it.
            type Caller: Send;

            /// Resolves who sent the call in `hdr` on `conn`.
            fn caller(
                &self,
                conn: &zbus::Connection,
                hdr: &Header<'_>,
            ) -> impl Future<Output = Self::Caller> + Send;

            $(
                $(#[doc = $doc])*
                #[allow(clippy::too_many_arguments)]
                fn $name(
                    &self,
                    caller: Self::Caller,
                    $($arg: $ty),*
                ) -> impl Future<Output = fdo::Result<$ret>> + Send;
            )*
        }

        #[zbus::interface(name = "org.torch.Manager1")]
        impl<S: ManagerService> ManagerServer<S> {
            $(
                $(#[doc = $doc])*
                #[allow(clippy::too_many_arguments)]
                async fn $name(
                    &self,
                    #[zbus(header)] hdr: Header<'_>,
                    #[zbus(connection)] conn: &zbus::Connection,
                    $($arg: $ty),*
                ) -> fdo::Result<$ret> {
                    let caller = self.0.caller(conn, &hdr).await;
                    self.0.$name(caller, $($arg),*).await
                }
            )*

            /// The API version.
            #[zbus(property)]
            async fn version(&self) -> String {
                env!("CARGO_PKG_VERSION").to_string()
            }

            $(
                $(#[doc = $sdoc])*
                #[zbus(signal)]
                pub async fn $signal(
                    emitter: &SignalEmitter<'_>,
                    $($sarg: $sty),*
                ) -> zbus::Result<()>;
            )*
        }
    };
}

manager_interface! {
    methods {
        /// Stores a message from `from` (an agent or "operator") to `to` and
        /// returns its id; delivery follows in the background.
        fn send(from: &str, to: &str, text: &str) -> i64;

        /// Like `Send`, stored once per sender and `key`: a retry of a call whose
        /// reply was lost returns the first call's id and stores nothing.
        fn send_once(from: &str, to: &str, text: &str, key: &str) -> i64;

        /// Writes a new agent's definition, queues its brief and starts it.
        fn spawn(
            name: &str,
            role: &str,
            parent: &str,
            workdir: &str,
            profile: &str,
            command: Vec<String>,
            brief: &str,
            requester: &str
        ) -> String;

        /// `Spawn`, with `env`, an environment file's text (`KEY=VALUE` lines),
        /// for the agent's program; the hub keeps it where only it and root
        /// read it.
        fn spawn_with_env(
            name: &str,
            role: &str,
            parent: &str,
            workdir: &str,
            profile: &str,
            command: Vec<String>,
            brief: &str,
            requester: &str,
            env: &str
        ) -> String;

        /// `Spawn` with every setting: `spec` is a `SpawnSpec` as JSON (name,
        /// role, parent, workdir, profile, command, requester, skills,
        /// capacity), `env` an environment file's text ("" for none).
        fn spawn_agent(spec: &str, brief: &str, env: &str) -> String;

        /// Stops an agent, keeps its final transcript, and removes it; returns
        /// the transcript's path.
        fn retire(name: &str) -> String;

        /// Forgets a node of the cluster gone for good (lost, not this
        /// node): frees its agent names, drops what waited for it, fails the
        /// messages every node holds for its agents; returns what was done.
        fn forget_node(node: &str) -> String;

        /// Starts an agent and waits until it is up; it comes back after a reboot.
        fn start(name: &str) -> ();

        /// Stops an agent; it stays down across reboots until started again.
        fn stop(name: &str) -> ();

        /// Restarts an agent; it comes back after a reboot.
        fn restart(name: &str) -> ();

        /// The fleet as JSON (schema in docs/dbus.md).
        fn status() -> String;

        /// Every agent, its role, parent, skills, capacity and state, as JSON
        /// (schema in docs/dbus.md): the directory agents find peers in.
        fn agents() -> String;

        /// Every pool (`[pools.NAME]` in torch.toml): its size, target,
        /// bounds and why, as JSON (schema in docs/dbus.md).
        fn pools() -> String;

        /// The fleet's metrics in the Prometheus (OpenMetrics) text format
        /// (names in docs/metrics.md), for the operator and the
        /// `torch-metrics` user, whose unit serves them over HTTP.
        fn metrics() -> String;

        /// For the web dashboard's service only: does `action` (`send`
        /// `text`, `answer` with `text` yes or no, `restart`) on `agent` as
        /// the operator, when `token` is the one in /etc/torch/web-token;
        /// returns what was done.
        fn web_act(token: &str, action: &str, agent: &str, text: &str) -> String;

        /// From an agent's supervisor, about its own agent (the hub knows
        /// which by the caller's unit): `kind` `state` with the state read
        /// and `detail` (what decided it, or the question), or `alert` with
        /// the alert's text in `detail`. The hub signals `AgentChanged` or
        /// `Alert`; at most 20 reports a second per agent are taken.
        fn report(kind: &str, value: &str, detail: &str) -> ();

        /// Messages to or from `agent` ("" for all) older than id `before`
        /// (0: the newest), newest last, at most `limit` (up to [`PAGE_MAX`]), as JSON.
        fn messages(agent: &str, before: i64, limit: u32) -> String;

        /// Messages addressed to `agent`, paged as for `Messages`, as JSON.
        fn inbox(agent: &str, before: i64, limit: u32) -> String;

        /// The agent's screen.
        fn capture(agent: &str) -> String;

        /// Answers the question `agent` asks on screen (a permission prompt):
        /// `yes`, `no` or the number of a choice. The operator may answer for
        /// any agent, an agent only for the agents below it.
        fn answer(agent: &str, choice: &str) -> ();

        /// Sets a check-in for `agent`: `kind` is `in`, `at`, `every` or
        /// `calendar`, `spec` a duration (`15m`), a clock time (`14:30`) or a
        /// calendar expression. A recurring one firing closer than `[schedules]
        /// min_interval` is refused. Returns the schedule id and its next fire
        /// time (Unix milliseconds, 0 if unknown).
        fn schedule(
            agent: &str,
            kind: &str,
            spec: &str,
            note: &str,
            requester: &str
        ) -> (i64, i64);

        /// Removes a schedule and its timer.
        fn unschedule(id: i64) -> ();

        /// Active schedules of `agent` ("" for all) as JSON.
        fn schedules(agent: &str) -> String;

        /// Fires every check-in due by now (the timers call this); returns how many fired.
        fn fire_due() -> u32;

        /// Opens a task: `spec` is a `TaskSpec` as JSON; returns its id.
        fn task_add(spec: &str) -> i64;

        /// Tasks as JSON, highest priority then oldest first: those in `state`
        /// ("" for all), only the caller's own with `mine`.
        fn tasks(state: &str, mine: bool) -> String;

        /// One task as JSON, with its history.
        fn task(id: i64) -> String;

        /// Moves a task: `action` is `claim`, `start`, `done`, `block`,
        /// `cancel`, `handoff` (to the agent `target`), `reroute` (back to the
        /// ledger asking for the skill `target` too), `review` (to the
        /// reviewer `target`) or `reject` (back from review); `note` the
        /// summary, reason or handoff note.
        fn task_act(id: i64, action: &str, target: &str, note: &str) -> ();

        /// `TaskAct` on task `id` of the ledger of `node`, another node of
        /// the cluster ("" or this node: as `TaskAct`), for an agent of this
        /// node: the task's node does it, after its own checks.
        fn task_act_on(node: &str, id: i64, action: &str, target: &str, note: &str) -> ();
    }
    signals {
        /// A message was stored.
        fn message_queued(id: i64, from: &str, to: &str);

        /// A message was confirmed on its recipient's screen.
        fn message_delivered(id: i64, to: &str);

        /// A message will not be delivered.
        fn message_failed(id: i64, to: &str, reason: &str);

        /// An agent was spawned or retired.
        fn fleet_changed(agent: &str, change: &str);

        /// Task `id` entered `state` (open, assigned, working, review,
        /// done, blocked, cancelled), moved by `actor` (an agent, `operator`
        /// or `hub`).
        fn task_changed(id: i64, state: &str, actor: &str);

        /// `agent`'s supervisor reads it in `state` (idle, working,
        /// asking, trouble, limited, unknown; down as its unit stops);
        /// `detail` says what decided it, or what it asks.
        fn agent_changed(agent: &str, state: &str, detail: &str);

        /// Something a person should look at, about `agent`: it waited too
        /// long for an answer, was in trouble or limited, a task it holds
        /// stalled.
        fn alert(agent: &str, text: &str);

        /// Check-in `id` of `agent` fired: `message` is its stored message.
        fn checkin_fired(id: i64, agent: &str, message: i64);

        /// Pool `pool` (`[pools.NAME]`) has `size` members and is going to
        /// `target`, for `why`: sent when one of the three changes.
        fn pool_changed(pool: &str, size: u32, target: u32, why: &str);
    }
}
