//! The hub's shared state: what every operation works on.

use std::path::PathBuf;
use std::sync::Arc;

use torch_core::config::Config;
use torch_store::Store;
use torch_systemd::Systemd;

use crate::courier::Courier;
use crate::error::HubError;
use crate::events::Events;
use crate::fleet::FleetCache;

/// Everything the hub's operations work on.
pub struct Hub {
    /// The message store.
    pub store: Arc<Store>,
    /// Delivery tasks.
    pub courier: Arc<Courier>,
    /// Where the hub tells clients what changed.
    pub events: Events,
    /// `torch.toml`.
    pub config: Config,
    /// systemd over D-Bus.
    pub systemd: Systemd,
    /// The hub's state directory.
    pub state_dir: PathBuf,
    /// The agent definitions (shared with the courier).
    pub fleet: Arc<FleetCache>,
    /// Wakes the router: the ledger changed.
    pub ledger_changed: tokio::sync::Notify,
    /// What the pools are doing.
    pub pools: crate::pools::Pools,
    /// How fast each agent's supervisor reports.
    pub reports: crate::reports::Reports,
    /// This hub's node of a cluster, when `[cluster]` says it is one.
    pub cluster: Option<crate::cluster::Node>,
    /// Wakes the loop that hands messages to other nodes: one was stored.
    pub forward_now: tokio::sync::Notify,
    /// Spawns on other nodes waiting for their answers.
    pub placement: crate::placement::Waiting,
}

/// Now, in Unix milliseconds (0 before 1970, which no clock shows).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs `f` (file or store work) off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HubError> + Send + 'static,
) -> Result<T, HubError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HubError::Internal(format!("internal task failed: {e}")))?
}
