//! Gemini CLI's own settings for one agent, prepared before it starts, so it
//! starts ready with no dialog and reports its state through hooks.
//!
//! `settings.json` in the agent's Gemini home (`$GEMINI_CLI_HOME/.gemini`,
//! else `$HOME/.gemini`, the agent's own home) gets: API-key sign-in chosen
//! (else the first screen asks how to authenticate, even with
//! `GEMINI_API_KEY` set), no update checks, no usage statistics, no banner
//! or tips, and `torch-agent --hook` at each event Torch reads. What else the
//! file holds is kept. The workspace is trusted through the environment.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use torch_core::{hooks, paths, AgentDefinition, AgentName};

use crate::cli_config::{hook_command, install_hooks, object_at, update_json, Broken};

/// Prepares the settings and returns the environment the program needs.
pub fn prepare(
    name: &AgentName,
    def: &AgentDefinition,
    control_socket: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let settings = gemini_home(name, def).join(".gemini").join("settings.json");
    let hook = hook_command("--hook", control_socket)?;
    update_json(&settings, Broken::Refuse, |s| settle(s, &hook))?;
    let mut env = Vec::new();
    for (key, value) in [
        // Else a dialog asks whether to trust the workdir.
        ("GEMINI_CLI_TRUST_WORKSPACE", "true"),
        // Else a warning about the terminal's colours stays on screen.
        ("COLORTERM", "truecolor"),
    ] {
        if !def.env.contains_key(key) {
            env.push((key.to_string(), value.to_string()));
        }
    }
    Ok(env)
}

/// Where Gemini CLI keeps `.gemini/`: `GEMINI_CLI_HOME` when the
/// definition or the unit sets it, else the home.
fn gemini_home(name: &AgentName, def: &AgentDefinition) -> PathBuf {
    def.env
        .get("GEMINI_CLI_HOME")
        .cloned()
        .or_else(|| std::env::var("GEMINI_CLI_HOME").ok())
        .or_else(|| std::env::var("HOME").ok())
        .map_or_else(|| paths::agent_state_dir(name), PathBuf::from)
}

/// Torch's settings, over the user's where a dialog or a nag would stop the
/// agent, beside them elsewhere.
fn settle(settings: &mut Map<String, Value>, hook: &str) {
    let auth = object_at(object_at(settings, "security"), "auth");
    auth.entry("selectedType")
        .or_insert(json!("gemini-api-key"));
    let general = object_at(settings, "general");
    general.insert("enableAutoUpdate".into(), json!(false));
    general.insert("enableAutoUpdateNotification".into(), json!(false));
    let privacy = object_at(settings, "privacy");
    privacy
        .entry("usageStatisticsEnabled")
        .or_insert(json!(false));
    let ui = object_at(settings, "ui");
    ui.entry("hideBanner").or_insert(json!(true));
    ui.entry("hideTips").or_insert(json!(true));
    let ours = json!({"type": "command", "command": hook});
    install_hooks(
        settings,
        &hooks::GEMINI_EVENTS,
        &json!({"matcher": "*", "hooks": [ours]}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli_config::HOOK_MARK;

    #[test]
    fn settings_answer_the_dialogs_and_keep_the_users() {
        let mut s: Map<String, Value> = serde_json::from_value(json!({
            "security": {"auth": {"selectedType": "vertex-ai"}},
            "ui": {"theme": "Dracula"},
            "hooks": {"AfterAgent": [{"matcher": "*", "hooks": [{"type": "command", "command": "mine"}]}]}
        }))
        .unwrap();
        let hook = format!("'/usr/libexec/torch/torch-agent' --hook 's' {HOOK_MARK}");
        settle(&mut s, &hook);
        settle(&mut s, &hook);
        let v = Value::Object(s);
        assert_eq!(v["security"]["auth"]["selectedType"], "vertex-ai");
        assert_eq!(v["ui"]["theme"], "Dracula");
        assert_eq!(v["ui"]["hideBanner"], true);
        assert_eq!(v["general"]["enableAutoUpdate"], false);
        let after = v["hooks"]["AfterAgent"].as_array().unwrap();
        assert_eq!(after.len(), 2, "{after:?}");
        assert_eq!(after[1]["hooks"][0]["command"], hook.as_str());
        for event in hooks::GEMINI_EVENTS {
            assert!(v["hooks"][event].is_array(), "{event}");
        }
        let mut fresh = Map::new();
        settle(&mut fresh, &hook);
        assert_eq!(fresh["security"]["auth"]["selectedType"], "gemini-api-key");
    }
}
