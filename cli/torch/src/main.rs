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
use clap::{Parser, Subcommand};
use torch_core::protocol::{self, Request, Response};
use torch_core::{paths, validate_message, AgentName};
use torch_systemd::{JobKind, Systemd};

mod autocommit;
mod hub;

/// How long `torch send` waits: the supervisor may wait up to a minute for
/// the prompt, then paste and submit with retries.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);
const QUICK_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Parser)]
#[command(
    name = "torch",
    version,
    about = "Run and talk to a fleet of AI coding agents supervised by systemd"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send a message to an agent through the hub (stored, then delivered in order).
    ///
    /// The sender is $TORCH_AGENT when an agent calls from its pane, else `operator`.
    Send {
        /// The agent.
        name: String,
        /// The message; `-` reads it from standard input (one trailing newline dropped).
        text: String,
        /// Wait until the message is confirmed on the agent's screen.
        #[arg(long)]
        wait: bool,
        /// Bypass the hub: type it now through the agent's supervisor (not stored).
        #[arg(long)]
        direct: bool,
    },
    /// Print the agent's screen.
    Capture {
        /// The agent.
        name: String,
        /// Lines of scrollback to include above the screen (implies --direct).
        #[arg(long, default_value_t = 0)]
        history: u32,
        /// Ask the agent's supervisor, not the hub.
        #[arg(long)]
        direct: bool,
    },
    /// Create an agent: write its definition, queue its brief, start it.
    Spawn {
        /// The new agent's name.
        name: String,
        /// orchestrator, project-manager, engineer, developer, qa, devops, reviewer, researcher, writer.
        #[arg(long)]
        role: String,
        /// The agent it reports to (required except for an orchestrator).
        #[arg(long, default_value = "")]
        parent: String,
        /// Its working directory.
        #[arg(long)]
        workdir: PathBuf,
        /// claude, codex, gemini, aider or shell (default).
        #[arg(long, default_value = "")]
        profile: String,
        /// A file whose text is delivered as the agent's first message.
        #[arg(long)]
        brief: Option<PathBuf>,
        /// The command to run instead of the profile's default.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Schedule a check-in: at the given time the note is sent to the agent
    /// through the hub, as a systemd timer that survives reboots.
    ///
    /// AGENT may be `self` from an agent's pane. Examples:
    /// `torch schedule self --in 15m --note "check the build"`,
    /// `torch schedule dev --every 30m --note "commit your work"`.
    #[command(group(clap::ArgGroup::new("when").required(true).args(["in_", "at", "every", "on_calendar"])))]
    Schedule {
        /// The agent, or `self`.
        agent: String,
        /// Once, after this long (90s, 15m, 1.5h, 1h30m, 2d).
        #[arg(long = "in", value_name = "DURATION")]
        in_: Option<String>,
        /// Once, at the next HH:MM[:SS] (local time).
        #[arg(long, value_name = "HH:MM")]
        at: Option<String>,
        /// Repeatedly, with this period (first after one period).
        #[arg(long, value_name = "DURATION")]
        every: Option<String>,
        /// Repeatedly, on a systemd calendar expression (man systemd.time).
        #[arg(long, value_name = "EXPR")]
        on_calendar: Option<String>,
        /// What to tell the agent when it fires.
        #[arg(long)]
        note: String,
    },
    /// List active check-ins with their next fire time from systemd.
    Schedules {
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a check-in and its timer.
    Unschedule {
        /// The schedule's id (see `torch schedules`).
        id: i64,
    },
    /// Commit work in progress in every agent's project (what
    /// torch-autocommit.timer runs; see torch.toml [autocommit]).
    Autocommit {
        /// Say what would be committed, commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Fire the check-ins that are due (what their timers run).
    #[command(hide = true)]
    FireDue,
    /// Stop an agent, keep its final transcript, and remove it.
    Retire {
        /// The agent.
        name: String,
    },
    /// The fleet as a tree, with unit state, agent state and queues.
    Status {
        /// Machine-readable output (schema in docs/dbus.md).
        #[arg(long)]
        json: bool,
    },
    /// Messages addressed to an agent.
    Inbox {
        /// The agent.
        name: String,
        /// At most this many, newest last.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Message history, of one agent or of all.
    Messages {
        /// Only messages to or from this agent.
        #[arg(long)]
        agent: Option<String>,
        /// At most this many, newest last.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Attach your terminal to the agent's tmux session (detach with C-b d).
    Attach {
        /// The agent.
        name: String,
    },
    /// Show the agent's journal (its output and its supervisor's lines).
    Logs {
        /// The agent.
        name: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Show this many recent lines.
        #[arg(short = 'n', long)]
        lines: Option<u32>,
    },
    /// List agents: defined ones and running units, with their state.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Start an agent's unit and wait until it is ready.
    Start {
        /// The agent.
        name: String,
    },
    /// Stop an agent's unit.
    Stop {
        /// The agent.
        name: String,
    },
    /// Restart an agent's unit and wait until it is ready.
    Restart {
        /// The agent.
        name: String,
    },
}

fn agent(name: &str) -> anyhow::Result<AgentName> {
    AgentName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))
}

fn call(name: &AgentName, req: &Request, timeout: Duration) -> anyhow::Result<Response> {
    let resp = protocol::call(&paths::control_socket(name), req, timeout)?;
    if let Response::Error { message } = resp {
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
            })
        })
        .collect();
    for (name, found) in torch_core::definition::discover(&paths::agent_definition_dirs()) {
        match rows.iter_mut().find(|r| r.name == name) {
            Some(row) => row.definition = Some(found.path),
            None => rows.push(AgentRow {
                unit: found.name.unit(),
                name,
                active: "inactive".into(),
                sub: "dead".into(),
                definition: Some(found.path),
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
    }
    Ok(())
}

fn job(kind: JobKind, name: &AgentName) -> anyhow::Result<()> {
    let unit = name.unit();
    runtime()?.block_on(async { Systemd::system().await?.run_job(kind, &unit).await })?;
    Ok(())
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
            if json {
                println!("{s}");
            } else {
                hub::print_schedules(&s)?;
            }
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
            if json {
                println!("{s}");
            } else {
                hub::print_messages(&s)?;
            }
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
            if json {
                println!("{s}");
            } else {
                hub::print_messages(&s)?;
            }
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
        Cmd::Start { name } => job(JobKind::Start, &agent(&name)?)?,
        Cmd::Stop { name } => job(JobKind::Stop, &agent(&name)?)?,
        Cmd::Restart { name } => job(JobKind::Restart, &agent(&name)?)?,
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
