//! `torchd`, the Torch hub (`torch.service`).
//!
//! A skeleton for now: it tells systemd it is ready, keeps the watchdog fed
//! and stops cleanly. The hub issue gives it the D-Bus API, the registry, the
//! message store and schedules. Agents do not depend on it: they are units of
//! their own and keep running while the hub is down.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let mut usec = 0;
    let period = if sd_notify::watchdog_enabled(false, &mut usec) {
        Duration::from_micros(usec) / 2
    } else {
        Duration::from_secs(30)
    };
    let mut term = signal(SignalKind::terminate())?;
    let _ = sd_notify::notify(
        false,
        &[
            NotifyState::Ready,
            NotifyState::Status("hub skeleton: no API yet"),
        ],
    );
    tracing::info!("torchd started (skeleton)");
    let mut ticks = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = ticks.tick() => { let _ = sd_notify::notify(false, &[NotifyState::Watchdog]); }
        }
    }
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    tracing::info!("torchd stopped");
    Ok(())
}
