//! The real Claude Code CLI as a Torch agent, talking to our stand-in of the model API
//! (`torch-test-llm`) on the sandbox's loopback. Every delivery is judged by what the
//! stand-in received: each message exactly once, whole, in order, one turn each.
//!
//! Torch prepares each agent's Claude config itself (no dialogs, hooks installed); the
//! tests give the agents' unit the API's address in a drop-in, as an admin would, and
//! each agent its key in an environment file (`torch spawn --env-file`, `torch env`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use torch_tests::compat::{self, Capability};
use torch_tests::llm::{
    claude_or_skip, each_brief_once_alone, five_during_a_slow_reply, kill_program_then_supervisor,
    Standin, FAKE_API_KEY,
};
use torch_tests::{wait_until, Sandbox};

/// The agents' API key, as an admin keeps it: a file only root reads.
const KEY_FILE: &str = "/root/claude.env";

/// A sandbox with the hub, the stand-in, and every agent unit pointed at the stand-in;
/// `None` when the test is skipped for want of the pinned claude.
fn fleet(test: &str, label: &str) -> Result<Option<(Sandbox, Standin, PathBuf)>> {
    fleet_with(test, label, "")
}

/// As [`fleet`], with more `[Service]` settings for the agents' units.
fn fleet_with(
    test: &str,
    label: &str,
    service: &str,
) -> Result<Option<(Sandbox, Standin, PathBuf)>> {
    let Some(claude) = claude_or_skip(test)? else {
        return Ok(None);
    };
    let sb = Sandbox::boot(label)?;
    sb.install_torch()?;
    let llm = Standin::start(&sb)?;
    sb.agent_dropin(&format!(
        "[Service]\nEnvironment=ANTHROPIC_BASE_URL={} DISABLE_TELEMETRY=1 \
         DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1\n{service}",
        llm.base_url()
    ))?;
    let key = format!("ANTHROPIC_API_KEY={FAKE_API_KEY}\n");
    sb.write_file(KEY_FILE, key.as_bytes(), 0o600)?;
    sb.start_hub()?;
    Ok(Some((sb, llm, claude)))
}

/// Makes `dir` a fresh project directory the agents share through their group (untrusted
/// by Claude until Torch prepares it).
fn workdir(sb: &Sandbox, dir: &str) -> Result<()> {
    sb.run(&["install", "-d", "-g", "torch-agent", "-m", "2770", dir])
        .map(drop)
}

/// Spawns a claude orchestrator through the hub with a one-word command (the binary's
/// path).
fn spawn(sb: &Sandbox, claude: &Path, name: &str, extra: &[&str]) -> Result<()> {
    spawn_as(sb, claude, name, &["--role", "orchestrator"], extra, &[])
}

/// Spawns a claude agent with `place` (role, parent), spawn options `extra`, and `args`
/// after the binary.
fn spawn_as(
    sb: &Sandbox,
    claude: &Path,
    name: &str,
    place: &[&str],
    extra: &[&str],
    args_after: &[&str],
) -> Result<()> {
    let dir = format!("/srv/{name}");
    workdir(sb, &dir)?;
    let claude = claude.to_string_lossy();
    let mut args = vec!["spawn", name];
    args.extend_from_slice(place);
    args.extend([
        "--workdir",
        &dir,
        "--profile",
        "claude",
        "--env-file",
        KEY_FILE,
    ]);
    args.extend_from_slice(extra);
    args.extend(["--", &claude]);
    args.extend_from_slice(args_after);
    sb.torch(&args).map(drop)
}

/// The last user text of every request (one a model turn or a tool round), oldest first.
fn turns(llm: &Standin) -> Result<Vec<String>> {
    llm.user_texts()
}

/// Waits until the turns that carry `text` number `n`; returns all turns.
fn wait_for_turns(llm: &Standin, text: &str, n: usize, secs: u64) -> Result<Vec<String>> {
    torch_tests::llm::wait_for_turns(|| turns(llm), text, n, secs)
}

/// The agent's screen, as `torch capture` prints it.
fn screen_of(sb: &Sandbox, name: &str) -> Result<String> {
    sb.torch(&["capture", name])
}

/// The agent's `agent_state` in `torch status --json`.
fn agent_state(sb: &Sandbox, name: &str) -> Result<String> {
    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    let agents = status["agents"].as_array().context("no agents in status")?;
    let agent = agents
        .iter()
        .find(|a| a["name"] == name)
        .with_context(|| format!("{name} not in {status}"))?;
    Ok(agent["agent_state"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn wait_state(sb: &Sandbox, name: &str, want: &str, secs: u64) -> Result<()> {
    let mut last = String::new();
    let r = wait_until(&format!("{name} {want}"), Duration::from_secs(secs), || {
        last = agent_state(sb, name)?;
        Ok(last == want)
    });
    r.map_err(|e| {
        let screen = sb.torch(&["capture", name]).unwrap_or_default();
        e.context(format!("{name} reads {last}; screen:\n{screen}"))
    })
}

#[test]
fn twenty_briefs_at_spawn_reach_claude_once_each() -> Result<()> {
    let test = "twenty_briefs_at_spawn_reach_claude_once_each";
    let Some((sb, llm, claude)) = fleet(test, "claude-briefs")? else {
        return Ok(());
    };
    let names: Vec<String> = (1..=20).map(|i| format!("b{i}")).collect();
    for name in &names {
        let brief = format!("/srv/{name}.brief");
        sb.write_file(&brief, format!("BRIEF-{name}-END").as_bytes(), 0o644)?;
        spawn(&sb, &claude, name, &["--brief", &brief])?;
    }
    let seen = wait_for_turns(&llm, "-END", names.len(), 240)?;
    each_brief_once_alone(&seen, &names)?;
    // The key reached every agent from its file, and nothing logged it.
    let journal = sb.journal(&["-o", "verbose"])?;
    ensure!(
        !journal.contains(FAKE_API_KEY),
        "the API key is in the journal"
    );
    // The next message is its own turn too (the brief left nothing behind).
    sb.torch(&["send", "b7", "SECOND-for-b7"])?;
    let seen = wait_for_turns(&llm, "SECOND-for-b7", 1, 60)?;
    let second: Vec<_> = seen
        .iter()
        .filter(|t| t.contains("SECOND-for-b7"))
        .collect();
    ensure!(
        second.len() == 1 && !second[0].contains("BRIEF"),
        "{second:#?}"
    );
    compat::record(&torch_tests::llm::CLAUDE, Capability::TwentyBriefs, "20/20")?;
    compat::verified(&torch_tests::llm::CLAUDE, &[Capability::StartsReady])?;
    Ok(())
}

#[test]
fn messages_reach_claude_whole_in_order_one_turn_each() -> Result<()> {
    let test = "messages_reach_claude_whole_in_order_one_turn_each";
    let Some((sb, llm, claude)) = fleet(test, "claude-msgs")? else {
        return Ok(());
    };
    spawn(&sb, &claude, "cc", &[])?;
    sb.torch(&["send", "cc", "ONE-LINE hello"])?;
    wait_for_turns(&llm, "ONE-LINE hello", 1, 90)?;
    // Multi-line, with what a shell or tmux would take for commands or keys.
    let multi = "MULTI first $(id) `uname`\n\tsecond \"quoted\" 'single'\nC-c third; rm -rf /nothing\nfourth line\nfifth";
    sb.torch(&["send", "cc", multi])?;
    let seen = wait_for_turns(&llm, "MULTI first", 1, 60)?;
    let got = seen
        .iter()
        .find(|t| t.contains("MULTI first"))
        .context("multi")?;
    // Claude Code turns tabs into four spaces; the rest arrives as sent.
    let want = multi.replace('\t', "    ");
    ensure!(got.contains(&want), "sent {want:?}\ngot {got:?}");
    // Conversation text that once read as trouble must not hold the next message.
    sb.torch(&[
        "send",
        "cc",
        "WORDS please add a rate limit; we saw API Error: 529 overloaded and a usage limit",
    ])?;
    sb.torch(&["send", "cc", "AFTER-WORDS"])?;
    wait_for_turns(&llm, "AFTER-WORDS", 1, 60)?;
    // Five messages while a reply takes 5 s: held, then one turn each, in order.
    five_during_a_slow_reply(&sb, &llm, "cc", || turns(&llm))?;
    leftover_input_is_cleared(&sb, &llm)?;
    explain_tokens_and_cost(&sb)?;
    compat::verified(
        &torch_tests::llm::CLAUDE,
        &[
            Capability::Messages,
            Capability::OwnChannel,
            Capability::Tokens,
            Capability::Cost,
        ],
    )?;
    Ok(())
}

/// Text left in the input box (typed by hand, never sent) is cleared, not glued to the
/// next message.
fn leftover_input_is_cleared(sb: &Sandbox, llm: &Standin) -> Result<()> {
    wait_state(sb, "cc", "idle", 30)?;
    let sock = "/run/torch-agent/cc/tmux.sock";
    sb.run(&[
        "tmux",
        "-S",
        sock,
        "send-keys",
        "-t",
        "%0",
        "-l",
        "LEFTOVER half",
    ])?;
    sb.run(&["tmux", "-S", sock, "send-keys", "-t", "%0", "S-Enter"])?;
    sb.run(&[
        "tmux",
        "-S",
        sock,
        "send-keys",
        "-t",
        "%0",
        "-l",
        "typed by hand",
    ])?;
    // Left there: on screen before the message comes.
    wait_until("the leftover on screen", Duration::from_secs(10), || {
        Ok(screen_of(sb, "cc")?.contains("typed by hand"))
    })?;
    sb.torch(&["send", "cc", "AFTER-LEFTOVER"])?;
    let seen = wait_for_turns(llm, "AFTER-LEFTOVER", 1, 60)?;
    let after = seen
        .iter()
        .find(|t| t.contains("AFTER-LEFTOVER"))
        .context("after")?;
    ensure!(
        !after.contains("LEFTOVER half") && !after.contains("typed by hand"),
        "{after:?}"
    );
    Ok(())
}

/// `torch explain` says what decided the state; status carries tokens and cost.
fn explain_tokens_and_cost(sb: &Sandbox) -> Result<()> {
    wait_state(sb, "cc", "idle", 30)?;
    let explained = sb.torch(&["explain", "cc"])?;
    // The screen may lag behind the hook a moment; the hook decides.
    ensure!(
        explained.contains("state: idle, decided by hook Stop")
            && explained.contains("its screen alone reads "),
        "{explained}"
    );
    let status = torch_tests::llm::ensure_tokens(sb, 1000, 9)?;
    let cost = status["agents"][0]["cost_microusd"].as_u64();
    ensure!(cost.is_some_and(|c| c > 0), "cost: {cost:?}");
    let explained = sb.torch(&["explain", "cc"])?;
    ensure!(explained.contains("cost: $"), "{explained}");
    // The same in the fleet's metrics.
    let metrics = sb.torch(&["metrics"])?;
    for line in [
        "# TYPE torch_agent_tokens counter\n",
        "torch_agent_tokens_total{agent=\"cc\",kind=\"input\"} ",
        "# TYPE torch_agent_cost_usd counter\n",
        "torch_agent_cost_usd_total{agent=\"cc\"} ",
    ] {
        ensure!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
    Ok(())
}

/// The permission policy of `torch.toml` for the permission test: qa approves, reviewers
/// deny, the rest (engineers) escalate, and an unanswered question alerts after 4 s.
const PERMISSIONS: &str = "[attention]\nasking = \"4s\"\n[permissions]\ndefault = \"escalate\"\n\
                           [permissions.roles]\nqa = \"approve\"\nreviewer = \"deny\"\n";

#[test]
fn permission_prompts_follow_the_policy_and_escalate_to_the_parent() -> Result<()> {
    let test = "permission_prompts_follow_the_policy_and_escalate_to_the_parent";
    // Health checks every 2 s, so the 4 s alert comes soon after.
    let Some((sb, llm, claude)) = fleet_with(test, "claude-ask", "WatchdogSec=4s\n")? else {
        return Ok(());
    };
    sb.write_file(
        "/etc/torch/torch.toml.d/50-test.toml",
        PERMISSIONS.as_bytes(),
        0o644,
    )?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm", "project-manager", Some("boss"))?;
    // Manual mode: Claude asks before it runs a tool.
    let manual = ["--permission-mode", "default"];
    for (name, role) in [
        ("asker", "engineer"),
        ("approver", "qa"),
        ("denier", "reviewer"),
    ] {
        let place = ["--role", role, "--parent", "pm"];
        spawn_as(&sb, &claude, name, &place, &[], &manual)?;
    }
    llm.set_script(&json!([
        {"when": "ASK-TOOL", "tool_use": {"command": "touch asked.txt"}, "times": 1},
        {"when": "APPROVE-TOOL", "tool_use": {"command": "touch approved.txt"}, "times": 1},
        {"when": "DENY-TOOL", "tool_use": {"command": "touch denied.txt"}, "times": 1}
    ]))?;
    let exists = |path: &str| sb.run(&["test", "-e", path]).is_ok();

    // Approved by policy: the tool runs and nobody is asked.
    sb.torch(&["send", "approver", "APPROVE-TOOL now"])?;
    wait_until("approved.txt", Duration::from_secs(90), || {
        Ok(exists("/srv/approver/approved.txt"))
    })?;
    // Denied by policy: the tool does not run, and the agent takes the next message.
    sb.torch(&["send", "denier", "DENY-TOOL now"])?;
    wait_for_turns(&llm, "DENY-TOOL", 1, 90)?;
    wait_state(&sb, "denier", "idle", 60)?;
    sb.torch(&["send", "denier", "AFTER-DENY"])?;
    wait_for_turns(&llm, "AFTER-DENY", 1, 60)?;
    ensure!(!exists("/srv/denier/denied.txt"), "a denied tool ran");
    for (name, said) in [("approver", "approved"), ("denier", "denied")] {
        let journal = sb.journal(&["-u", &format!("torch-agent@{name}.service")])?;
        let want = format!("{said} by the permission policy: Bash: touch {said}.txt");
        ensure!(journal.contains(&want), "{name}: no {want:?} in\n{journal}");
    }

    // Another agent cannot forge the asker's hook events (a fake rate limit).
    let cg = sb.unit_property("torch-agent@approver.service", "ControlGroup")?;
    let forge = format!(
        "echo $$ > '/sys/fs/cgroup{cg}/cgroup.procs' && exec /usr/libexec/torch/torch-agent --hook /run/torch-agent/asker/control.sock 2>&1"
    );
    let fake = br#"{"hook_event_name":"StopFailure","error":"rate_limit"}"#;
    let said = sb.run_with_stdin(&["sh", "-c", &forge], fake)?;
    ensure!(
        said.contains("only from processes of this agent's own unit"),
        "{said}"
    );
    ensure!(
        agent_state(&sb, "asker")? != "limited",
        "a forged hook was taken"
    );
    // Escalated: the question stays, messages wait, the parent is told.
    sb.torch(&["send", "asker", "ASK-TOOL now"])?;
    wait_state(&sb, "asker", "asking", 60)?;
    sb.torch(&["send", "asker", "HELD-while-asking"])?;
    let alert = wait_until("the alert at pm", Duration::from_secs(30), || {
        Ok(sb
            .records("pm")?
            .iter()
            .any(|r| r.contains("agent asker has waited")))
    });
    alert.map_err(|e| e.context(format!("pm got {:?}", sb.records("pm"))))?;
    let alert = sb.records("pm")?.join("\n");
    ensure!(
        alert.contains("torch answer asker yes") && alert.contains("touch asked.txt"),
        "{alert}"
    );
    ensure!(
        !turns(&llm)?.iter().any(|t| t.contains("HELD-while-asking")),
        "typed into a permission prompt"
    );
    let journal = sb.journal(&["-u", "torch-agent@asker.service", "TORCH_ALERT=1"])?;
    ensure!(
        journal.contains("has waited"),
        "no journal alert:\n{journal}"
    );
    // An agent cannot answer its own question.
    let (ok, said) = sb.torch_in_unit("asker", &["answer", "asker", "yes"])?;
    ensure!(
        !ok && said.contains("only for the agents below it"),
        "{said}"
    );
    sb.torch(&["answer", "asker", "yes"])?;
    wait_for_turns(&llm, "HELD-while-asking", 1, 60)?;
    ensure!(
        exists("/srv/asker/asked.txt"),
        "the approved tool did not run"
    );
    compat::verified(
        &torch_tests::llm::CLAUDE,
        &[Capability::Policy, Capability::Answer],
    )?;
    Ok(())
}

#[test]
fn a_rate_limited_agent_holds_messages_and_continues_after_the_reset() -> Result<()> {
    let test = "a_rate_limited_agent_holds_messages_and_continues_after_the_reset";
    let Some((sb, llm, claude)) = fleet(test, "claude-limit")? else {
        return Ok(());
    };
    // No reset time from the API: Torch waits [limits] wait.
    let limits = "[limits]\nwait = \"8s\"\njitter = \"1s\"\n";
    sb.write_file(
        "/etc/torch/torch.toml.d/50-test.toml",
        limits.as_bytes(),
        0o644,
    )?;
    spawn(&sb, &claude, "lim", &[])?;
    // A retry-after over a minute: Claude gives up at once.
    llm.set_script(
        &json!([{"when": "LIMIT-ME", "status": 429, "retry_after_s": 120, "times": 1}]),
    )?;
    sb.torch(&["send", "lim", "LIMIT-ME please"])?;
    wait_state(&sb, "lim", "limited", 90)?;
    sb.torch(&["send", "lim", "WHILE-LIMITED"])?;
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        !turns(&llm)?.iter().any(|t| t.contains("WHILE-LIMITED")),
        "typed into a limited agent"
    );
    let journal = sb.journal(&["-u", "torch-agent@lim.service", "TORCH_ALERT=1"])?;
    ensure!(journal.contains("rate or usage limit"), "{journal}");
    // After the wait: the held message, and the check-in that says to go on.
    wait_for_turns(&llm, "WHILE-LIMITED", 1, 60)?;
    wait_for_turns(&llm, "has reset: continue where you left off", 1, 60)?;
    let schedules = sb.torch(&["schedules", "--agent", "lim"])?;
    ensure!(!schedules.contains("continue where"), "{schedules}");
    compat::verified(&torch_tests::llm::CLAUDE, &[Capability::RateLimit])?;
    Ok(())
}

#[test]
fn a_killed_claude_or_supervisor_resumes_the_conversation() -> Result<()> {
    let test = "a_killed_claude_or_supervisor_resumes_the_conversation";
    let Some((sb, llm, claude)) = fleet(test, "claude-resume")? else {
        return Ok(());
    };
    spawn(&sb, &claude, "mem", &[])?;
    sb.torch(&["send", "mem", "REMEMBER-alpha"])?;
    wait_for_turns(&llm, "REMEMBER-alpha", 1, 90)?;
    kill_program_then_supervisor(
        &sb,
        "mem",
        || wait_state(&sb, "mem", "idle", 30),
        |text| {
            sb.torch(&["send", "mem", text])?;
            wait_for_turns(&llm, text, 1, 90)?;
            ensure_remembered(&llm, text)
        },
    )?;
    compat::verified(&torch_tests::llm::CLAUDE, &[Capability::Resume])?;
    Ok(())
}

/// The request that carried `text` also carried the first turn: the conversation went on.
fn ensure_remembered(llm: &Standin, text: &str) -> Result<()> {
    let requests = llm.requests()?;
    let request = requests
        .iter()
        .find(|r| {
            r["last_user_text"]
                .as_str()
                .is_some_and(|t| t.contains(text))
        })
        .context("no request")?;
    let blocks = torch_tests::anthropic::user_text_blocks(&request["body"]);
    ensure!(
        blocks.iter().any(|b| b.contains("REMEMBER-alpha")),
        "the conversation started afresh: {blocks:#?}"
    );
    Ok(())
}
