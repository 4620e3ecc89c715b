//! The client side of `org.torch.Manager1`; each method is described in
//! docs/dbus.md, whose interface XML a test compares with the running hub.

/// Proxy for the hub's manager interface.
#[zbus::proxy(
    interface = "org.torch.Manager1",
    default_service = "org.torch.Torch1",
    default_path = "/org/torch/Torch1"
)]
pub trait Manager {
    /// Stores a message; delivery follows.
    fn send(&self, from: &str, to: &str, text: &str) -> zbus::Result<i64>;
    /// Stores a message once per sender and key.
    fn send_once(&self, from: &str, to: &str, text: &str, key: &str) -> zbus::Result<i64>;
    /// Writes a definition, queues the brief, starts the agent.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        name: &str,
        role: &str,
        parent: &str,
        workdir: &str,
        profile: &str,
        command: &[&str],
        brief: &str,
        requester: &str,
    ) -> zbus::Result<String>;
    /// `spawn`, with an environment file's text for the agent's program.
    #[allow(clippy::too_many_arguments)]
    fn spawn_with_env(
        &self,
        name: &str,
        role: &str,
        parent: &str,
        workdir: &str,
        profile: &str,
        command: &[&str],
        brief: &str,
        requester: &str,
        env: &str,
    ) -> zbus::Result<String>;
    /// Stops and removes an agent; returns its transcript's path.
    fn retire(&self, name: &str) -> zbus::Result<String>;
    /// Starts an agent; it comes back after a reboot.
    fn start(&self, name: &str) -> zbus::Result<()>;
    /// Stops an agent; it stays down across reboots.
    fn stop(&self, name: &str) -> zbus::Result<()>;
    /// Restarts an agent.
    fn restart(&self, name: &str) -> zbus::Result<()>;
    /// The fleet: a [`crate::FleetStatus`] as JSON.
    fn status(&self) -> zbus::Result<String>;
    /// A page of history: [`crate::Message`]s as a JSON list.
    fn messages(&self, agent: &str, before: i64, limit: u32) -> zbus::Result<String>;
    /// A page of an agent's inbox: [`crate::Message`]s as a JSON list.
    fn inbox(&self, agent: &str, before: i64, limit: u32) -> zbus::Result<String>;
    /// The agent's screen.
    fn capture(&self, agent: &str) -> zbus::Result<String>;
    /// Answers the question the agent asks on screen: `yes`, `no` or the
    /// number of a choice.
    fn answer(&self, agent: &str, choice: &str) -> zbus::Result<()>;
    /// Sets a check-in; returns its id and next due time.
    fn schedule(
        &self,
        agent: &str,
        kind: &str,
        spec: &str,
        note: &str,
        requester: &str,
    ) -> zbus::Result<(i64, i64)>;
    /// Ends a check-in.
    fn unschedule(&self, id: i64) -> zbus::Result<()>;
    /// Active check-ins: [`crate::Schedule`]s as a JSON list.
    fn schedules(&self, agent: &str) -> zbus::Result<String>;
    /// Fires the check-ins due by now.
    fn fire_due(&self) -> zbus::Result<u32>;
    /// The hub's version.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// A message was stored.
    #[zbus(signal)]
    fn message_queued(&self, id: i64, from: &str, to: &str) -> zbus::Result<()>;
    /// A message was confirmed on its recipient's screen.
    #[zbus(signal)]
    fn message_delivered(&self, id: i64, to: &str) -> zbus::Result<()>;
    /// A message will not be delivered.
    #[zbus(signal)]
    fn message_failed(&self, id: i64, to: &str, reason: &str) -> zbus::Result<()>;
    /// An agent was spawned or retired.
    #[zbus(signal)]
    fn fleet_changed(&self, agent: &str, change: &str) -> zbus::Result<()>;
}
