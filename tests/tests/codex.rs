//! The real Codex CLI as a Torch agent, talking to our stand-in of the OpenAI Responses API
//! (`torch-test-llm`) on the sandbox's loopback. Every delivery is judged by what the
//! stand-in received: each message exactly once, whole, in order, one turn each.
//!
//! Torch prepares each agent's Codex itself (signed in with the key of its environment
//! file, hooks installed, the workdir trusted); the tests give each agent its key in an
//! environment file, and the stand-in as its model provider on its command line, as a user
//! points Codex at an OpenAI-compatible service.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use torch_tests::llm::{
    each_brief_once_alone, messages_scenario, resumes_after_kills, spawn_cli, spawn_cli_as,
    wait_idle_by_hooks, Standin, CODEX, FAKE_API_KEY,
};
use torch_tests::{wait_until, Sandbox};

/// The agents' API key, as an admin keeps it: a file only root reads.
const KEY_FILE: &str = "/root/codex.env";

/// A sandbox with the hub and the stand-in, and the agents' command: the pinned codex with
/// the stand-in as its model provider, as a user points Codex at an OpenAI-compatible
/// service (`-c` options, or `model_providers` in `config.toml`); `None` when the test is
/// skipped for want of the pinned codex.
fn fleet(test: &str, label: &str) -> Result<Option<(Sandbox, Standin, Vec<String>)>> {
    let Some(codex) = CODEX.or_skip(test)? else {
        return Ok(None);
    };
    let sb = Sandbox::boot(label)?;
    sb.install_torch()?;
    let llm = Standin::start(&sb)?;
    let key = format!("OPENAI_API_KEY={FAKE_API_KEY}\n");
    sb.write_file(KEY_FILE, key.as_bytes(), 0o600)?;
    sb.start_hub()?;
    let provider = format!(
        "model_providers.standin={{name=\"stand-in\",base_url=\"{}/v1\",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\"}}",
        llm.base_url()
    );
    let command = vec![
        codex.to_string_lossy().into_owned(),
        "-c".into(),
        "model_provider=\"standin\"".into(),
        "-c".into(),
        provider,
    ];
    Ok(Some((sb, llm, command)))
}

/// Spawns a codex orchestrator with `brief` (see [`spawn_cli`]).
fn spawn(sb: &Sandbox, command: &[String], name: &str, brief: &str) -> Result<()> {
    spawn_cli(sb, "codex", KEY_FILE, command, name, brief)
}

/// Waits until the turns that carry `text` number `n`; returns all turns.
fn wait_for_turns(llm: &Standin, text: &str, n: usize, secs: u64) -> Result<Vec<String>> {
    torch_tests::llm::wait_for_turns(|| llm.codex_turns(), text, n, secs)
}

#[test]
fn messages_reach_codex_whole_in_order_one_turn_each() -> Result<()> {
    let test = "messages_reach_codex_whole_in_order_one_turn_each";
    let Some((sb, llm, command)) = fleet(test, "codex-msgs")? else {
        return Ok(());
    };
    // Its brief is its first turn: no dialog stood in the way.
    spawn(&sb, &command, "cx", "BRIEF-CX plan the work")?;
    messages_scenario(&sb, &llm, "cx", || llm.codex_turns(), "Stop")?;
    // Tokens from the transcript's token counts: the stand-in reports each turn's input as
    // its body's size over four, so several turns of Codex's long prompt pass 10,000.
    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    let tokens = &status["agents"][0]["tokens"];
    let (input, output) = (tokens["input"].as_u64(), tokens["output"].as_u64());
    ensure!(
        input.is_some_and(|n| n > 10_000) && output.is_some_and(|n| n >= 9),
        "tokens: {tokens}"
    );
    Ok(())
}

#[test]
fn a_killed_codex_or_supervisor_resumes_the_conversation() -> Result<()> {
    let test = "a_killed_codex_or_supervisor_resumes_the_conversation";
    let Some((sb, llm, command)) = fleet(test, "codex-resume")? else {
        return Ok(());
    };
    spawn(&sb, &command, "mem", "REMEMBER-alpha")?;
    wait_for_turns(&llm, "REMEMBER-alpha", 1, 90)?;
    resumes_after_kills(&sb, &llm, "mem", || llm.codex_turns())
}

#[test]
fn twenty_briefs_at_spawn_reach_codex_once_each() -> Result<()> {
    let test = "twenty_briefs_at_spawn_reach_codex_once_each";
    let Some((sb, llm, command)) = fleet(test, "codex-briefs")? else {
        return Ok(());
    };
    // All twenty at once: Codex CLI is one native process each.
    let names: Vec<String> = (1..=20).map(|i| format!("c{i}")).collect();
    for name in &names {
        spawn(&sb, &command, name, &format!("BRIEF-{name}-END"))?;
    }
    let seen = wait_for_turns(&llm, "-END", 20, 240)?;
    each_brief_once_alone(&seen, &names)?;
    Ok(())
}

/// The permission policy for the permission test: qa approves, reviewers deny, the rest
/// (engineers) escalate.
const PERMISSIONS: &str =
    "[permissions]\ndefault = \"escalate\"\n[permissions.roles]\nqa = \"approve\"\nreviewer = \"deny\"\n";

#[test]
fn codex_permission_requests_follow_the_policy() -> Result<()> {
    let test = "codex_permission_requests_follow_the_policy";
    let Some((sb, llm, command)) = fleet(test, "codex-ask")? else {
        return Ok(());
    };
    sb.write_file(
        "/etc/torch/torch.toml.d/50-test.toml",
        PERMISSIONS.as_bytes(),
        0o644,
    )?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm", "project-manager", Some("boss"))?;
    // Codex asks before a command leaves its sandbox only with this approval policy (its
    // default here refuses such a command without asking).
    let mut asking = command.clone();
    asking.extend([
        "-c".to_string(),
        "approval_policy=\"on-request\"".to_string(),
    ]);
    for (name, role) in [
        ("approver", "qa"),
        ("denier", "reviewer"),
        ("asker", "engineer"),
    ] {
        let place = ["--role", role, "--parent", "pm"];
        spawn_cli_as(&sb, "codex", KEY_FILE, &asking, name, &place)?;
    }
    // The model asks to run a command outside Codex's sandbox.
    llm.set_script(&json!([
        {"when": "APPROVE-TOOL", "tool_use": {"command": "touch approved.txt"}, "times": 1},
        {"when": "DENY-TOOL", "tool_use": {"command": "touch denied.txt"}, "times": 1},
        {"when": "ASK-TOOL", "tool_use": {"command": "touch asked.txt"}, "times": 1}
    ]))?;
    let exists = |path: &str| sb.run(&["test", "-e", path]).is_ok();
    // Approved by policy: the command runs and nobody is asked.
    sb.torch(&["send", "approver", "APPROVE-TOOL now"])?;
    wait_until("approved.txt", Duration::from_secs(90), || {
        Ok(exists("/srv/approver/approved.txt"))
    })?;
    // Denied by policy: it does not run, and the agent takes the next message.
    sb.torch(&["send", "denier", "DENY-TOOL now"])?;
    wait_for_turns(&llm, "DENY-TOOL", 1, 90)?;
    wait_idle_by_hooks(&sb, "denier")?;
    sb.torch(&["send", "denier", "AFTER-DENY"])?;
    wait_for_turns(&llm, "AFTER-DENY", 1, 60)?;
    ensure!(!exists("/srv/denier/denied.txt"), "a denied command ran");
    for (name, said) in [("approver", "approved"), ("denier", "denied")] {
        let journal = sb.journal(&["-u", &format!("torch-agent@{name}.service")])?;
        let want = format!("{said} by the permission policy: Bash: touch {said}.txt");
        ensure!(journal.contains(&want), "{name}: no {want:?} in\n{journal}");
    }
    // Escalated: the dialog stays, messages wait, `torch answer` answers it.
    sb.torch(&["send", "asker", "ASK-TOOL now"])?;
    wait_until("asker asking", Duration::from_secs(60), || {
        Ok(sb
            .torch(&["status"])?
            .contains("asks: permission to use Bash: touch asked.txt"))
    })?;
    sb.torch(&["send", "asker", "HELD-while-asking"])?;
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        !llm.codex_turns()?
            .iter()
            .any(|t| t.contains("HELD-while-asking")),
        "typed into a permission dialog"
    );
    sb.torch(&["answer", "asker", "yes"])?;
    wait_for_turns(&llm, "HELD-while-asking", 1, 60)?;
    ensure!(
        exists("/srv/asker/asked.txt"),
        "the approved command did not run"
    );
    Ok(())
}
