//! Journal output: the supervisor's own lines and the agent's pane output.
//!
//! Both carry `TORCH_AGENT=` and `TORCH_ROLE=`, so `journalctl TORCH_AGENT=x`
//! finds everything about an agent; pane lines go out under the agent's own
//! name as syslog identifier with `TORCH_STREAM=pane`, supervisor lines as
//! `torch-agent` with `TORCH_STREAM=supervisor`.

use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::prelude::*;

/// The tracing target of pane output lines.
pub const PANE_TARGET: &str = "torch_pane";

/// Sets up logging to the journal, or to stderr where there is no journal.
pub fn init(agent: &str, role: &str) {
    let fields = |stream: &str| {
        vec![
            ("TORCH_AGENT".to_string(), agent.to_string()),
            ("TORCH_ROLE".to_string(), role.to_string()),
            ("TORCH_STREAM".to_string(), stream.to_string()),
        ]
    };
    let journald = tracing_journald::layer().and_then(|sup| Ok((sup, tracing_journald::layer()?)));
    match journald {
        Ok((sup, pane)) => {
            let sup = sup
                .with_field_prefix(None)
                .with_syslog_identifier("torch-agent".into())
                .with_custom_fields(fields("supervisor"))
                .with_filter(filter_fn(|m| m.target() != PANE_TARGET))
                .with_filter(LevelFilter::INFO);
            let pane = pane
                .with_field_prefix(None)
                .with_syslog_identifier(agent.to_string())
                .with_custom_fields(fields("pane"))
                .with_filter(filter_fn(|m| m.target() == PANE_TARGET));
            tracing_subscriber::registry().with(sup).with(pane).init();
        }
        Err(_) => {
            tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_filter(LevelFilter::INFO),
                )
                .init();
        }
    }
}

/// Logs the last words of a supervisor about to exit. Journald attributes a
/// native-protocol message to a unit by looking up the sender's PID when it
/// reads the message, and a process that has exited by then loses its
/// `_SYSTEMD_UNIT=` (the line vanishes from `journalctl -u`). The stderr
/// stream was attributed when it was opened, so final lines go there, with
/// the syslog priority prefix systemd understands.
pub fn final_lines(priority: u8, text: &str) {
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        for line in text.lines() {
            eprintln!("<{priority}>{line}");
        }
    } else if priority <= 3 {
        tracing::error!("{text}");
    } else {
        tracing::warn!("{text}");
    }
}
