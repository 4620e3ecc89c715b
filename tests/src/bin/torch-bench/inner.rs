//! The parts of the benchmark that run inside the sandbox (the bench starts
//! itself there through nsenter once), so entering the sandbox's namespaces
//! is not counted in what they time. Each prints one JSON object.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use torch_api::{BUS_NAME, INTERFACE, OBJECT_PATH};
use torch_tests::fleet::{parse_records, record_path};

/// Hidden subcommands: what the bench runs inside the sandbox.
#[derive(Subcommand)]
pub enum Inner {
    /// Send latency to echo agent TORCH: HUB sends `torch send --wait`,
    /// then DIRECT sends `torch send --direct`; then NAIVE_MESSAGES by the
    /// naive sender to echo agent NAIVE.
    #[command(hide = true, name = "inner-latency")]
    Latency {
        torch: String,
        naive: String,
        hub: usize,
        direct: usize,
        naive_messages: usize,
    },
    /// Verified throughput through the hub to agents PREFIX0..PREFIX{AGENTS-1}.
    #[command(hide = true, name = "inner-throughput")]
    Throughput {
        prefix: String,
        agents: usize,
        per_agent: usize,
        concurrency: usize,
    },
    /// PER_AGENT messages through the hub to each of agents
    /// PREFIX0..PREFIX{AGENTS-1}, of this node or others, without waiting
    /// for their delivery (which is judged where the agents run).
    #[command(hide = true, name = "inner-send")]
    Send {
        prefix: String,
        agents: usize,
        per_agent: usize,
        concurrency: usize,
    },
    /// N messages to claude agent AGENT by MODE ("torch": `torch send`;
    /// "naive": tmux send-keys), each after the last turn ended, timed to
    /// the stand-in's RECORD; a naive message not there after ARRIVE_MS is
    /// given up on.
    #[command(hide = true, name = "inner-claude-turns")]
    ClaudeTurns {
        record: PathBuf,
        agent: String,
        mode: String,
        n: usize,
        arrive_ms: u64,
    },
    /// N claude agents spawned in a row with briefs (program CLAUDE, key
    /// KEY_FILE), timed to the stand-in's RECORD.
    #[command(hide = true, name = "inner-claude-briefs")]
    ClaudeBriefs {
        record: PathBuf,
        claude: String,
        key_file: String,
        n: usize,
    },
}

impl Inner {
    /// Runs the part and prints its JSON result.
    pub fn run(self) -> Result<()> {
        let out = match self {
            Inner::Latency {
                torch,
                naive,
                hub,
                direct,
                naive_messages,
            } => {
                let (hub_us, hub_intact) = torch_latency(&torch, "--wait", "hub", hub)?;
                let (direct_us, direct_intact) =
                    torch_latency(&torch, "--direct", "direct", direct)?;
                let (naive_us, naive_intact) = naive_latency(&naive, naive_messages)?;
                json!({
                    "hub_us": hub_us,
                    "hub_intact": hub_intact,
                    "direct_us": direct_us,
                    "direct_intact": direct_intact,
                    "naive_us": naive_us,
                    "naive_intact": naive_intact,
                })
            }
            Inner::Throughput {
                prefix,
                agents,
                per_agent,
                concurrency,
            } => throughput(&prefix, agents, per_agent, concurrency)?,
            Inner::Send {
                prefix,
                agents,
                per_agent,
                concurrency,
            } => {
                let names: Vec<String> = (0..agents).map(|a| format!("{prefix}{a}")).collect();
                let t0 = Instant::now();
                let (refused, first_error) = send_all(&names, per_agent, concurrency)?;
                json!({
                    "sent": agents * per_agent,
                    "refused": refused,
                    "first_error": first_error,
                    "accepted_secs": t0.elapsed().as_secs_f64(),
                })
            }
            Inner::ClaudeTurns {
                record,
                agent,
                mode,
                n,
                arrive_ms,
            } => crate::claude_inner::turns(record, &agent, &mode, n, arrive_ms)?,
            Inner::ClaudeBriefs {
                record,
                claude,
                key_file,
                n,
            } => crate::claude_inner::briefs(record, &claude, &key_file, n)?,
        };
        println!("{out}");
        Ok(())
    }
}

/// What echo agent `name` recorded so far.
fn records(name: &str) -> Result<Vec<String>> {
    let raw = match std::fs::read_to_string(record_path(name)) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context(record_path(name)),
    };
    parse_records(&raw)
}

fn micros(v: &[Duration]) -> Vec<u64> {
    v.iter().map(|d| d.as_micros() as u64).collect()
}

/// Times `n` calls of `torch send MODE AGENT TEXT` (wall time of the
/// process) and counts the texts the echo agent recorded intact, in order,
/// after what it had before. `tag` keeps the texts of two runs apart.
fn torch_latency(agent: &str, mode: &str, tag: &str, n: usize) -> Result<(Vec<u64>, usize)> {
    let text = |i: usize| format!("{tag} message {i}: the quick brown fox");
    let before = records(agent)?.len();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let out = Command::new("torch")
            .args(["send", mode, agent, &text(i)])
            .stdin(Stdio::null())
            .output()
            .context("running torch send")?;
        times.push(t.elapsed());
        if !out.status.success() {
            bail!(
                "torch send {mode} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let got = records(agent)?;
    // Through the hub a record carries the hub's envelope; `--direct` none.
    let intact = (0..n)
        .filter(|i| got.get(before + i).is_some_and(|r| body(r) == text(*i)))
        .count();
    Ok((micros(&times), intact))
}

/// The naive sender, as the seed scripts do it; it never checks, so we
/// take its latency to the moment the agent recorded the message.
fn naive_latency(naive: &str, n: usize) -> Result<(Vec<u64>, usize)> {
    let sock = format!("/run/torch-agent/{naive}/tmux.sock");
    let tmux = |args: &[&str]| -> Result<()> {
        let st = Command::new("tmux")
            .args(["-S", &sock, "send-keys", "-t", "%0"])
            .args(args)
            .status()
            .context("running tmux")?;
        if !st.success() {
            bail!("tmux send-keys failed ({st})");
        }
        Ok(())
    };
    let first = records(naive)?.len();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let before = records(naive)?.len();
        let t = Instant::now();
        tmux(&["-l", &format!("naive message {i}: the quick brown fox")])?;
        std::thread::sleep(Duration::from_millis(500));
        tmux(&["Enter"])?;
        while records(naive)?.len() == before {
            if t.elapsed() > Duration::from_secs(5) {
                bail!("naive message {i} never arrived");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        times.push(t.elapsed());
    }
    let got = records(naive)?;
    let intact = (0..n)
        .filter(|i| got.get(first + i) == Some(&format!("naive message {i}: the quick brown fox")))
        .count();
    Ok((micros(&times), intact))
}

/// The text after the hub's envelope (`[torch message #N from X] `).
fn body(record: &str) -> &str {
    record.split_once("] ").map_or(record, |(_, b)| b)
}

/// Bus connections the throughput part sends over.
const CONNECTIONS: usize = 8;

fn throughput(prefix: &str, agents: usize, per_agent: usize, concurrency: usize) -> Result<Value> {
    let names: Vec<String> = (0..agents).map(|a| format!("{prefix}{a}")).collect();
    let before = names
        .iter()
        .map(|n| records(n).map(|r| r.len()))
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let (refused, first_error) = send_all(&names, per_agent, concurrency)?;
    let accepted = t0.elapsed();
    let expected = agents * per_agent - refused;
    let deadline = Duration::from_secs(600);
    let mut seen;
    loop {
        seen = 0;
        for (name, b) in names.iter().zip(&before) {
            seen += records(name)?.len().saturating_sub(*b);
        }
        if seen >= expected || t0.elapsed() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = t0.elapsed();
    let mut intact = 0;
    for (name, b) in names.iter().zip(&before) {
        let got = records(name)?;
        intact += intact_records(name, per_agent, &got[*b..]);
    }
    Ok(json!({
        "sent": agents * per_agent,
        "refused": refused,
        "first_error": first_error,
        "recorded": seen,
        "intact": intact,
        "accepted_secs": accepted.as_secs_f64(),
        "done_secs": done.as_secs_f64(),
    }))
}

/// How many of the `per_agent` messages [`send_all`] sent to `name` are in
/// `got`, each counted once.
pub fn intact_records(name: &str, per_agent: usize, got: &[String]) -> usize {
    let want: BTreeSet<String> = (0..per_agent).map(|j| format!("tp {name} {j}")).collect();
    got.iter()
        .filter(|r| want.contains(body(r)))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Sends `per_agent` messages (`tp NAME J`) to each of `names` through the
/// hub, at most `concurrency` calls in flight; how many the hub refused,
/// and the first refusal.
fn send_all(
    names: &[String],
    per_agent: usize,
    concurrency: usize,
) -> Result<(usize, Option<String>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Senders are many processes in a real fleet; a few connections
        // stand for them (one connection's calls queue behind each other in
        // the bus daemon and the client library).
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            conns.push(
                zbus::Connection::system()
                    .await
                    .context("connecting to the system bus")?,
            );
        }
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut calls = tokio::task::JoinSet::new();
        // Round robin over the agents, so every courier has work at once.
        for j in 0..per_agent {
            for (a, name) in names.iter().enumerate() {
                let slot = Arc::clone(&slots).acquire_owned().await?;
                let conn = conns[a % CONNECTIONS].clone();
                let (to, text) = (name.clone(), format!("tp {name} {j}"));
                calls.spawn(async move {
                    let _slot = slot;
                    conn.call_method(
                        Some(BUS_NAME),
                        OBJECT_PATH,
                        Some(INTERFACE),
                        "Send",
                        &("operator", to, text),
                    )
                    .await
                });
            }
        }
        let mut refused = 0usize;
        let mut first_error = None;
        while let Some(r) = calls.join_next().await {
            let error = match r {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            refused += 1;
            first_error.get_or_insert(error);
        }
        anyhow::Ok((refused, first_error))
    })
}
