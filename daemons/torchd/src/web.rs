//! Actions from the web dashboard: sending a message, answering a
//! question, restarting an agent, as the operator, for a browser that
//! presents the token of `/etc/torch/web-token`. The web service only
//! passes on what the browser gave: the hub alone reads the token, so the
//! service, whose user may do nothing else, never holds the operator's
//! power.

use std::sync::Arc;

use torch_core::policy::OPERATOR;
use torch_systemd::JobKind;

use crate::error::HubError;
use crate::hub::Hub;
use crate::{lifecycle, service};

/// The token a browser must present to act (mode 0640, root:torch).
pub const TOKEN_FILE: &str = "/etc/torch/web-token";

/// The shortest token taken: a guessable one is no lock.
const MIN_TOKEN: usize = 16;

/// Whether `given` is the token of [`TOKEN_FILE`].
pub fn check_token(given: &str) -> Result<(), HubError> {
    let want = match std::fs::read_to_string(TOKEN_FILE) {
        Ok(t) => t.trim().to_string(),
        Err(_) => {
            return Err(HubError::AccessDenied(format!(
                "the web dashboard is read-only: there is no {TOKEN_FILE} (write one of {MIN_TOKEN} or more characters, mode 0640, group torch, to allow actions)"
            )))
        }
    };
    if want.len() < MIN_TOKEN {
        return Err(HubError::AccessDenied(format!(
            "{TOKEN_FILE} holds fewer than {MIN_TOKEN} characters; the web dashboard stays read-only"
        )));
    }
    if !same(want.as_bytes(), given.trim().as_bytes()) {
        return Err(HubError::AccessDenied("wrong token".into()));
    }
    Ok(())
}

/// Compares in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Does `action` on `agent` as the operator; says what was done.
pub async fn act(
    hub: &Arc<Hub>,
    action: &str,
    agent: &str,
    text: &str,
) -> Result<String, HubError> {
    match action {
        "send" => {
            let id = service::send(hub, OPERATOR, agent, text, None).await?;
            Ok(format!("message #{id} to {agent} stored"))
        }
        "answer" => {
            service::answer(hub, None, agent, text).await?;
            Ok(format!("answered {agent}: {text}"))
        }
        "restart" => {
            lifecycle::control(hub, None, JobKind::Restart, agent).await?;
            Ok(format!("restarted {agent}"))
        }
        _ => Err(HubError::InvalidArgs(format!(
            "unknown action {action:?}; send, answer or restart"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abc", b"abcdef"));
    }
}
