//! One agent's supervisor: start-up ([`crate::startup`]), then the tasks
//! that run beside the health loop ([`crate::health`]) until it says to
//! stop: the output pump, the delivery worker and the control socket.
//!
//! Failure policy (also in `docs/supervisor.md`): the supervisor never tries
//! to repair in place. When the agent program exits, it logs the pane's last
//! screen and exits itself (status 0 when the program exited 0, else 1), and
//! systemd's `Restart=on-failure` starts a fresh server and program with the
//! unit's backoff and start limit. When tmux is gone it exits 1 the same way.
//! When the program leaves typed input unread for `hang_after_secs`, it says
//! why, stops tmux and exits 1, so systemd restarts the agent at once. When
//! tmux stops answering, it stops pinging the watchdog and says why in
//! `STATUS=`, and systemd kills and restarts it. When Codex's app server
//! ends, the supervisor stops tmux and exits 1 the same way.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use torch_core::{paths, AgentDefinition, AgentName};

use crate::channel::PromptChannel;
use crate::startup::{self, Started};
use crate::state::Shared;
use crate::{control, delivery, health, logging, notify, output, typed, EXIT_CONFIG};

/// Runs the agent until it stops; the exit code tells systemd what happened.
pub async fn run(name: AgentName) -> ExitCode {
    let found = AgentDefinition::find(&name, &paths::agent_definition_dirs());
    let role = found
        .as_ref()
        .map(|(_, d)| d.role.as_str())
        .unwrap_or("unknown");
    logging::init(name.as_str(), role);
    let (path, def) = match found {
        Ok(f) => f,
        Err(e) => {
            logging::final_lines(3, &e.to_string());
            notify::status(&format!("broken definition: {e}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match supervise(&name, &path, &def).await {
        Ok(code) => code,
        Err(e) => {
            logging::final_lines(3, &format!("{e:#}"));
            notify::status(&format!("failed: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn supervise(
    name: &AgentName,
    def_path: &Path,
    def: &AgentDefinition,
) -> anyhow::Result<ExitCode> {
    tracing::info!("starting agent {name} from {}", def_path.display());
    if let Err(why) = startup::check_program(def, def_path) {
        logging::final_lines(3, &why);
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let Started {
        shared,
        output,
        listener,
        control_path,
        server_pid,
        app_server,
    } = startup::start(name, def_path, def).await?;
    tokio::spawn(pump_output(output, Arc::clone(&shared)));
    let (jobs_tx, jobs_rx) = mpsc::channel(1024);
    let poker = Arc::clone(&shared);
    let counter = Arc::clone(&shared);
    let gate = delivery::Gate {
        ready_pattern: def.ready_pattern.clone(),
        hooks: def.profile.has_hooks().then(|| Arc::clone(&shared.hooks)),
        paste_mode: Some(Arc::clone(&shared.paste_mode)),
        channel: prompt_channel(def.profile, &control_path),
    };
    tokio::spawn(delivery::worker(
        Arc::clone(&shared.screen),
        gate,
        jobs_rx,
        shared.output_reads(),
        typed::load(name),
        // Typed input: the health loop watches whether the program reads it.
        move || poker.poke.notify_one(),
        move |delivered, id| counter.attempted(delivered, id),
    ));
    tokio::spawn(control::serve(listener, Arc::clone(&shared), jobs_tx));
    tokio::spawn(crate::report::run(Arc::clone(&shared)));
    let code = match app_server {
        Some(server) => watch_with_app_server(name, def, shared, server_pid, server).await,
        None => health::watch(name, def, shared, server_pid).await,
    };
    crate::report::going_down("its unit stops").await;
    if def.worktree && paths::retiring_marker(name).exists() {
        match crate::worktree::put_away(name, def) {
            Ok(what) => tracing::info!("retired: {what}"),
            Err(e) => tracing::warn!("retired, but its worktree stays: {e:#}"),
        }
    }
    code
}

/// Where the agent's CLI takes its prompts, when it has a way of its own.
fn prompt_channel(profile: torch_core::Profile, control_path: &Path) -> Option<PromptChannel> {
    match profile {
        torch_core::Profile::Opencode => Some(PromptChannel::Plugin(
            crate::opencode::channel_path(control_path),
        )),
        torch_core::Profile::Codex => Some(PromptChannel::AppServer(
            crate::app_server::socket_path(control_path),
        )),
        _ => None,
    }
}

/// Watches the agent as [`health::watch`] does, and Codex's app server with
/// it: its TUI cannot work without it, so the agent restarts when it ends.
async fn watch_with_app_server(
    name: &AgentName,
    def: &AgentDefinition,
    shared: Arc<Shared>,
    server_pid: u32,
    mut server: crate::app_server::AppServer,
) -> anyhow::Result<ExitCode> {
    let tmux = Arc::clone(&shared);
    tokio::select! {
        code = health::watch(name, def, shared, server_pid) => code,
        how = server.exited() => {
            let why = format!("Codex's app server ended ({how}); restarting the agent");
            logging::final_lines(3, &why);
            notify::status(&why);
            let _ = tmux.tmux.kill_server().await;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Streams the pane's output into the journal, counting each read for the
/// screen reader, until the pipe fails.
async fn pump_output(fifo: pipe::Receiver, shared: Arc<Shared>) {
    if let Err(e) = output::pump(fifo, |paste| shared.output_seen(paste)).await {
        tracing::warn!("pane output no longer reaches the journal: {e}");
    }
    shared.output_lost();
}
