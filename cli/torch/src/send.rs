//! `torch send`: through the hub (stored once, optionally waited for), or
//! `--direct` to the agent's supervisor.

use std::io::Read;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use torch_core::protocol::{Request, Response};
use torch_core::{validate_message, AgentName};

use crate::{call, hub, runtime, SEND_TIMEOUT};

/// Sends `text` (`-`: standard input) to `name`.
pub fn run(name: &AgentName, text: String, wait: bool, direct: bool) -> anyhow::Result<()> {
    let text = validate_message(&read_message(text)?)?;
    if !direct {
        return runtime()?.block_on(send_through_hub(name.as_str(), &text, wait));
    }
    match call(name, &Request::Deliver { text, id: None }, SEND_TIMEOUT)? {
        Response::Delivered {
            millis, submits, ..
        } => {
            eprintln!(
                "delivered to {name} in {millis} ms ({submits} submit{})",
                if submits == 1 { "" } else { "s" }
            );
            Ok(())
        }
        other => bail!("{name}: unexpected answer {other:?}"),
    }
}

fn read_message(text: String) -> anyhow::Result<String> {
    if text != "-" {
        return Ok(text);
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("cannot read the message from standard input")?;
    let mut s =
        String::from_utf8(buf).context("the message on standard input is not UTF-8 text")?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

/// How a message ended.
enum Outcome {
    Delivered,
    Failed(String),
}

/// The message's state from the hub's store, for when a signal may have
/// been missed (the hub restarted): one row, whatever the history. Read
/// from the sender's own messages, which it may always read (an agent may
/// not read its parent's inbox).
async fn lookup(hub: &hub::ManagerProxy<'_>, id: i64) -> anyhow::Result<Option<Outcome>> {
    let from = hub::caller();
    let page: Vec<torch_api::Message> =
        serde_json::from_str(&hub.messages(&from, id + 1, 1).await.map_err(hub::explain)?)?;
    let Some(m) = page.into_iter().find(|m| m.id == id) else {
        return Ok(None);
    };
    Ok(match m.state.as_str() {
        "delivered" => Some(Outcome::Delivered),
        "failed" => Some(Outcome::Failed(
            m.reason.unwrap_or_else(|| "no reason given".into()),
        )),
        _ => None,
    })
}

/// How long a send whose reply was lost is retried while the hub restarts.
const SEND_RETRY: Duration = Duration::from_secs(30);

/// A fresh send key: 128 random bits, hex.
fn send_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("cannot read /dev/urandom for a send key")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Stores the message through the hub once: when the hub dies before its
/// reply, the same call is retried with the same key until the hub is back,
/// and the hub answers the first call's id instead of storing it again.
async fn send_once(hub: &hub::ManagerProxy<'_>, to: &str, text: &str) -> anyhow::Result<i64> {
    let key = send_key()?;
    let from = hub::caller();
    let mut retrying_until = None;
    loop {
        let e = match hub.send_once(&from, to, text, &key).await {
            Ok(id) => return Ok(id),
            Err(e) => e,
        };
        let restarting = retrying_until.is_some() && hub::hub_absent(&e);
        if !(hub::reply_lost(&e) || restarting) {
            return Err(hub::explain(e));
        }
        let until = *retrying_until.get_or_insert_with(|| {
            eprintln!("torch: the hub went away before answering; sending again with the same key, which it stores once");
            tokio::time::Instant::now() + SEND_RETRY
        });
        if tokio::time::Instant::now() > until {
            bail!("the hub did not come back within {}s; whether the message was stored: see `torch inbox {to}`", SEND_RETRY.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends a message through the hub; with `wait`, returns once it was
/// delivered or failed, told by the hub's signals (subscribed before the
/// send, so none is missed), with a look at the store every second: the
/// bus gives the signals to root and operators only, not to agents, and the
/// hub may have restarted meanwhile.
async fn send_through_hub(to: &str, text: &str, wait: bool) -> anyhow::Result<()> {
    let hub = hub::connect().await?;
    let only_to = [(1, to)];
    let (mut delivered, mut failed) = if wait {
        let d = hub.receive_message_delivered_with_args(&only_to).await;
        let f = hub.receive_message_failed_with_args(&only_to).await;
        (
            Some(d.map_err(hub::explain)?),
            Some(f.map_err(hub::explain)?),
        )
    } else {
        (None, None)
    };
    let id = send_once(&hub, to, text).await?;
    eprintln!("queued message #{id} for {to}");
    let (Some(delivered), Some(failed)) = (delivered.as_mut(), failed.as_mut()) else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + SEND_TIMEOUT;
    let mut look = tokio::time::interval(Duration::from_secs(1));
    look.tick().await;
    let outcome = loop {
        tokio::select! {
            Some(s) = delivered.next() => {
                if s.args().is_ok_and(|a| a.id == id) { break Outcome::Delivered; }
            }
            Some(s) = failed.next() => {
                if let Ok(a) = s.args() {
                    if a.id == id { break Outcome::Failed(a.reason.to_string()); }
                }
            }
            _ = look.tick() => {
                if let Some(o) = lookup(&hub, id).await? { break o; }
            }
            _ = tokio::time::sleep_until(deadline) => bail!(
                "message #{id} is still queued for {to} after {}s; see `torch messages --agent {}`",
                SEND_TIMEOUT.as_secs(),
                hub::caller()
            ),
        }
    };
    match outcome {
        Outcome::Delivered => {
            eprintln!("delivered to {to}");
            Ok(())
        }
        Outcome::Failed(reason) => bail!("message #{id} to {to} failed: {reason}"),
    }
}
