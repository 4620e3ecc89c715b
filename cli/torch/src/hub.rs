//! Talking to the hub (`org.torch.Manager1`, see docs/dbus.md, through
//! torch-api's proxy): who calls, and what its errors mean for the user.

use anyhow::{anyhow, Result};
pub use torch_api::ManagerProxy;
use torch_core::policy::OPERATOR;

/// Who is calling: the agent whose pane runs us, or the operator.
pub fn caller() -> String {
    std::env::var("TORCH_AGENT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| OPERATOR.to_string())
}

/// Turns a D-Bus error into a sentence that says what to do.
pub fn explain(e: zbus::Error) -> anyhow::Error {
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            let msg = msg.unwrap_or_default();
            match name.as_str() {
                "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
                    anyhow!("the Torch hub is not running: start it with `systemctl start torch.service`")
                }
                "org.freedesktop.DBus.Error.AccessDenied" => {
                    anyhow!("the Torch hub refused the call: only root and members of the torch group may use it ({msg})")
                }
                _ => anyhow!("{msg}"),
            }
        }
        zbus::Error::FDO(e) => match *e {
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                anyhow!("the Torch hub is not running: start it with `systemctl start torch.service`")
            }
            zbus::fdo::Error::AccessDenied(m) => anyhow!("the Torch hub refused the call: only root and members of the torch group may use it ({m})"),
            other => anyhow!("{other}"),
        },
        other => anyhow!("cannot talk to the Torch hub: {other}"),
    }
}

/// Whether `e` says that no hub is on the bus.
pub fn hub_absent(e: &zbus::Error) -> bool {
    const ABSENT: [&str; 2] = [
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
    ];
    match e {
        zbus::Error::MethodError(name, _, _) => ABSENT.contains(&name.as_str()),
        zbus::Error::FDO(e) => matches!(
            **e,
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
        ),
        _ => false,
    }
}

/// Whether `e` says the hub went away during the call (it died or
/// restarted before answering), so the call may have taken effect.
pub fn reply_lost(e: &zbus::Error) -> bool {
    match e {
        zbus::Error::MethodError(name, _, _) => {
            name.as_str() == "org.freedesktop.DBus.Error.NoReply"
        }
        zbus::Error::FDO(e) => matches!(**e, zbus::fdo::Error::NoReply(_)),
        _ => false,
    }
}

/// Connects to the hub.
pub async fn connect() -> Result<ManagerProxy<'static>> {
    let conn = zbus::Connection::system().await.map_err(explain)?;
    ManagerProxy::new(&conn).await.map_err(explain)
}
