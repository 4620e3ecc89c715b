//! `torch-web`: the fleet in a browser, live. It serves a page (shipped in
//! this binary: nothing is built or downloaded at install time), the
//! fleet's status as JSON, and the hub's signals as server-sent events, on
//! the socket systemd passes it (`torch-web.socket`: loopback by default,
//! or a unix socket for a reverse proxy).
//!
//! It is read-only unless a browser presents the token of
//! `/etc/torch/web-token`: it runs as the `torch-web` user, whom the bus
//! lets call `Status` and `WebAct` and hear the hub's signals, and nothing
//! else; `WebAct` passes the browser's token to the hub, which alone reads
//! the file and acts.

mod signals;

use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use torch_api::ManagerProxy;

const PAGE: &str = include_str!("../assets/index.html");

/// A status taking longer than this is answered 503.
const HUB_TIMEOUT: Duration = Duration::from_secs(9);

#[derive(Clone)]
struct App {
    hub: ManagerProxy<'static>,
    events: broadcast::Sender<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let hub = torch_api::connect()
        .await
        .context("cannot reach the Torch hub on the system bus; is dbus running?")?;
    let (events, _) = broadcast::channel(1024);
    tokio::spawn(signals::forward(hub.clone(), events.clone()));
    let app = Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/api/events", get(live))
        .route("/api/act", axum::routing::post(act))
        .with_state(App { hub, events });
    torch_listen::serve(app, "torch-web.socket").await?;
    Ok(())
}

async fn page() -> Response {
    let html = "text/html; charset=utf-8";
    (
        [
            (header::CONTENT_TYPE, html),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// The hub's `Status`, as it gives it.
async fn status(State(app): State<App>) -> Response {
    match tokio::time::timeout(HUB_TIMEOUT, app.hub.status()).await {
        Ok(Ok(json)) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Ok(Err(e)) => unavailable(format!("the Torch hub did not answer: {e}")),
        Err(_) => unavailable("the Torch hub did not answer in time".into()),
    }
}

/// What a browser asks to do (`POST /api/act`, its token as `Authorization:
/// Bearer TOKEN`).
#[derive(serde::Deserialize)]
struct Act {
    action: String,
    agent: String,
    #[serde(default)]
    text: String,
}

async fn act(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    axum::Json(req): axum::Json<Act>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let call = app.hub.web_act(token, &req.action, &req.agent, &req.text);
    match tokio::time::timeout(HUB_TIMEOUT, call).await {
        Ok(Ok(done)) => (StatusCode::OK, format!("{done}\n")).into_response(),
        Ok(Err(zbus::Error::MethodError(name, msg, _))) => {
            let code = match name.as_str() {
                "org.freedesktop.DBus.Error.AccessDenied" => StatusCode::FORBIDDEN,
                "org.freedesktop.DBus.Error.InvalidArgs" => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            (code, format!("{}\n", msg.unwrap_or_default())).into_response()
        }
        Ok(Err(e)) => unavailable(format!("the Torch hub did not answer: {e}")),
        Err(_) => unavailable("the Torch hub did not answer in time".into()),
    }
}

fn unavailable(why: String) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

/// The hub's signals from now on, one JSON object per event. A browser
/// that falls behind by more than the channel holds is told to reload.
async fn live(
    State(app): State<App>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = app.events.subscribe();
    // Said first, so a client knows from when it hears everything.
    let hello =
        futures_util::stream::once(async { Ok(Event::default().event("hello").data("{}")) });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(json) => Event::default().data(json),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Event::default().event("reload").data("{}")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(hello.chain(stream)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
