//! The real Codex CLI as a Torch agent, talking to our stand-in of the OpenAI Responses API
//! (`torch-test-llm`) on the sandbox's loopback. Every delivery is judged by what the
//! stand-in received: each message exactly once, whole, in order, one turn each.
//!
//! Torch prepares each agent's Codex itself (signed in with the key of its environment
//! file, hooks installed, the workdir trusted); the tests give each agent its key in an
//! environment file, and the stand-in as its model provider on its command line, as a user
//! points Codex at an OpenAI-compatible service.

use anyhow::{ensure, Result};
use serde_json::json;
use torch_tests::compat::{self, Capability};
use torch_tests::llm::{
    cli_fleet, messages_scenario, permissions_scenario, resumes_after_kills, spawn_cli,
    twenty_briefs, waited_out_429, CliAgents, Standin, CODEX,
};
use torch_tests::Sandbox;

/// A sandbox with the hub, the stand-in, and codex agents pointed at it; `None` when the
/// test is skipped for want of the pinned codex.
fn fleet(test: &str, label: &str) -> Result<Option<(Sandbox, Standin, CliAgents)>> {
    cli_fleet(&CODEX, test, label, &json!({}))
}

/// Waits until the turns that carry `text` number `n`; returns all turns.
fn wait_for_turns(llm: &Standin, text: &str, n: usize, secs: u64) -> Result<Vec<String>> {
    torch_tests::llm::wait_for_turns(|| llm.codex_turns(), text, n, secs)
}

#[test]
fn messages_reach_codex_whole_in_order_one_turn_each() -> Result<()> {
    let test = "messages_reach_codex_whole_in_order_one_turn_each";
    let Some((sb, llm, agents)) = fleet(test, "codex-msgs")? else {
        return Ok(());
    };
    // Its brief is its first turn: no dialog stood in the way.
    spawn_cli(&sb, &agents, "cx", "BRIEF-CX plan the work")?;
    messages_scenario(&sb, &llm, "cx", || llm.codex_turns(), "Stop")?;
    // Each message, the brief too, was handed to Codex's app server as a turn, none typed
    // into its terminal.
    torch_tests::llm::ensure_all_handed_over(&sb, "cx")?;
    // The app server's socket is a link into the agent's private /tmp: another agent, from
    // its pane, finds nothing there.
    let out =
        torch_tests::llm::connect_from_another_agent(&sb, "cx", "/run/torch-agent/cx/codex.sock")?;
    ensure!(out.contains("No such file or directory"), "{out}");
    // Tokens from the transcript's token counts: the stand-in reports each turn's input as
    // its body's size over four, so several turns of Codex's long prompt pass 10,000.
    torch_tests::llm::ensure_tokens(&sb, 10_000, 9)?;
    torch_tests::llm::ensure_no_cost(&sb)?;
    compat::record(&CODEX, Capability::Cost, "not said by the CLI")?;
    compat::verified(
        &CODEX,
        &[
            Capability::StartsReady,
            Capability::Messages,
            Capability::OwnChannel,
            Capability::Tokens,
        ],
    )?;
    Ok(())
}

#[test]
fn a_killed_codex_or_supervisor_resumes_the_conversation() -> Result<()> {
    let test = "a_killed_codex_or_supervisor_resumes_the_conversation";
    let Some((sb, llm, agents)) = fleet(test, "codex-resume")? else {
        return Ok(());
    };
    spawn_cli(&sb, &agents, "mem", "REMEMBER-alpha")?;
    wait_for_turns(&llm, "REMEMBER-alpha", 1, 90)?;
    resumes_after_kills(&sb, &llm, "mem", || llm.codex_turns())?;
    compat::verified(&CODEX, &[Capability::Resume])?;
    Ok(())
}

#[test]
fn twenty_briefs_at_spawn_reach_codex_once_each() -> Result<()> {
    let test = "twenty_briefs_at_spawn_reach_codex_once_each";
    let Some((sb, llm, agents)) = fleet(test, "codex-briefs")? else {
        return Ok(());
    };
    // All twenty at once: Codex CLI is one native process each.
    twenty_briefs(&sb, &agents, "c", 20, || llm.codex_turns())?;
    compat::record(&CODEX, Capability::TwentyBriefs, "20/20")?;
    Ok(())
}

#[test]
fn codex_permission_requests_follow_the_policy() -> Result<()> {
    let test = "codex_permission_requests_follow_the_policy";
    let Some((sb, llm, agents)) = fleet(test, "codex-ask")? else {
        return Ok(());
    };
    // The model asks to run a command outside Codex's sandbox. Codex asks for approval of
    // such a command only with this approval policy (its default here refuses it unasked).
    let mut asking = agents.clone();
    asking
        .command
        .extend(["-c".into(), "approval_policy=\"on-request\"".into()]);
    permissions_scenario(&sb, &llm, &asking, || llm.codex_turns(), "Bash")?;
    compat::verified(&CODEX, &[Capability::Policy, Capability::Answer])?;
    Ok(())
}

/// A 429 with a retry-after: Codex waits it out and retries by itself, reporting the wait
/// through no hook or file, so the agent reads working: messages wait, then go on.
#[test]
fn a_rate_limited_codex_holds_messages_until_its_retry() -> Result<()> {
    let test = "a_rate_limited_codex_holds_messages_until_its_retry";
    let Some((sb, llm, agents)) = fleet(test, "codex-limit")? else {
        return Ok(());
    };
    waited_out_429(&sb, &llm, &agents, || llm.codex_turns(), (15, 1))?;
    compat::record(&CODEX, Capability::RateLimit, "held as working (no signal)")?;
    Ok(())
}
