//! The benchmark's output: Markdown printed as it is measured and kept for
//! docs/benchmarks.md, plus the summary against the benchmark issue's targets.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use torch_tests::Sandbox;

/// One figure against its target, for the summary table.
struct Target {
    figure: String,
    target: String,
    measured: String,
    met: Option<bool>,
}

/// Everything the run printed, and the targets it measured.
#[derive(Default)]
pub struct Report {
    text: String,
    targets: Vec<Target>,
}

impl Report {
    /// Prints `s` and keeps it.
    pub fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }

    /// Prints a Markdown table (a blank line first); numeric columns are
    /// right-aligned, all but the first.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.line("");
        self.line(format!("| {} |", header.join(" | ")));
        let mut align = String::from("| ---");
        for _ in 1..header.len() {
            align.push_str(" | ---:");
        }
        self.line(format!("{align} |"));
        for r in rows {
            self.line(format!("| {} |", r.join(" | ")));
        }
    }

    /// Records a figure against its target; `met` is None when the figure
    /// could not be measured.
    pub fn target(&mut self, figure: &str, target: &str, measured: String, met: Option<bool>) {
        self.targets.push(Target {
            figure: figure.into(),
            target: target.into(),
            measured,
            met,
        });
    }

    /// Prints the summary table of all targets.
    pub fn summary(&mut self) {
        let rows: Vec<Vec<String>> = self
            .targets
            .iter()
            .map(|t| {
                vec![
                    t.figure.clone(),
                    t.target.clone(),
                    t.measured.clone(),
                    match t.met {
                        Some(true) => "met".into(),
                        Some(false) => "**missed**".into(),
                        None => "not measured".into(),
                    },
                ]
            })
            .collect();
        self.line("");
        self.line("Summary against the targets:");
        self.table(&["figure", "target", "measured", "verdict"], &rows);
    }

    /// Takes in what `other` printed and measured (already printed), so a
    /// part run early can stand where it belongs in the written report.
    pub fn append(&mut self, other: Report) {
        self.text.push_str(&other.text);
        self.targets.extend(other.targets);
    }

    /// Everything printed so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The `p` quantile (0..=1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Resident memory of one process, in KiB.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mem {
    /// VmRSS: every page it maps, shared ones (the binary, libc) included.
    pub rss: u64,
    /// Proportional set size: shared pages divided among their users, so
    /// the sum over a fleet is what the fleet really occupies.
    pub pss: u64,
}

impl Mem {
    /// "R MiB RSS / P MiB PSS".
    pub fn show(self) -> String {
        format!("{} RSS, {} PSS", mib(self.rss), mib(self.pss))
    }
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Memory of `pid` inside the sandbox.
pub fn memory(sb: &Sandbox, pid: &str) -> Result<Mem> {
    let rollup = String::from_utf8(sb.read_file(&format!("/proc/{pid}/smaps_rollup"))?)?;
    let field = |name: &str| -> Result<u64> {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} for pid {pid}"))
    };
    Ok(Mem {
        rss: field("Rss:")?,
        pss: field("Pss:")?,
    })
}

/// Average memory of the processes whose command line matches `pattern`
/// (`pgrep -f`), and how many there are.
pub fn memory_of(sb: &Sandbox, pattern: &str) -> Result<(Mem, usize)> {
    let pids = sb.sh(&format!("pgrep -f '{pattern}' || true"))?;
    let mut sum = Mem::default();
    let mut n = 0u64;
    for p in pids.split_whitespace() {
        // A process may exit between pgrep and the read.
        if let Ok(m) = memory(sb, p) {
            sum.rss += m.rss;
            sum.pss += m.pss;
            n += 1;
        }
    }
    let d = n.max(1);
    Ok((
        Mem {
            rss: sum.rss / d,
            pss: sum.pss / d,
        },
        n as usize,
    ))
}

/// Appends `s` to `out` as an indented block (Markdown code), for the
/// command line in the written report.
pub fn code_block(out: &mut String, s: &str) {
    let _ = writeln!(out, "    {s}");
}
