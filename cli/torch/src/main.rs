//! `torch`: the operator's and the agents' command line.
//!
//! Thin glue: names and messages are checked with `torch-core` before
//! anything is sent; messages, spawns and status go through the hub
//! (`torchd`, D-Bus); `--direct` talks to an agent's supervisor over its
//! control socket; unit state comes from systemd over D-Bus; `attach` and
//! `logs` hand the terminal to tmux and journalctl.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context};
use args::{Cli, Cmd};
use clap::Parser;
use torch_core::protocol::{self, Request, Response};
use torch_core::{paths, validate_message, AgentDefinition, AgentName, DefinitionError};
use torch_systemd::{JobKind, Systemd};

mod args;
mod autocommit;
mod docs;
mod hub;

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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[derive(serde::Serialize)]
struct AgentRow {
    name: String,
    unit: String,
    active: String,
    sub: String,
    definition: Option<PathBuf>,
    /// Why the definition cannot be used, when it cannot.
    definition_error: Option<String>,
}

fn list(json: bool) -> anyhow::Result<()> {
    let units = runtime()?
        .block_on(async { Systemd::system().await?.list("torch-agent@*.service").await })?;
    let mut rows: Vec<AgentRow> = units
        .into_iter()
        .filter_map(|u| {
            let name = AgentName::from_unit(&u.name)?;
            Some(AgentRow {
                name: name.to_string(),
                unit: u.name,
                active: u.active,
                sub: u.sub,
                definition: None,
                definition_error: None,
            })
        })
        .collect();
    for (name, found) in torch_core::definition::discover(&paths::agent_definition_dirs()) {
        let error = found.def.err();
        match rows.iter_mut().find(|r| r.name == name) {
            Some(row) => {
                row.definition = Some(found.path);
                row.definition_error = error;
            }
            None => rows.push(AgentRow {
                unit: found.name.unit(),
                name,
                active: "inactive".into(),
                sub: "dead".into(),
                definition: Some(found.path),
                definition_error: error,
            }),
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{:<24} {:<10} {:<14} DEFINITION", "AGENT", "ACTIVE", "SUB");
    for r in rows {
        let def = r
            .definition
            .map_or("(none)".to_string(), |p| p.display().to_string());
        println!("{:<24} {:<10} {:<14} {def}", r.name, r.active, r.sub);
        if let Some(e) = r.definition_error {
            println!("{:<24} broken definition: {e}", "");
        }
    }
    Ok(())
}

/// Fails when the definition of `name` is broken: its supervisor exits at
/// once, and systemd's "job failed" does not say why. A file we cannot read
/// (another user's) is left to the supervisor to judge.
fn check_definition(name: &AgentName) -> anyhow::Result<()> {
    match AgentDefinition::find(name, &paths::agent_definition_dirs()) {
        Err(e @ (DefinitionError::Parse { .. } | DefinitionError::Invalid { .. })) => {
            bail!("agent {name} has a broken definition: {e}; fix the file, then try again")
        }
        _ => Ok(()),
    }
}

fn job(kind: JobKind, name: &AgentName) -> anyhow::Result<()> {
    let unit = name.unit();
    runtime()?.block_on(async { Systemd::system().await?.run_job(kind, &unit).await })?;
    Ok(())
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

/// Polls the hub until message `id` to `to` is delivered or failed.
async fn wait_delivered(hub: &hub::ManagerProxy<'_>, to: &str, id: i64) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + SEND_TIMEOUT;
    loop {
        let list: serde_json::Value =
            serde_json::from_str(&hub.inbox(to, 10_000).await.map_err(hub::explain)?)?;
        let m = list.as_array().and_then(|l| {
            l.iter()
                .find(|m| m.get("id").and_then(|v| v.as_i64()) == Some(id))
        });
        match m.and_then(|m| m.get("state")).and_then(|s| s.as_str()) {
            Some("delivered") => {
                eprintln!("delivered to {to}");
                return Ok(());
            }
            Some("failed") => {
                let reason = m
                    .and_then(|m| m.get("reason"))
                    .and_then(|r| r.as_str())
                    .unwrap_or("no reason given");
                bail!("message #{id} to {to} failed: {reason}");
            }
            _ => {}
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "message #{id} is still queued for {to} after {}s; see `torch inbox {to}`",
                SEND_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Send {
            name,
            text,
            wait,
            direct,
        } => {
            let name = agent(&name)?;
            let text = validate_message(&read_message(text)?)?;
            if direct {
                match call(&name, &Request::Deliver { text, id: None }, SEND_TIMEOUT)? {
                    Response::Delivered {
                        millis, submits, ..
                    } => {
                        eprintln!(
                            "delivered to {name} in {millis} ms ({submits} submit{})",
                            if submits == 1 { "" } else { "s" }
                        );
                    }
                    other => bail!("{name}: unexpected answer {other:?}"),
                }
                return Ok(());
            }
            runtime()?.block_on(async {
                let hub = hub::connect().await?;
                let id = hub
                    .send(&hub::caller(), name.as_str(), &text)
                    .await
                    .map_err(hub::explain)?;
                eprintln!("queued message #{id} for {name}");
                if wait {
                    wait_delivered(&hub, name.as_str(), id).await?;
                }
                anyhow::Ok(())
            })?;
        }
        Cmd::Capture {
            name,
            history,
            direct,
        } => {
            let name = agent(&name)?;
            let text = if direct || history > 0 {
                match call(&name, &Request::Capture { history }, QUICK_TIMEOUT)? {
                    Response::Screen { text } => text,
                    other => bail!("{name}: unexpected answer {other:?}"),
                }
            } else {
                runtime()?.block_on(async {
                    hub::connect()
                        .await?
                        .capture(name.as_str())
                        .await
                        .map_err(hub::explain)
                })?
            };
            println!("{}", text.trim_end());
        }
        Cmd::Spawn {
            name,
            role,
            parent,
            workdir,
            profile,
            brief,
            command,
        } => {
            let brief = match brief {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read the brief {}", p.display()))?
                    .trim_end()
                    .to_string(),
                None => String::new(),
            };
            let workdir = std::path::absolute(&workdir)
                .with_context(|| format!("bad working directory {}", workdir.display()))?;
            let argv: Vec<&str> = command.iter().map(String::as_str).collect();
            let unit = runtime()?.block_on(async {
                hub::connect()
                    .await?
                    .spawn(
                        &name,
                        &role,
                        &parent,
                        &workdir.to_string_lossy(),
                        &profile,
                        &argv,
                        &brief,
                        &hub::caller(),
                    )
                    .await
                    .map_err(hub::explain)
            })?;
            println!("spawned {name} ({unit})");
        }
        Cmd::Schedule {
            agent,
            in_,
            at,
            every,
            on_calendar,
            note,
        } => {
            let agent = if agent == "self" {
                std::env::var("TORCH_AGENT")
                    .ok()
                    .filter(|a| !a.is_empty())
                    .context("`self` works only from an agent's pane (TORCH_AGENT is not set)")?
            } else {
                agent
            };
            let (kind, spec) = match (in_, at, every, on_calendar) {
                (Some(d), ..) => ("in", d),
                (_, Some(t), ..) => ("at", t),
                (_, _, Some(d), _) => ("every", d),
                (_, _, _, Some(e)) => ("calendar", e),
                _ => bail!("say when: --in, --at, --every or --on-calendar"),
            };
            let (id, next) = runtime()?.block_on(async {
                hub::connect()
                    .await?
                    .schedule(&agent, kind, &spec, &note, &hub::caller())
                    .await
                    .map_err(hub::explain)
            })?;
            println!(
                "check-in #{id} for {agent}, next at {}",
                hub::local_time(next)
            );
        }
        Cmd::Schedules { agent, json } => {
            let a = agent.unwrap_or_default();
            let s = runtime()?.block_on(async {
                hub::connect()
                    .await?
                    .schedules(&a)
                    .await
                    .map_err(hub::explain)
            })?;
            print_json_or(json, &s, hub::print_schedules)?;
        }
        Cmd::Unschedule { id } => {
            runtime()?.block_on(async {
                hub::connect()
                    .await?
                    .unschedule(id)
                    .await
                    .map_err(hub::explain)
            })?;
            println!("removed check-in #{id}");
        }
        Cmd::Autocommit { dry_run } => autocommit::run(dry_run)?,
        Cmd::GenerateDocs { dir } => docs::generate(&dir)?,
        Cmd::FireDue => {
            let n = runtime()?
                .block_on(async { hub::connect().await?.fire_due().await.map_err(hub::explain) })?;
            println!("{n} check-ins fired");
        }
        Cmd::Retire { name } => {
            let transcript = runtime()?.block_on(async {
                hub::connect()
                    .await?
                    .retire(&name)
                    .await
                    .map_err(hub::explain)
            })?;
            println!("retired {name}; final transcript: {transcript}");
        }
        Cmd::Status { json } => {
            let s = runtime()?
                .block_on(async { hub::connect().await?.status().await.map_err(hub::explain) })?;
            if json {
                println!("{s}");
            } else {
                hub::print_status(&s)?;
                let projects = autocommit::last_commits();
                if !projects.is_empty() {
                    println!();
                    println!("{:<40} {:<20} LAST COMMIT", "PROJECT", "BRANCH");
                    for (root, branch, when) in projects {
                        println!("{:<40} {:<20} {when}", root.display(), branch);
                    }
                }
            }
        }
        Cmd::Inbox { name, limit, json } => {
            let s = runtime()?.block_on(async {
                hub::connect()
                    .await?
                    .inbox(&name, limit)
                    .await
                    .map_err(hub::explain)
            })?;
            print_json_or(json, &s, hub::print_messages)?;
        }
        Cmd::Messages { agent, limit, json } => {
            let a = agent.unwrap_or_default();
            let s = runtime()?.block_on(async {
                hub::connect()
                    .await?
                    .messages(&a, limit)
                    .await
                    .map_err(hub::explain)
            })?;
            print_json_or(json, &s, hub::print_messages)?;
        }
        Cmd::Attach { name } => {
            let name = agent(&name)?;
            let target = format!("={}", name.tmux_session());
            let err = Command::new("tmux")
                .arg("-S")
                .arg(paths::tmux_socket(&name))
                .args(["attach-session", "-t", &target])
                .exec();
            bail!("cannot run tmux: {err}");
        }
        Cmd::Logs {
            name,
            follow,
            lines,
        } => {
            let name = agent(&name)?;
            let mut cmd = Command::new("journalctl");
            cmd.arg("-u").arg(name.unit()).arg("--no-hostname");
            if follow {
                cmd.arg("-f");
            }
            if let Some(n) = lines {
                cmd.arg("-n").arg(n.to_string());
            }
            let err = cmd.exec();
            bail!("cannot run journalctl: {err}");
        }
        Cmd::List { json } => list(json)?,
        Cmd::Start { name } => {
            let name = agent(&name)?;
            // Started anyway, so the supervisor's own journal line and exit
            // status record the failure; the reason is then said here too.
            if let Err(e) = job(JobKind::Start, &name) {
                check_definition(&name)?;
                return Err(e);
            }
        }
        Cmd::Stop { name } => job(JobKind::Stop, &agent(&name)?)?,
        Cmd::Restart { name } => {
            let name = agent(&name)?;
            // Checked first: a restart would stop the running agent and
            // then fail to start it.
            check_definition(&name)?;
            job(JobKind::Restart, &name)?
        }
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
