//! `torch-metrics`: serves the hub's metrics (its `Metrics()` call) over
//! HTTP at `/metrics`, for Prometheus to scrape, on the socket systemd
//! passes it: `torch-metrics.socket` (loopback by default; a TCP address
//! or a unix socket, changed with `systemctl edit torch-metrics.socket`).
//! Nothing listens unless the admin enables that socket.
//!
//! It runs as the `torch-metrics` user, whom the hub answers `Metrics` and
//! nothing else, and holds no state: each scrape asks the hub.

use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use torch_api::ManagerProxy;

/// The format the hub writes (prometheus-client's encoder).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Longer than the hub takes to ask every supervisor (2 s each at worst,
/// in turn) would be too long for a scrape anyway; Prometheus's own
/// default timeout is 10 s.
const HUB_TIMEOUT: Duration = Duration::from_secs(9);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let hub = torch_api::connect()
        .await
        .context("cannot reach the Torch hub on the system bus; is dbus running?")?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(index))
        .with_state(hub);
    torch_listen::serve(app, "torch-metrics.socket").await?;
    Ok(())
}

/// `/metrics`: the hub's answer, or 503 saying why there is none.
async fn scrape(State(hub): State<ManagerProxy<'static>>) -> Response {
    match tokio::time::timeout(HUB_TIMEOUT, hub.metrics()).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Ok(Err(e)) => unavailable(format!("the Torch hub did not answer: {e}")),
        Err(_) => unavailable(format!(
            "the Torch hub did not answer within {} s",
            HUB_TIMEOUT.as_secs()
        )),
    }
}

fn unavailable(why: String) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

/// `/`: where the metrics are.
async fn index() -> &'static str {
    "Torch metrics: GET /metrics\n"
}
