//! The real Claude Code CLI as a test agent: the pinned binary, and [`Standin`], our
//! stand-in of the model API (`torch-test-llm`) running inside a sandbox, whose only
//! network is its loopback.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

use crate::{target_bin_dir, wait_until, workspace_root, Sandbox};

/// The file that pins the agent CLIs the tests run, one row each.
pub const PINS: &str = "scripts/agent-clis.pins";

/// A real agent CLI the tests run, installed at the version `scripts/agent-clis.pins` pins.
pub struct PinnedCli {
    /// Its name in messages.
    pub name: &'static str,
    /// Its row in the pins file, and where under `/opt/torch-test` it goes (a directory per
    /// version).
    dir: &'static str,
    /// Its command in `node_modules/.bin` (`bin` for a CLI from PyPI).
    command: &'static str,
    /// Whether it comes from PyPI, into a virtual environment.
    pypi: bool,
    /// The variable that makes its absence an error rather than a skip.
    require: &'static str,
}

/// Claude Code.
pub const CLAUDE: PinnedCli = PinnedCli {
    name: "Claude Code",
    dir: "claude-code",
    pypi: false,
    command: "claude",
    require: "TORCH_REQUIRE_CLAUDE",
};

/// Gemini CLI.
pub const GEMINI: PinnedCli = PinnedCli {
    name: "Gemini CLI",
    dir: "gemini-cli",
    pypi: false,
    command: "gemini",
    require: "TORCH_REQUIRE_GEMINI",
};

/// Codex CLI.
pub const CODEX: PinnedCli = PinnedCli {
    name: "Codex CLI",
    dir: "codex",
    pypi: false,
    command: "codex",
    require: "TORCH_REQUIRE_CODEX",
};

/// opencode.
pub const OPENCODE: PinnedCli = PinnedCli {
    name: "opencode",
    dir: "opencode",
    pypi: false,
    command: "opencode",
    require: "TORCH_REQUIRE_OPENCODE",
};

/// Aider.
pub const AIDER: PinnedCli = PinnedCli {
    name: "Aider",
    dir: "aider",
    pypi: true,
    command: "aider",
    require: "TORCH_REQUIRE_AIDER",
};

/// Every pinned CLI, in the order of the compatibility matrix.
pub const ALL_CLIS: [&PinnedCli; 5] = [&CLAUDE, &GEMINI, &CODEX, &OPENCODE, &AIDER];

/// How to spawn an agent of a pinned CLI that talks to the stand-in (see
/// [`PinnedCli::prepare_agents`]).
#[derive(Debug, Clone)]
pub struct CliAgents {
    /// The profile.
    pub profile: &'static str,
    /// The agents' environment file: the key and what the CLI needs offline.
    pub env_file: String,
    /// The command: the pinned CLI, with the stand-in as its model provider where the CLI
    /// takes that on its command line.
    pub command: Vec<String>,
}

/// The fake API key the agents get; the stand-in accepts any.
pub const FAKE_API_KEY: &str = "sk-ant-api03-torch-test-standin-key-0000000000000000";

impl PinnedCli {
    /// The pinned version, read from the pins file, so the pin lives in one place.
    pub fn version(&self) -> Result<String> {
        let path = workspace_root().join(PINS);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        pinned_version(&text, self.dir)
            .ok_or_else(|| anyhow!("no row {} in {}", self.dir, path.display()))
    }

    /// Its row in the pins file.
    pub fn dir(&self) -> &'static str {
        self.dir
    }

    /// Where `scripts/setup-clis.sh` puts the pinned command (the same path inside sandboxes).
    pub fn bin(&self) -> Result<PathBuf> {
        let bin = if self.pypi {
            "bin"
        } else {
            "node_modules/.bin"
        };
        Ok(PathBuf::from(format!(
            "/opt/torch-test/{}/{}/{bin}/{}",
            self.dir,
            self.version()?,
            self.command
        )))
    }

    /// Points the agents of this CLI in `sb` at `llm`, as an admin would point them at an
    /// API service, and returns how to spawn one. `settings` (a JSON object) goes into
    /// opencode's config; the other CLIs take none. Not for Claude Code, whose tests and
    /// benchmark part set up their own.
    pub fn prepare_agents(
        &self,
        sb: &Sandbox,
        llm: &Standin,
        settings: &Value,
    ) -> Result<CliAgents> {
        let bin = self.bin()?.to_string_lossy().into_owned();
        let env_file = format!("/root/{}.env", self.dir);
        let (profile, env, command) = match self.dir {
            // The API's address from the agents' unit, as an admin sets it in a drop-in.
            "gemini-cli" => {
                let dropin = format!(
                    "[Service]\nEnvironment=GOOGLE_GEMINI_BASE_URL={}\n",
                    llm.base_url()
                );
                sb.agent_dropin(&dropin)?;
                (
                    "gemini",
                    format!("GEMINI_API_KEY={FAKE_API_KEY}\n"),
                    vec![bin],
                )
            }
            // A model provider on the command line, as a user points Codex at an
            // OpenAI-compatible service.
            "codex" => {
                let provider = format!(
                    "model_providers.standin={{name=\"stand-in\",base_url=\"{}/v1\",env_key=\"OPENAI_API_KEY\",wire_api=\"responses\"}}",
                    llm.base_url()
                );
                let command = vec![
                    bin,
                    "-c".into(),
                    "model_provider=\"standin\"".into(),
                    "-c".into(),
                    provider,
                ];
                ("codex", format!("OPENAI_API_KEY={FAKE_API_KEY}\n"), command)
            }
            "opencode" => ("opencode", opencode_env(llm, settings), vec![bin]),
            "aider" => {
                sb.write_file(AIDER_MODELS, AIDER_PRICE.as_bytes(), 0o644)?;
                ("aider", aider_env(llm), vec![bin])
            }
            other => bail!("no agent set-up for {other}"),
        };
        sb.write_file(&env_file, env.as_bytes(), 0o600)?;
        Ok(CliAgents {
            profile,
            env_file,
            command,
        })
    }

    /// The pinned command, or `None` (with the reason printed) when it is not installed and
    /// the run does not insist on it: `TORCH_REQUIRE_...=1` (scripts/test.sh sets them) makes
    /// its absence an error, so CI never skips in silence.
    pub fn or_skip(&self, test: &str) -> Result<Option<PathBuf>> {
        let bin = self.bin()?;
        if bin.exists() {
            return Ok(Some(bin));
        }
        if std::env::var(self.require).is_ok_and(|v| v == "1") {
            bail!(
                "{} is missing and {}=1; run scripts/setup-clis.sh {}",
                bin.display(),
                self.require,
                self.dir
            );
        }
        eprintln!(
            "SKIPPED {test}: {} is not installed (scripts/setup-clis.sh {} installs it; {}=1 turns this skip into a failure)",
            bin.display(),
            self.dir,
            self.require
        );
        Ok(None)
    }
}

/// opencode's environment file: the key, the stand-in as an OpenAI-compatible provider (its
/// model priced at $3 and $15 per million tokens in and out, as an admin prices a model
/// opencode does not know) with
/// `settings` beside it (`OPENCODE_CONFIG_CONTENT`), and the machine's being offline: no
/// list of models fetched, and npm told so (else opencode waits about 70 s at each start
/// for its plugin loader's dependency to install, before it loads any plugin).
fn opencode_env(llm: &Standin, settings: &Value) -> String {
    let mut config = serde_json::json!({
        "model": "standin/fake-model",
        "provider": {"standin": {
            "npm": "@ai-sdk/openai-compatible", "name": "Stand-in",
            "options": {"baseURL": format!("{}/v1", llm.base_url()), "apiKey": "{env:OPENAI_API_KEY}"},
            "models": {"fake-model": {"name": "Fake Model", "cost": {"input": 3, "output": 15}}}
        }}
    });
    if let (Some(c), Some(more)) = (config.as_object_mut(), settings.as_object()) {
        c.extend(more.clone());
    }
    format!(
        "OPENAI_API_KEY={FAKE_API_KEY}\nOPENCODE_CONFIG_CONTENT={config}\n\
         OPENCODE_DISABLE_MODELS_FETCH=1\nnpm_config_offline=true\n"
    )
}

/// Where the tests give Aider the stand-in model's metadata.
const AIDER_MODELS: &str = "/etc/torch/aider-models.json";

/// The stand-in model's metadata as Aider reads it (litellm's format): priced at $3 and $15
/// per million tokens in and out, as a user prices a model Aider does not know.
const AIDER_PRICE: &str = r#"{"openai/fake-model": {"max_input_tokens": 128000, "max_output_tokens": 4096,
 "input_cost_per_token": 0.000003, "output_cost_per_token": 0.000015,
 "litellm_provider": "openai", "mode": "chat"}}"#;

/// Aider's environment file: the key, the stand-in as its OpenAI-compatible API and model
/// with the model's price, and the machine's being offline (no price list fetched at each
/// turn).
fn aider_env(llm: &Standin) -> String {
    format!(
        "OPENAI_API_KEY={FAKE_API_KEY}\nOPENAI_API_BASE={}/v1\nAIDER_MODEL=openai/fake-model\n\
         AIDER_MODEL_METADATA_FILE={AIDER_MODELS}\nLITELLM_LOCAL_MODEL_COST_MAP=True\n",
        llm.base_url()
    )
}

/// Whether a line of the stand-in's record is a model turn of one of the CLIs: not a
/// reply's end, not Gemini CLI's routing classifier, not a title Codex or opencode asks for.
pub fn is_turn(line: &Value) -> bool {
    if line["method"] != "POST" {
        return false;
    }
    let body = &line["body"];
    match line["path"].as_str().unwrap_or_default() {
        "/v1/messages" => true,
        crate::openai::PATH => !crate::openai::is_title(body),
        crate::openai::CHAT_PATH => !crate::openai::is_chat_title(body),
        p => crate::gemini::is_model_call(p) && crate::gemini::is_stream(p),
    }
}

/// The version column of the pins file's row `dir` (`dir package version command test`).
fn pinned_version(pins: &str, dir: &str) -> Option<String> {
    pins.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(str::split_whitespace)
        .find_map(|mut cols| (cols.next() == Some(dir)).then(|| cols.nth(1)).flatten())
        .map(str::to_string)
}

/// The pinned Claude Code version.
pub fn claude_version() -> Result<String> {
    CLAUDE.version()
}

/// The pinned `claude`.
pub fn claude_bin() -> Result<PathBuf> {
    CLAUDE.bin()
}

/// The pinned `claude`, or `None` when it is not installed (see [`PinnedCli::or_skip`]).
pub fn claude_or_skip(test: &str) -> Result<Option<PathBuf>> {
    CLAUDE.or_skip(test)
}

/// What marks a message Torch typed ("[torch message #3 from operator]", "[torch brief
/// from operator]"): the CLIs' own additions never contain it.
pub const MARK: &str = "[torch ";

/// Waits until the prompts `turns()` reads (one per model turn, oldest first) that carry
/// `text` number `n`; returns them all.
pub fn wait_for_turns(
    turns: impl Fn() -> Result<Vec<String>>,
    text: &str,
    n: usize,
    secs: u64,
) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    let r = wait_until(
        &format!("{n} turn(s) with {text:?}"),
        Duration::from_secs(secs),
        || {
            seen = turns()?;
            Ok(seen.iter().filter(|t| t.contains(text)).count() >= n)
        },
    );
    r.map_err(|e| e.context(format!("turns: {seen:#?}")))?;
    Ok(seen)
}

/// Each of `names` had its brief (`BRIEF-NAME-END`) in exactly one of the turns `seen`,
/// alone in that turn (one message a turn: never glued to another).
pub fn each_brief_once_alone(seen: &[String], names: &[String]) -> Result<()> {
    for name in names {
        let mine: Vec<_> = seen
            .iter()
            .filter(|t| t.contains(&format!("BRIEF-{name}-END")))
            .collect();
        if mine.len() != 1 {
            bail!("{name}: {mine:#?}");
        }
        if mine[0].matches(MARK).count() != 1 {
            bail!("{name}: {}", mine[0]);
        }
    }
    Ok(())
}

/// Twenty agents of `agents`, named `PREFIX1` to `PREFIX20`, spawned `at_once` at a time
/// (each batch retired once its briefs came), each with a brief `BRIEF-NAME-END`: each brief
/// reached the model in exactly one turn, alone in it (see [`each_brief_once_alone`]).
pub fn twenty_briefs(
    sb: &Sandbox,
    agents: &CliAgents,
    prefix: &str,
    at_once: usize,
    turns: impl Fn() -> Result<Vec<String>> + Copy,
) -> Result<()> {
    let names: Vec<String> = (1..=20).map(|i| format!("{prefix}{i}")).collect();
    for (batch, group) in names.chunks(at_once.max(1)).enumerate() {
        for name in group {
            spawn_cli(sb, agents, name, &format!("BRIEF-{name}-END"))?;
        }
        let seen = wait_for_turns(turns, "-END", batch * at_once + group.len(), 240)?;
        each_brief_once_alone(&seen, group)?;
        for name in group {
            sb.torch(&["retire", name])?;
        }
    }
    Ok(())
}

/// Five messages sent to `name` while the stand-in takes 5 s over a reply are held, then
/// reach the model as five turns in order, one message each; no turn ever holds two
/// messages. Returns every turn.
pub fn five_during_a_slow_reply(
    sb: &Sandbox,
    llm: &Standin,
    name: &str,
    turns: impl Fn() -> Result<Vec<String>> + Copy,
) -> Result<Vec<String>> {
    llm.set_script(&serde_json::json!([
        {"when": "SLOW-TURN", "reply": "slow done", "delay_ms": 5000}
    ]))?;
    sb.torch(&["send", name, "SLOW-TURN please"])?;
    wait_for_turns(turns, "SLOW-TURN", 1, 60)?;
    for i in 1..=5 {
        sb.torch(&["send", name, &format!("DURING-{i}")])?;
    }
    let seen = wait_for_turns(turns, "DURING-", 5, 90)?;
    let during: Vec<&String> = seen.iter().filter(|t| t.contains("DURING-")).collect();
    if during.len() != 5 {
        bail!("five messages made {} turns: {during:#?}", during.len());
    }
    for (i, turn) in during.iter().enumerate() {
        if !turn.contains(&format!("DURING-{}", i + 1)) || turn.matches(MARK).count() != 1 {
            bail!("turn {i}: {turn:?}\nall: {during:#?}");
        }
    }
    if let Some(t) = seen.iter().find(|t| t.matches(MARK).count() > 1) {
        bail!("two messages in one turn: {t:?}");
    }
    Ok(seen)
}

/// Kills agent `name`'s program, then its supervisor (each with `kill -9`); after each, once
/// systemd restarted the agent, `after(text)` sends a message `text` and checks it reached
/// the model within the same conversation. `idle` waits for the agent to be idle again.
pub fn kill_program_then_supervisor(
    sb: &Sandbox,
    name: &str,
    idle: impl Fn() -> Result<()>,
    after: impl Fn(&str) -> Result<()>,
) -> Result<()> {
    idle()?;
    let pid = sb.pane_pid(name)?;
    sb.run(&["kill", "-KILL", pid.trim()])?;
    sb.wait_active(name, 1, Duration::from_secs(60))?;
    after("AFTER-PROGRAM-KILL")?;
    idle()?;
    let main = sb.unit_property(&format!("torch-agent@{name}.service"), "MainPID")?;
    sb.run(&["kill", "-KILL", main.trim()])?;
    sb.wait_active(name, 2, Duration::from_secs(60))?;
    after("AFTER-SUPERVISOR-KILL")
}

/// A sandbox with the hub and the stand-in, and the agents of `cli` pointed at it (see
/// [`PinnedCli::prepare_agents`], which `settings` goes to); `None` when `test` is skipped
/// for want of the pinned CLI.
pub fn cli_fleet(
    cli: &PinnedCli,
    test: &str,
    label: &str,
    settings: &Value,
) -> Result<Option<(Sandbox, Standin, CliAgents)>> {
    if cli.or_skip(test)?.is_none() {
        return Ok(None);
    }
    let sb = Sandbox::boot(label)?;
    sb.install_torch()?;
    let llm = Standin::start(&sb)?;
    let agents = cli.prepare_agents(&sb, &llm, settings)?;
    sb.start_hub()?;
    Ok(Some((sb, llm, agents)))
}

/// Spawns orchestrator `name` of `agents` through the hub, in a project directory of its
/// own that its CLI never trusted, with `brief`.
pub fn spawn_cli(sb: &Sandbox, agents: &CliAgents, name: &str, brief: &str) -> Result<()> {
    let brief_file = format!("/root/{name}.brief");
    sb.write_file(&brief_file, brief.as_bytes(), 0o600)?;
    let place = ["--role", "orchestrator", "--brief", &brief_file];
    spawn_cli_as(sb, agents, name, &place)
}

/// Spawns `name` of `agents` through the hub, at `place` (`--role R --parent P`, maybe
/// `--brief FILE`), in a project directory of its own (`/srv/NAME`, which its CLI never
/// trusted).
pub fn spawn_cli_as(sb: &Sandbox, agents: &CliAgents, name: &str, place: &[&str]) -> Result<()> {
    let dir = format!("/srv/{name}");
    sb.run(&["install", "-d", "-g", "torch-agent", "-m", "2770", &dir])?;
    let mut args = vec!["spawn", name];
    args.extend_from_slice(place);
    args.extend(["--workdir", &dir, "--profile", agents.profile]);
    args.extend(["--env-file", &agents.env_file, "--"]);
    args.extend(agents.command.iter().map(String::as_str));
    sb.torch(&args).map(drop)
}

/// Agent `name`, spawned with a brief holding `BRIEF-NAME` (in capitals), gets it as its
/// first turn (no dialog stood in the way), then one line, a hostile five-line text, and
/// five messages during a slow reply: each reaches the model exactly once, whole, in
/// order, never two in one turn. Then its hooks say it is idle, by `stop_event`.
pub fn messages_scenario(
    sb: &Sandbox,
    llm: &Standin,
    name: &str,
    turns: impl Fn() -> Result<Vec<String>> + Copy,
    stop_event: &str,
) -> Result<()> {
    let brief = format!("BRIEF-{}", name.to_uppercase());
    wait_for_turns(turns, &brief, 1, 90)?;
    sb.torch(&["send", name, "ONE-LINE hello"])?;
    wait_for_turns(turns, "ONE-LINE hello", 1, 60)?;
    // Multi-line, with what a shell or tmux would take for commands or keys.
    let multi = "MULTI first $(id) `uname`\n\tsecond \"quoted\" 'single'\nC-c third; rm -rf /nothing\nfourth line\nfifth";
    sb.torch(&["send", name, multi])?;
    let seen = wait_for_turns(turns, "MULTI first", 1, 60)?;
    let got = seen.iter().find(|t| t.contains("MULTI first"));
    let got = got.cloned().unwrap_or_default();
    if !(got.contains(multi) || got.contains(&multi.replace('\t', "    "))) {
        bail!("sent {multi:?}\ngot {got:?}");
    }
    let seen = five_during_a_slow_reply(sb, llm, name, turns)?;
    for text in [brief.as_str(), "ONE-LINE hello", "MULTI first", "SLOW-TURN"] {
        let n = seen.iter().filter(|t| t.contains(text)).count();
        if n != 1 {
            bail!("{text:?} reached the model {n} times: {seen:#?}");
        }
    }
    let idle = format!("state: idle, decided by hook {stop_event}");
    wait_until(
        &format!("{name} idle by its hooks"),
        Duration::from_secs(30),
        || Ok(sb.torch(&["explain", name])?.contains(&idle)),
    )
}

/// The permission policy of the permission scenario: qa approves, reviewers deny, the
/// rest (engineers) escalate.
const PERMISSIONS: &str = "[permissions]\ndefault = \"escalate\"\n\
                           [permissions.roles]\nqa = \"approve\"\nreviewer = \"deny\"\n";

/// Agents whose CLI asks before it runs a shell command follow `[permissions]`: `agents`
/// are spawned under a project manager; the CLI names its shell tool `tool`. A qa agent's command is approved and runs, nobody asked; a
/// reviewer's is denied and the agent takes its next message; an engineer's is escalated:
/// the dialog stays, a message waits, and `torch answer yes` lets the command run.
pub fn permissions_scenario(
    sb: &Sandbox,
    llm: &Standin,
    agents: &CliAgents,
    turns: impl Fn() -> Result<Vec<String>> + Copy,
    tool: &str,
) -> Result<()> {
    let toml = "/etc/torch/torch.toml.d/50-test.toml";
    sb.write_file(toml, PERMISSIONS.as_bytes(), 0o644)?;
    sb.spawn_echo("boss", "orchestrator", None)?;
    sb.spawn_echo("pm", "project-manager", Some("boss"))?;
    for (name, role) in [
        ("approver", "qa"),
        ("denier", "reviewer"),
        ("asker", "engineer"),
    ] {
        spawn_cli_as(sb, agents, name, &["--role", role, "--parent", "pm"])?;
    }
    // A tool call; Aider, which calls no tools, finds the command in a reply's shell block.
    let rule = |when: &str, command: &str| match agents.profile {
        "aider" => serde_json::json!({"when": when, "times": 1,
            "reply": format!("Run this:\n\n```bash\n{command}\n```\n")}),
        _ => serde_json::json!({"when": when, "times": 1, "tool_use": {"command": command}}),
    };
    llm.set_script(&serde_json::json!([
        rule("APPROVE-TOOL", "touch approved.txt"),
        rule("DENY-TOOL", "touch denied.txt"),
        rule("ASK-TOOL", "touch asked.txt")
    ]))?;
    let exists = |path: &str| sb.run(&["test", "-e", path]).is_ok();
    sb.torch(&["send", "approver", "APPROVE-TOOL now"])?;
    wait_until("approved.txt", Duration::from_secs(120), || {
        Ok(exists("/srv/approver/approved.txt"))
    })?;
    sb.torch(&["send", "denier", "DENY-TOOL now"])?;
    wait_for_turns(turns, "DENY-TOOL", 1, 120)?;
    wait_idle_by_hooks(sb, "denier")?;
    sb.torch(&["send", "denier", "AFTER-DENY"])?;
    wait_for_turns(turns, "AFTER-DENY", 1, 120).map_err(|e| {
        let journal = sb.journal(&["-u", "torch-agent@denier.service", "-o", "cat"]);
        let screen = sb.torch(&["capture", "denier"]);
        e.context(format!(
            "journal of denier:\n{}\nscreen:\n{}",
            journal.unwrap_or_default(),
            screen.unwrap_or_default()
        ))
    })?;
    if exists("/srv/denier/denied.txt") {
        bail!("a denied command ran");
    }
    for (name, said) in [("approver", "approved"), ("denier", "denied")] {
        let journal = sb.journal(&["-u", &format!("torch-agent@{name}.service")])?;
        let want = format!("{said} by the permission policy: {tool}: touch {said}.txt");
        if !journal.contains(&want) {
            bail!("{name}: no {want:?} in\n{journal}");
        }
    }
    sb.torch(&["send", "asker", "ASK-TOOL now"])?;
    let asks = format!("asks: permission to use {tool}: touch asked.txt");
    wait_until("asker asking", Duration::from_secs(120), || {
        Ok(sb.torch(&["status"])?.contains(&asks))
    })?;
    ensure_dialog_read(sb, agents.profile, "asker")?;
    sb.torch(&["send", "asker", "HELD-while-asking"])?;
    std::thread::sleep(Duration::from_secs(2));
    if turns()?.iter().any(|t| t.contains("HELD-while-asking")) {
        bail!("typed into a permission dialog");
    }
    sb.torch(&["answer", "asker", "yes"])?;
    wait_for_turns(turns, "HELD-while-asking", 1, 60)?;
    if !exists("/srv/asker/asked.txt") {
        bail!("the approved command did not run");
    }
    Ok(())
}

/// Agent `name`'s screen, showing its CLI's permission dialog, reads `asking` by the
/// profile's own patterns, where the profile has some: a message must wait while a dialog
/// shows even when the CLI's hooks already said idle (opencode may draw a dialog its
/// plugin answered after the turn ended).
fn ensure_dialog_read(sb: &Sandbox, profile: &str, name: &str) -> Result<()> {
    use torch_core::profile::{builtin, Activity, Classifier};
    let profile: torch_core::Profile = profile.parse().map_err(anyhow::Error::msg)?;
    let rules = builtin(profile);
    if rules.asking.is_empty() {
        return Ok(());
    }
    let classifier = Classifier::new(&rules).map_err(anyhow::Error::msg)?;
    let read = || -> Result<(Activity, String)> {
        let screen = sb.torch(&["capture", name])?;
        let rows: Vec<String> = screen.lines().map(String::from).collect();
        Ok((classifier.classify(&rows), screen))
    };
    // The hook may come before the TUI drew the dialog.
    let asking = wait_until("the dialog on screen", Duration::from_secs(30), || {
        Ok(read()?.0 == Activity::Asking)
    });
    asking.map_err(|e| match read() {
        Ok((activity, screen)) => {
            e.context(format!("{name}'s screen reads {activity:?}:\n{screen}"))
        }
        Err(other) => e.context(other),
    })
}

/// Every message delivered to `name`, its brief too, was handed to its CLI's own channel,
/// none typed into its terminal, by its unit's journal.
pub fn ensure_all_handed_over(sb: &Sandbox, name: &str) -> Result<()> {
    let unit = format!("torch-agent@{name}.service");
    let journal = sb.journal(&["-u", &unit, "-o", "cat"])?;
    let delivered = journal.matches("message delivered (").count();
    let handed = journal.matches("handed to its CLI's own channel").count();
    ensure!(
        delivered > 5 && handed == delivered,
        "{handed} of {delivered} handed over:\n{journal}"
    );
    Ok(())
}

/// Tries to connect to the unix socket `socket` from the pane of another agent (a shell
/// agent under `parent`, its own user), as a hostile agent would; what it was told. The
/// connection must fail.
pub fn connect_from_another_agent(sb: &Sandbox, parent: &str, socket: &str) -> Result<String> {
    sb.run(&[
        "install",
        "-d",
        "-g",
        "torch-agent",
        "-m",
        "2770",
        "/srv/mole",
    ])?;
    let mole = [
        "spawn",
        "mole",
        "--role",
        "engineer",
        "--parent",
        parent,
        "--workdir",
        "/srv/mole",
        "--profile",
        "shell",
    ];
    sb.torch(&[&mole[..], &["--", "bash", "--norc"]].concat())?;
    let connect =
        format!("python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect(\"{socket}\")'");
    let (ok, out) = sb.in_pane("mole", 1, &connect)?;
    ensure!(!ok, "another agent connected to {socket}: {out}");
    Ok(out)
}

/// The first agent of `torch status --json` counted more than `min_input` input tokens and
/// at least `min_output` output tokens; returns the status.
pub fn ensure_tokens(sb: &Sandbox, min_input: u64, min_output: u64) -> Result<Value> {
    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    let tokens = &status["agents"][0]["tokens"];
    let (input, output) = (tokens["input"].as_u64(), tokens["output"].as_u64());
    if !(input.is_some_and(|n| n > min_input) && output.is_some_and(|n| n >= min_output)) {
        bail!("tokens: {tokens}");
    }
    Ok(status)
}

/// A 429 the CLI waits out by itself, saying so through no channel Torch reads: agent
/// `lim` (spawned here with a brief holding `BRIEF-LIM`) is refused `times` times, told to
/// come back in `retry_after_s` s. It reads working all along, so a message sent meanwhile
/// waits, and reaches the model only after the CLI's own retry was answered.
pub fn waited_out_429(
    sb: &Sandbox,
    llm: &Standin,
    agents: &CliAgents,
    turns: impl Fn() -> Result<Vec<String>> + Copy,
    (retry_after_s, times): (u64, u32),
) -> Result<()> {
    llm.set_script(&serde_json::json!([
        {"when": "LIMIT-ME", "status": 429, "retry_after_s": retry_after_s, "times": times}
    ]))?;
    spawn_cli(sb, agents, "lim", "BRIEF-LIM plan")?;
    wait_for_turns(turns, "BRIEF-LIM", 1, 90)?;
    sb.torch(&["send", "lim", "LIMIT-ME please"])?;
    wait_for_turns(turns, "LIMIT-ME", 1, 60)?;
    sb.torch(&["send", "lim", "WHILE-LIMITED"])?;
    std::thread::sleep(Duration::from_secs(5));
    let seen = turns()?;
    if seen.iter().any(|t| t.contains("WHILE-LIMITED")) {
        bail!("typed while the CLI waited out the 429: {seen:#?}");
    }
    let seen = wait_for_turns(turns, "WHILE-LIMITED", 1, 90)?;
    let tries = seen.iter().filter(|t| t.contains("LIMIT-ME")).count();
    let last_try = seen.iter().rposition(|t| t.contains("LIMIT-ME"));
    let held = seen.iter().position(|t| t.contains("WHILE-LIMITED"));
    if tries <= times as usize || last_try > held {
        bail!("{tries} calls for LIMIT-ME, refused {times} times: {seen:#?}");
    }
    Ok(())
}

/// The first agent's cost is above zero in `torch status --json` and `torch explain NAME`
/// shows it.
pub fn ensure_cost(sb: &Sandbox, name: &str) -> Result<()> {
    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    let cost = status["agents"][0]["cost_microusd"].as_u64();
    if cost.is_none_or(|c| c == 0) {
        bail!("cost: {cost:?} in {status}");
    }
    let explained = sb.torch(&["explain", name])?;
    if !explained.contains("cost: $") {
        bail!("no cost in: {explained}");
    }
    Ok(())
}

/// The first agent has no cost in `torch status --json`: for a CLI that does not say it,
/// Torch shows none rather than a made-up figure.
pub fn ensure_no_cost(sb: &Sandbox) -> Result<()> {
    let status: Value = serde_json::from_str(&sb.torch(&["status", "--json"])?)?;
    let cost = &status["agents"][0]["cost_microusd"];
    if !cost.is_null() {
        bail!("a cost for a CLI that does not say it: {cost}");
    }
    Ok(())
}

/// Waits until `name` is idle by its hooks, as `torch explain` says.
pub fn wait_idle_by_hooks(sb: &Sandbox, name: &str) -> Result<()> {
    wait_until(&format!("{name} idle"), Duration::from_secs(60), || {
        Ok(sb
            .torch(&["explain", name])?
            .contains("state: idle, decided by hook"))
    })
}

/// Agent `name`, whose first turn carried `REMEMBER-alpha`, goes on with the same
/// conversation after `kill -9` of its program and then of its supervisor (see
/// [`kill_program_then_supervisor`]): each message sent after reaches the model in a
/// request that also carries the first turn. `turns` reads the CLI's turns.
pub fn resumes_after_kills(
    sb: &Sandbox,
    llm: &Standin,
    name: &str,
    turns: impl Fn() -> Result<Vec<String>> + Copy,
) -> Result<()> {
    kill_program_then_supervisor(
        sb,
        name,
        || wait_idle_by_hooks(sb, name),
        |text| {
            sb.torch(&["send", name, text])?;
            if let Err(e) = wait_for_turns(turns, text, 1, 120) {
                let unit = format!("torch-agent@{name}.service");
                let journal = sb.journal(&["-u", &unit, "-o", "cat"])?;
                bail!("{e:#}\njournal of {name}:\n{journal}");
            }
            let requests = llm.requests()?;
            let request = requests.iter().find(|r| {
                let mine = r["last_user_text"]
                    .as_str()
                    .is_some_and(|t| t.contains(text));
                let title =
                    crate::openai::is_title(&r["body"]) || crate::openai::is_chat_title(&r["body"]);
                mine && !title
            });
            let body = request.map(|r| r["body"].to_string()).unwrap_or_default();
            if !body.contains("REMEMBER-alpha") {
                bail!("the conversation started afresh: {body}");
            }
            Ok(())
        },
    )
}

/// `torch-test-llm` running in a sandbox as the transient unit `torch-test-llm.service`,
/// with its record, script and port files in the sandbox's share directory (the same path
/// inside and out).
#[derive(Debug)]
pub struct Standin {
    dir: PathBuf,
    port: u16,
}

/// The unit the stand-in runs as inside the sandbox.
pub const STANDIN_UNIT: &str = "torch-test-llm.service";

impl Standin {
    /// Starts the stand-in in `sb` and waits until it listens.
    pub fn start(sb: &Sandbox) -> Result<Standin> {
        let dir = sb.share().join("llm");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The benchmark measures release builds (TORCH_BIN_DIR, as install_torch reads it).
        let bins = std::env::var_os("TORCH_BIN_DIR").map_or_else(target_bin_dir, PathBuf::from);
        let bin = bins.join("torch-test-llm");
        if !bin.exists() {
            bail!(
                "{} missing; run cargo build --workspace --bins",
                bin.display()
            );
        }
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        let (record, script, port_file) = (
            s(dir.join("record.jsonl")),
            s(dir.join("script.json")),
            s(dir.join("port")),
        );
        // A stand-in started before in this sandbox (the benchmark starts one per CLI)
        // left its port here: read, it would point the CLI at a port nobody listens on.
        match fs::remove_file(&port_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                bail!("cannot remove the old port file {port_file}: {e}")
            }
            _ => {}
        }
        let unit = format!("--unit={STANDIN_UNIT}");
        let bin = s(bin);
        sb.run(&[
            "systemd-run",
            &unit,
            "--quiet",
            &bin,
            "--record",
            &record,
            "--script",
            &script,
            "--port",
            "0",
            "--port-file",
            &port_file,
        ])?;
        let mut port = 0;
        wait_until("the stand-in's port file", Duration::from_secs(20), || {
            let text = match fs::read_to_string(&port_file) {
                Ok(t) => t,
                Err(_) => return Ok(false),
            };
            port = text.trim().parse().context("bad port file")?;
            Ok(true)
        })
        .map_err(|e| {
            anyhow!(
                "{e:#}\njournal:\n{}",
                sb.journal(&["-u", STANDIN_UNIT]).unwrap_or_default()
            )
        })?;
        Ok(Standin { dir, port })
    }

    /// The port it listens on (127.0.0.1 inside the sandbox).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What `ANTHROPIC_BASE_URL` should be.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The record file (the same path inside the sandbox and out).
    pub fn record_path(&self) -> PathBuf {
        self.dir.join("record.jsonl")
    }

    /// Every request so far, oldest first. A last line still being written is left out.
    pub fn requests(&self) -> Result<Vec<Value>> {
        let lines = record_lines(&self.record_path())?;
        Ok(lines.into_iter().filter(is_request).collect())
    }

    /// The last user text of every `POST /v1/messages`, oldest first.
    pub fn user_texts(&self) -> Result<Vec<String>> {
        Ok(self
            .requests()?
            .iter()
            .filter(|r| r["method"] == "POST" && r["path"] == "/v1/messages")
            .map(|r| r["last_user_text"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// The prompt of every Gemini turn (`:streamGenerateContent`; the routing classifier's
    /// calls left out), oldest first.
    pub fn gemini_turns(&self) -> Result<Vec<String>> {
        Ok(self
            .requests()?
            .iter()
            .filter(|r| {
                r["method"] == "POST" && r["path"].as_str().is_some_and(crate::gemini::is_stream)
            })
            .map(|r| r["last_user_text"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// The prompt of every Codex turn (`POST /v1/responses`; the thread-title requests
    /// left out), oldest first.
    pub fn codex_turns(&self) -> Result<Vec<String>> {
        Ok(self
            .requests()?
            .iter()
            .filter(|r| {
                r["method"] == "POST"
                    && r["path"] == crate::openai::PATH
                    && !crate::openai::is_title(&r["body"])
            })
            .map(|r| r["last_user_text"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// The prompt of every turn of a CLI that speaks Chat Completions (opencode, Aider:
    /// `POST /v1/chat/completions`; opencode's session-title requests left out), oldest first.
    pub fn chat_turns(&self) -> Result<Vec<String>> {
        Ok(self
            .requests()?
            .iter()
            .filter(|r| {
                r["method"] == "POST"
                    && r["path"] == crate::openai::CHAT_PATH
                    && !crate::openai::is_chat_title(&r["body"])
            })
            .map(|r| r["last_user_text"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// The user's text blocks in the conversation of the latest `POST /v1/messages` (see
    /// [`crate::anthropic::user_text_blocks`]); empty before the first.
    pub fn conversation(&self) -> Result<Vec<String>> {
        Ok(self
            .requests()?
            .iter()
            .rev()
            .find(|r| r["method"] == "POST" && r["path"] == "/v1/messages")
            .map(|r| crate::anthropic::user_text_blocks(&r["body"]))
            .unwrap_or_default())
    }

    /// Replaces the script (a JSON list of rules); the stand-in reads it on its next request.
    /// Written aside and renamed, so the stand-in never reads half a file.
    pub fn set_script(&self, script: &Value) -> Result<()> {
        let path = self.dir.join("script.json");
        let tmp = self.dir.join("script.json.tmp");
        fs::write(&tmp, format!("{script:#}\n"))
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))
    }
}

/// Every complete line of a stand-in's record file, oldest first: requests, and the lines
/// that say when a reply ended (see [`is_request`]). A last line still being written is left
/// out; a missing file has none.
pub fn record_lines(path: &Path) -> Result<Vec<Value>> {
    let raw = match fs::read_to_string(path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let complete = raw.rfind('\n').map_or("", |i| &raw[..i]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad record line {l:?}")))
        .collect()
}

/// Whether a record line is a request (the others say when a reply ended: `request`,
/// `ended_ms`).
pub fn is_request(line: &Value) -> bool {
    line.get("method").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_is_read_from_the_setup_script() {
        let v = claude_version().unwrap();
        assert!(v.split('.').count() == 3, "{v}");
        let pins = "# dir package version\ncodex  @openai/codex  0.1.2  codex  codex.rs\n";
        assert_eq!(pinned_version(pins, "codex").as_deref(), Some("0.1.2"));
        assert_eq!(pinned_version(pins, "#"), None);
        assert_eq!(pinned_version(pins, "gemini-cli"), None);
        assert!(claude_bin().unwrap().to_string_lossy().contains(&v));
    }

    #[test]
    fn record_lines_tell_requests_from_reply_ends_and_skip_a_partial_line() {
        let dir = std::env::temp_dir().join(format!("torch-llm-record-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("record.jsonl");
        let text = concat!(
            r#"{"at_ms":1,"method":"POST","path":"/v1/messages","request":1}"#,
            "\n",
            r#"{"request":1,"ended_ms":5}"#,
            "\n",
            r#"{"at_ms":7,"method":"PO"#,
        );
        fs::write(&path, text).unwrap();
        let lines = record_lines(&path).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(is_request(&lines[0]) && !is_request(&lines[1]));
        assert_eq!(lines[1]["ended_ms"], 5);
    }
}
