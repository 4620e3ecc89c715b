//! `torch-agent --make-user INSTANCE`: makes the system user an agent runs
//! as, run by root in `torch-agent-user@INSTANCE.service` before the
//! agent's unit starts (systemd resolves `User=ta-%i` when it starts each
//! of the unit's processes, so the user must exist by then).
//!
//! One user per agent is what keeps agents apart below the hub: another
//! uid cannot open an agent's home (0700), join its tmux server (tmux lets
//! in only its own user and root), signal its processes or read their
//! memory. The user's own group is its primary group, so its files are
//! private unless written in a shared project directory (group
//! `torch-agent`, set-group-id; see docs/security.md). It is also a member
//! of `torch-agent`, which the bus policy lets call the hub.
//!
//! Users are kept when an agent is retired: their uid would otherwise be
//! free for the next user made, who would then own the old agent's files.

use std::process::{Command, ExitCode};

use nix::unistd::User;
use torch_core::{paths, AgentName};

/// What marks a user as made by Torch for an agent (the GECOS field).
fn comment(name: &AgentName) -> String {
    format!("Torch agent {}", name.instance())
}

/// Makes (or checks) the user of the agent whose unit instance is `raw`.
pub fn make(raw: &str) -> ExitCode {
    let name = match AgentName::from_instance(raw) {
        Ok(n) if n.instance() == raw => n,
        Ok(n) => {
            eprintln!("torch-agent --make-user: {raw} is not the canonical instance of agent {n} (it is {})", n.instance());
            return ExitCode::from(crate::EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("torch-agent --make-user: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    match ensure(&name) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torch-agent --make-user: {e}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
    }
}

fn ensure(name: &AgentName) -> Result<(), String> {
    let user = paths::agent_user(name);
    let found = User::from_name(&user).map_err(|e| format!("cannot look up user {user}: {e}"))?;
    match found {
        Some(u) if u.gecos.to_string_lossy() == comment(name) => {
            println!("agent {name} runs as {user} (uid {})", u.uid);
            Ok(())
        }
        Some(u) => Err(format!(
            "user {user} (uid {}) exists and was not made by Torch for agent {name} (its comment is {:?}, not {:?}); remove or rename that user, or give the agent another name",
            u.uid,
            u.gecos.to_string_lossy(),
            comment(name)
        )),
        None => add(name, &user),
    }
}

fn add(name: &AgentName, user: &str) -> Result<(), String> {
    let home = paths::agent_home(name);
    let mut cmd = Command::new("useradd");
    cmd.args([
        "--system",
        "--user-group",
        "--no-create-home",
        "--no-log-init",
    ])
    .args(["--groups", paths::AGENTS_GROUP])
    .arg("--home-dir")
    .arg(&home)
    .args(["--shell", "/usr/sbin/nologin"])
    .args(["--comment", &comment(name)]);
    if !plain_user_name(user) {
        // A non-ASCII name's instance holds `\xNN`; systemd takes it in
        // `User=`, shadow's own check does not.
        cmd.arg("--badname");
    }
    let out = cmd
        .arg(user)
        .output()
        .map_err(|e| format!("cannot run useradd (install the passwd package): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "useradd {user} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    println!("made user {user} for agent {name}, home {}", home.display());
    Ok(())
}

/// Whether shadow's `useradd` takes `user` without `--badname`.
fn plain_user_name(user: &str) -> bool {
    user.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_escaped_names_need_badname() {
        let plain = AgentName::parse("dev.1_x").unwrap();
        assert!(plain_user_name(&paths::agent_user(&plain)));
        let odd = AgentName::parse("dév").unwrap();
        assert_eq!(paths::agent_user(&odd), "ta-d\\xc3\\xa9v");
        assert!(!plain_user_name(&paths::agent_user(&odd)));
    }

    #[test]
    fn the_comment_names_the_instance() {
        let odd = AgentName::parse("dév").unwrap();
        assert_eq!(comment(&odd), "Torch agent d\\xc3\\xa9v");
    }
}
