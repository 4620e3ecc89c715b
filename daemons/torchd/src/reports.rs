//! What supervisors tell the hub of their own agents as it happens (a new
//! state, an alert), passed on as signals so `torch events` and the
//! dashboards need not poll. The hub knows which agent reports by the
//! caller's unit; what the report says is the agent's own word, as its
//! hooks are, so it is checked for form and rate, not for truth.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::HubError;
use crate::hub::Hub;

/// Reports taken per agent in a [`WINDOW`]; more are dropped, so a hostile
/// agent cannot flood the bus. A supervisor reports a change at most every
/// 100 ms.
const PER_WINDOW: u32 = 20;
const WINDOW: Duration = Duration::from_secs(1);

/// The longest detail or alert text passed on.
const MAX_TEXT: usize = 2048;

/// The states a supervisor reads (`torch_core::profile::Activity`), and
/// `down` as it stops.
const STATES: [&str; 7] = [
    "idle", "working", "asking", "trouble", "limited", "unknown", "down",
];

/// One report, checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    State { state: String, detail: String },
    Alert { text: String },
}

/// `Report(kind, value, detail)` as the hub takes it.
pub fn parse(kind: &str, value: &str, detail: &str) -> Result<Report, HubError> {
    let detail = clean(detail);
    match kind {
        "state" if STATES.contains(&value) => Ok(Report::State {
            state: value.to_string(),
            detail,
        }),
        "state" => Err(HubError::InvalidArgs(format!(
            "unknown state {value:?}; one of {}",
            STATES.join(", ")
        ))),
        "alert" if !detail.is_empty() => Ok(Report::Alert { text: detail }),
        "alert" => Err(HubError::InvalidArgs("an alert needs its text".into())),
        _ => Err(HubError::InvalidArgs(format!(
            "unknown report kind {kind:?}; state or alert"
        ))),
    }
}

/// `text` without control characters (a tab and newline become spaces),
/// cut to [`MAX_TEXT`] bytes at a character boundary.
fn clean(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c == '\t' || c == '\n' { ' ' } else { c };
        if c.is_control() {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

/// How many reports each agent made in its current window.
#[derive(Default)]
pub struct Reports {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Reports {
    /// Whether a report of `agent` now is within its rate.
    fn admit(&self, agent: &str, now: Instant) -> bool {
        let Ok(mut windows) = self.windows.lock() else {
            return false;
        };
        let w = windows.entry(agent.to_string()).or_insert((now, 0));
        if now.duration_since(w.0) >= WINDOW {
            *w = (now, 0);
        }
        w.1 += 1;
        w.1 <= PER_WINDOW
    }
}

/// Passes `report` of `agent` on as a signal, within its rate; dropped
/// reports are not an error to the reporter, whose next change goes out.
pub async fn take(hub: &Hub, agent: &str, report: Report) {
    if !hub.reports.admit(agent, Instant::now()) {
        tracing::debug!("agent {agent} reports faster than {PER_WINDOW} a second; dropped one");
        return;
    }
    match report {
        Report::State { state, detail } => {
            hub.events.agent_changed(agent, &state, &detail).await;
        }
        Report::Alert { text } => hub.events.alert(agent, &text).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_checked_for_form() {
        assert_eq!(
            parse("state", "asking", "permission\tto use\x1b[31m Bash").unwrap(),
            Report::State {
                state: "asking".into(),
                detail: "permission to use[31m Bash".into()
            }
        );
        assert!(parse("state", "dancing", "").is_err());
        assert!(parse("alert", "", "").is_err());
        assert!(parse("other", "", "x").is_err());
        let long = "é".repeat(MAX_TEXT);
        let Report::Alert { text } = parse("alert", "", &long).unwrap() else {
            panic!("not an alert");
        };
        assert!(text.len() <= MAX_TEXT && text.len() > MAX_TEXT - 2);
    }

    #[test]
    fn an_agent_reporting_too_fast_is_cut_off_for_the_rest_of_the_second() {
        let reports = Reports::default();
        let t0 = Instant::now();
        let taken = (0..30).filter(|_| reports.admit("a", t0)).count();
        assert_eq!(taken, PER_WINDOW as usize);
        assert!(reports.admit("b", t0), "another agent has its own rate");
        assert!(reports.admit("a", t0 + WINDOW));
    }
}
