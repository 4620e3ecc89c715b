//! opencode's own config for one agent, prepared before it starts, so it
//! starts with no nag and reports its state to the supervisor.
//!
//! opencode has no command hooks; it loads plugins, JavaScript modules
//! whose handlers it calls at each event. Torch writes one,
//! `torch.js` in the agent's opencode plugin directory
//! (`$XDG_CONFIG_HOME/opencode/plugins`, else `~/.config/opencode/plugins`),
//! which hands each event Torch reads to `torch-agent --hook` in the shape
//! Claude Code's hooks have: a new session (SessionStart), a prompt taken
//! (UserPromptSubmit), tools, a permission asked (PermissionRequest, whose
//! answer the plugin gives opencode), the session idle (Stop) or failed
//! (StopFailure), and a model call opencode waits to retry (a 429 until its
//! reset: ApiRetry, which holds messages until then). The plugin also
//! listens on a unix socket in the agent's runtime directory, through which
//! the supervisor hands it each message to submit with opencode's TUI control
//! API ([`crate::channel`]). `opencode.json` beside it gets no auto-update
//! and no sharing, keeping what else the user set.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;
use torch_core::{paths, AgentDefinition, AgentName};

use crate::cli_config::{update_json, Broken, HOOK_MARK};

/// The plugin; `HOOK_ARGV` becomes the hook's command as a JSON array, and
/// `CHANNEL_PATH` the path of its socket as a JSON string.
const PLUGIN: &str = include_str!("opencode-plugin.js");

/// Prepares the plugin and the settings.
pub fn prepare(
    name: &AgentName,
    def: &AgentDefinition,
    control_socket: &Path,
) -> anyhow::Result<()> {
    let dir = config_dir(name, def);
    let exe = std::env::current_exe().context("cannot find the supervisor's own binary")?;
    let argv = json!([exe, "--hook", control_socket]);
    let channel = json!(channel_path(control_socket));
    let plugin = format!(
        "// {HOOK_MARK}\n{}",
        PLUGIN
            .replace("HOOK_ARGV", &argv.to_string())
            .replace("CHANNEL_PATH", &channel.to_string())
    );
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)
        .with_context(|| format!("cannot create {}", plugins.display()))?;
    let file = plugins.join("torch.js");
    let tmp = plugins.join(".torch.js.tmp");
    std::fs::write(&tmp, plugin).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("cannot replace {}", file.display()))?;
    update_json(&dir.join("opencode.json"), Broken::Refuse, |s| {
        s.insert("autoupdate".into(), json!(false));
        s.entry("share").or_insert(json!("disabled"));
    })
}

/// The plugin's socket, beside the supervisor's control socket.
pub fn channel_path(control_socket: &Path) -> PathBuf {
    control_socket.with_file_name("opencode.sock")
}

/// opencode's config directory: `$XDG_CONFIG_HOME/opencode` when the
/// definition or the unit sets it, else `~/.config/opencode`.
fn config_dir(name: &AgentName, def: &AgentDefinition) -> PathBuf {
    if let Some(dir) = def
        .env
        .get("XDG_CONFIG_HOME")
        .cloned()
        .or_else(|| std::env::var("XDG_CONFIG_HOME").ok())
    {
        return PathBuf::from(dir).join("opencode");
    }
    let home = std::env::var("HOME").map_or_else(|_| paths::agent_state_dir(name), PathBuf::from);
    home.join(".config").join("opencode")
}
