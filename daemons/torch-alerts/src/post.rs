//! Posting one alert to the webhook: a JSON body, a time limit per try, a
//! few tries with waits that double between them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use torch_core::config::Alerts;

/// Alerts that may wait to be posted; more are dropped (the journal has
/// them), so a webhook that is down never makes this process grow.
pub const QUEUE: usize = 1000;

/// The longest wait between two tries.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One alert as the hub signalled it.
#[derive(Debug, Clone)]
pub struct Alert {
    agent: String,
    text: String,
    at_ms: u64,
}

impl Alert {
    /// The alert about `agent`, heard now.
    pub fn now(agent: &str, text: &str) -> Self {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Alert {
            agent: agent.to_string(),
            text: text.to_string(),
            at_ms,
        }
    }
}

/// What the webhook receives: `text` as chat services' incoming webhooks
/// (Slack, Mattermost, Rocket.Chat) read it, and the parts apart.
pub fn body(alert: &Alert, host: &str) -> Value {
    json!({
        "text": format!("Torch alert on {host}: agent {}: {}", alert.agent, alert.text),
        "agent": alert.agent,
        "alert": alert.text,
        "host": host,
        "at_ms": alert.at_ms,
    })
}

/// The wait after failed try number `attempt` (from 1): 1 s, 2 s, 4 s...
/// up to a minute.
pub fn wait_after(attempt: u32) -> Duration {
    let secs = 1u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_WAIT)
}

/// The webhook's URL up to its host, for logs: its path or query may hold
/// a secret.
pub fn shown(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    format!("{scheme}://{host}/...")
}

/// Posts alerts to one webhook.
pub struct Poster {
    url: String,
    http: ureq::Agent,
    tries: u32,
    host: String,
}

impl Poster {
    /// A poster to `url` with `settings`' time limit and tries.
    pub fn new(url: &str, settings: &Alerts) -> Self {
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(true)
            .build()
            .into();
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "this machine".to_string());
        Poster {
            url: url.to_string(),
            http,
            tries: settings.tries.max(1),
            host,
        }
    }

    /// The webhook, as logs show it.
    pub fn shown(&self) -> String {
        shown(&self.url)
    }

    /// Posts each alert `rx` gives, in order, until it closes.
    pub fn run(self, mut rx: mpsc::Receiver<Alert>) {
        while let Some(alert) = rx.blocking_recv() {
            self.post(&alert);
        }
    }

    fn post(&self, alert: &Alert) {
        let payload = body(alert, &self.host).to_string();
        for attempt in 1..=self.tries {
            let sent = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .send(payload.as_str());
            match sent {
                Ok(_) => return,
                Err(e) if attempt < self.tries => {
                    let wait = wait_after(attempt);
                    eprintln!(
                        "torch-alerts: {} did not take an alert about {} (try {attempt} of {}: {e}); again in {} s",
                        self.shown(),
                        alert.agent,
                        self.tries,
                        wait.as_secs()
                    );
                    std::thread::sleep(wait);
                }
                Err(e) => eprintln!(
                    "torch-alerts: gave up an alert about {} after {} tries: {e} (journalctl TORCH_ALERT=1 has it)",
                    alert.agent, self.tries
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_says_who_where_and_what() {
        let alert = Alert {
            agent: "dev1".into(),
            text: "task #3 stalled".into(),
            at_ms: 7,
        };
        let b = body(&alert, "box");
        assert_eq!(b["text"], "Torch alert on box: agent dev1: task #3 stalled");
        assert_eq!(
            (b["agent"].as_str(), b["at_ms"].as_u64()),
            (Some("dev1"), Some(7))
        );
    }

    #[test]
    fn waits_double_up_to_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|a| wait_after(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(wait_after(200).as_secs(), 60);
    }

    #[test]
    fn logs_show_no_path_query_or_password() {
        assert_eq!(
            shown("https://user:secret@hooks.example/services/T0/B0/xyz?token=1"),
            "https://hooks.example/..."
        );
        assert_eq!(shown("http://127.0.0.1:9/a"), "http://127.0.0.1:9/...");
    }
}
