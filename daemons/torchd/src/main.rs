//! `torchd`, the Torch hub (`torch.service`).
//!
//! Owns `org.torch.Torch1` on the system bus, stores every message durably
//! before answering, delivers them through the agents' supervisors, spawns
//! and retires agents through systemd's D-Bus API, and tells systemd the
//! truth: READY once the store and the bus name are up, WATCHDOG only while
//! both answer. Agents are units of their own and keep running while the
//! hub is down; a restarted hub picks up every queued message.

mod access;
mod bus;
mod caller;
mod cluster;
mod courier;
mod error;
mod events;
mod fault;
mod federation;
mod fleet;
mod forget;
mod hub;
mod ledger;
mod lifecycle;
mod metrics;
mod moves;
mod placement;
mod pool_nodes;
mod pools;
mod remote_tasks;
mod reports;
mod retention;
mod router;
mod schedule;
mod sentinel;
mod service;
mod signals;
mod stalls;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use torch_api::{BUS_NAME, OBJECT_PATH};
use torch_core::config::{config_files, Config};
use torch_store::Store;
use torch_systemd::Systemd;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

/// Exit status for a broken `torch.toml`; the unit does not retry it.
const EXIT_CONFIG: u8 = 78;

fn init_logging() {
    match tracing_journald::layer() {
        Ok(j) => tracing_subscriber::registry()
            .with(
                j.with_field_prefix(None)
                    .with_syslog_identifier("torchd".into())
                    .with_filter(LevelFilter::INFO),
            )
            .init(),
        Err(_) => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(LevelFilter::INFO),
            )
            .init(),
    }
}

fn notify(states: &[NotifyState]) {
    let _ = sd_notify::notify(false, states);
}

fn main() -> ExitCode {
    init_logging();
    let config = match Config::load(&config_files()) {
        Ok(c) => c,
        Err(e) => return broken_configuration(&e),
    };
    let cluster = match cluster::Node::from_config(&config) {
        Ok(c) => c,
        Err(e) => return broken_configuration(&format!("{e:#}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, cluster)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            notify(&[NotifyState::Status(&format!("failed: {e:#}"))]);
            ExitCode::FAILURE
        }
    }
}

/// Says what is wrong with the configuration, which a restart would not
/// mend.
fn broken_configuration(e: &str) -> ExitCode {
    // On stderr: journald attributes a native message of a process that has
    // already exited to no unit (see torch-agent's logging).
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        eprintln!("<3>{e}");
    } else {
        tracing::error!("{e}");
    }
    notify(&[NotifyState::Status(&format!("broken configuration: {e}"))]);
    ExitCode::from(EXIT_CONFIG)
}

async fn run(config: Config, cluster: Option<cluster::Node>) -> anyhow::Result<()> {
    let state_dir = std::env::var_os("STATE_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/torch"));
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    fleet::open_spawned_definitions();
    let db = state_dir.join("torch.db");
    let store = Arc::new(
        Store::open(&db)
            .with_context(|| format!("cannot open the message store {}", db.display()))?,
    );
    let events = events::Events::default();
    // Two seconds for a definition edited in place to count.
    let fleet = Arc::new(fleet::FleetCache::new(
        torch_core::paths::agent_definition_dirs(),
        Duration::from_secs(2),
    ));
    let courier = courier::Courier::new(
        Arc::clone(&store),
        events.clone(),
        Arc::clone(&fleet),
        config.clone(),
    );

    let system = zbus::Connection::system()
        .await
        .context("cannot connect to the system bus")?;
    let systemd = Systemd::with_connection(&system).await?;
    let hub = Arc::new(hub::Hub {
        store: Arc::clone(&store),
        courier: Arc::clone(&courier),
        events: events.clone(),
        config,
        systemd,
        state_dir,
        fleet,
        ledger_changed: tokio::sync::Notify::new(),
        pools: Default::default(),
        reports: Default::default(),
        cluster,
        forward_now: tokio::sync::Notify::new(),
        placement: Default::default(),
    });
    system
        .object_server()
        .at(
            OBJECT_PATH,
            torch_api::ManagerServer(bus::Manager::new(Arc::clone(&hub))),
        )
        .await?;
    system
        .request_name(BUS_NAME)
        .await
        .with_context(|| format!("cannot own {BUS_NAME} on the system bus (is another torchd running, and is the D-Bus policy file installed?)"))?;
    events.attach(Box::new(bus::Signals(system.clone())));

    // Timers made before a reboot are gone: re-arm them from the store.
    schedule::resync(&hub).await;
    tokio::spawn(retention::run(
        Arc::clone(&store),
        hub.config.retention.messages,
    ));
    // Open tasks to idle agents with the skills; stalled tasks noticed.
    tokio::spawn(router::run(Arc::clone(&hub)));
    tokio::spawn(pools::run(Arc::clone(&hub)));
    tokio::spawn(signals::run(Arc::clone(&hub)));
    tokio::spawn(sentinel::run(Arc::clone(&hub)));
    tokio::spawn(cluster::run(Arc::clone(&hub)));
    federation::start(&hub);
    placement::start(&hub);
    // After a reboot, the agents that ran before it.
    tokio::spawn(lifecycle::restore_after_boot(Arc::clone(&hub)));
    // Pick up what was queued before a restart.
    let pending = store.recipients_with_queue()?;
    for agent in &pending {
        courier.kick(agent);
    }
    tracing::info!(
        "torchd ready on {BUS_NAME}; {} agents with queued messages",
        pending.len()
    );

    serve(&store, &system).await?;
    notify(&[NotifyState::Stopping]);
    tracing::info!("torchd stopping");
    Ok(())
}

/// Tells systemd the hub is ready once the first health check passes, then
/// pings the watchdog while it keeps passing, until SIGTERM or SIGINT.
async fn serve(store: &Arc<Store>, system: &zbus::Connection) -> anyhow::Result<()> {
    let mut usec = 0;
    let period = if sd_notify::watchdog_enabled(false, &mut usec) {
        Duration::from_micros(usec) / 3
    } else {
        Duration::from_secs(10)
    };
    let dbus = zbus::fdo::DBusProxy::new(system).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut ticks = tokio::time::interval(period);
    let mut ready = false;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = ticks.tick() => {}
        }
        let queued = match health(store, &dbus).await {
            Ok(queued) => queued,
            Err(why) => {
                tracing::warn!("unhealthy: {why}; withholding the watchdog ping");
                notify(&[NotifyState::Status(&format!("unhealthy: {why}"))]);
                continue;
            }
        };
        let status = format!("serving {BUS_NAME}; {queued} agents with queued messages");
        if ready {
            notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
        } else {
            notify(&[
                NotifyState::Ready,
                NotifyState::Watchdog,
                NotifyState::Status(&status),
            ]);
            ready = true;
        }
    }
    Ok(())
}

/// How many agents have queued messages, if the store and the bus answer;
/// otherwise which one does not.
async fn health(
    store: &Arc<Store>,
    dbus: &zbus::fdo::DBusProxy<'_>,
) -> Result<usize, &'static str> {
    let store_ok = torch_store::call(store, |s| Ok(s.healthy()))
        .await
        .unwrap_or(false);
    if !store_ok {
        return Err("the message store does not answer");
    }
    let bus_ok = tokio::time::timeout(Duration::from_secs(2), dbus.get_id())
        .await
        .is_ok_and(|r| r.is_ok());
    if !bus_ok {
        return Err("the system bus does not answer");
    }
    Ok(torch_store::call(store, |s| s.recipients_with_queue())
        .await
        .map_or(0, |v| v.len()))
}
