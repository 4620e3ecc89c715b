//! Delivery: one task per recipient takes its queued messages from the
//! store, oldest first, and hands them to the agent's supervisor with the
//! message id, until each is confirmed.
//!
//! At-least-once from here (a message is marked delivered only after the
//! supervisor confirmed it), exactly-once on the screen (the supervisor
//! refuses an id it has typed before). A stopped or restarting agent is
//! waited for; its messages stay queued, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use torch_core::protocol::{ClientError, Request, Response};
use torch_core::{paths, AgentName};
use torch_store::{Message, State, Store};

use crate::events::Events;

/// How long one delivery may take (prompt wait, paste and submit retries).
const DELIVER_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a courier looks whether its stopped agent is back: a restart
/// takes about a second (RestartSec=1s), and a queued message should not
/// wait much longer than that.
const AGENT_DOWN_POLL: Duration = Duration::from_millis(200);
/// Failed deliveries (agent up but refusing) before a message is failed.
const MAX_ATTEMPTS: i64 = 20;

/// [`protocol::call`] without a blocking thread: a hundred couriers waiting
/// on their supervisors would otherwise hold a hundred threads.
async fn ask(
    socket: &std::path::Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).await?;
        Ok(serde_json::from_str(&reply)?)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            )))
        })
}

/// Waits while message `id` is held for a busy agent, logging it once.
async fn hold(holding: &mut Option<i64>, id: i64, agent: &str, activity: &str, wake: &Notify) {
    if *holding != Some(id) {
        tracing::info!("holding message #{id} for {agent}: its screen shows it {activity}");
        *holding = Some(id);
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
}

/// Starts and wakes the per-recipient delivery tasks.
pub struct Courier {
    store: Arc<Store>,
    events: Events,
    hold_until_idle: bool,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

/// The text typed into the recipient: who it is from, then the message.
pub fn envelope(msg: &Message) -> String {
    match msg.kind.as_str() {
        "brief" => format!("[torch brief from {}] {}", msg.sender, msg.body),
        // The schedule wrote its own header (who set it and when).
        "checkin" => msg.body.clone(),
        _ => format!(
            "[torch message #{} from {}] {}",
            msg.id, msg.sender, msg.body
        ),
    }
}

impl Courier {
    /// A courier over `store`.
    pub fn new(store: Arc<Store>, events: Events, hold_until_idle: bool) -> Arc<Self> {
        Arc::new(Self {
            store,
            events,
            hold_until_idle,
            wakers: Mutex::new(HashMap::new()),
        })
    }

    /// Wakes (starting if needed) the delivery task of `agent`.
    pub fn kick(self: &Arc<Self>, agent: &str) {
        let Ok(mut wakers) = self.wakers.lock() else {
            return;
        };
        let wake = match wakers.get(agent) {
            Some(w) => Arc::clone(w),
            None => {
                let w = Arc::new(Notify::new());
                wakers.insert(agent.to_string(), Arc::clone(&w));
                tokio::spawn(Arc::clone(self).run(agent.to_string(), Arc::clone(&w)));
                w
            }
        };
        wake.notify_one();
    }

    async fn store_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, torch_store::StoreError> + Send + 'static,
    ) -> Option<T> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::error!("{e}");
                None
            }
            Err(e) => {
                tracing::error!("store task failed: {e}");
                None
            }
        }
    }

    async fn run(self: Arc<Self>, agent: String, wake: Arc<Notify>) {
        let Ok(name) = AgentName::parse(&agent) else {
            tracing::error!("not delivering to invalid agent name {agent:?}");
            return;
        };
        let socket = paths::control_socket(&name);
        let mut backoff = Duration::from_millis(200);
        let mut holding: Option<i64> = None;
        // A supervisor older than DeliverIfIdle answers it with an error;
        // for it the idle check is a Status call first, until it restarts.
        let mut legacy = false;
        loop {
            let a = agent.clone();
            let next = self.store_call(move |s| s.next_queued(&a)).await;
            let msg = match next {
                Some(Some(m)) => m,
                Some(None) => {
                    wake.notified().await;
                    continue;
                }
                None => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let (text, key) = (envelope(&msg), Some(format!("torch-msg-{}", msg.id)));
            let id = msg.id;
            let req = if self.hold_until_idle && !legacy {
                Request::DeliverIfIdle { text, id: key }
            } else {
                if self.hold_until_idle {
                    if let Ok(Response::Status { activity, .. }) =
                        ask(&socket, &Request::Status, Duration::from_secs(5)).await
                    {
                        if matches!(activity.as_str(), "working" | "asking" | "trouble") {
                            hold(&mut holding, id, &agent, &activity, &wake).await;
                            continue;
                        }
                    }
                }
                Request::Deliver { text, id: key }
            };
            let outcome = ask(&socket, &req, DELIVER_TIMEOUT).await;
            match outcome {
                Ok(Response::Error { message })
                    if !legacy && message.contains("unknown variant") =>
                {
                    tracing::info!("the supervisor of {agent} predates DeliverIfIdle; asking Status before each message until it restarts");
                    legacy = true;
                }
                Ok(Response::Busy { activity }) => {
                    hold(&mut holding, id, &agent, &activity, &wake).await;
                }
                Ok(Response::Delivered {
                    duplicate, millis, ..
                }) => {
                    self.store_call(move |s| s.finish(id, State::Delivered, None))
                        .await;
                    if duplicate {
                        tracing::info!(
                            "message #{id} {} -> {agent} was typed before a crash; not typed again",
                            msg.sender
                        );
                    } else {
                        // The supervisor logs each delivery in the agent's
                        // unit; the state is in the store (`torch messages`).
                        tracing::debug!(
                            "message #{id} {} -> {agent} delivered in {millis} ms",
                            msg.sender
                        );
                    }
                    self.events.delivered(id, &agent).await;
                    backoff = Duration::from_millis(200);
                }
                Err(ClientError::Connect { .. }) => {
                    // The agent is stopped or restarting (perhaps with a
                    // newer supervisor): wait, without counting an attempt,
                    // until it is back or we are woken.
                    legacy = false;
                    let _ = tokio::time::timeout(AGENT_DOWN_POLL, wake.notified()).await;
                }
                other => {
                    let error = match other {
                        Ok(Response::Error { message }) => message,
                        Ok(r) => format!("unexpected answer {r:?}"),
                        Err(e) => e.to_string(),
                    };
                    let attempts = msg.attempts + 1;
                    let err = error.clone();
                    self.store_call(move |s| s.note_attempt(id, Some(&err)))
                        .await;
                    if attempts >= MAX_ATTEMPTS {
                        let reason = format!("gave up after {attempts} attempts: {error}");
                        let r = reason.clone();
                        self.store_call(move |s| s.finish(id, State::Failed, Some(&r)))
                            .await;
                        tracing::warn!("message #{id} to {agent} failed: {reason}");
                        self.events.failed(id, &agent, &reason).await;
                    } else {
                        tracing::info!("message #{id} to {agent}: attempt {attempts} failed ({error}); retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
    }
}
