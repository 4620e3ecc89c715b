//! The real opencode as a Torch agent, talking to our stand-in of the OpenAI Chat
//! Completions API (`torch-test-llm`) on the sandbox's loopback. Every delivery is judged by
//! what the stand-in received: each message exactly once, whole, in order, one turn each.
//!
//! Torch prepares each agent's opencode itself (its plugin, which reports to the
//! supervisor, and no auto-update); the tests give each agent its key and its provider, an
//! OpenAI-compatible service as opencode documents it, in its environment file, as an admin
//! would.

use anyhow::Result;
use serde_json::json;
use torch_tests::llm::{
    each_brief_once_alone, messages_scenario, permissions_scenario, resumes_after_kills, spawn_cli,
    spawn_cli_as, Standin, FAKE_API_KEY, OPENCODE,
};
use torch_tests::Sandbox;

/// The agents' environment file, as an admin keeps it: a file only root reads.
const ENV_FILE: &str = "/root/opencode.env";

/// A sandbox with the hub and the stand-in, the agents' environment file, and their
/// command (the pinned opencode); `None` when the test is skipped for want of it.
fn fleet(test: &str, label: &str) -> Result<Option<(Sandbox, Standin, Vec<String>)>> {
    fleet_with(test, label, json!({}))
}

/// [`fleet`], with `more` (opencode settings) in the agents' config.
fn fleet_with(
    test: &str,
    label: &str,
    more: serde_json::Value,
) -> Result<Option<(Sandbox, Standin, Vec<String>)>> {
    let Some(opencode) = OPENCODE.or_skip(test)? else {
        return Ok(None);
    };
    let sb = Sandbox::boot(label)?;
    sb.install_torch()?;
    let llm = Standin::start(&sb)?;
    let mut config = json!({
        "model": "standin/fake-model",
        "provider": {"standin": {
            "npm": "@ai-sdk/openai-compatible", "name": "Stand-in",
            "options": {"baseURL": format!("{}/v1", llm.base_url()), "apiKey": "{env:OPENAI_API_KEY}"},
            "models": {"fake-model": {"name": "Fake Model"}}
        }}
    });
    if let (Some(c), Some(m)) = (config.as_object_mut(), more.as_object()) {
        c.extend(m.clone());
    }
    // The sandbox has no network, as an offline server: no list of models fetched, and npm
    // told so (else opencode waits about 70 s at each start for its plugin loader's
    // dependency to install, before it loads any plugin).
    let env = format!(
        "OPENAI_API_KEY={FAKE_API_KEY}\nOPENCODE_CONFIG_CONTENT={config}\n\
         OPENCODE_DISABLE_MODELS_FETCH=1\nnpm_config_offline=true\n"
    );
    sb.write_file(ENV_FILE, env.as_bytes(), 0o600)?;
    sb.start_hub()?;
    Ok(Some((
        sb,
        llm,
        vec![opencode.to_string_lossy().into_owned()],
    )))
}

/// Spawns an opencode orchestrator with `brief` (see [`spawn_cli`]).
fn spawn(sb: &Sandbox, command: &[String], name: &str, brief: &str) -> Result<()> {
    spawn_cli(sb, "opencode", ENV_FILE, command, name, brief)
}

/// Waits until the turns that carry `text` number `n`; returns all turns.
fn wait_for_turns(llm: &Standin, text: &str, n: usize, secs: u64) -> Result<Vec<String>> {
    torch_tests::llm::wait_for_turns(|| llm.opencode_turns(), text, n, secs)
}

#[test]
fn messages_reach_opencode_whole_in_order_one_turn_each() -> Result<()> {
    let test = "messages_reach_opencode_whole_in_order_one_turn_each";
    let Some((sb, llm, command)) = fleet(test, "opencode-msgs")? else {
        return Ok(());
    };
    spawn(&sb, &command, "oc", "BRIEF-OC plan the work")?;
    messages_scenario(&sb, &llm, "oc", || llm.opencode_turns(), "Stop")
}

#[test]
fn a_killed_opencode_or_supervisor_resumes_the_conversation() -> Result<()> {
    let test = "a_killed_opencode_or_supervisor_resumes_the_conversation";
    let Some((sb, llm, command)) = fleet(test, "opencode-resume")? else {
        return Ok(());
    };
    spawn(&sb, &command, "mem", "REMEMBER-alpha")?;
    wait_for_turns(&llm, "REMEMBER-alpha", 1, 180)?;
    resumes_after_kills(&sb, &llm, "mem", || llm.opencode_turns())
}

#[test]
fn twenty_briefs_at_spawn_reach_opencode_once_each() -> Result<()> {
    let test = "twenty_briefs_at_spawn_reach_opencode_once_each";
    let Some((sb, llm, command)) = fleet(test, "opencode-briefs")? else {
        return Ok(());
    };
    // Five at a time, as for Gemini CLI: twenty opencode processes starting at once
    // starve the other tests of the two cores for minutes.
    for batch in 0..4 {
        let names: Vec<String> = (1..=5).map(|i| format!("o{}", batch * 5 + i)).collect();
        for name in &names {
            spawn(&sb, &command, name, &format!("BRIEF-{name}-END"))?;
        }
        let seen = wait_for_turns(&llm, "-END", (batch + 1) * 5, 120)?;
        each_brief_once_alone(&seen, &names)?;
        for name in &names {
            sb.torch(&["retire", name])?;
        }
    }
    Ok(())
}

#[test]
fn opencode_permission_requests_follow_the_policy() -> Result<()> {
    let test = "opencode_permission_requests_follow_the_policy";
    // opencode asks before each shell command only when told to.
    let ask = json!({"permission": {"bash": "ask"}});
    let Some((sb, llm, command)) = fleet_with(test, "opencode-ask", ask)? else {
        return Ok(());
    };
    let spawn =
        |name: &str, place: &[&str]| spawn_cli_as(&sb, "opencode", ENV_FILE, &command, name, place);
    permissions_scenario(&sb, &llm, spawn, || llm.opencode_turns(), "bash")
}
