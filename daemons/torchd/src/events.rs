//! D-Bus signals the hub emits when messages and agents change, so clients
//! need not poll.

use std::sync::{Arc, OnceLock};

use torch_api::OBJECT_PATH;
use zbus::object_server::SignalEmitter;

use crate::bus::Manager;

/// Emits the hub's signals once the bus connection exists.
#[derive(Clone, Default)]
pub struct Events(Arc<OnceLock<zbus::Connection>>);

impl Events {
    /// Sets the connection signals go out on.
    pub fn attach(&self, conn: zbus::Connection) {
        let _ = self.0.set(conn);
    }

    fn emitter(&self) -> Option<SignalEmitter<'static>> {
        SignalEmitter::new(self.0.get()?, OBJECT_PATH).ok()
    }

    /// A message was stored.
    pub async fn queued(&self, id: i64, from: &str, to: &str) {
        if let Some(e) = self.emitter() {
            let _ = Manager::message_queued(&e, id, from, to).await;
        }
    }

    /// A message was confirmed on the recipient's screen.
    pub async fn delivered(&self, id: i64, to: &str) {
        if let Some(e) = self.emitter() {
            let _ = Manager::message_delivered(&e, id, to).await;
        }
    }

    /// A message will not be delivered.
    pub async fn failed(&self, id: i64, to: &str, reason: &str) {
        if let Some(e) = self.emitter() {
            let _ = Manager::message_failed(&e, id, to, reason).await;
        }
    }

    /// The fleet changed (spawn, retire).
    pub async fn fleet_changed(&self, agent: &str, change: &str) {
        if let Some(e) = self.emitter() {
            let _ = Manager::fleet_changed(&e, agent, change).await;
        }
    }
}
