//! Who may act on whom: the hub decides every call by the caller's unit
//! (see `caller`), never by a name the caller gives. The operator (`None`:
//! not in an agent's unit) may do anything; an agent acts on itself and
//! the agents below it, and retires only those strictly below it, so a
//! hostile agent cannot reach another branch of the fleet.
//!
//! Each check returns `HubError::AccessDenied` with a sentence naming the
//! rule; the D-Bus layer writes the refusal's audit line.

use torch_core::config::{Access, Reach};

use crate::error::HubError;
use crate::fleet::Fleet;

/// The kind of call a role's `[access.roles]` entry may widen.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Reads: capture, inbox, messages, status, check-ins.
    Sees,
    /// Acts: start, stop, restart, retire, answer, unschedule.
    Acts,
}

/// `actor` as far as its role reaches for `kind`: `None`, the operator's
/// reach, when `[access.roles]` opens the fleet to its role; else itself.
/// Acts on the actor itself (retiring or answering for itself) stay the
/// callers' to refuse.
pub fn reach<'a>(
    config: &Access,
    fleet: &Fleet,
    actor: Option<&'a str>,
    kind: Kind,
) -> Option<&'a str> {
    let name = actor?;
    let Ok(entry) = fleet.get(name) else {
        return actor;
    };
    let widened = config.of(entry.def.role);
    let reach = match kind {
        Kind::Sees => widened.sees,
        Kind::Acts => widened.acts,
    };
    (reach == Reach::Subtree).then_some(actor).flatten()
}

/// Whether `actor` (an agent; the operator is `None`) may start or stop
/// `target`: itself or an agent below it.
pub fn may_control(fleet: &Fleet, actor: Option<&str>, target: &str) -> bool {
    let Some(actor) = actor else { return true };
    let mut at = Some(target.to_string());
    // Bounded: a cycle of parents in hand-written definitions cannot loop.
    for _ in 0..=fleet.len() {
        match at {
            Some(a) if a == actor => return true,
            Some(a) => at = fleet.get(&a).ok().and_then(|x| x.def.parent.clone()),
            None => return false,
        }
    }
    false
}

/// `actor` (`None`: the operator) may read or act on `target`: itself or
/// an agent below it. `what` names the act for the refusal ("capture").
pub fn subtree(
    fleet: &Fleet,
    actor: Option<&str>,
    target: &str,
    what: &str,
) -> Result<(), HubError> {
    if may_control(fleet, actor, target) {
        return Ok(());
    }
    Err(HubError::AccessDenied(format!(
        "agent {} may {what} only itself and the agents below it, not {target}",
        actor.unwrap_or_default()
    )))
}

/// `actor` may retire `target`: an agent strictly below it (an agent that
/// retired itself would leave its own work unsaved by nobody's decision).
pub fn below(fleet: &Fleet, actor: Option<&str>, target: &str, what: &str) -> Result<(), HubError> {
    if actor != Some(target) && may_control(fleet, actor, target) {
        return Ok(());
    }
    Err(HubError::AccessDenied(format!(
        "agent {} may {what} only the agents below it, not {target}",
        actor.unwrap_or_default()
    )))
}

/// `actor` may remove schedule `id`, set by `set_by` for `agent`: one it
/// set itself, or one for itself or an agent below it.
pub fn unschedule(
    fleet: &Fleet,
    actor: Option<&str>,
    id: i64,
    agent: &str,
    set_by: &str,
) -> Result<(), HubError> {
    if actor.is_none_or(|a| a == set_by) || may_control(fleet, actor, agent) {
        return Ok(());
    }
    Err(HubError::AccessDenied(format!(
        "agent {} may remove only the check-ins it set and those of itself and the agents below it; #{id} was set by {set_by} for {agent}",
        actor.unwrap_or_default()
    )))
}

/// `actor` may list the messages of `agent` (`None`: of the whole fleet,
/// the operator's alone: a page filtered after the fact would break the
/// paging, so an agent names whose messages it wants).
pub fn messages(fleet: &Fleet, actor: Option<&str>, agent: Option<&str>) -> Result<(), HubError> {
    match (actor, agent) {
        (_, Some(a)) => subtree(fleet, actor, a, "read the messages of"),
        (None, None) => Ok(()),
        (Some(me), None) => Err(HubError::AccessDenied(format!(
            "agent {me} may read the messages of itself and the agents below it only; name one: `torch messages --agent {me}`"
        ))),
    }
}

/// Refuses agents a call that is for the operator and the hub's own
/// timers alone (`what`: which call).
pub fn operator_only(actor: Option<&str>, what: &str) -> Result<(), HubError> {
    match actor {
        None => Ok(()),
        Some(a) => Err(HubError::AccessDenied(format!(
            "agent {a} may not call {what}: it is for the operator and Torch's own timers"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::tests::fleet_of;
    use torch_core::Role;

    fn two_branches() -> Fleet {
        fleet_of(&[
            ("boss", Role::Orchestrator, None),
            ("pm1", Role::ProjectManager, Some("boss")),
            ("pm2", Role::ProjectManager, Some("boss")),
            ("dev1", Role::Engineer, Some("pm1")),
            ("evil", Role::Engineer, Some("pm2")),
        ])
    }

    fn denied(r: Result<(), HubError>) -> bool {
        matches!(r, Err(HubError::AccessDenied(_)))
    }

    #[test]
    fn an_agent_reaches_its_subtree_only() {
        let f = two_branches();
        assert!(subtree(&f, None, "dev1", "capture").is_ok());
        assert!(subtree(&f, Some("pm1"), "dev1", "capture").is_ok());
        assert!(subtree(&f, Some("evil"), "evil", "capture").is_ok());
        assert!(denied(subtree(&f, Some("evil"), "dev1", "capture")));
        assert!(denied(subtree(&f, Some("evil"), "pm2", "capture")));
        assert!(denied(subtree(&f, Some("dev1"), "ghost", "capture")));
    }

    #[test]
    fn retiring_reaches_strictly_below() {
        let f = two_branches();
        assert!(below(&f, None, "boss", "retire").is_ok());
        assert!(below(&f, Some("boss"), "dev1", "retire").is_ok());
        assert!(below(&f, Some("pm1"), "dev1", "retire").is_ok());
        assert!(denied(below(&f, Some("evil"), "evil", "retire")));
        assert!(denied(below(&f, Some("evil"), "dev1", "retire")));
        assert!(denied(below(&f, Some("pm2"), "dev1", "retire")));
    }

    #[test]
    fn check_ins_are_removed_by_who_set_them_or_their_subtree() {
        let f = two_branches();
        assert!(unschedule(&f, None, 1, "dev1", "operator").is_ok());
        assert!(unschedule(&f, Some("evil"), 2, "evil", "operator").is_ok());
        assert!(unschedule(&f, Some("pm1"), 3, "dev1", "operator").is_ok());
        assert!(unschedule(&f, Some("evil"), 4, "ghost", "evil").is_ok());
        assert!(denied(unschedule(&f, Some("evil"), 1, "dev1", "operator")));
        assert!(denied(unschedule(&f, Some("evil"), 5, "pm2", "pm2")));
    }

    #[test]
    fn a_role_widened_to_the_fleet_reaches_as_the_operator() {
        let f = two_branches();
        let config: torch_core::config::Config =
            toml::from_str("[access.roles.project-manager]\nsees = \"fleet\"\n").unwrap();
        let a = &config.access;
        assert_eq!(reach(a, &f, Some("pm1"), Kind::Sees), None);
        assert_eq!(reach(a, &f, Some("pm1"), Kind::Acts), Some("pm1"));
        assert_eq!(reach(a, &f, Some("evil"), Kind::Sees), Some("evil"));
        assert_eq!(reach(a, &f, None, Kind::Acts), None);
        // A name the fleet does not know keeps its own, narrow reach.
        assert_eq!(reach(a, &f, Some("ghost"), Kind::Sees), Some("ghost"));
        let pm1 = reach(a, &f, Some("pm1"), Kind::Sees);
        assert!(subtree(&f, pm1, "evil", "capture").is_ok());
    }

    #[test]
    fn the_whole_history_is_the_operators() {
        let f = two_branches();
        assert!(messages(&f, None, None).is_ok());
        assert!(messages(&f, Some("pm1"), Some("dev1")).is_ok());
        assert!(denied(messages(&f, Some("evil"), None)));
        assert!(denied(messages(&f, Some("evil"), Some("dev1"))));
        assert!(operator_only(None, "FireDue").is_ok());
        assert!(denied(operator_only(Some("evil"), "FireDue")));
    }
}
