//! `torch-alerts`: posts each of the hub's alerts (its `Alert` signal: an
//! agent waiting too long, a failed turn, a limit, a stalled task) to the
//! webhook of `[alerts]` in `torch.toml`, so a person hears of it.
//!
//! It runs as the `torch-alerts` user, whom the bus lets hear the hub's
//! alerts and nothing else, and keeps nothing on disk: an alert that cannot
//! be posted after its tries is given up with a line in the journal, which
//! holds every alert anyway (`journalctl TORCH_ALERT=1`).

mod post;

use std::process::ExitCode;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use torch_core::config::{config_files, Alerts, Config};

use crate::post::{Alert, Poster};

/// The exit status of a missing or bad setting, which systemd does not
/// restart (`RestartPreventExitStatus=`).
const EXIT_CONFIG: u8 = 78;

/// Where the unit's environment file puts a webhook kept out of torch.toml.
const WEBHOOK_ENV: &str = "TORCH_ALERTS_WEBHOOK";

fn main() -> ExitCode {
    let (url, config) = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("torch-alerts: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("torch-alerts: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(forward(Poster::new(&url, &config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torch-alerts: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The webhook and its settings, or why there is none.
fn settings() -> Result<(String, Alerts)> {
    let config = Config::load(&config_files()).map_err(anyhow::Error::msg)?;
    let url = std::env::var(WEBHOOK_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| config.alerts.webhook.clone());
    let url = url.trim().to_string();
    if url.is_empty() {
        anyhow::bail!(
            "no webhook is set; set webhook in [alerts] of /etc/torch/torch.toml, or {WEBHOOK_ENV} in /etc/torch/alerts.env, then systemctl restart torch-alerts"
        );
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        anyhow::bail!("the webhook {url:?} is not an http:// or https:// URL");
    }
    Ok((url, config.alerts))
}

/// Hears the hub's alerts and posts each, in order, until the bus goes.
async fn forward(poster: Poster) -> Result<()> {
    let hub = torch_api::connect()
        .await
        .context("cannot reach the Torch hub on the system bus; is dbus running?")?;
    let mut alerts = hub
        .receive_alert()
        .await
        .context("cannot listen to the hub's alerts")?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    eprintln!(
        "torch-alerts: posting the hub's alerts to {}",
        poster.shown()
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Alert>(post::QUEUE);
    let worker = tokio::task::spawn_blocking(move || poster.run(rx));
    while let Some(signal) = alerts.next().await {
        let Ok(args) = signal.args() else { continue };
        let alert = Alert::now(args.agent, args.text);
        if tx.try_send(alert).is_err() {
            eprintln!(
                "torch-alerts: {} alerts wait to be posted; this one is dropped (the journal has it)",
                post::QUEUE
            );
        }
    }
    drop(tx);
    let _ = worker.await;
    anyhow::bail!("the system bus closed the connection")
}
