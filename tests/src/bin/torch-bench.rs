//! `torch-bench`: send latency of Torch against the naive tmux sender, in a
//! real systemd sandbox. Prints a Markdown table (for docs/benchmarks.md).
//!
//! Usage (as root, after `cargo build --workspace --bins`):
//! `target/debug/torch-bench [MESSAGES]` (default 200).
//!
//! Torch: `torch send` (run inside the sandbox) returns once the text is
//! confirmed on the pane. Naive: `tmux send-keys -l TEXT; sleep 0.5; tmux
//! send-keys Enter`, the field's usual sender, which never checks; its
//! latency is taken to the moment the echo agent recorded the message.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use torch_tests::{wait_until, Sandbox};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("MESSAGES must be a number")?
        .unwrap_or(200);
    let naive_n = (n / 10).clamp(5, 20);
    let sb = Sandbox::boot("bench")?;
    let boot = sb.boot_time();
    sb.install_torch()?;
    sb.define_echo_agent("bench")?;
    sb.define_echo_agent("naive")?;
    sb.torch(&["start", "bench"])?;
    sb.torch(&["start", "naive"])?;

    let mut torch = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("benchmark message {i}: the quick brown fox");
        let t = Instant::now();
        sb.torch(&["send", "--direct", "bench", &text])?;
        torch.push(t.elapsed());
    }
    let got = sb.records("bench")?;
    let torch_ok = (0..n)
        .filter(|i| {
            got.get(*i).map(String::as_str)
                == Some(&*format!("benchmark message {i}: the quick brown fox"))
        })
        .count();

    // The naive sender, as the seed scripts do it, then we wait for the record.
    let sock = "/run/torch-agent/naive/tmux.sock";
    let mut naive = Vec::with_capacity(naive_n);
    for i in 0..naive_n {
        let text = format!("naive message {i}: the quick brown fox");
        let t = Instant::now();
        sb.run(&["tmux", "-S", sock, "send-keys", "-t", "%0", "-l", &text])?;
        std::thread::sleep(Duration::from_millis(500));
        sb.run(&["tmux", "-S", sock, "send-keys", "-t", "%0", "Enter"])?;
        wait_until("naive message recorded", Duration::from_secs(5), || {
            Ok(sb.records("naive")?.len() > i)
        })?;
        naive.push(t.elapsed());
    }
    let naive_ok = sb
        .records("naive")?
        .iter()
        .enumerate()
        .filter(|(i, r)| **r == format!("naive message {i}: the quick brown fox"))
        .count();
    if naive.is_empty() || torch.is_empty() {
        bail!("nothing measured");
    }
    torch.sort();
    naive.sort();
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!("sandbox boot: {} ms; {cores} cores", ms(boot));
    println!();
    println!("| sender | messages | intact | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, v, ok) in [
        ("torch send (verified)", &torch, torch_ok),
        ("naive send-keys + sleep 0.5", &naive, naive_ok),
    ] {
        println!(
            "| {name} | {} | {ok} | {} | {} | {} |",
            v.len(),
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(*v.last().unwrap_or(&Duration::ZERO))
        );
    }
    let ratio = percentile(&naive, 0.5).as_secs_f64() / percentile(&torch, 0.5).as_secs_f64();
    println!();
    println!("p50 ratio naive / torch: {ratio:.1}x");
    Ok(())
}
