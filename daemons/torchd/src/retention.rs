//! Deletes settled message history past `[retention] messages`, at start
//! and every hour, a batch per write so deliveries never wait long.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use torch_store::Store;

/// How often history is pruned.
const PERIOD: Duration = Duration::from_secs(3600);
/// Rows deleted per write.
const BATCH: u32 = 5000;

/// Prunes now and every [`PERIOD`], for as long as the hub runs.
pub async fn run(store: Arc<Store>, keep: Duration) {
    let shown = torch_core::schedule::format_duration(keep);
    let mut ticks = tokio::time::interval(PERIOD);
    loop {
        ticks.tick().await;
        match torch_store::call(&store, move |s| prune(s, keep)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "retention: deleted {n} delivered or failed messages older than {shown}"
            ),
            Err(e) => tracing::warn!("retention: cannot prune history: {e}"),
        }
    }
}

fn prune(store: &Store, keep: Duration) -> Result<usize, torch_store::StoreError> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let cutoff = now_ms.saturating_sub(keep.as_millis() as i64);
    let mut total = 0;
    loop {
        let n = store.prune_settled(cutoff, BATCH)?;
        total += n;
        if n < BATCH as usize {
            return Ok(total);
        }
    }
}
