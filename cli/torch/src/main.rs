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
use args::{Cli, Cmd, ConfigCmd};
use clap::Parser;
use futures_util::StreamExt;
use torch_core::protocol::{self, Request, Response};
use torch_core::{paths, validate_message, AgentDefinition, AgentName, DefinitionError};
use torch_systemd::{JobKind, Systemd};

mod args;
mod autocommit;
mod config_check;
mod docs;
mod hub;
mod show;

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

/// Starts, stops or restarts an agent through the hub, which remembers
/// whether it runs after a reboot; straight through systemd when the hub is
/// not running.
fn job(kind: JobKind, name: &AgentName) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let conn = zbus::Connection::system().await.map_err(hub::explain)?;
        let proxy = hub::ManagerProxy::new(&conn).await.map_err(hub::explain)?;
        let through_hub = match kind {
            JobKind::Start => proxy.start(name.as_str()).await,
            JobKind::Stop => proxy.stop(name.as_str()).await,
            JobKind::Restart => proxy.restart(name.as_str()).await,
        };
        match through_hub {
            Ok(()) => Ok(()),
            Err(e) if hub::hub_absent(&e) => {
                let after = if matches!(kind, JobKind::Stop) {
                    "it may start again at the next boot"
                } else {
                    "it will not start by itself at the next boot"
                };
                eprintln!("torch: the hub is not running, so {name} is handled by systemd alone and {after}");
                Systemd::system().await?.run_job(kind, &name.unit()).await?;
                Ok(())
            }
            Err(e) => Err(hub::explain(e)),
        }
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

/// How a message ended.
enum Outcome {
    Delivered,
    Failed(String),
}

/// The message's state from the hub's store, for when a signal may have
/// been missed (the hub restarted): one indexed row, whatever the history.
async fn lookup(hub: &hub::ManagerProxy<'_>, to: &str, id: i64) -> anyhow::Result<Option<Outcome>> {
    let page: Vec<torch_api::Message> =
        serde_json::from_str(&hub.inbox(to, id + 1, 1).await.map_err(hub::explain)?)?;
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
/// send, so none is missed), with a look at the store every few seconds in
/// case the hub restarted meanwhile.
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
    let mut look = tokio::time::interval(Duration::from_secs(5));
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
                if let Some(o) = lookup(&hub, to, id).await? { break o; }
            }
            _ = tokio::time::sleep_until(deadline) => bail!(
                "message #{id} is still queued for {to} after {}s; see `torch inbox {to}`",
                SEND_TIMEOUT.as_secs()
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
            runtime()?.block_on(send_through_hub(name.as_str(), &text, wait))?;
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
                show::local_time(next)
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
            print_json_or(json, &s, show::print_schedules)?;
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
        Cmd::Config {
            action: ConfigCmd::Check,
        } => config_check::run()?,
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
                show::print_status(&s)?;
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
        Cmd::Inbox {
            name,
            limit,
            before,
            json,
        } => {
            let s = runtime()?.block_on(async {
                hub::connect()
                    .await?
                    .inbox(&name, before.unwrap_or(0), limit)
                    .await
                    .map_err(hub::explain)
            })?;
            print_json_or(json, &s, show::print_messages)?;
        }
        Cmd::Messages {
            agent,
            limit,
            before,
            json,
        } => {
            let a = agent.unwrap_or_default();
            let s = runtime()?.block_on(async {
                hub::connect()
                    .await?
                    .messages(&a, before.unwrap_or(0), limit)
                    .await
                    .map_err(hub::explain)
            })?;
            print_json_or(json, &s, show::print_messages)?;
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
