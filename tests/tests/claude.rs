//! The real Claude Code CLI as a Torch agent, talking to our stand-in of the model API
//! (`torch-test-llm`) on the sandbox's loopback: the message Torch types arrives at the
//! model as one user turn.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::json;
use torch_tests::llm::{claude_agent_toml, claude_env, claude_or_skip, Standin};
use torch_tests::{wait_until, Sandbox};

const HOME: &str = "/var/lib/torch-agent/cc-home";
const WORKDIR: &str = "/var/lib/torch-agent/cc-work";

/// The agent's screen as tmux shows it.
fn screen(sb: &Sandbox, name: &str) -> Result<String> {
    let sock = format!("/run/torch-agent/{name}/tmux.sock");
    sb.run(&["tmux", "-S", &sock, "capture-pane", "-p", "-t", "%0"])
}

/// A sandbox with the stand-in running and agent `name` running the pinned claude against it;
/// `None` when `test` is skipped for want of claude.
fn claude_agent(test: &str, label: &str, name: &str) -> Result<Option<(Sandbox, Standin)>> {
    let Some(claude) = claude_or_skip(test)? else {
        return Ok(None);
    };
    let sb = Sandbox::boot(label)?;
    sb.install_torch()?;
    let llm = Standin::start(&sb)?;
    sb.seed_claude(HOME, WORKDIR)?;
    let env = claude_env(&llm.base_url(), HOME);
    sb.define_agent(name, &claude_agent_toml(&claude, WORKDIR, &env))?;
    sb.torch(&["start", name])?;
    Ok(Some((sb, llm)))
}

/// Waits for Claude Code's empty prompt (auto mode, the default in the pinned version).
fn wait_for_prompt(sb: &Sandbox, name: &str) -> Result<()> {
    let mut last = String::new();
    let r = wait_until("claude's prompt", Duration::from_secs(60), || {
        last = screen(sb, name)?;
        Ok(last.contains("❯") && last.contains("auto mode on"))
    });
    r.map_err(|e| e.context(format!("screen:\n{last}")))
}

#[test]
fn claude_gets_a_message_torch_types_as_one_user_turn() -> Result<()> {
    let Some((sb, llm)) = claude_agent(
        "claude_gets_a_message_torch_types_as_one_user_turn",
        "claude-smoke",
        "cc",
    )?
    else {
        return Ok(());
    };
    wait_for_prompt(&sb, "cc")?;
    let text = "please reply with the word ok";
    llm.set_script(&json!([{"when": text, "reply": "standin says ok"}]))?;
    sb.torch(&["send", "--direct", "cc", text])?;
    let mut shown = String::new();
    let replied = wait_until(
        "the stand-in's reply on screen",
        Duration::from_secs(60),
        || {
            shown = screen(&sb, "cc")?;
            Ok(shown.contains("standin says ok"))
        },
    );
    ensure!(
        replied.is_ok(),
        "{replied:?}\nrequests: {:#?}\nscreen:\n{shown}",
        llm.user_texts()?
    );
    // The model saw the text once, whole, as a block of its own (Claude Code puts its
    // reminders in blocks beside it), and it was a new turn only once.
    let conversation = llm.conversation()?;
    let copies = conversation.iter().filter(|b| b.as_str() == text).count();
    ensure!(copies == 1, "{copies} copies in {conversation:#?}");
    let turns = llm.user_texts()?;
    let asked = turns.iter().filter(|t| t.contains(text)).count();
    ensure!(asked == 1, "asked {asked} times: {turns:#?}");
    Ok(())
}
