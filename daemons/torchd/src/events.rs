//! What happens to messages and agents, told to whoever shows it to
//! clients (the D-Bus layer, as signals), so clients need not poll. The
//! hub's modules emit events here without knowing how they go out.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

/// Something clients may want to see as it happens.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A message was stored.
    Queued { id: i64, from: &'a str, to: &'a str },
    /// A message was confirmed on its recipient's screen.
    Delivered { id: i64, to: &'a str },
    /// A message will not be delivered.
    Failed {
        id: i64,
        to: &'a str,
        reason: &'a str,
    },
    /// An agent was spawned or retired.
    FleetChanged { agent: &'a str, change: &'a str },
    /// A task entered a state.
    TaskChanged {
        id: i64,
        state: &'a str,
        actor: &'a str,
    },
    /// An agent's supervisor reads it in a new state.
    AgentChanged {
        agent: &'a str,
        state: &'a str,
        detail: &'a str,
    },
    /// Something a person should look at (`TORCH_ALERT=1` in the journal).
    Alert { agent: &'a str, text: &'a str },
    /// A check-in fired: its message is stored.
    CheckinFired {
        id: i64,
        agent: &'a str,
        message: i64,
    },
    /// A pool's size, target or reason changed.
    PoolChanged {
        pool: &'a str,
        size: u32,
        target: u32,
        why: &'a str,
    },
}

/// The future of one [`Sink::emit`].
pub type Emitting<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where events go out. Best effort: an event that cannot go out is
/// dropped, since a client can always read the state itself.
pub trait Sink: Send + Sync {
    /// Sends `event` to the clients listening.
    fn emit<'a>(&'a self, event: Event<'a>) -> Emitting<'a>;
}

/// Emits the hub's events once their sink exists (events before it, while
/// the hub starts, have no listener anyway), and carries the news that the
/// store holds something new to tell (see `signals`).
#[derive(Clone, Default)]
pub struct Events {
    sink: Arc<OnceLock<Box<dyn Sink>>>,
    news: Arc<tokio::sync::Notify>,
    /// A message was delivered or failed (another node may wait to hear).
    pub settled: Arc<tokio::sync::Notify>,
    /// Each delivery's latency, for the metrics.
    pub latency: crate::metrics::Latency,
}

impl Events {
    /// Sets where events go.
    pub fn attach(&self, sink: Box<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    /// The store holds something new for clients: a message, a change of
    /// a task.
    pub fn news(&self) {
        self.news.notify_one();
    }

    /// Returns once there is news (or was, since the last call).
    pub async fn news_arrived(&self) {
        self.news.notified().await;
    }

    async fn emit(&self, event: Event<'_>) {
        if let Some(sink) = self.sink.get() {
            sink.emit(event).await;
        }
    }

    /// A message was stored.
    pub async fn queued(&self, id: i64, from: &str, to: &str) {
        self.emit(Event::Queued { id, from, to }).await;
    }

    /// A message stored at `queued_ms` (Unix ms) was confirmed on the
    /// recipient's screen.
    pub async fn delivered(&self, id: i64, to: &str, queued_ms: i64) {
        self.settled.notify_one();
        self.latency.observe(to, queued_ms);
        self.emit(Event::Delivered { id, to }).await;
    }

    /// A message will not be delivered.
    pub async fn failed(&self, id: i64, to: &str, reason: &str) {
        self.settled.notify_one();
        self.emit(Event::Failed { id, to, reason }).await;
    }

    /// The fleet changed (spawn, retire).
    pub async fn fleet_changed(&self, agent: &str, change: &str) {
        self.emit(Event::FleetChanged { agent, change }).await;
    }

    /// A task entered `state`.
    pub async fn task_changed(&self, id: i64, state: &str, actor: &str) {
        self.emit(Event::TaskChanged { id, state, actor }).await;
    }

    /// `agent`'s supervisor reads it `state` (`detail`: what decided, or
    /// what it asks).
    pub async fn agent_changed(&self, agent: &str, state: &str, detail: &str) {
        let event = Event::AgentChanged {
            agent,
            state,
            detail,
        };
        self.emit(event).await;
    }

    /// An alert about `agent`.
    pub async fn alert(&self, agent: &str, text: &str) {
        self.emit(Event::Alert { agent, text }).await;
    }

    /// An alert about `agent`, from code that cannot wait for it to go out.
    pub fn alert_soon(&self, agent: String, text: String) {
        let events = self.clone();
        tokio::spawn(async move { events.alert(&agent, &text).await });
    }

    /// Pool `pool` has `size` members and is going to `target`, for `why`.
    pub async fn pool_changed(&self, pool: &str, size: u32, target: u32, why: &str) {
        let event = Event::PoolChanged {
            pool,
            size,
            target,
            why,
        };
        self.emit(event).await;
    }

    /// Check-in `id` of `agent` fired as message `message`.
    pub async fn checkin_fired(&self, id: i64, agent: &str, message: i64) {
        self.emit(Event::CheckinFired { id, agent, message }).await;
    }
}
