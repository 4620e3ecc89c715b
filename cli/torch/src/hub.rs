//! The client side of the hub's D-Bus API (`org.torch.Manager1`, see
//! docs/dbus.md), and how its answers are shown.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use torch_core::policy::OPERATOR;

/// Proxy for the hub's manager interface.
#[zbus::proxy(
    interface = "org.torch.Manager1",
    default_service = "org.torch.Torch1",
    default_path = "/org/torch/Torch1"
)]
pub trait Manager {
    /// See docs/dbus.md.
    fn send(&self, from: &str, to: &str, text: &str) -> zbus::Result<i64>;
    /// See docs/dbus.md.
    fn send_once(&self, from: &str, to: &str, text: &str, key: &str) -> zbus::Result<i64>;
    /// See docs/dbus.md.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        name: &str,
        role: &str,
        parent: &str,
        workdir: &str,
        profile: &str,
        command: &[&str],
        brief: &str,
        requester: &str,
    ) -> zbus::Result<String>;
    /// See docs/dbus.md.
    fn retire(&self, name: &str) -> zbus::Result<String>;
    /// See docs/dbus.md.
    fn start(&self, name: &str) -> zbus::Result<()>;
    /// See docs/dbus.md.
    fn stop(&self, name: &str) -> zbus::Result<()>;
    /// See docs/dbus.md.
    fn restart(&self, name: &str) -> zbus::Result<()>;
    /// See docs/dbus.md.
    fn status(&self) -> zbus::Result<String>;
    /// See docs/dbus.md.
    fn messages(&self, agent: &str, before: i64, limit: u32) -> zbus::Result<String>;
    /// See docs/dbus.md.
    fn inbox(&self, agent: &str, before: i64, limit: u32) -> zbus::Result<String>;
    /// See docs/dbus.md.
    fn capture(&self, agent: &str) -> zbus::Result<String>;
    /// See docs/dbus.md.
    fn schedule(
        &self,
        agent: &str,
        kind: &str,
        spec: &str,
        note: &str,
        requester: &str,
    ) -> zbus::Result<(i64, i64)>;
    /// See docs/dbus.md.
    fn unschedule(&self, id: i64) -> zbus::Result<()>;
    /// See docs/dbus.md.
    fn schedules(&self, agent: &str) -> zbus::Result<String>;
    /// See docs/dbus.md.
    fn fire_due(&self) -> zbus::Result<u32>;
    /// A message was confirmed on its recipient's screen.
    #[zbus(signal)]
    fn message_delivered(&self, id: i64, to: &str) -> zbus::Result<()>;
    /// A message will not be delivered.
    #[zbus(signal)]
    fn message_failed(&self, id: i64, to: &str, reason: &str) -> zbus::Result<()>;
}

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

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("-")
}

fn i(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// Prints `Status()` JSON as the tree orchestrator > project managers > engineers.
pub fn print_status(json: &str) -> Result<()> {
    let v: Value = serde_json::from_str(json)?;
    let Some(agents) = v.get("agents").and_then(Value::as_array) else {
        bail!("the hub sent a status without agents");
    };
    println!(
        "{:<30} {:<16} {:<10} {:<10} {:>6} {:>9} {:>6}  LAST OUTPUT",
        "AGENT", "ROLE", "UNIT", "AGENT", "QUEUED", "DELIVERED", "FAILED"
    );
    let names: Vec<&str> = agents.iter().map(|a| s(a, "name")).collect();
    fn walk(agents: &[Value], names: &[&str], parent: Option<&str>, depth: usize) {
        for a in agents {
            let p = a.get("parent").and_then(Value::as_str);
            // Roots: no parent, or a parent that is not (or no longer) defined.
            let root = p.is_none() || !names.contains(&p.unwrap_or_default());
            if (parent.is_none() && root) || (parent.is_some() && p == parent) {
                let label = format!("{}{}", "  ".repeat(depth), s(a, "name"));
                let idle = a
                    .get("idle_secs")
                    .and_then(Value::as_u64)
                    .map_or("-".to_string(), |n| format!("{n}s ago"));
                println!(
                    "{:<30} {:<16} {:<10} {:<10} {:>6} {:>9} {:>6}  {idle}",
                    label,
                    s(a, "role"),
                    s(a, "active_state"),
                    a.get("agent_state").and_then(Value::as_str).unwrap_or("-"),
                    i(a, "queued"),
                    i(a, "delivered"),
                    i(a, "failed")
                );
                if let Some(e) = a.get("definition_error").and_then(Value::as_str) {
                    println!("{}  broken definition: {e}", "  ".repeat(depth));
                }
                walk(agents, names, Some(s(a, "name")), depth + 1);
            }
        }
    }
    walk(agents, &names, None, 0);
    Ok(())
}

/// Unix milliseconds as local `YYYY-MM-DD HH:MM:SS ZONE`, the zone being
/// `TZ` or /etc/localtime as for `date`, or `-`. Computed here, not by
/// running `date` for each time shown.
pub fn local_time(ms: i64) -> String {
    time_in(ms, &jiff::tz::TimeZone::system())
}

fn time_in(ms: i64, zone: &jiff::tz::TimeZone) -> String {
    if ms <= 0 {
        return "-".into();
    }
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned_datetime(zone.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => format!("@{}", ms / 1000),
    }
}

/// How a listed schedule fires, as `torch schedule` spells it (`every
/// 30m`): the hub's `when`, or for an older hub without it, kind and spec.
fn schedule_when(row: &Value) -> String {
    match row.get("when").and_then(Value::as_str) {
        Some(w) => w.to_string(),
        None => {
            let unit = if matches!(s(row, "kind"), "in" | "every") {
                "s"
            } else {
                ""
            };
            format!("{} {}{unit}", s(row, "kind"), s(row, "spec"))
        }
    }
}

/// Prints a JSON schedule list as a table; NEXT in local time.
pub fn print_schedules(json: &str) -> Result<()> {
    let v: Value = serde_json::from_str(json)?;
    let list = v
        .as_array()
        .ok_or_else(|| anyhow!("the hub sent a schedule list that is not a list"))?;
    let whens: Vec<String> = list.iter().map(schedule_when).collect();
    let width = whens
        .iter()
        .map(|w| w.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    println!(
        "{:>4} {:<16} {:<width$} {:<26} {:>5}  NOTE",
        "ID", "AGENT", "WHEN", "NEXT", "FIRED"
    );
    for (row, when) in list.iter().zip(whens) {
        let next = local_time(row.get("next_ms").and_then(Value::as_i64).unwrap_or(0));
        let note: String = s(row, "note").replace('\n', "⏎").chars().take(50).collect();
        println!(
            "{:>4} {:<16} {:<width$} {:<26} {:>5}  {note}",
            i(row, "id"),
            s(row, "agent"),
            when,
            next,
            i(row, "fired")
        );
    }
    Ok(())
}

/// Prints a JSON message list as a table.
pub fn print_messages(json: &str) -> Result<()> {
    let v: Value = serde_json::from_str(json)?;
    let list = v
        .as_array()
        .ok_or_else(|| anyhow!("the hub sent a message list that is not a list"))?;
    println!(
        "{:>6} {:<16} {:<16} {:<10} {:>3}  TEXT",
        "ID", "FROM", "TO", "STATE", "TRY"
    );
    for m in list {
        let body: String = s(m, "body").replace('\n', "⏎");
        let short: String = body.chars().take(60).collect();
        let more = if body.chars().count() > 60 { "…" } else { "" };
        println!(
            "{:>6} {:<16} {:<16} {:<10} {:>3}  {short}{more}",
            i(m, "id"),
            s(m, "sender"),
            s(m, "recipient"),
            s(m, "state"),
            i(m, "attempts")
        );
        if let Some(r) = m.get("reason").and_then(Value::as_str) {
            if s(m, "state") != "delivered" {
                println!("{:>6} reason: {r}", "");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_in_process() {
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(time_in(1_764_091_449_250, &utc), "2025-11-25 17:24:09 UTC");
        assert_eq!(time_in(0, &utc), "-");
    }

    #[test]
    fn schedules_are_shown_as_the_hub_words_them() {
        let row: Value = serde_json::json!({"kind": "every", "spec": "1800", "when": "every 30m"});
        assert_eq!(schedule_when(&row), "every 30m");
        let old: Value = serde_json::json!({"kind": "every", "spec": "1800"});
        assert_eq!(schedule_when(&old), "every 1800s");
    }
}
