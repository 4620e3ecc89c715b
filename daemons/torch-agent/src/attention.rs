//! Nobody waits forever: an agent that asks a question or is in trouble for
//! longer than `[attention]` in `torch.toml` allows gets a `TORCH_ALERT=1`
//! warning in the journal and its parent a message through the hub (sent as
//! the agent, so the hub's policy and audit apply), once per wait.

use std::time::{Duration, Instant};

use torch_core::config::Attention;
use torch_core::profile::Activity;

/// How long `torch send` may take to hand the alert to the hub.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Follows how long the agent has waited on a question or in trouble.
#[derive(Debug)]
pub struct Watch {
    limits: Attention,
    since: Option<(Activity, Instant)>,
    alerted: bool,
}

/// A wait that ran past its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    /// `asking` or `trouble`.
    pub activity: Activity,
    /// How long so far.
    pub waited: Duration,
}

impl Watch {
    /// A watch with `limits`.
    pub fn new(limits: Attention) -> Self {
        Self {
            limits,
            since: None,
            alerted: false,
        }
    }

    /// Records what the agent does at `now`; a wait that just ran past its
    /// limit, once per wait.
    pub fn observe(&mut self, activity: Activity, now: Instant) -> Option<Overdue> {
        let limit = match activity {
            Activity::Asking => self.limits.asking,
            Activity::Trouble => self.limits.trouble,
            _ => {
                self.since = None;
                self.alerted = false;
                return None;
            }
        };
        let since = match self.since {
            Some((a, t)) if a == activity => t,
            _ => {
                self.since = Some((activity, now));
                self.alerted = false;
                now
            }
        };
        let waited = now.saturating_duration_since(since);
        if self.alerted || waited < limit {
            return None;
        }
        self.alerted = true;
        Some(Overdue { activity, waited })
    }

    /// How long the current wait has lasted, if the agent waits.
    pub fn waiting(&self, now: Instant) -> Option<Duration> {
        self.since.map(|(_, t)| now.saturating_duration_since(t))
    }
}

/// The alert's text, for the journal and the parent.
pub fn alert_text(agent: &str, overdue: &Overdue, question: Option<&str>) -> String {
    let minutes = overdue.waited.as_secs().div_ceil(60);
    match overdue.activity {
        Activity::Asking => format!(
            "Torch alert: agent {agent} has waited {minutes} min for an answer{}. Answer with `torch answer {agent} yes` or `torch answer {agent} no`; see its screen with `torch capture {agent}`.",
            question.map(|q| format!(" ({q})")).unwrap_or_default()
        ),
        _ => format!(
            "Torch alert: agent {agent} has been in trouble for {minutes} min; see its screen with `torch capture {agent}` and its journal with `torch logs {agent}`."
        ),
    }
}

/// Tells the operator (journal) and the parent (a message) that `agent`
/// has waited too long.
pub async fn raise(agent: &str, parent: Option<&str>, text: String) {
    crate::report::raise(&text);
    let Some(parent) = parent else {
        return;
    };
    // From inside the agent's unit, so the hub takes it as the agent's.
    let send = tokio::process::Command::new("torch")
        .args(["send", parent, &text])
        .env("TORCH_AGENT", agent)
        .stdin(std::process::Stdio::null())
        .output();
    match tokio::time::timeout(SEND_TIMEOUT, send).await {
        Ok(Ok(out)) if out.status.success() => tracing::info!("told {parent} that {agent} waits"),
        Ok(Ok(out)) => tracing::warn!(
            "could not tell {parent} that {agent} waits: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(Err(e)) => tracing::warn!("could not run torch send to tell {parent}: {e}"),
        Err(_) => tracing::warn!("torch send to {parent} took over {SEND_TIMEOUT:?}; gave up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_per_wait_past_its_limit() {
        let limits = Attention {
            asking: Duration::from_secs(60),
            trouble: Duration::from_secs(120),
        };
        let mut w = Watch::new(limits);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(w.observe(Activity::Idle, t0), None);
        assert_eq!(w.observe(Activity::Asking, t0), None);
        assert_eq!(w.observe(Activity::Asking, t0 + s(59)), None);
        assert_eq!(
            w.observe(Activity::Asking, t0 + s(61)),
            Some(Overdue {
                activity: Activity::Asking,
                waited: s(61)
            })
        );
        assert_eq!(w.observe(Activity::Asking, t0 + s(300)), None, "once");
        assert_eq!(w.waiting(t0 + s(300)), Some(s(300)));
        // Trouble is a new wait with its own limit.
        assert_eq!(w.observe(Activity::Trouble, t0 + s(301)), None);
        assert_eq!(w.observe(Activity::Trouble, t0 + s(400)), None);
        assert!(w.observe(Activity::Trouble, t0 + s(421)).is_some());
        assert_eq!(w.observe(Activity::Working, t0 + s(422)), None);
        assert_eq!(w.waiting(t0 + s(422)), None);
        let text = alert_text(
            "dev1",
            &Overdue {
                activity: Activity::Asking,
                waited: s(61),
            },
            Some("permission to use Bash: rm x"),
        );
        assert!(
            text.contains("2 min") && text.contains("torch answer dev1 yes"),
            "{text}"
        );
    }
}
