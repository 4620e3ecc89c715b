//! `torch node forget`: a node gone for good leaves the cluster. Redis
//! drops it (its names are free, what waited in its streams is gone), and
//! every node fails the messages it holds for the forgotten node's agents,
//! this one at once and the others at their next heartbeat
//! (`torch:forgotten`), so that `torch send --wait` and the history say so
//! rather than waiting for good.

use std::sync::Arc;

use torch_cluster::Unforgettable;

use crate::access::operator_only;
use crate::error::HubError;
use crate::hub::{blocking, Hub};

/// Why a forgotten node's messages failed.
fn reason(node: &str) -> String {
    format!("node {node} was forgotten (torch node forget): it will not deliver")
}

/// Forgets `node` for the operator; what was done, in a sentence.
pub async fn forget(hub: &Arc<Hub>, actor: Option<&str>, node: &str) -> Result<String, HubError> {
    operator_only(actor, "ForgetNode")?;
    let Some(this) = &hub.cluster else {
        return Err(HubError::Refused(
            "no [cluster] in torch.toml: this hub is alone, there is no node to forget".into(),
        ));
    };
    if node == this.name() {
        return Err(HubError::Refused(format!(
            "node {node} is this node; forget it from another node once it is gone"
        )));
    }
    let forgot = this
        .registry()
        .forget(node)
        .await
        .map_err(|e| HubError::Internal(format!("{e}; try again once Redis answers")))?;
    let forgot = match forgot {
        Ok(f) => f,
        Err(Unforgettable::Unknown) => {
            return Err(HubError::InvalidArgs(format!(
                "no node {node} in the cluster; `torch status` shows each agent's node"
            )))
        }
        Err(Unforgettable::Alive) => {
            return Err(HubError::Refused(format!(
                "node {node} is not lost: it published within three heartbeats; stop its hub (or power it off) first"
            )))
        }
    };
    let failed = fail_waiting(hub, node).await?;
    crate::cluster::drop_node(hub, node);
    tracing::info!(
        "cluster: forgot node {node}: {} names freed, {} messages in its inbox dropped, {failed} of this node's failed",
        forgot.names,
        forgot.waiting
    );
    Ok(format!(
        "forgot node {node}: agent names freed: {}; messages dropped from its inbox: {}; messages of this node failed: {failed}",
        forgot.names, forgot.waiting
    ))
}

/// Fails what this node holds for `node`'s agents; how many.
pub async fn fail_waiting(hub: &Arc<Hub>, node: &str) -> Result<usize, HubError> {
    let (h, n) = (Arc::clone(hub), node.to_string());
    let why = reason(node);
    let w = why.clone();
    let failed = blocking(move || Ok(h.store.fail_for_node(&n, &w)?)).await?;
    for (id, to) in &failed {
        hub.events.failed(*id, to, &why).await;
    }
    Ok(failed.len())
}
