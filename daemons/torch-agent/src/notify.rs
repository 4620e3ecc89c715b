//! What the supervisor tells systemd (`sd_notify`): `READY=1` once, when the
//! agent first looks healthy; `WATCHDOG=1` on every healthy check and never
//! otherwise; `STATUS=` only when its text changed, since each change costs
//! systemd a PropertiesChanged signal to every subscriber.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    // Outside systemd there is nobody to tell; that is not an error.
    let _ = sd_notify::notify(false, states);
}

/// Sets `STATUS=` alone: why the supervisor is about to exit, or failed.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// Says the supervisor is stopping the agent on request.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The watchdog interval systemd set (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// The health reports of one run: remembers whether READY was sent and the
/// last `STATUS=` text.
#[derive(Default)]
pub struct Reporter {
    ready: bool,
    last_status: String,
}

impl Reporter {
    /// A healthy check: READY the first time, WATCHDOG always, `status` when
    /// it changed. Returns whether this was the first (READY) report.
    pub fn healthy(&mut self, status: String) -> bool {
        let first = !self.ready;
        if first {
            send(&[
                NotifyState::Ready,
                NotifyState::Watchdog,
                NotifyState::Status(&status),
            ]);
            self.ready = true;
        } else if status == self.last_status {
            send(&[NotifyState::Watchdog]);
        } else {
            send(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
        }
        self.last_status = status;
        first
    }

    /// An unhealthy check: no WATCHDOG, and `STATUS=` says why until a
    /// healthy check replaces it.
    pub fn unhealthy(&mut self, why: &str) {
        send(&[NotifyState::Status(&format!("unhealthy: {why}"))]);
        self.last_status.clear();
    }
}
