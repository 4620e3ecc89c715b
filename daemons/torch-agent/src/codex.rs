//! Codex CLI's own config for one agent, prepared before it starts, so it
//! starts ready with no dialog and reports its state through hooks.
//!
//! Torch's hooks go into `hooks.json` in the agent's Codex home
//! (`$CODEX_HOME`, else `~/.codex` in the agent's own home), beside the
//! user's. The rest is given on the command line, so the user's
//! `config.toml` is never rewritten:
//! - `--dangerously-bypass-hook-trust`: Codex runs a hook only once a person
//!   trusted its exact definition in a dialog (`Hooks need review`), which
//!   would stop the agent at every start. The flag also lets unreviewed
//!   hooks of a trusted project (`.codex/` in the workdir) run; such a
//!   project's files are trusted already (its `AGENTS.md` briefs the model).
//! - `--disable daemon_auto_start`: else the TUI hands its turns to a
//!   background app server that outlives the agent's unit and serves later
//!   starts with its old config.
//! - the workdir trusted (else a dialog asks), no update check.
//!
//! With `OPENAI_API_KEY` in the agent's environment (its environment file),
//! Codex is signed in with it before each start (`codex login
//! --with-api-key`, the key on standard input): else its first screen asks
//! how to sign in, even with the key set.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use serde_json::json;
use torch_core::{hooks, paths, AgentDefinition, AgentName};

use crate::cli_config::{hook_command, install_hooks, update_json, Broken};

/// What the agent's Codex needs: arguments for its command line.
pub fn prepare(
    name: &AgentName,
    def: &AgentDefinition,
    workdir: &Path,
    control_socket: &Path,
) -> anyhow::Result<Vec<String>> {
    let file = codex_home(name, def).join("hooks.json");
    let hook = hook_command("--hook", control_socket)?;
    update_json(&file, Broken::Refuse, |h| {
        install_hooks(
            h,
            &hooks::CODEX_EVENTS,
            &json!({"hooks": [{"type": "command", "command": hook}]}),
        )
    })?;
    if let Some(key) = def
        .env
        .get(API_KEY)
        .cloned()
        .or_else(|| std::env::var(API_KEY).ok())
    {
        sign_in(def, &key)?;
    }
    Ok(args(workdir))
}

/// The variable holding an OpenAI API key.
const API_KEY: &str = "OPENAI_API_KEY";
/// How long `codex login` may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Signs the agent's Codex in with `key`, as `codex login --with-api-key`
/// does (it keeps the key in the agent's Codex home, 0600).
fn sign_in(def: &AgentDefinition, key: &str) -> anyhow::Result<()> {
    let program = &def.command[0];
    let mut child = Command::new(program)
        .args(["login", "--with-api-key"])
        .envs(&def.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} login"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{key}\n").as_bytes())
            .with_context(|| format!("cannot hand the key to {program} login"))?;
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > LOGIN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{program} login --with-api-key did not finish in {} s",
                LOGIN_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!(
            "{program} login --with-api-key failed ({status}): {}; check {API_KEY} in the agent's environment file",
            err.trim()
        );
    }
    Ok(())
}

/// The arguments Torch adds to the agent's command.
fn args(workdir: &Path) -> Vec<String> {
    let trusted = format!(
        "projects.{}.trust_level=\"trusted\"",
        toml_string(&workdir.to_string_lossy())
    );
    [
        "--disable",
        "daemon_auto_start",
        "--dangerously-bypass-hook-trust",
        "-c",
        "check_for_update_on_startup=false",
        "-c",
        &trusted,
    ]
    .map(str::to_string)
    .to_vec()
}

/// `s` as a TOML basic string, for a key of a dotted path.
fn toml_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where Codex keeps its state: `CODEX_HOME` when the definition or the unit
/// sets it, else `.codex` in the home.
fn codex_home(name: &AgentName, def: &AgentDefinition) -> PathBuf {
    if let Some(dir) = def
        .env
        .get("CODEX_HOME")
        .cloned()
        .or_else(|| std::env::var("CODEX_HOME").ok())
    {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").map_or_else(|_| paths::agent_state_dir(name), PathBuf::from);
    home.join(".codex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workdir_is_trusted_by_a_quoted_key() {
        let a = args(Path::new("/srv/a \"b\"\\c"));
        assert_eq!(
            a.last().unwrap(),
            r#"projects."/srv/a \"b\"\\c".trust_level="trusted""#
        );
        assert!(a.contains(&"--dangerously-bypass-hook-trust".to_string()));
        assert_eq!(toml_string("x\ny"), "\"x\\u000Ay\"");
    }

    #[test]
    fn hooks_go_beside_the_users() {
        let dir = std::env::temp_dir().join(format!("torch-codex-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hooks.json");
        std::fs::write(
            &file,
            r#"{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "mine"}]}]}}"#,
        )
        .unwrap();
        let ours = json!({"hooks": [{"type": "command", "command": "t # installed by torch"}]});
        for _ in 0..2 {
            update_json(&file, Broken::Refuse, |h| {
                install_hooks(h, &hooks::CODEX_EVENTS, &ours)
            })
            .unwrap();
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let stop = v["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop.len(), 2, "{stop:?}");
        assert_eq!(stop[0]["hooks"][0]["command"], "mine");
        for event in hooks::CODEX_EVENTS {
            assert_eq!(
                v["hooks"][event].as_array().unwrap().len(),
                1 + usize::from(event == "Stop")
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
