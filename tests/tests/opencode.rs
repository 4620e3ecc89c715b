//! The real opencode as a Torch agent, talking to our stand-in of the OpenAI Chat
//! Completions API (`torch-test-llm`) on the sandbox's loopback. Every delivery is judged by
//! what the stand-in received: each message exactly once, whole, in order, one turn each.
//!
//! Torch prepares each agent's opencode itself (its plugin, which reports to the
//! supervisor, and no auto-update); the tests give each agent its key and its provider, an
//! OpenAI-compatible service as opencode documents it, in its environment file, as an admin
//! would.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::json;
use torch_tests::compat::{self, Capability};
use torch_tests::llm::{
    cli_fleet, messages_scenario, permissions_scenario, resumes_after_kills, spawn_cli,
    twenty_briefs, CliAgents, Standin, OPENCODE,
};
use torch_tests::{wait_until, Sandbox};

/// A sandbox with the hub, the stand-in, and opencode agents pointed at it, with
/// `settings` in their config; `None` when the test is skipped for want of the pinned
/// opencode.
fn fleet(
    test: &str,
    label: &str,
    settings: serde_json::Value,
) -> Result<Option<(Sandbox, Standin, CliAgents)>> {
    cli_fleet(&OPENCODE, test, label, &settings)
}

/// Waits until the turns that carry `text` number `n`; returns all turns.
fn wait_for_turns(llm: &Standin, text: &str, n: usize, secs: u64) -> Result<Vec<String>> {
    torch_tests::llm::wait_for_turns(|| llm.chat_turns(), text, n, secs)
}

#[test]
fn messages_reach_opencode_whole_in_order_one_turn_each() -> Result<()> {
    let test = "messages_reach_opencode_whole_in_order_one_turn_each";
    let Some((sb, llm, agents)) = fleet(test, "opencode-msgs", json!({}))? else {
        return Ok(());
    };
    spawn_cli(&sb, &agents, "oc", "BRIEF-OC plan the work")?;
    messages_scenario(&sb, &llm, "oc", || llm.chat_turns(), "Stop")?;
    // Each message, the brief too, was handed to opencode through its plugin's socket and
    // submitted by its TUI's control API, none typed into its terminal.
    torch_tests::llm::ensure_all_handed_over(&sb, "oc")?;
    // Tokens as the plugin reported them from opencode's messages: the stand-in reports each
    // turn's input as its body's size over four, and one output token.
    torch_tests::llm::ensure_tokens(&sb, 1000, 9)?;
    // Cost as the CLI computed it from the price it was given.
    torch_tests::llm::ensure_cost(&sb, "oc")?;
    // That socket is the agent's own: another agent cannot hand it anything.
    let socket = "/run/torch-agent/oc/opencode.sock";
    let mode = sb.run(&["stat", "-c", "%a %U", socket])?;
    ensure!(mode.trim() == "600 ta-oc", "{socket}: {mode}");
    let out = torch_tests::llm::connect_from_another_agent(&sb, "oc", socket)?;
    ensure!(out.contains("Permission denied"), "{out}");
    compat::verified(
        &OPENCODE,
        &[
            Capability::StartsReady,
            Capability::Messages,
            Capability::OwnChannel,
            Capability::Tokens,
            Capability::Cost,
        ],
    )?;
    Ok(())
}

#[test]
fn a_killed_opencode_or_supervisor_resumes_the_conversation() -> Result<()> {
    let test = "a_killed_opencode_or_supervisor_resumes_the_conversation";
    let Some((sb, llm, agents)) = fleet(test, "opencode-resume", json!({}))? else {
        return Ok(());
    };
    spawn_cli(&sb, &agents, "mem", "REMEMBER-alpha")?;
    wait_for_turns(&llm, "REMEMBER-alpha", 1, 180)?;
    resumes_after_kills(&sb, &llm, "mem", || llm.chat_turns())?;
    compat::verified(&OPENCODE, &[Capability::Resume])?;
    Ok(())
}

#[test]
fn twenty_briefs_at_spawn_reach_opencode_once_each() -> Result<()> {
    let test = "twenty_briefs_at_spawn_reach_opencode_once_each";
    let Some((sb, llm, agents)) = fleet(test, "opencode-briefs", json!({}))? else {
        return Ok(());
    };
    // Five at a time, as for Gemini CLI: twenty opencode processes starting at once
    // starve the other tests of the two cores for minutes.
    twenty_briefs(&sb, &agents, "o", 5, || llm.chat_turns())?;
    compat::record(&OPENCODE, Capability::TwentyBriefs, "20/20")?;
    Ok(())
}

#[test]
fn opencode_permission_requests_follow_the_policy() -> Result<()> {
    let test = "opencode_permission_requests_follow_the_policy";
    // opencode asks before each shell command only when told to.
    let ask = json!({"permission": {"bash": "ask"}});
    let Some((sb, llm, agents)) = fleet(test, "opencode-ask", ask)? else {
        return Ok(());
    };
    permissions_scenario(&sb, &llm, &agents, || llm.chat_turns(), "bash")?;
    compat::verified(&OPENCODE, &[Capability::Policy, Capability::Answer])?;
    Ok(())
}

/// A 429 with a retry-after: opencode waits and retries by itself; its plugin says until
/// when, the agent reads `limited` and messages wait, then go on after the retry.
#[test]
fn a_rate_limited_opencode_holds_messages_until_its_retry() -> Result<()> {
    let test = "a_rate_limited_opencode_holds_messages_until_its_retry";
    let Some((sb, llm, agents)) = fleet(test, "opencode-limit", json!({}))? else {
        return Ok(());
    };
    llm.set_script(&json!([{"when": "LIMIT-ME", "status": 429, "retry_after_s": 20, "times": 1}]))?;
    spawn_cli(&sb, &agents, "lim", "BRIEF-LIM plan")?;
    wait_for_turns(&llm, "BRIEF-LIM", 1, 90)?;
    sb.torch(&["send", "lim", "LIMIT-ME please"])?;
    wait_until("lim limited", Duration::from_secs(60), || {
        Ok(sb.torch(&["explain", "lim"])?.contains("state: limited"))
    })?;
    // Until the reset the 429 gave, as opencode counts it.
    let explained = sb.torch(&["explain", "lim"])?;
    let secs: Option<u64> = explained
        .split("continues in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok());
    ensure!(secs.is_some_and(|s| s <= 20), "{explained}");
    sb.torch(&["send", "lim", "WHILE-LIMITED"])?;
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        !llm.chat_turns()?
            .iter()
            .any(|t| t.contains("WHILE-LIMITED")),
        "typed into a limited agent"
    );
    let journal = sb.journal(&["-u", "torch-agent@lim.service", "TORCH_ALERT=1"])?;
    ensure!(journal.contains("its CLI retries in"), "{journal}");
    // opencode retried the refused call by itself, then took the held message.
    let seen = wait_for_turns(&llm, "WHILE-LIMITED", 1, 60)?;
    let limit = seen.iter().position(|t| t.contains("LIMIT-ME"));
    let held = seen.iter().position(|t| t.contains("WHILE-LIMITED"));
    ensure!(limit < held, "{seen:#?}");
    compat::verified(&OPENCODE, &[Capability::RateLimit])?;
    Ok(())
}
