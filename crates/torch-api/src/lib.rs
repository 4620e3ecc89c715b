//! The hub's D-Bus API, `org.torch.Manager1` at `/org/torch/Torch1` on the
//! system bus as `org.torch.Torch1`, documented in `docs/dbus.md`.
//!
//! One crate for both ends, written once in `manager.rs`: `torchd`
//! implements [`ManagerService`] and serves it as [`ManagerServer`],
//! answering with the types below; `torch` and the tests call it through
//! [`ManagerProxy`] and read the same types back. Structured answers travel as JSON strings,
//! so a field can be added without changing a method's signature; a field
//! an older hub does not send takes its default.

mod manager;
mod types;

pub use manager::{
    ManagerProxy, ManagerServer, ManagerService, MessageDeliveredStream, MessageFailedStream,
};
pub use types::{
    AgentEntry, AgentStatus, Directory, FleetStatus, Message, PoolStatus, Schedule, SpawnSpec,
    Task, TaskChange, TaskSpec, Tokens,
};

/// The hub's well-known name on the system bus.
pub const BUS_NAME: &str = "org.torch.Torch1";
/// The object that carries the manager interface.
pub const OBJECT_PATH: &str = "/org/torch/Torch1";
/// The manager interface; a later incompatible API is `Manager2` beside it.
pub const INTERFACE: &str = "org.torch.Manager1";
/// A proxy of the hub on the system bus, for a daemon that calls methods
/// and hears signals: it keeps no copy of the hub's properties (which
/// would subscribe to their changes and read them all first).
pub async fn connect() -> zbus::Result<ManagerProxy<'static>> {
    let conn = zbus::Connection::system().await?;
    ManagerProxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

/// The most messages one `Messages` or `Inbox` answer holds.
pub const PAGE_MAX: u32 = 1000;
