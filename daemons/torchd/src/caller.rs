//! Who is calling the hub: the uid the bus daemon saw connect and, through
//! systemd, the agent whose unit the calling process runs in. A process in
//! an agent's pane is that agent, whatever name it claims.

use std::collections::HashMap;
use std::sync::Mutex;

use torch_core::policy::OPERATOR;
use torch_core::AgentName;
use torch_systemd::{Systemd, SystemdError};
use zbus::fdo;
use zbus::message::Header;

use crate::error::HubError;

/// Who is on the other end of a bus connection.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// Its uid, as the bus daemon saw it connect.
    uid: Option<u32>,
    /// The agent whose unit it runs in (`torch-agent@NAME.service`), if any.
    agent: Option<String>,
}

impl Caller {
    /// Its uid, if the bus daemon said.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// The agent whose unit it runs in, if any: for the audit line, which
    /// names who called whether or not the call was allowed.
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// The agents' user outside any agent's unit (a process that left it,
    /// or systemd could not say): it may not pick a name.
    fn is_unplaced_agent(&self) -> bool {
        self.agent.is_none() && self.uid.is_some() && self.uid == agents_uid()
    }

    /// Who acts when the caller claims to be `claimed`: inside an agent's
    /// unit, that agent (claiming another name is refused); elsewhere (an
    /// operator's shell), the name given.
    pub fn act_as(&self, claimed: &str) -> Result<String, HubError> {
        match &self.agent {
            Some(agent) if agent != claimed => Err(HubError::AccessDenied(format!(
                "you are agent {agent} (your process runs in torch-agent@{agent}.service); you cannot act as {claimed}"
            ))),
            Some(agent) => Ok(agent.clone()),
            None if self.is_unplaced_agent() => Err(HubError::AccessDenied(format!(
                "your process runs as {AGENTS_USER} outside any agent's unit, so Torch cannot tell which agent you are; run torch from the agent's own pane"
            ))),
            None => Ok(claimed.to_string()),
        }
    }

    /// The agent calling, or `None` for the operator; the agents' user
    /// outside any agent's unit is refused, as in [`Caller::act_as`].
    pub fn acting_agent(&self) -> Result<Option<String>, HubError> {
        if self.is_unplaced_agent() {
            return self.act_as(OPERATOR).map(|_| None);
        }
        Ok(self.agent.clone())
    }
}

/// Callers already looked up, by unique bus name. A unique name is never
/// reused and a connection keeps its process and uid, so one lookup (three
/// D-Bus calls) per connection is enough, not one per method call.
#[derive(Default)]
pub struct Callers {
    known: Mutex<HashMap<String, Caller>>,
}

/// Bound on remembered callers; the map starts over past it.
const CALLERS_KEPT: usize = 4096;

impl Callers {
    /// Who sent the call with header `hdr`.
    pub async fn of(&self, systemd: &Systemd, conn: &zbus::Connection, hdr: &Header<'_>) -> Caller {
        let Some(sender) = hdr.sender().map(|s| s.to_owned()) else {
            return Caller::default();
        };
        let key = sender.to_string();
        if let Some(c) = self.known.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return c;
        }
        let Ok(dbus) = fdo::DBusProxy::new(conn).await else {
            return Caller::default();
        };
        let (uid, pid) = tokio::join!(
            dbus.get_connection_unix_user(sender.clone().into()),
            dbus.get_connection_unix_process_id(sender.into())
        );
        let unit = match pid {
            Ok(pid) => Some(systemd.unit_of_pid(pid).await),
            Err(_) => None,
        };
        // systemd's answer, even "no unit for that process" (a process
        // outside any unit, e.g. in a container's root), is final; a failed
        // call is not.
        let settled = matches!(
            unit,
            Some(Ok(_)) | Some(Err(SystemdError::Bus(zbus::Error::MethodError(..))))
        );
        let caller = Caller {
            uid: uid.as_ref().ok().copied(),
            agent: match &unit {
                Some(Ok(u)) => AgentName::from_unit(u).map(|n| n.to_string()),
                _ => None,
            },
        };
        if uid.is_ok() && settled {
            if let Ok(mut known) = self.known.lock() {
                if known.len() >= CALLERS_KEPT {
                    known.clear();
                }
                known.insert(key, caller.clone());
            }
        }
        caller
    }
}

/// The user agents run as (`User=` of torch-agent@.service).
const AGENTS_USER: &str = "torch-agent";

/// The uid of [`AGENTS_USER`], if that user exists.
fn agents_uid() -> Option<u32> {
    static UID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UID.get_or_init(|| {
        nix::unistd::User::from_name(AGENTS_USER)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_acts_as_itself_only_and_an_operator_as_named() {
        let dev = Caller {
            uid: None,
            agent: Some("dev".into()),
        };
        assert_eq!(dev.act_as("dev").ok().as_deref(), Some("dev"));
        assert!(matches!(dev.act_as("lead"), Err(HubError::AccessDenied(_))));
        assert!(matches!(
            dev.act_as(OPERATOR),
            Err(HubError::AccessDenied(_))
        ));
        assert_eq!(dev.acting_agent().ok().flatten().as_deref(), Some("dev"));

        let shell = Caller::default();
        assert_eq!(shell.act_as("lead").ok().as_deref(), Some("lead"));
        assert_eq!(shell.acting_agent().ok().flatten(), None);
    }
}
