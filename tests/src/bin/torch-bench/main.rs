//! `torch-bench`: Torch against the naive tmux sender, and Torch at fleet
//! scale, in a real systemd sandbox. Prints Markdown tables and a summary
//! against the benchmark issue's targets; `--write FILE` also puts the
//! report between the `bench:begin`/`bench:end` markers of that file.
//!
//! Usage (as root): `scripts/bench.sh` builds release binaries and runs
//! `target/release/torch-bench --write docs/benchmarks.md`; see `--help`
//! for the sizes. The naive sender is `tmux send-keys -l TEXT; sleep 0.5; tmux
//! send-keys Enter`, the field's usual one, which never checks; its latency
//! is taken to the moment the echo agent recorded the message.

mod checks;
mod claude;
mod claude_inner;
mod clis;
mod cluster;
mod events;
mod fleet;
mod inner;
mod ledger;
mod report;
mod store;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use report::Report;
use torch_tests::Sandbox;

/// Torch's benchmark, in a real systemd sandbox.
#[derive(Parser)]
#[command(name = "torch-bench")]
struct Args {
    #[command(subcommand)]
    inner: Option<inner::Inner>,
    /// Messages timed for each of Torch's send paths (the naive sender gets
    /// a tenth, 5 to 20: each costs half a second).
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Delivered messages put into the hub's store before the hub path is
    /// timed a second time (0 skips that).
    #[arg(long, default_value_t = 1_000_000)]
    stored: usize,
    /// Agents spawned through the hub for the fleet part (0 skips it, and
    /// throughput and idle CPU with it).
    #[arg(long, default_value_t = 200)]
    fleet: usize,
    /// Concurrent `torch spawn` calls.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Agents the throughput part sends to (the first of the fleet).
    #[arg(long, default_value_t = 100)]
    throughput_agents: usize,
    /// Messages per agent in the throughput part.
    #[arg(long, default_value_t = 50)]
    per_agent: usize,
    /// Seconds the idle fleet's CPU use is measured over.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// One-shot check-ins timed against their due time.
    #[arg(long, default_value_t = 100)]
    checkins: usize,
    /// Pending check-ins set to measure what they cost.
    #[arg(long, default_value_t = 10_000)]
    pending: usize,
    /// Messages to the real Claude Code agent, by `torch send` and again by
    /// the naive sender, each after the last turn ended (0 skips them).
    #[arg(long, default_value_t = 30)]
    claude_turns: usize,
    /// Claude Code agents spawned in a row with a brief.
    #[arg(long, default_value_t = 20)]
    claude_briefs: usize,
    /// Messages to one agent of each other pinned CLI (Gemini CLI, Codex CLI,
    /// opencode) by `torch send`, each after the last turn ended (0 skips them).
    #[arg(long, default_value_t = 20)]
    cli_turns: usize,
    /// Workers of the work ledger part (0 skips it).
    #[arg(long, default_value_t = 200)]
    ledger_workers: usize,
    /// Tasks open in the work ledger part.
    #[arg(long, default_value_t = 10_000)]
    ledger_tasks: usize,
    /// Tasks timed from ready to an idle agent's screen.
    #[arg(long, default_value_t = 50)]
    ledger_samples: usize,
    /// Messages timed each way (same node, across nodes) in the cluster
    /// part.
    #[arg(long, default_value_t = 100)]
    cluster_samples: usize,
    /// Echo agents on each of the three nodes of the cluster throughput
    /// part (0 skips it).
    #[arg(long, default_value_t = 100)]
    cluster_agents: usize,
    /// Messages each node sends to each agent per phase of the cluster
    /// throughput part.
    #[arg(long, default_value_t = 10)]
    cluster_per_agent: usize,
    /// Run only these parts (repeatable): latency, contention, claude, clis,
    /// events, fleet, recovery, schedules, ledger, cluster. Default: all.
    #[arg(long, value_name = "PART")]
    only: Vec<String>,
    /// Also write the report into this Markdown file, between the lines
    /// `<!-- bench:begin -->` and `<!-- bench:end -->`.
    #[arg(long)]
    write: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(inner) = args.inner {
        return inner.run();
    }
    if let Some(path) = &args.write {
        // Fail before half an hour of measuring, not after.
        splice(&std::fs::read_to_string(path)?, "").with_context(|| path.display().to_string())?;
    }
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    let mut r = Report::default();
    // The hub's database on the host's disk, not the sandbox's tmpfs: a
    // store that never really syncs would flatter the throughput.
    let state = std::env::temp_dir().join(format!("torch-bench-state-{}", std::process::id()));
    let sb = Sandbox::boot_with("bench", Some(&state))?;
    r.line(format!(
        "Sandbox boot: {} ms; {cores} cores; binaries from {}.",
        report::ms(sb.boot_time()),
        shown_bin_dir()
    ));
    sb.install_torch()?;
    let part = |p: &str| args.only.is_empty() || args.only.iter().any(|o| o == p);
    // Claude first, on a fresh store: `torch status`, which its state rows
    // poll, counts every agent's messages (about 150 ms a call once the
    // latency part stored 1,000,000), and the fleet's 200 agents would be
    // in every call too. Then the hub starts again on an empty store, so
    // the latency part times it as if this part had not run. Its report
    // goes after contention's.
    let mut claude_report = Report::default();
    if part("claude") {
        sb.start_hub()?;
        claude::run(
            &sb,
            &mut claude_report,
            args.claude_turns,
            args.claude_briefs,
        )?;
    }
    if part("clis") {
        if !part("claude") {
            sb.start_hub()?;
        }
        clis::run(&sb, &mut claude_report, args.cli_turns)?;
    }
    if part("claude") || part("clis") {
        sb.systemctl(&["stop", "torch.service"])?;
        empty_store(&state)?;
    }
    if part("latency") {
        checks::latency(
            &sb,
            &mut r,
            args.messages,
            args.stored,
            &state.join("torch.db"),
        )?;
    }
    sb.start_hub()?;
    if part("contention") {
        checks::contention(&sb, &mut r, 100)?;
    }
    r.append(claude_report);
    if part("events") {
        events::run(&sb, &mut r, 50)?;
    }
    if part("fleet") && args.fleet > 0 {
        fleet::run(&sb, &mut r, &args)?;
    }
    if part("recovery") {
        checks::recovery(&sb, &mut r)?;
    }
    if part("schedules") {
        checks::schedules(&sb, &mut r, args.checkins, args.pending)?;
    }
    if part("ledger") && args.ledger_workers > 0 {
        ledger::run(
            &sb,
            &mut r,
            args.ledger_workers,
            args.ledger_tasks,
            args.ledger_samples,
        )?;
    }
    drop(sb);
    if part("cluster") {
        cluster::run(&mut r, args.cluster_samples)?;
        if args.cluster_agents > 0 {
            cluster::throughput(
                &mut r,
                args.cluster_agents,
                args.cluster_per_agent,
                args.parallel,
            )?;
        }
    }
    r.summary();
    if std::env::var("TORCH_KEEP_SANDBOX").is_err() {
        let _ = std::fs::remove_dir_all(&state);
    }
    if let Some(path) = &args.write {
        write(path, &r, cores)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// Removes the hub's store (the hub stopped) from its state directory
/// `state` on the host; the hub makes a new, empty one when it starts.
fn empty_store(state: &Path) -> Result<()> {
    for file in ["torch.db", "torch.db-wal", "torch.db-shm"] {
        match std::fs::remove_file(state.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {file}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Replaces what lies between the markers in `doc` with `body`.
fn splice(doc: &str, body: &str) -> Result<String> {
    const BEGIN: &str = "<!-- bench:begin -->\n";
    const END: &str = "<!-- bench:end -->";
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        bail!("no `<!-- bench:begin -->` ... `<!-- bench:end -->` lines to write between");
    };
    if e < b {
        bail!("`<!-- bench:end -->` comes before `<!-- bench:begin -->`");
    }
    Ok(format!("{}{body}{}", &doc[..b + BEGIN.len()], &doc[e..]))
}

fn write(path: &Path, r: &Report, cores: usize) -> Result<()> {
    let command = std::env::var("TORCH_BENCH_COMMAND")
        .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut body = String::from("Command (as root):\n\n");
    report::code_block(&mut body, &command);
    body.push_str(&format!(
        "\nDate: {date}. Machine: {cores} cores. Output of that run:\n\n"
    ));
    body.push_str(r.text());
    body.push('\n');
    let doc = std::fs::read_to_string(path)?;
    std::fs::write(path, splice(&doc, &body)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Where the binaries came from, relative to the workspace when inside it:
/// the report goes into docs/, which names no path of one machine.
fn shown_bin_dir() -> String {
    let dir = std::env::var("TORCH_BIN_DIR").unwrap_or_else(|_| "target/debug".into());
    let root = torch_tests::workspace_root();
    std::path::Path::new(&dir)
        .strip_prefix(&root)
        .map_or(dir.clone(), |p| p.display().to_string())
}
