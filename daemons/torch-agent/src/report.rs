//! Tells the hub each change of the agent's state and each alert as they
//! happen, over the system bus (its `Report` call, which the hub takes from
//! this unit for this agent only), so `torch events` and the dashboards
//! see them without asking every supervisor in turn.
//!
//! Best effort: the journal keeps every alert whatever becomes of its
//! report, and a state the hub did not take (it was restarting) is offered
//! again, after 1, 2, 4... s up to 30 s, until it does.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use torch_api::ManagerProxy;
use torch_core::profile::Activity;

use crate::state::Shared;

/// A screen-read agent's state is looked at again this long after new
/// output, at most: often enough to show a change within a tenth of a
/// second, rarely enough that a busy screen is not read at each byte.
const AFTER_OUTPUT: Duration = Duration::from_millis(100);

/// Looked at again at least this often, in case a change came by no
/// signal. Rarely: two hundred idle supervisors waking each second cost the
/// fleet two percent of a core.
const TICK: Duration = Duration::from_secs(30);

/// A report the hub did not take is offered again after this, then after
/// twice as long each time, up to [`TICK`]: a fleet whose hub is down does
/// not call it two hundred times a second.
const RETRY: Duration = Duration::from_secs(1);

static ALERTS: OnceLock<mpsc::UnboundedSender<String>> = OnceLock::new();

/// Raises an alert: a `TORCH_ALERT=1` line in the journal, and the same
/// text to the hub, which signals it (`torch events`, webhooks).
pub fn raise(text: &str) {
    tracing::warn!(TORCH_ALERT = 1, "{text}");
    if let Some(tx) = ALERTS.get() {
        let _ = tx.send(text.to_string());
    }
}

/// Reports the agent's state at each change, and each alert, until the
/// supervisor stops.
pub async fn run(shared: Arc<Shared>) {
    let (tx, mut alerts) = mpsc::unbounded_channel();
    let _ = ALERTS.set(tx);
    let mut hub = HubLink::default();
    let mut last: Option<(Activity, String)> = None;
    let mut output = shared.output_reads();
    // The first state goes out within a second of the start.
    let mut retry = Some(RETRY);
    loop {
        // A CLI whose hooks are heard says when its state changes; an agent
        // read on its screen is looked at after its output.
        let by_screen = !shared.profile.has_hooks() || !shared.hooks.heard_any();
        let wait = next_look(&shared, retry);
        tokio::select! {
            _ = shared.hooks.next_heard() => {}
            changed = output.changed(), if by_screen => {
                if changed.is_err() {
                    tokio::time::sleep(TICK).await;
                }
                tokio::time::sleep(AFTER_OUTPUT).await;
                output.borrow_and_update();
            }
            Some(text) = alerts.recv() => {
                hub.report("alert", "", &text).await;
                continue;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let activity = shared.activity().await;
        let now = (activity, shared.hooks.question().unwrap_or_default());
        if last.as_ref() == Some(&now) {
            continue;
        }
        let detail = match now.1.as_str() {
            "" => shared.hooks.decided_by(),
            question => question.to_string(),
        };
        if hub.report("state", activity.as_str(), &detail).await {
            last = Some(now);
            retry = None;
        } else {
            retry = Some(retry.map_or(RETRY, |r| (r * 2).min(TICK)));
        }
    }
}

/// How long to wait for a signal before looking anyway: `retry` after a
/// report the hub did not take, until a limit runs out, else [`TICK`].
fn next_look(shared: &Shared, retry: Option<Duration>) -> Duration {
    if let Some(r) = retry {
        return r;
    }
    let until_limit = shared
        .hooks
        .limited_until()
        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        .map(|d| d + Duration::from_millis(50));
    until_limit.map_or(TICK, |d| d.min(TICK))
}

/// The longest the last report may hold up the supervisor's exit.
const LAST_REPORT: Duration = Duration::from_millis(500);

/// Tells the hub the agent is going down (its unit stops), so those who
/// watch see it at once; a crash says nothing, and the agent shows down in
/// `torch status` when its supervisor no longer answers.
pub async fn going_down(why: &str) {
    let mut hub = HubLink::default();
    let _ = tokio::time::timeout(LAST_REPORT, hub.report("state", "down", why)).await;
}

/// The bus connection to the hub, made when first needed and again after
/// it failed.
#[derive(Default)]
struct HubLink {
    proxy: Option<ManagerProxy<'static>>,
}

impl HubLink {
    /// Whether the hub took the report.
    async fn report(&mut self, kind: &str, value: &str, detail: &str) -> bool {
        if self.proxy.is_none() {
            self.proxy = match torch_api::connect().await {
                Ok(proxy) => Some(proxy),
                Err(e) => {
                    tracing::debug!("no system bus to report to the hub: {e}");
                    None
                }
            };
        }
        let Some(proxy) = &self.proxy else {
            return false;
        };
        match proxy.report(kind, value, detail).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("the hub did not take a report ({kind} {value}): {e}");
                if !matches!(e, zbus::Error::MethodError(..)) {
                    self.proxy = None;
                }
                false
            }
        }
    }
}
