//! What can go wrong in a hub operation, by whose move it is next: the
//! caller's (fix the arguments, act as yourself) or the hub's and the
//! admin's (a refusal by policy, systemd or the store failing). The D-Bus
//! layer maps each kind to the error `docs/dbus.md` documents.
//!
//! The messages are complete sentences for the caller; the kind never
//! shows in them, so a message reads the same whatever the kind.

/// A failed hub operation.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A bad name, text, key or schedule spec: the caller fixes its call.
    #[error("{0}")]
    InvalidArgs(String),
    /// The caller is not who it claims to be, or may not act on the target.
    #[error("{0}")]
    AccessDenied(String),
    /// Refused by the fleet's policy or quotas, or about an agent or a
    /// schedule that does not exist.
    #[error("{0}")]
    Refused(String),
    /// systemd did not start or stop what the operation needed.
    #[error("{0}")]
    Systemd(String),
    /// The message store failed.
    #[error("{0}")]
    Store(String),
    /// The hub itself failed: a task died or an answer could not be made.
    #[error("{0}")]
    Internal(String),
}

impl From<torch_store::StoreError> for HubError {
    fn from(e: torch_store::StoreError) -> Self {
        HubError::Store(e.to_string())
    }
}

/// Redis (a cluster's) did not answer or refused; the hub goes on alone
/// and tries again.
impl From<torch_cluster::ClusterError> for HubError {
    fn from(e: torch_cluster::ClusterError) -> Self {
        HubError::Internal(e.to_string())
    }
}
