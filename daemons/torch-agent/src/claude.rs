//! Claude Code's own config for one agent, prepared before it starts, so it
//! starts ready with no dialog and reports its state through hooks.
//!
//! Each claude agent gets its own `CLAUDE_CONFIG_DIR` (unless its definition
//! or unit sets one): `.claude.json` records onboarding as done, the agent's
//! workdir as trusted and its API key as approved; `settings.json` runs
//! `torch-agent --hook` at each event Torch reads. What else the files hold
//! (sessions, the user's own settings) is kept.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Map, Value};
use torch_core::{hooks, paths, AgentDefinition, AgentName};

use crate::cli_config::{hook_command, install_hooks, object_at, update_json, Broken, HOOK_MARK};

/// The Claude Code version whose first-run state Torch records (and that
/// docs/compatibility.md lists as verified).
pub const VERIFIED_VERSION: &str = "2.1.332";
/// Claude Code records an approved API key by its last characters.
const KEY_SUFFIX_CHARS: usize = 20;

/// Prepares the config and returns the environment the program needs.
pub fn prepare(
    name: &AgentName,
    def: &AgentDefinition,
    workdir: &Path,
    control_socket: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let (dir, set_by_us) = config_dir(name, def);
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create Claude Code's config directory {}",
            dir.display()
        )
    })?;
    let key = def
        .env
        .get("ANTHROPIC_API_KEY")
        .cloned()
        .or_else(|| std::env::var("ANTHROPIC_API_KEY").ok());
    update_json(&dir.join(".claude.json"), Broken::SetAside, |state| {
        first_run_done(state, workdir, key.as_deref())
    })?;
    let hook = hook_command("--hook", control_socket)?;
    let status = hook_command("--status-line", control_socket)?;
    update_json(&dir.join("settings.json"), Broken::Refuse, |settings| {
        install_claude_hooks(settings, &hook);
        install_status_line(settings, &status);
    })?;
    let mut env = Vec::new();
    if set_by_us {
        env.push((
            "CLAUDE_CONFIG_DIR".to_string(),
            dir.to_string_lossy().into_owned(),
        ));
    }
    Ok(env)
}

/// The agent's config directory, and whether Torch chose it (and so must
/// pass it to the program).
fn config_dir(name: &AgentName, def: &AgentDefinition) -> (PathBuf, bool) {
    let set = def
        .env
        .get("CLAUDE_CONFIG_DIR")
        .cloned()
        .or_else(|| std::env::var("CLAUDE_CONFIG_DIR").ok());
    match set {
        Some(dir) => (PathBuf::from(dir), false),
        None => (
            paths::agent_state_dir(name)
                .join(".torch-claude")
                .join(name.instance()),
            true,
        ),
    }
}

/// Records the first-run dialogs as answered: onboarding, the workdir's
/// trust, the API key's approval, the auto-mode nudge.
fn first_run_done(state: &mut Map<String, Value>, workdir: &Path, key: Option<&str>) {
    state.insert("hasCompletedOnboarding".into(), json!(true));
    state
        .entry("lastOnboardingVersion")
        .or_insert(json!(VERIFIED_VERSION));
    state.insert("hasSeenAutoDefaultNudge".into(), json!(true));
    let projects = object_at(state, "projects");
    let project = object_at(projects, &workdir.to_string_lossy());
    project.insert("hasTrustDialogAccepted".into(), json!(true));
    if let Some(key) = key {
        let skip = key.chars().count().saturating_sub(KEY_SUFFIX_CHARS);
        let suffix: String = key.chars().skip(skip).collect();
        let responses = object_at(state, "customApiKeyResponses");
        let approved = responses.entry("approved").or_insert(json!([]));
        if let Value::Array(list) = approved {
            if !list.iter().any(|v| v.as_str() == Some(&suffix)) {
                list.push(json!(suffix));
            }
        } else {
            *approved = json!([suffix]);
        }
        responses.entry("rejected").or_insert(json!([]));
    }
}

/// Makes sure each event Torch reads runs `command`, beside whatever hooks
/// the user set.
fn install_claude_hooks(settings: &mut Map<String, Value>, command: &str) {
    let ours = json!({"type": "command", "command": command, "timeout": 5});
    install_hooks(
        settings,
        &hooks::EVENTS,
        &json!({"matcher": "", "hooks": [ours]}),
    );
}

/// Makes Claude's status line report the session's cost to the supervisor,
/// unless the user set a status line of their own.
fn install_status_line(settings: &mut Map<String, Value>, command: &str) {
    let ours = settings
        .get("statusLine")
        .and_then(|s| s.get("command"))
        .and_then(Value::as_str)
        .is_none_or(|c| c.ends_with(HOOK_MARK));
    if ours {
        settings.insert(
            "statusLine".into(),
            json!({"type": "command", "command": command}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_is_recorded_and_the_users_state_kept() {
        let mut state: Map<String, Value> = serde_json::from_value(json!({
            "numStartups": 4,
            "projects": {"/other": {"hasTrustDialogAccepted": false}},
            "customApiKeyResponses": {"approved": ["abc"]}
        }))
        .unwrap();
        let key = "sk-ant-test-0123456789abcdefghijklmnopqrstuvwxyz";
        first_run_done(&mut state, Path::new("/srv/proj"), Some(key));
        first_run_done(&mut state, Path::new("/srv/proj"), Some(key));
        let v = Value::Object(state);
        assert_eq!(v["numStartups"], 4);
        assert_eq!(v["hasCompletedOnboarding"], true);
        assert_eq!(v["projects"]["/srv/proj"]["hasTrustDialogAccepted"], true);
        assert_eq!(v["projects"]["/other"]["hasTrustDialogAccepted"], false);
        assert_eq!(
            v["customApiKeyResponses"]["approved"],
            json!(["abc", "ghijklmnopqrstuvwxyz"])
        );
    }

    #[test]
    fn a_broken_state_file_is_set_aside_and_a_broken_settings_file_refused() {
        let dir = std::env::temp_dir().join(format!("torch-claude-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join(".claude.json");
        std::fs::write(&state, "{\"numStartups\": 3, \"cut").unwrap();
        update_json(&state, Broken::SetAside, |s| {
            s.insert("x".into(), json!(1));
        })
        .unwrap();
        let text = std::fs::read_to_string(&state).unwrap();
        assert!(text.contains("\"x\": 1"), "{text}");
        assert!(dir.join(".claude.json.broken").exists());
        let settings = dir.join("settings.json");
        std::fs::write(&settings, "[1, 2]").unwrap();
        let err = update_json(&settings, Broken::Refuse, |_| {}).unwrap_err();
        assert!(err
            .to_string()
            .contains("settings.json is not a JSON object"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hooks_are_installed_once_beside_the_users() {
        let mut settings: Map<String, Value> = serde_json::from_value(json!({
            "model": "x",
            "hooks": {"Stop": [{"matcher": "", "hooks": [{"type": "command", "command": "mine"}]}]}
        }))
        .unwrap();
        install_claude_hooks(
            &mut settings,
            &format!("/old/torch-agent --hook s {HOOK_MARK}"),
        );
        let now = format!("'/usr/libexec/torch/torch-agent' --hook 's' {HOOK_MARK}");
        install_claude_hooks(&mut settings, &now);
        let v = Value::Object(settings.clone());
        assert_eq!(v["model"], "x");
        let stop = v["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop.len(), 2, "{stop:?}");
        assert_eq!(stop[0]["hooks"][0]["command"], "mine");
        assert_eq!(stop[1]["hooks"][0]["command"], now.as_str());
        for event in hooks::EVENTS {
            let want = if event == "Stop" { 2 } else { 1 };
            assert_eq!(
                v["hooks"][event].as_array().map(Vec::len),
                Some(want),
                "{event}"
            );
        }
        assert_eq!(crate::cli_config::shell_quote("a'b"), "'a'\\''b'");
        install_status_line(&mut settings, &now);
        let v = Value::Object(settings.clone());
        assert_eq!(v["statusLine"]["command"], now.as_str());
        settings.insert(
            "statusLine".into(),
            json!({"type": "command", "command": "mine"}),
        );
        install_status_line(&mut settings, &now);
        assert_eq!(settings["statusLine"]["command"], "mine");
    }
}
