//! The real Aider (from PyPI) as a Torch agent, talking to our stand-in of the OpenAI Chat
//! Completions API (`torch-test-llm`) on the sandbox's loopback. Every delivery is judged by
//! what the stand-in received: each message exactly once, whole, in order, one turn each.
//!
//! Torch prepares each agent's Aider itself (its input history, notifications and event
//! log as the channels Torch reads, no question at start); the tests give each agent its
//! key, the API's address and the model in an environment file, as an admin would.

use anyhow::Result;
use serde_json::json;
use torch_tests::compat::{self, Capability};
use torch_tests::llm::{
    cli_fleet, messages_scenario, permissions_scenario, resumes_after_kills, spawn_cli,
    twenty_briefs, waited_out_429, CliAgents, Standin, AIDER,
};
use torch_tests::Sandbox;

/// A sandbox with the hub, the stand-in, and Aider agents pointed at it; `None` when the
/// test is skipped for want of the pinned Aider.
fn fleet(test: &str, label: &str) -> Result<Option<(Sandbox, Standin, CliAgents)>> {
    cli_fleet(&AIDER, test, label, &json!({}))
}

/// Waits until the turns that carry `text` number `n`; returns all turns.
fn wait_for_turns(llm: &Standin, text: &str, n: usize, secs: u64) -> Result<Vec<String>> {
    torch_tests::llm::wait_for_turns(|| llm.chat_turns(), text, n, secs)
}

#[test]
fn messages_reach_aider_whole_in_order_one_turn_each() -> Result<()> {
    let test = "messages_reach_aider_whole_in_order_one_turn_each";
    let Some((sb, llm, agents)) = fleet(test, "aider-msgs")? else {
        return Ok(());
    };
    // Its brief is its first turn: no question (git, analytics, update) stood in the way.
    spawn_cli(&sb, &agents, "ai", "BRIEF-AI plan the work")?;
    messages_scenario(&sb, &llm, "ai", || llm.chat_turns(), "Stop")?;
    // Tokens from Aider's event log: each turn sends its system prompt (over 500 tokens
    // by the stand-in's count) and gets at least one token back.
    torch_tests::llm::ensure_tokens(&sb, 2_000, 5)?;
    // Cost as the CLI computed it from the price it was given.
    torch_tests::llm::ensure_cost(&sb, "ai")?;
    compat::verified(
        &AIDER,
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
fn a_killed_aider_or_supervisor_resumes_the_conversation() -> Result<()> {
    let test = "a_killed_aider_or_supervisor_resumes_the_conversation";
    let Some((sb, llm, agents)) = fleet(test, "aider-resume")? else {
        return Ok(());
    };
    spawn_cli(&sb, &agents, "mem", "REMEMBER-alpha")?;
    wait_for_turns(&llm, "REMEMBER-alpha", 1, 90)?;
    resumes_after_kills(&sb, &llm, "mem", || llm.chat_turns())?;
    compat::verified(&AIDER, &[Capability::Resume])?;
    Ok(())
}

#[test]
fn twenty_briefs_at_spawn_reach_aider_once_each() -> Result<()> {
    let test = "twenty_briefs_at_spawn_reach_aider_once_each";
    let Some((sb, llm, agents)) = fleet(test, "aider-briefs")? else {
        return Ok(());
    };
    // Five at a time: each Aider is a Python process that takes a core for seconds to start.
    twenty_briefs(&sb, &agents, "a", 5, || llm.chat_turns())?;
    compat::record(&AIDER, Capability::TwentyBriefs, "20/20")?;
    Ok(())
}

/// Aider asks before it runs a shell command the model proposed (in its diff edit format,
/// which finds shell blocks in replies). The supervisor reads the question on the screen
/// and answers it as `[permissions]` says; escalated, it holds messages until `torch
/// answer`.
#[test]
fn aider_questions_follow_the_policy() -> Result<()> {
    let test = "aider_questions_follow_the_policy";
    let Some((sb, llm, agents)) = fleet(test, "aider-ask")? else {
        return Ok(());
    };
    let mut diff = agents.clone();
    diff.command.extend(["--edit-format".into(), "diff".into()]);
    permissions_scenario(&sb, &llm, &diff, || llm.chat_turns(), "Run shell command")?;
    compat::verified(&AIDER, &[Capability::Policy, Capability::Answer])?;
    Ok(())
}

/// 429s: Aider retries by itself, doubling its wait from an eighth of a second (not the
/// API's retry-after), saying so through no channel, so the agent reads working: messages
/// wait, then go on.
#[test]
fn a_rate_limited_aider_holds_messages_until_its_retry() -> Result<()> {
    let test = "a_rate_limited_aider_holds_messages_until_its_retry";
    let Some((sb, llm, agents)) = fleet(test, "aider-limit")? else {
        return Ok(());
    };
    waited_out_429(&sb, &llm, &agents, || llm.chat_turns(), (5, 6))?;
    compat::record(&AIDER, Capability::RateLimit, "held as working (no signal)")?;
    Ok(())
}
