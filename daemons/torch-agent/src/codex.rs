//! Codex CLI's own config for one agent, prepared before it starts, so it
//! starts ready with no dialog and reports its state through hooks.
//!
//! Codex runs as two programs: its app server, which the supervisor starts
//! and hands messages to ([`crate::app_server`]), and its TUI in the pane,
//! attached to that server (`--remote`). Torch's hooks go into `hooks.json`
//! in the agent's Codex home (`$CODEX_HOME`, else `~/.codex` in the agent's
//! own home), beside the user's; once the app server runs, the hooks it
//! would run in the workdir are trusted through it
//! ([`crate::app_server::trust_hooks`]), which writes their hashes in the
//! agent's `config.toml` as Codex's own dialog would. The rest is given on
//! the command line, leaving the user's other settings as they are:
//! - `--disable daemon_auto_start` on the TUI: else a TUI that cannot reach
//!   its server would start a background one that outlives the agent's unit.
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

use crate::app_server;
use crate::cli_config::{hook_command, install_hooks, update_json, Broken};

/// What the agent's Codex is started with.
pub struct Prepared {
    /// For `codex app-server`, after its `--listen`.
    pub server_args: Vec<String>,
    /// For the TUI, after `resume ID` when it resumes.
    pub tui_args: Vec<String>,
}

/// Prepares the agent's Codex home and its command lines.
pub fn prepare(
    name: &AgentName,
    def: &AgentDefinition,
    workdir: &Path,
    control_socket: &Path,
) -> anyhow::Result<Prepared> {
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
    let mut server_args = config_overrides(&def.command[1..]);
    server_args.extend(config_args(workdir));
    if names_a_profile(&def.command[1..]) {
        // The app server runs the turns and takes no --profile.
        tracing::warn!("codex: -p/--profile reaches the TUI only: Codex's app server, which runs the turns, takes no profile; give its settings as -c KEY=VALUE options in the agent's command, or in config.toml");
    }
    let server = app_server::address(&app_server::socket_path(control_socket));
    let mut tui_args = vec![
        "--remote".to_string(),
        server,
        "--disable".to_string(),
        "daemon_auto_start".to_string(),
    ];
    tui_args.extend(server_args.iter().cloned());
    Ok(Prepared {
        server_args,
        tui_args,
    })
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

/// The config the agent's command line gives (`-c KEY=VALUE`, `--enable`,
/// `--disable`, as Codex documents a model provider): the app server runs
/// the turns, so it needs them too. The TUI keeps the whole command line.
fn config_overrides(args: &[String]) -> Vec<String> {
    const WITH_VALUE: [&str; 4] = ["-c", "--config", "--enable", "--disable"];
    let mut out = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            if let Some(value) = args.next() {
                out.extend([arg.clone(), value.clone()]);
            }
        } else if WITH_VALUE
            .iter()
            .any(|flag| arg.starts_with(&format!("{flag}=")))
            || (arg.starts_with("-c") && arg.len() > 2 && !arg.starts_with("--"))
        {
            out.push(arg.clone());
        }
    }
    out
}

/// Whether the agent's command names a config profile (`-p NAME`,
/// `--profile NAME`, `--profile=NAME`).
fn names_a_profile(args: &[String]) -> bool {
    args.iter()
        .any(|a| a == "-p" || a == "--profile" || a.starts_with("--profile="))
}

/// The config both programs are given.
fn config_args(workdir: &Path) -> Vec<String> {
    let trusted = format!(
        "projects.{}.trust_level=\"trusted\"",
        toml_string(&workdir.to_string_lossy())
    );
    ["-c", "check_for_update_on_startup=false", "-c", &trusted]
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
        let a = config_args(Path::new("/srv/a \"b\"\\c"));
        assert_eq!(
            a.last().unwrap(),
            r#"projects."/srv/a \"b\"\\c".trust_level="trusted""#
        );
        assert_eq!(toml_string("x\ny"), "\"x\\u000Ay\"");
    }

    #[test]
    fn the_command_lines_config_goes_to_the_app_server_too() {
        let command: Vec<String> = [
            "-m",
            "o3",
            "-c",
            "model_provider=\"x\"",
            "--config=a=1",
            "-cb=2",
            "--enable",
            "f",
            "--disable=g",
            "--search",
            "-c",
        ]
        .map(str::to_string)
        .to_vec();
        assert_eq!(
            config_overrides(&command),
            [
                "-c",
                "model_provider=\"x\"",
                "--config=a=1",
                "-cb=2",
                "--enable",
                "f",
                "--disable=g"
            ]
        );
    }

    #[test]
    fn a_profile_is_noticed() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(names_a_profile(&args(&["-p", "fast"])));
        assert!(names_a_profile(&args(&["--profile=fast"])));
        assert!(!names_a_profile(&args(&["-c", "profile=x", "--search"])));
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
