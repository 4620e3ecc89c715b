//! `torch`: the operator's and the agents' command line.
//!
//! Thin glue: names and messages are checked with `torch-core` before
//! anything is sent; messages, spawns and status go through the hub
//! (`torchd`, D-Bus); `--direct` talks to an agent's supervisor over its
//! control socket; unit state comes from systemd over D-Bus; `attach` and
//! `logs` hand the terminal to tmux and journalctl.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use args::{Cli, Cmd, ConfigCmd, NodeCmd};
use clap::Parser;
use torch_core::protocol::{self, Request, Response};
use torch_core::{paths, AgentName};
use torch_systemd::JobKind;

mod agents;
mod args;
mod autocommit;
mod checkins;
mod config_check;
mod docs;
mod events;
mod hub;
mod replay;
mod send;
mod show;
mod tasks;
mod top;
mod work;

/// How long `torch send` waits: the supervisor may wait up to a minute for
/// the prompt, then paste and submit with retries.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);
const QUICK_TIMEOUT: Duration = Duration::from_secs(15);

fn agent(name: &str) -> anyhow::Result<AgentName> {
    AgentName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))
}

fn call(name: &AgentName, req: &Request, timeout: Duration) -> anyhow::Result<Response> {
    let resp = protocol::call(&paths::control_socket(name), req, timeout)?;
    if let Response::Error { message, .. } = resp {
        bail!("{name}: {message}");
    }
    Ok(resp)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs one call on the hub and says what its error means.
fn hub_call<T>(
    f: impl AsyncFnOnce(&hub::ManagerProxy<'static>) -> zbus::Result<T>,
) -> anyhow::Result<T> {
    runtime()?.block_on(async {
        let proxy = hub::connect().await?;
        f(&proxy).await.map_err(hub::explain)
    })
}

/// Prints the hub's JSON as it is, or through `table`.
fn print_json_or(json: bool, s: &str, table: fn(&str) -> anyhow::Result<()>) -> anyhow::Result<()> {
    if json {
        println!("{s}");
        Ok(())
    } else {
        table(s)
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Send {
            name,
            text,
            wait,
            direct,
        } => send::run(&agent(&name)?, text, wait, direct)?,
        Cmd::Capture {
            name,
            history,
            direct,
        } => agents::capture(&agent(&name)?, history, direct)?,
        Cmd::Answer { name, choice } => agents::answer(&agent(&name)?, &choice)?,
        Cmd::Spawn(req) => agents::spawn(req)?,
        Cmd::Schedule {
            agent,
            in_,
            at,
            every,
            on_calendar,
            note,
        } => {
            let when = (in_, at, every, on_calendar);
            checkins::schedule(agent, when, &note)?
        }
        Cmd::Schedules { agent, json } => {
            let a = agent.unwrap_or_default();
            let s = hub_call(async |h| h.schedules(&a).await)?;
            print_json_or(json, &s, show::print_schedules)?;
        }
        Cmd::Unschedule { id } => {
            hub_call(async |h| h.unschedule(id).await)?;
            println!("removed check-in #{id}");
        }
        Cmd::Autocommit { dry_run } => autocommit::run(dry_run)?,
        Cmd::Config {
            action: ConfigCmd::Check,
        } => config_check::run()?,
        Cmd::GenerateDocs { dir } => docs::generate(&dir)?,
        Cmd::FireDue => {
            let n = hub_call(async |h| h.fire_due().await)?;
            println!("{n} check-ins fired");
        }
        Cmd::Env { name, file, remove } => {
            agents::install_env(&agent(&name)?, file.as_deref().filter(|_| !remove))?;
        }
        Cmd::Retire { name } => {
            let transcript = hub_call(async |h| h.retire(&name).await)?;
            println!("retired {name}; final transcript: {transcript}");
        }
        Cmd::Node {
            action: NodeCmd::Forget { node },
        } => println!("{}", hub_call(async |h| h.forget_node(&node).await)?),
        Cmd::Status { json } => show::status(json)?,
        Cmd::Top => runtime()?.block_on(top::run())?,
        Cmd::Metrics => print!("{}", hub_call(async |h| h.metrics().await)?),
        Cmd::Events { agent, json, since } => {
            let since_ms = since.as_deref().map(events::since_ms).transpose()?;
            runtime()?.block_on(events::watch(agent, json, since_ms))?
        }
        Cmd::Agents { skills, idle, json } => show::agents(&skills, idle, json)?,
        Cmd::Task { action } => tasks::run(action)?,
        Cmd::Explain { name } => show::explain(&agent(&name)?)?,
        Cmd::Inbox {
            name,
            limit,
            before,
            json,
        } => {
            let s = hub_call(async |h| h.inbox(&name, before.unwrap_or(0), limit).await)?;
            print_json_or(json, &s, show::print_messages)?;
        }
        Cmd::Messages {
            agent,
            limit,
            before,
            json,
        } => {
            let a = agent.unwrap_or_default();
            let s = hub_call(async |h| h.messages(&a, before.unwrap_or(0), limit).await)?;
            print_json_or(json, &s, show::print_messages)?;
        }
        Cmd::Attach { name } => agents::attach(&agent(&name)?)?,
        Cmd::Logs {
            name,
            follow,
            lines,
        } => agents::logs(&agent(&name)?, follow, lines)?,
        Cmd::List { json } => agents::list(json)?,
        Cmd::Start { name } => agents::start(&agent(&name)?)?,
        Cmd::Stop { name } => agents::job(JobKind::Stop, &agent(&name)?)?,
        Cmd::Restart { name } => agents::restart(&agent(&name)?)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
