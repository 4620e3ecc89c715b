//! Who is calling the hub: the uid the bus daemon saw connect and, through
//! systemd, the agent whose unit the calling process runs in. A process in
//! an agent's pane is that agent, whatever name it claims.

use std::collections::HashMap;
use std::sync::Mutex;

use torch_core::paths::{METRICS_USER, OPERATOR_GROUP, WEB_USER};
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
    /// Whether its uid is root's or an operator's (a member of the
    /// `torch` group), who may act as the operator outside agents' units.
    operator: bool,
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

    /// Who acts when the caller claims to be `claimed`: inside an agent's
    /// unit, that agent (claiming another name is refused); outside, root
    /// as the name given and an operator as the operator only.
    pub fn act_as(&self, claimed: &str) -> Result<String, HubError> {
        match &self.agent {
            Some(agent) if agent != claimed => Err(HubError::AccessDenied(format!(
                "you are agent {agent} (your process runs in torch-agent@{agent}.service); you cannot act as {claimed}"
            ))),
            Some(agent) => Ok(agent.clone()),
            None if self.uid == Some(0) => Ok(claimed.to_string()),
            None if self.operator && claimed == OPERATOR => Ok(claimed.to_string()),
            None if self.operator => Err(HubError::AccessDenied(format!(
                "outside an agent's unit only root may speak as an agent; you act as the operator, so leave TORCH_AGENT unset (it says {claimed}) or run as root"
            ))),
            None => Err(self.not_placed()),
        }
    }

    /// The agent calling, or `None` for the operator; anyone else is
    /// refused, as in [`Caller::act_as`].
    pub fn acting_agent(&self) -> Result<Option<String>, HubError> {
        match &self.agent {
            Some(agent) => Ok(Some(agent.clone())),
            None if self.operator => Ok(None),
            None => Err(self.not_placed()),
        }
    }

    /// Whether the caller may read the fleet's metrics: the operator, or
    /// the metrics user outside any agent's unit. An agent may not: the
    /// metrics name the whole fleet.
    pub fn may_read_metrics(&self) -> Result<(), HubError> {
        if let Some(agent) = &self.agent {
            return Err(HubError::AccessDenied(format!(
                "agent {agent} may not read the fleet's metrics; they are the operator's and {METRICS_USER}'s"
            )));
        }
        if self.operator || self.is_user(METRICS_USER) {
            return Ok(());
        }
        Err(self.not_placed())
    }

    /// Whether the caller is the read-only web dashboard's user, outside
    /// any agent's unit.
    pub fn is_web_viewer(&self) -> bool {
        self.agent.is_none() && self.is_user(WEB_USER)
    }

    fn is_user(&self, name: &str) -> bool {
        self.uid.is_some() && self.uid == system_uid(name)
    }

    /// Neither an agent's process nor an operator: an agent's process that
    /// left its unit, or a user the bus let in but Torch does not know.
    fn not_placed(&self) -> HubError {
        let uid = self.uid.map_or("unknown".to_string(), |u| u.to_string());
        HubError::AccessDenied(format!(
            "your process (uid {uid}) runs outside any agent's unit and you are not an operator (root or the {OPERATOR_GROUP} group), so Torch cannot tell which agent you are; run torch from the agent's own pane"
        ))
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
            operator: uid.as_ref().is_ok_and(|&u| is_operator(u)),
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

/// The uid of the metrics or the web user, if it exists (looked up once
/// each).
fn system_uid(name: &str) -> Option<u32> {
    static UIDS: std::sync::OnceLock<[Option<u32>; 2]> = std::sync::OnceLock::new();
    let uids = UIDS.get_or_init(|| {
        [METRICS_USER, WEB_USER].map(|n| {
            nix::unistd::User::from_name(n)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        })
    });
    match name {
        METRICS_USER => uids[0],
        WEB_USER => uids[1],
        _ => None,
    }
}

/// Whether `uid` is root or a member of the operators' group.
fn is_operator(uid: u32) -> bool {
    use nix::unistd::{getgrouplist, Group, Uid, User};
    static GID: std::sync::OnceLock<Option<nix::unistd::Gid>> = std::sync::OnceLock::new();
    if uid == 0 {
        return true;
    }
    let Some(gid) = *GID.get_or_init(|| {
        Group::from_name(OPERATOR_GROUP)
            .ok()
            .flatten()
            .map(|g| g.gid)
    }) else {
        return false;
    };
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    user.gid == gid || getgrouplist(&name, user.gid).is_ok_and(|groups| groups.contains(&gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_acts_as_itself_only_root_as_named_and_an_operator_as_the_operator() {
        let dev = Caller {
            uid: Some(994),
            agent: Some("dev".into()),
            operator: false,
        };
        assert_eq!(dev.act_as("dev").ok().as_deref(), Some("dev"));
        assert!(matches!(dev.act_as("lead"), Err(HubError::AccessDenied(_))));
        assert!(matches!(
            dev.act_as(OPERATOR),
            Err(HubError::AccessDenied(_))
        ));
        assert_eq!(dev.acting_agent().ok().flatten().as_deref(), Some("dev"));

        let root = Caller {
            uid: Some(0),
            agent: None,
            operator: true,
        };
        assert_eq!(root.act_as("lead").ok().as_deref(), Some("lead"));
        assert_eq!(root.acting_agent().ok().flatten(), None);

        let operator = Caller {
            uid: Some(1000),
            agent: None,
            operator: true,
        };
        assert_eq!(operator.act_as(OPERATOR).ok().as_deref(), Some(OPERATOR));
        let Err(HubError::AccessDenied(m)) = operator.act_as("lead") else {
            panic!("an operator spoke as an agent");
        };
        assert!(m.contains("only root may speak as an agent"), "{m}");
        assert_eq!(operator.acting_agent().ok().flatten(), None);

        for stranger in [
            Caller::default(),
            Caller {
                uid: Some(994),
                ..Caller::default()
            },
        ] {
            assert!(stranger.act_as(OPERATOR).is_err());
            assert!(stranger.act_as("lead").is_err());
            assert!(stranger.acting_agent().is_err());
        }
    }
}
