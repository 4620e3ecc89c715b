//! Starting and stopping agents for callers, and bringing the fleet back
//! after a reboot.
//!
//! The store keeps which agents should run (see `torch_store::wanted`):
//! spawn and start add one, stop and retire take it away. systemd stops
//! every agent at shutdown and starts none at boot by itself, so the hub,
//! at its first start in a boot, starts the agents the store lists.

use std::sync::Arc;

use crate::access::{self, may_control, Kind};
use crate::error::HubError;
use crate::fleet;
use crate::hub::Hub;
use torch_core::AgentName;
use torch_systemd::JobKind;

/// Runs `kind` on agent `name` for `actor` and records whether it should
/// come back after a reboot.
pub async fn control(
    hub: &Arc<Hub>,
    actor: Option<&str>,
    kind: JobKind,
    name: &str,
) -> Result<(), HubError> {
    let agent = AgentName::parse(name).map_err(|e| HubError::InvalidArgs(e.to_string()))?;
    let fleet = hub.fleet.agents();
    let acting = access::reach(&hub.config.access, &fleet, actor, Kind::Acts);
    if !may_control(&fleet, acting, agent.as_str()) {
        return Err(HubError::AccessDenied(format!(
            "agent {} may start and stop only itself and the agents below it, not {name}",
            actor.unwrap_or_default()
        )));
    }
    let up = !matches!(kind, JobKind::Stop);
    // Down first for a stop: a stop that fails half-way still keeps the
    // agent down at the next boot. Up only once it runs.
    if !up {
        set_wanted(hub, agent.as_str(), false).await?;
    }
    fleet::unit_job(&hub.systemd, kind, &agent)
        .await
        .map_err(HubError::Systemd)?;
    if up {
        set_wanted(hub, agent.as_str(), true).await?;
        hub.courier.kick(agent.as_str());
    } else {
        // Its supervisor says so on its way out, best effort within half
        // a second: on a loaded machine that report can be lost, and
        // watchers (torch top, the dashboard) would show it up for good.
        hub.events
            .agent_changed(agent.as_str(), "down", "stopped (torch stop)")
            .await;
    }
    Ok(())
}

/// Records whether `agent` should run after a reboot.
pub async fn set_wanted(hub: &Hub, agent: &str, up: bool) -> Result<(), HubError> {
    let agent = agent.to_string();
    torch_store::call(&hub.store, move |s| s.set_wanted(&agent, up))
        .await
        .map_err(|e| HubError::Store(format!("cannot record the agent's state: {e}")))
}

/// At the hub's first start in a boot, starts every agent that ran before
/// it (concurrently: one slow agent does not hold back the others).
pub async fn restore_after_boot(hub: Arc<Hub>) {
    let stamp = match hub.systemd.boot_stamp().await {
        Ok(s) => s.to_string(),
        Err(e) => {
            tracing::warn!("cannot tell whether this is a new boot ({e}); not starting agents");
            return;
        }
    };
    let known = torch_store::call(&hub.store, |s| Ok((s.boot_stamp()?, s.wanted()?))).await;
    let (last, wanted) = match known {
        Ok(k) => k,
        Err(e) => return tracing::warn!("cannot read the agents to restore: {e}"),
    };
    if last.as_deref() == Some(stamp.as_str()) {
        return;
    }
    tracing::info!(
        "new boot: starting {} agents that ran before it",
        wanted.len()
    );
    let starts = wanted.into_iter().map(|name| {
        let hub = Arc::clone(&hub);
        tokio::spawn(async move {
            let Ok(agent) = AgentName::parse(&name) else {
                return tracing::warn!("not restoring {name:?}: not an agent name");
            };
            match fleet::unit_job(&hub.systemd, JobKind::Start, &agent).await {
                Ok(()) => hub.courier.kick(agent.as_str()),
                Err(e) => tracing::warn!("after the reboot, {name} did not start: {e}"),
            }
        })
    });
    for start in starts.collect::<Vec<_>>() {
        let _ = start.await;
    }
    if let Err(e) = torch_store::call(&hub.store, move |s| s.set_boot_stamp(&stamp)).await {
        tracing::warn!("cannot record this boot: {e}");
    }
}
