//! `torch schedule`: a check-in for an agent, or for `self` from its pane.

use anyhow::{bail, Context};

use crate::{hub, hub_call, show};

/// `--in`, `--at`, `--every`, `--on-calendar`, as given.
pub type When = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Sets a check-in through the hub and says when it fires.
pub fn schedule(agent: String, when: When, note: &str) -> anyhow::Result<()> {
    let agent = if agent == "self" {
        std::env::var("TORCH_AGENT")
            .ok()
            .filter(|a| !a.is_empty())
            .context("`self` works only from an agent's pane (TORCH_AGENT is not set)")?
    } else {
        agent
    };
    let (kind, spec) = match when {
        (Some(d), ..) => ("in", d),
        (_, Some(t), ..) => ("at", t),
        (_, _, Some(d), _) => ("every", d),
        (_, _, _, Some(e)) => ("calendar", e),
        _ => bail!("say when: --in, --at, --every or --on-calendar"),
    };
    let caller = hub::caller();
    let (id, next) = hub_call(async |h| h.schedule(&agent, kind, &spec, note, &caller).await)?;
    println!(
        "check-in #{id} for {agent}, next at {}",
        show::local_time(next)
    );
    Ok(())
}
