//! Fault injection for the crash tests: with `TORCH_FAULT=kill-after-store:TEXT`
//! in its environment (a drop-in of the tests' own), the hub SIGKILLs
//! itself right after it stored a message whose text contains TEXT and
//! before it answers: the moment a crash loses the reply, not the message.
//! Unset, as in every shipped unit, it costs one environment lookup at
//! start.

use std::sync::OnceLock;

fn marker() -> Option<&'static str> {
    static MARKER: OnceLock<Option<String>> = OnceLock::new();
    MARKER
        .get_or_init(|| {
            std::env::var("TORCH_FAULT")
                .ok()?
                .strip_prefix("kill-after-store:")
                .filter(|m| !m.is_empty())
                .map(str::to_string)
        })
        .as_deref()
}

/// Called once a new message is on disk, before the reply.
pub fn after_store(text: &str) {
    if marker().is_some_and(|m| text.contains(m)) {
        tracing::warn!("TORCH_FAULT: killing the hub after storing a message");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
