//! Who may message whom: the hub-and-spoke rules of the fleet.
//!
//! By default (`mode = "hierarchy"` in `torch.toml`) an engineer talks to its
//! project manager, a project manager to its engineers and the orchestrator,
//! the orchestrator to project managers, and the operator to anyone. This
//! keeps a fleet from drowning in n-squared chatter. `mode = "open"` lets
//! every agent message every other.

use serde::{Deserialize, Serialize};

use crate::Role;

/// The sender name used by a human at a shell.
pub const OPERATOR: &str = "operator";

/// How strictly the hub routes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    /// Hub and spoke along the hierarchy.
    #[default]
    Hierarchy,
    /// Anyone to anyone.
    Open,
}

/// What the policy needs to know about one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// The agent's name.
    pub name: &'a str,
    /// Its role.
    pub role: Role,
    /// Its parent, if any.
    pub parent: Option<&'a str>,
}

fn is_engineer(role: Role) -> bool {
    !matches!(role, Role::Orchestrator | Role::ProjectManager)
}

/// A role's place in the hierarchy: the orchestrator (2) above project
/// managers (1) above every engineer-like role (0), which are peers.
pub fn rank(role: Role) -> u8 {
    match role {
        Role::Orchestrator => 2,
        Role::ProjectManager => 1,
        _ => 0,
    }
}

/// Checks that an agent of role `parent` may spawn a child of role
/// `child`: only below its own rank, or an engineer-like helper under an
/// engineer-like agent (the lowest rank has no rank below it). So no agent
/// can make one that the routes let reach further than itself (an
/// engineer's project manager child would message the orchestrator).
pub fn check_child_role(parent: Role, child: Role) -> Result<(), String> {
    let (p, c) = (rank(parent), rank(child));
    if c < p || (c == 0 && p == 0) {
        return Ok(());
    }
    Err(format!(
        "a {} may spawn only roles below its own, not a {}{}",
        parent.as_str(),
        child.as_str(),
        match parent {
            Role::Orchestrator => " (project managers and engineers)",
            Role::ProjectManager => " (engineer, developer, qa, devops, reviewer, researcher, writer)",
            _ => " (engineer-like helpers: engineer, developer, qa, devops, reviewer, researcher, writer)",
        }
    ))
}

/// Checks a message from `from` (`None`: the operator) to `to`; the error
/// names the rule that refuses it.
pub fn check(mode: PolicyMode, from: Option<&Member<'_>>, to: &Member<'_>) -> Result<(), String> {
    let Some(from) = from else { return Ok(()) };
    if mode == PolicyMode::Open {
        return Ok(());
    }
    let child_of = |a: &Member<'_>, b: &Member<'_>| a.parent == Some(b.name);
    let ok = match from.role {
        Role::Orchestrator => to.role == Role::ProjectManager,
        Role::ProjectManager => {
            to.role == Role::Orchestrator || (is_engineer(to.role) && child_of(to, from))
        }
        _ => child_of(from, to) && to.role == Role::ProjectManager,
    };
    if ok {
        return Ok(());
    }
    let rule = match from.role {
        Role::Orchestrator => "the orchestrator messages project managers only".to_string(),
        Role::ProjectManager => format!(
            "a project manager messages the orchestrator and its own engineers only ({} is not one of {}'s engineers)",
            to.name, from.name
        ),
        _ => format!(
            "an engineer messages its own project manager only ({}'s is {})",
            from.name,
            from.parent.unwrap_or("not set")
        ),
    };
    Err(format!(
        "policy 'hierarchy' refuses {} -> {}: {rule}; relay through the hierarchy or set [policy] mode = \"open\" in torch.toml",
        from.name, to.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m<'a>(name: &'a str, role: Role, parent: Option<&'a str>) -> Member<'a> {
        Member { name, role, parent }
    }

    #[test]
    fn hierarchy_routes_along_the_tree() {
        let o = m("boss", Role::Orchestrator, None);
        let pm = m("pm", Role::ProjectManager, Some("boss"));
        let pm2 = m("pm2", Role::ProjectManager, Some("boss"));
        let dev = m("dev", Role::Developer, Some("pm"));
        let qa2 = m("qa2", Role::Qa, Some("pm2"));
        let h = PolicyMode::Hierarchy;
        assert!(check(h, None, &dev).is_ok());
        assert!(check(h, Some(&o), &pm).is_ok());
        assert!(check(h, Some(&pm), &o).is_ok());
        assert!(check(h, Some(&pm), &dev).is_ok());
        assert!(check(h, Some(&dev), &pm).is_ok());
        let e = check(h, Some(&dev), &o).unwrap_err();
        assert!(
            e.contains("engineer messages its own project manager"),
            "{e}"
        );
        assert!(check(h, Some(&dev), &pm2).is_err());
        assert!(check(h, Some(&pm), &qa2).is_err());
        assert!(check(h, Some(&o), &dev).is_err());
        assert!(check(h, Some(&dev), &qa2).is_err());
        assert!(check(PolicyMode::Open, Some(&dev), &o).is_ok());
    }

    #[test]
    fn children_rank_below_their_parent() {
        use Role::*;
        assert!(check_child_role(Orchestrator, ProjectManager).is_ok());
        assert!(check_child_role(Orchestrator, Developer).is_ok());
        assert!(check_child_role(ProjectManager, Qa).is_ok());
        assert!(check_child_role(Engineer, Researcher).is_ok());
        assert!(check_child_role(Writer, Engineer).is_ok());
        for (p, c) in [
            (Orchestrator, Orchestrator),
            (ProjectManager, ProjectManager),
            (ProjectManager, Orchestrator),
            (Engineer, ProjectManager),
            (Developer, Orchestrator),
        ] {
            let e = check_child_role(p, c).unwrap_err();
            assert!(e.contains("below its own"), "{e}");
        }
    }
}
