//! `torch-agent NAME`: the main process of `torch-agent@NAME.service`.
//!
//! It owns the agent's private tmux server, tells systemd the truth about the
//! agent's health (READY, STATUS, WATCHDOG), streams the pane's output into
//! the journal and delivers messages. See `docs/supervisor.md` for what it
//! does in each failure case.

mod aider;
mod app_server;
mod attention;
mod channel;
mod claude;
mod cli_config;
mod codex;
mod control;
mod delivery;
mod gemini;
mod health;
mod hooks;
mod limits;
mod logging;
mod notify;
mod opencode;
mod output;
mod proc;
mod report;
mod screen;
mod session;
mod startup;
mod state;
mod supervisor;
mod tokens;
mod typed;
mod user;
mod worktree;

use std::process::ExitCode;

use torch_core::AgentName;

/// Exit status for a broken definition: the unit's
/// `RestartPreventExitStatus=` stops systemd from retrying what cannot work.
pub const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let raw = match args.as_slice() {
        [flag, socket] if flag == "--hook" => return hooks::forward(std::path::Path::new(socket)),
        [flag, socket] if flag == "--status-line" => {
            return hooks::status_line(std::path::Path::new(socket))
        }
        [flag, instance] if flag == "--make-user" => return user::make(instance),
        [raw] => raw.clone(),
        _ => {
            eprintln!("usage: torch-agent INSTANCE (normally started as torch-agent@INSTANCE.service)\n       torch-agent --hook SOCKET (run by an agent CLI's hooks)\n       torch-agent --status-line SOCKET (Claude Code's status line)\n       torch-agent --make-user INSTANCE (as root, by torch-agent-user@INSTANCE.service)");
            return ExitCode::from(2);
        }
    };
    let name = match AgentName::from_instance(&raw) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("torch-agent: refusing to start: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if name.instance() != raw {
        // Two spellings of one agent would be two units fighting over one
        // runtime directory; only the canonical one may run.
        eprintln!(
            "torch-agent: refusing to start: agent {name} must run as {} (use `torch start {name}`)",
            name.unit()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("torch-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(supervisor::run(name))
}
