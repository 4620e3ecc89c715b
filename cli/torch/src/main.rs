//! `torch`: the operator's and the agents' command line.
//!
//! Thin glue: names and messages are checked with `torch-core` before
//! anything is sent, messages go to the agent's supervisor over its control
//! socket, unit state comes from systemd over D-Bus, and `attach`/`logs`
//! hand the terminal to tmux and journalctl.

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
    /// Type a message into an agent and submit it, confirmed on its screen.
    Send {
        /// The agent.
        name: String,
        /// The message; `-` reads it from standard input (one trailing newline dropped).
        text: String,
    },
    /// Print the agent's screen.
    Capture {
        /// The agent.
        name: String,
        /// Lines of scrollback to include above the screen.
        #[arg(long, default_value_t = 0)]
        history: u32,
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
    for dir in paths::agent_definition_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Ok(name) = AgentName::parse(stem) else {
                continue;
            };
            match rows.iter_mut().find(|r| r.name == name.as_str()) {
                Some(row) => {
                    row.definition.get_or_insert(path);
                }
                None => rows.push(AgentRow {
                    name: name.to_string(),
                    unit: name.unit(),
                    active: "inactive".into(),
                    sub: "dead".into(),
                    definition: Some(path),
                }),
            }
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Send { name, text } => {
            let name = agent(&name)?;
            let text = validate_message(&read_message(text)?)?;
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
        }
        Cmd::Capture { name, history } => {
            let name = agent(&name)?;
            match call(&name, &Request::Capture { history }, QUICK_TIMEOUT)? {
                Response::Screen { text } => println!("{}", text.trim_end()),
                other => bail!("{name}: unexpected answer {other:?}"),
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
