//! The store for async callers: one way in from the hub's tasks.
//!
//! Every store call blocks (SQLite, and writes wait for their group's
//! fsync), so an async task runs it on tokio's blocking pool, never on
//! its own thread.

use std::sync::Arc;

use crate::{Store, StoreError};

/// Runs `f` on the store from an async task, on the blocking pool.
pub async fn call<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}
