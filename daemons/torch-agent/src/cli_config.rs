//! What preparing an agent CLI's own config takes, whichever the CLI: the
//! hook command Torch installs, and JSON settings files edited in place,
//! keeping what the user put there.

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Map, Value};

/// Ends each hook command Torch installs (a shell comment), so a later start
/// finds and replaces them without a key of our own that a CLI's settings
/// schema might refuse.
pub const HOOK_MARK: &str = "# installed by torch";

/// `torch-agent FLAG SOCKET`, as a CLI runs it through a shell.
pub fn hook_command(flag: &str, control_socket: &Path) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the supervisor's own binary")?;
    Ok(format!(
        "{} {flag} {} {HOOK_MARK}",
        shell_quote(&exe.to_string_lossy()),
        shell_quote(&control_socket.to_string_lossy())
    ))
}

/// `s` quoted for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// What to do with a file that is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// The CLI's own state (a write cut short by a crash): keep it aside and
    /// start from an empty one, so the agent still starts.
    SetAside,
    /// A file people edit: refuse, naming it.
    Refuse,
}

/// Reads a JSON object file (missing or empty: `{}`), lets `change` edit
/// it, and writes it back atomically.
pub fn update_json(
    path: &Path,
    broken: Broken,
    change: impl FnOnce(&mut Map<String, Value>),
) -> anyhow::Result<()> {
    let mut object = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(o)) => o,
            _ if broken == Broken::SetAside => {
                let aside = path.with_extension("json.broken");
                std::fs::rename(path, &aside)
                    .with_context(|| format!("cannot move {} aside", path.display()))?;
                tracing::warn!(
                    "{} was not a JSON object; kept it as {} and started a new one",
                    path.display(),
                    aside.display()
                );
                Map::new()
            }
            _ => anyhow::bail!(
                "{} is not a JSON object; fix or remove it so Torch can prepare the agent's CLI",
                path.display()
            ),
        },
        Ok(_) => Map::new(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    change(&mut object);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("torch-tmp");
    let text = serde_json::to_string_pretty(&Value::Object(object))?;
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Makes each of `events` under `settings.hooks` run Torch's hook `group`
/// (a matcher and the command), beside whatever hooks the user set; Torch's
/// group from an earlier start (maybe another binary path) goes.
pub fn install_hooks(settings: &mut Map<String, Value>, events: &[&str], group: &Value) {
    let all = object_at(settings, "hooks");
    for event in events {
        let groups = all.entry(*event).or_insert(json!([]));
        if !groups.is_array() {
            *groups = json!([]);
        }
        if let Value::Array(groups) = groups {
            groups.retain(|g| !is_torch_group(g));
            groups.push(group.clone());
        }
    }
}

fn is_torch_group(group: &Value) -> bool {
    let commands = group.get("hooks").and_then(Value::as_array);
    commands.is_some_and(|hooks| {
        hooks.iter().any(|h| {
            h.get("command")
                .and_then(Value::as_str)
                .is_some_and(|c| c.ends_with(HOOK_MARK))
        })
    })
}

/// The object under `key`, made one if it is missing or not an object.
pub fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert(json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}
