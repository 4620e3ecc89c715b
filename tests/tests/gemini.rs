//! The real Gemini CLI as a Torch agent, talking to our stand-in of the Gemini API
//! (`torch-test-llm`) on the sandbox's loopback. Every delivery is judged by what the
//! stand-in received: each message exactly once, whole, in order, one turn each.
//!
//! Torch prepares each agent's Gemini settings itself (API-key sign-in chosen, hooks
//! installed, the workspace trusted); the tests give the agents' unit the API's address in
//! a drop-in, as an admin would, and each agent its key in an environment file.

use anyhow::Result;
use torch_tests::compat::{self, Capability};
use torch_tests::llm::{
    cli_fleet, messages_scenario, permissions_scenario, resumes_after_kills, spawn_cli,
    twenty_briefs, waited_out_429, CliAgents, Standin, GEMINI,
};
use torch_tests::Sandbox;

/// A sandbox with the hub, the stand-in, and gemini agents pointed at it; `None` when the
/// test is skipped for want of the pinned gemini.
fn fleet(test: &str, label: &str) -> Result<Option<(Sandbox, Standin, CliAgents)>> {
    cli_fleet(&GEMINI, test, label, &serde_json::json!({}))
}

/// Waits until the turns that carry `text` number `n`; returns all turns.
fn wait_for_turns(llm: &Standin, text: &str, n: usize, secs: u64) -> Result<Vec<String>> {
    torch_tests::llm::wait_for_turns(|| llm.gemini_turns(), text, n, secs)
}

#[test]
fn messages_reach_gemini_whole_in_order_one_turn_each() -> Result<()> {
    let test = "messages_reach_gemini_whole_in_order_one_turn_each";
    let Some((sb, llm, agents)) = fleet(test, "gemini-msgs")? else {
        return Ok(());
    };
    // Its brief is its first turn: no dialog stood in the way.
    spawn_cli(&sb, &agents, "gm", "BRIEF-GM plan the work")?;
    messages_scenario(&sb, &llm, "gm", || llm.gemini_turns(), "AfterAgent")?;
    // Tokens from the transcript's answers: the stand-in reports each turn's input as its
    // body's size over four, and Gemini CLI's prompt passes 10,000 by that count.
    torch_tests::llm::ensure_tokens(&sb, 10_000, 5)?;
    torch_tests::llm::ensure_no_cost(&sb)?;
    compat::record(&GEMINI, Capability::Cost, "not said by the CLI")?;
    compat::verified(
        &GEMINI,
        &[
            Capability::Tokens,
            Capability::StartsReady,
            Capability::Messages,
            Capability::OwnChannel,
        ],
    )?;
    Ok(())
}

#[test]
fn a_killed_gemini_or_supervisor_resumes_the_conversation() -> Result<()> {
    let test = "a_killed_gemini_or_supervisor_resumes_the_conversation";
    let Some((sb, llm, agents)) = fleet(test, "gemini-resume")? else {
        return Ok(());
    };
    spawn_cli(&sb, &agents, "mem", "REMEMBER-alpha")?;
    wait_for_turns(&llm, "REMEMBER-alpha", 1, 90)?;
    resumes_after_kills(&sb, &llm, "mem", || llm.gemini_turns())?;
    compat::verified(&GEMINI, &[Capability::Resume])?;
    Ok(())
}

#[test]
fn twenty_briefs_at_spawn_reach_gemini_once_each() -> Result<()> {
    let test = "twenty_briefs_at_spawn_reach_gemini_once_each";
    let Some((sb, llm, agents)) = fleet(test, "gemini-briefs")? else {
        return Ok(());
    };
    // Five at a time: each Gemini CLI is two node processes, and twenty
    // starting at once on two cores took over five minutes.
    twenty_briefs(&sb, &agents, "g", 5, || llm.gemini_turns())?;
    compat::record(&GEMINI, Capability::TwentyBriefs, "20/20")?;
    Ok(())
}

#[test]
fn gemini_permission_requests_follow_the_policy() -> Result<()> {
    let test = "gemini_permission_requests_follow_the_policy";
    let Some((sb, llm, agents)) = fleet(test, "gemini-ask")? else {
        return Ok(());
    };
    // Gemini CLI's Notification hook announces its confirmation dialog; the supervisor
    // answers it with the dialog's keys when the policy decides.
    permissions_scenario(&sb, &llm, &agents, || llm.gemini_turns(), "Shell")?;
    compat::verified(&GEMINI, &[Capability::Policy, Capability::Answer])?;
    Ok(())
}

/// A 429 with the API's RetryInfo: Gemini CLI waits it out and retries by itself, saying so
/// through no hook, so the agent reads working: messages wait, then go on.
#[test]
fn a_rate_limited_gemini_holds_messages_until_its_retry() -> Result<()> {
    let test = "a_rate_limited_gemini_holds_messages_until_its_retry";
    let Some((sb, llm, agents)) = fleet(test, "gemini-limit")? else {
        return Ok(());
    };
    waited_out_429(&sb, &llm, &agents, || llm.gemini_turns(), (15, 1))?;
    compat::record(
        &GEMINI,
        Capability::RateLimit,
        "held as working (no signal)",
    )?;
    Ok(())
}
