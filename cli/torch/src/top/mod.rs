//! `torch top`: a full-screen dashboard of the fleet in the terminal. The
//! tree with each agent's state in colour, its queue, last output and
//! tasks; the selected agent's screen, inbox and journal; keys to send a
//! message, answer its question, restart or attach it.
//!
//! It refreshes from the hub's signals, not by polling: a new state is
//! drawn as it is signalled, and a message, task or spawn makes it read
//! the fleet again. Only the selected agent's screen, while shown, is read
//! again each second.

mod keys;
mod model;
mod view;

use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use torch_api::{FleetStatus, ManagerProxy, Message};

use crate::hub;
use model::Model;

/// What the hub's signals ask of the view.
enum Signal {
    /// An agent's new state, drawn at once.
    State {
        agent: String,
        state: String,
        why: String,
    },
    /// Something the status shows changed: read it again.
    Reread,
}

type Signals = Pin<Box<dyn Stream<Item = Signal> + Send>>;

/// A reread waits this long for more signals, so a burst costs one.
const REREAD_AFTER: Duration = Duration::from_millis(200);

/// Runs the dashboard until `q`.
pub async fn run() -> Result<()> {
    let h = hub::connect().await?;
    let mut signals = signals(&h).await?;
    let mut model = Model::default();
    reread(&h, &mut model).await?;
    let (tx, mut keys) = mpsc::unbounded_channel();
    let reader = keys::Reader::start(tx);
    let mut term = ratatui::try_init().context("cannot take over the terminal")?;
    let result = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut reread_at: Option<tokio::time::Instant> = None;
        loop {
            term.draw(|f| view::draw(f, &model))?;
            let due = reread_at.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                Some(key) = keys.recv() => {
                    match keys::act(&h, &mut model, key).await {
                        keys::Next::Quit => return Ok(()),
                        keys::Next::Attach(name) => {
                            reader.pause();
                            ratatui::restore();
                            let _ = std::process::Command::new("torch").args(["attach", &name]).status();
                            term = ratatui::try_init()?;
                            term.clear()?;
                            reader.resume();
                        }
                        keys::Next::Stay => {}
                    }
                }
                Some(s) = signals.next() => match s {
                    Signal::State { agent, state, why } => model.set_state(&agent, &state, &why),
                    Signal::Reread => {
                        reread_at.get_or_insert_with(|| tokio::time::Instant::now() + REREAD_AFTER);
                    }
                },
                _ = tokio::time::sleep_until(due), if reread_at.is_some() => {
                    reread_at = None;
                    reread(&h, &mut model).await?;
                }
                _ = tick.tick() => {
                    if model.detail {
                        load_detail(&h, &mut model).await;
                    }
                }
            }
        }
    }
    .await;
    ratatui::restore();
    result
}

/// Reads the fleet again.
async fn reread(h: &ManagerProxy<'_>, model: &mut Model) -> Result<()> {
    let status = h.status().await.map_err(hub::explain)?;
    let fleet: FleetStatus =
        serde_json::from_str(&status).context("the hub's status is not as expected")?;
    model.set_fleet(&fleet);
    Ok(())
}

/// Reads the selected agent's screen, last messages and journal.
async fn load_detail(h: &ManagerProxy<'_>, model: &mut Model) {
    let Some(name) = model.selected_name().map(str::to_string) else {
        return;
    };
    model.screen = match h.capture(&name).await {
        Ok(s) => s,
        Err(e) => format!("(no screen: {})", hub::explain(e)),
    };
    model.inbox = match h.inbox(&name, 0, 6).await {
        Ok(json) => serde_json::from_str::<Vec<Message>>(&json)
            .unwrap_or_default()
            .iter()
            .map(|m| {
                let first = m.body.lines().next().unwrap_or_default();
                let state = match m.state.as_str() {
                    "delivered" => String::new(),
                    other => format!(" ({other})"),
                };
                format!("#{} {}: {first}{state}", m.id, m.sender)
            })
            .collect(),
        Err(e) => vec![hub::explain(e).to_string()],
    };
    model.journal = journal(&name).await;
}

/// The agent unit's last journal lines (empty when the journal is not
/// readable: an operator outside the systemd-journal group).
async fn journal(name: &str) -> Vec<String> {
    let unit = format!("torch-agent@{name}.service");
    let run = tokio::process::Command::new("journalctl")
        .args(["-u", &unit, "-n", "8", "-o", "cat", "--no-pager", "-q"])
        .stdin(std::process::Stdio::null())
        .output();
    match tokio::time::timeout(Duration::from_secs(2), run).await {
        Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The hub's signals the view follows.
async fn signals(h: &ManagerProxy<'static>) -> Result<Signals> {
    let states = h.receive_agent_changed().await.map_err(hub::explain)?;
    let states = states.filter_map(|s| async move {
        let a = s.args().ok()?;
        Some(Signal::State {
            agent: a.agent.to_string(),
            state: a.state.to_string(),
            why: a.detail.to_string(),
        })
    });
    let mut all: Vec<Signals> = vec![Box::pin(states)];
    macro_rules! reread_on {
        ($($receive:ident),*) => {$(
            let s = h.$receive().await.map_err(hub::explain)?;
            all.push(Box::pin(s.map(|_| Signal::Reread)));
        )*};
    }
    reread_on!(
        receive_message_queued,
        receive_message_delivered,
        receive_message_failed,
        receive_fleet_changed,
        receive_task_changed
    );
    Ok(Box::pin(futures_util::stream::select_all(all)))
}
