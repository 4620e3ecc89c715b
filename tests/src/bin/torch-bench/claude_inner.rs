//! The agent CLI parts' timing, run inside the sandbox (like the other inner
//! parts, so entering its namespaces is not counted): messages to a real CLI
//! agent (Claude Code, or another pinned CLI) by `torch send` or by the naive
//! tmux sender, and Claude Code briefs at spawn, each timed to the turn the
//! stand-in of the model API recorded. The wall clock here and the stand-in's `at_ms`/`ended_ms` are
//! the same machine's clock.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// What marks a message Torch typed (`[torch message #3 from operator]`,
/// `[torch brief from operator]`): two in one request are two messages glued
/// into one turn.
const MARK: &str = "[torch ";

/// How often `torch status --json` is polled for the agent's state.
const POLL: Duration = Duration::from_millis(20);

/// Wall-clock milliseconds since the epoch, with microseconds.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// One model turn the stand-in recorded, without its body.
struct Req {
    n: u64,
    at_ms: f64,
    text: String,
}

/// The stand-in's record file, read as it grows: each poll parses only the
/// lines added since the last (the file holds every request's whole body,
/// megabytes after a few dozen turns, and is read every 20 ms).
pub struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    requests: Vec<Req>,
    ended: HashMap<u64, f64>,
}

impl Tail {
    pub fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            offset: 0,
            partial: Vec::new(),
            requests: Vec::new(),
            ended: HashMap::new(),
        }
    }

    /// Reads the lines added since the last call.
    pub fn poll(&mut self) -> Result<()> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("{}", self.path.display())),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let read = f.read_to_end(&mut self.partial)?;
        self.offset += read as u64;
        let Some(last) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let rest = self.partial.split_off(last + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).context("bad record line")?;
            self.add(&v);
        }
        Ok(())
    }

    fn add(&mut self, v: &Value) {
        let n = v["request"].as_u64().unwrap_or_default();
        if let Some(end) = v["ended_ms"].as_f64() {
            self.ended.insert(n, end);
        } else if torch_tests::llm::is_turn(v) {
            self.requests.push(Req {
                n,
                at_ms: v["at_ms"].as_f64().unwrap_or_default(),
                text: v["last_user_text"].as_str().unwrap_or_default().into(),
            });
        }
    }

    /// The first request whose last user text carries `needle`.
    fn find(&self, needle: &str) -> Option<&Req> {
        self.requests.iter().find(|r| r.text.contains(needle))
    }

    /// Requests whose last user text carries `needle`.
    fn count(&self, needle: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| r.text.contains(needle))
            .count()
    }
}

/// Runs `program args`, failing with its stderr unless it exits 0; stdout.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The agent's state as `torch status --json` (the CLI, a process) shows it.
fn agent_state(agent: &str) -> Result<String> {
    let status: Value = serde_json::from_str(&run("torch", &["status", "--json"])?)?;
    let state = status["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == agent))
        .and_then(|a| a["agent_state"].as_str())
        .unwrap_or_default();
    Ok(state.to_string())
}

/// One message's turn, in wall-clock ms; `None` for what never happened.
#[derive(Default)]
struct Turn {
    sent: f64,
    request: Option<f64>,
    ended: Option<f64>,
    working: Option<f64>,
    idle: Option<f64>,
    /// How long each `torch status` took: the state rows include it.
    polls: Vec<f64>,
}

/// Follows the turn of the message carrying `token`: polls the agent's
/// state every [`POLL`] until the stand-in got the request (given up after
/// `arrive`), ended its reply and the status shows the agent idle again.
fn follow(tail: &mut Tail, agent: &str, token: &str, sent: f64, arrive: Duration) -> Result<Turn> {
    let mut turn = Turn {
        sent,
        ..Turn::default()
    };
    let start = Instant::now();
    // An idle reading counts only once the agent was seen working after the
    // message, or when the poll began after the reply had ended: before
    // that, idle is the state from before the message.
    let mut ended_before_poll = false;
    loop {
        let asked = now_ms();
        let state = agent_state(agent)?;
        let seen = now_ms();
        turn.polls.push(seen - asked);
        tail.poll()?;
        if turn.working.is_none() && state == "working" {
            turn.working = Some(seen);
        }
        if let Some(req) = tail.find(token) {
            turn.request = Some(req.at_ms);
            turn.ended = tail.ended.get(&req.n).copied();
        }
        let fresh = turn.working.is_some() || ended_before_poll;
        if turn.ended.is_some() && state == "idle" && fresh {
            turn.idle = Some(seen);
            return Ok(turn);
        }
        ended_before_poll = turn.ended.is_some();
        let limit = if turn.request.is_some() { 60 } else { 0 };
        if start.elapsed() > arrive + Duration::from_secs(limit) {
            return Ok(turn);
        }
        std::thread::sleep(POLL);
    }
}

/// Types `text` into the agent's pane the naive way: the literal text, then
/// Enter, two tmux commands, nothing checked.
fn naive_send(agent: &str, text: &str) -> Result<()> {
    let sock = format!("/run/torch-agent/{agent}/tmux.sock");
    let keys = ["-S", &sock, "send-keys", "-t", "%0"];
    run("tmux", &[&keys[..], &["-l", text]].concat())?;
    run("tmux", &[&keys[..], &["Enter"]].concat()).map(drop)
}

/// `n` messages to claude agent `agent`, each after the last turn ended:
/// by `torch send` when `mode` is "torch", else by the naive sender, whose
/// lost messages are given up on after `arrive_ms`.
pub fn turns(record: PathBuf, agent: &str, mode: &str, n: usize, arrive_ms: u64) -> Result<Value> {
    let mut tail = Tail::new(record);
    let token = |i: usize| format!("BENCH-{mode}-{i}:");
    let arrive = Duration::from_millis(arrive_ms);
    let mut out = Vec::new();
    let mut polls: Vec<f64> = Vec::new();
    for i in 0..n {
        let text = format!("{} the quick brown fox", token(i));
        let sent = now_ms();
        if mode == "torch" {
            run("torch", &["send", agent, &text])?;
        } else {
            naive_send(agent, &text)?;
        }
        let returned = now_ms();
        let t = follow(&mut tail, agent, &token(i), sent, arrive)?;
        polls.extend(&t.polls);
        out.push(json!({
            "sent": t.sent, "returned": returned, "request": t.request, "ended": t.ended,
            "working": t.working, "idle": t.idle,
        }));
    }
    // Stragglers: a lost text may still go out glued to a later one.
    std::thread::sleep(Duration::from_secs(2));
    tail.poll()?;
    let tokens: Vec<String> = (0..n).map(token).collect();
    let (arrived, alone, glued) = tally(&tail, &tokens);
    Ok(json!({
        "turns": out, "arrived": arrived, "alone": alone, "glued": glued, "status_ms": polls,
    }))
}

/// Of the messages carrying `tokens`: how many reached the stand-in at all,
/// how many exactly once in a request of their own, and how many requests
/// carried two or more of them (glued).
fn tally(tail: &Tail, tokens: &[String]) -> (usize, usize, usize) {
    let carried = |r: &Req| {
        tokens
            .iter()
            .filter(|t| r.text.contains(t.as_str()))
            .count()
    };
    let glued = tail.requests.iter().filter(|r| carried(r) > 1).count();
    let alone = tokens
        .iter()
        .filter(|t| {
            let mine: Vec<&Req> = tail
                .requests
                .iter()
                .filter(|r| r.text.contains(t.as_str()))
                .collect();
            mine.len() == 1 && carried(mine[0]) == 1
        })
        .count();
    let arrived = tokens.iter().filter(|t| tail.count(t) > 0).count();
    (arrived, alone, glued)
}

/// `n` claude agents spawned in a row through the hub, each with a brief;
/// for each, the time from its `torch spawn` to its brief's request at the
/// stand-in, and whether the brief came once and alone in its turn.
pub fn briefs(record: PathBuf, claude: &str, key_file: &str, n: usize) -> Result<Value> {
    let mut tail = Tail::new(record);
    let names: Vec<String> = (1..=n).map(|i| format!("brief{i}")).collect();
    let mut sent = Vec::new();
    let mut spawn_ms = Vec::new();
    for name in &names {
        let t = spawn_with_brief(name, claude, key_file)?;
        spawn_ms.push(now_ms() - t);
        sent.push(t);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(240) {
        tail.poll()?;
        if names.iter().all(|m| tail.find(&brief_token(m)).is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The machine's load as the last brief came: context for the times.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .next()
        .unwrap_or("unknown")
        .to_string();
    // A brief typed twice would come a turn later.
    std::thread::sleep(Duration::from_secs(2));
    tail.poll()?;
    let mut latency = Vec::new();
    let mut alone = 0;
    for (name, t) in names.iter().zip(&sent) {
        let tok = brief_token(name);
        if let Some(r) = tail.find(&tok) {
            latency.push(r.at_ms - t);
            alone += usize::from(tail.count(&tok) == 1 && r.text.matches(MARK).count() == 1);
        }
    }
    Ok(json!({"latency_ms": latency, "alone": alone, "spawn_ms": spawn_ms, "loadavg": load}))
}

/// The text of agent `name`'s brief.
fn brief_token(name: &str) -> String {
    format!("BRIEF-{name}-END")
}

/// `torch spawn NAME ... --brief FILE -- CLAUDE`, in a project directory
/// the agents share through their group; returns when (wall-clock ms) `torch spawn` started.
fn spawn_with_brief(name: &str, claude: &str, key_file: &str) -> Result<f64> {
    let (dir, brief) = (format!("/srv/{name}"), format!("/srv/{name}.brief"));
    run("install", &["-d", "-g", "torch-agent", "-m", "2770", &dir])?;
    std::fs::write(&brief, brief_token(name)).with_context(|| brief.clone())?;
    let t = now_ms();
    run(
        "torch",
        &[
            "spawn",
            name,
            "--role",
            "orchestrator",
            "--workdir",
            &dir,
            "--profile",
            "claude",
            "--env-file",
            key_file,
            "--brief",
            &brief,
            "--",
            claude,
        ],
    )?;
    Ok(t)
}
