//! Pane output to journal lines: terminal escapes removed, bounded.
//!
//! tmux's `pipe-pane` copies everything the program prints into a FIFO; this
//! module turns that byte stream into lines. A vte parser (the one alacritty
//! uses) keeps its state across reads, so an escape sequence split between
//! two reads never leaks into the journal. A token bucket bounds the rate:
//! a chatty agent loses lines (and we say how many), the journal does not
//! drown.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::logging::PANE_TARGET;

/// Longest journal line we write, in characters; longer ones are cut.
const MAX_LINE_CHARS: usize = 4096;
/// Lines per second a pane may write to the journal on average.
const LINES_PER_SEC: f64 = 50.0;
/// Lines a pane may write in one burst.
const BURST_LINES: f64 = 500.0;

/// Splits terminal output into plain lines.
#[derive(Default)]
pub struct LineSplitter {
    parser: vte::Parser,
    sink: Lines,
}

#[derive(Default)]
struct Lines {
    current: String,
    chars: usize,
    after_cr: bool,
    done: Vec<String>,
    /// Whether the program last asked for bracketed paste (DECSET 2004) or
    /// stopped it; `None` before it said either.
    paste: Option<bool>,
}

impl Lines {
    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.current);
        self.chars = 0;
        self.after_cr = false;
        let trimmed = line.trim_end();
        if !trimmed.trim_start().is_empty() {
            self.done.push(trimmed.to_string());
        }
    }

    fn push(&mut self, c: char) {
        if self.after_cr {
            // A carriage return without a newline redraws the line (progress
            // bars): keep only the latest version.
            self.current.clear();
            self.chars = 0;
            self.after_cr = false;
        }
        if self.chars < MAX_LINE_CHARS {
            self.current.push(c);
        } else if self.chars == MAX_LINE_CHARS {
            self.current.push('…');
        }
        self.chars += 1;
    }
}

impl vte::Perform for Lines {
    fn print(&mut self, c: char) {
        self.push(c);
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\n' => self.end_line(),
            b'\r' => self.after_cr = true,
            b'\t' => self.push('\t'),
            _ => {}
        }
    }

    fn csi_dispatch(&mut self, params: &vte::Params, marks: &[u8], _: bool, action: char) {
        if marks == b"?" && matches!(action, 'h' | 'l') && params.iter().any(|p| p == [2004]) {
            self.paste = Some(action == 'h');
        }
        // Full-screen programs place text with cursor moves instead of
        // newlines; an absolute move or "next line" ends the text before it.
        if matches!(action, 'H' | 'f' | 'd' | 'E') && !self.current.trim().is_empty() {
            self.end_line();
        }
    }
}

impl LineSplitter {
    /// Whether the program wants pasted text bracketed, as it last said.
    pub fn bracketed_paste(&self) -> Option<bool> {
        self.sink.paste
    }

    /// Feeds bytes; returns the lines they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.parser.advance(&mut self.sink, bytes);
        std::mem::take(&mut self.sink.done)
    }
}

/// A token bucket deciding which lines reach the journal.
pub struct RateLimit {
    tokens: f64,
    last: Instant,
    /// Lines dropped since the last report.
    pub suppressed: u64,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(now: Instant) -> Self {
        Self {
            tokens: BURST_LINES,
            last: now,
            suppressed: 0,
        }
    }

    /// Whether one more line may be written at `now`.
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * LINES_PER_SEC).min(BURST_LINES);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Whether the program in the pane reads pasted text bracketed (its input
/// prompt asked for it with DECSET 2004), as its output last said. A
/// program between prompts (its bracketed paste off) would take each
/// newline of a paste for Enter.
#[derive(Debug, Default)]
pub struct PasteMode(AtomicU8);

impl PasteMode {
    pub fn set(&self, on: Option<bool>) {
        let v = match on {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.0.store(v, Ordering::Relaxed);
    }

    /// `None` while the program never said.
    pub fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v == 2),
        }
    }
}

/// Reads the pane's output FIFO until it fails, writing lines to the journal
/// and calling `on_output` for each read (activity tracking) with the
/// program's bracketed paste as it said so far.
pub async fn pump(
    mut fifo: pipe::Receiver,
    on_output: impl Fn(Option<bool>),
) -> std::io::Result<()> {
    let mut splitter = LineSplitter::default();
    let mut limit = RateLimit::new(Instant::now());
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = fifo.read(&mut buf).await?;
        if n == 0 {
            // We hold the FIFO open for writing too, so EOF means trouble.
            return Ok(());
        }
        let lines = splitter.feed(&buf[..n]);
        on_output(splitter.bracketed_paste());
        for line in lines {
            let now = Instant::now();
            if !limit.admit(now) {
                continue;
            }
            if limit.suppressed > 0 {
                tracing::warn!(
                    target: PANE_TARGET,
                    "torch: {} lines of agent output were not logged (over {LINES_PER_SEC} lines/s)",
                    limit.suppressed
                );
                limit.suppressed = 0;
            }
            tracing::info!(target: PANE_TARGET, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bracketed_paste_follows_what_the_program_asked() {
        let mut s = LineSplitter::default();
        s.feed(b"plain output\r\n");
        assert_eq!(s.bracketed_paste(), None);
        s.feed(b"\x1b[?2004h> ");
        assert_eq!(s.bracketed_paste(), Some(true));
        s.feed(b"\x1b[?25l\x1b[?2004l\r\nworking");
        assert_eq!(s.bracketed_paste(), Some(false));
        s.feed(b"\x1b[2004h");
        assert_eq!(s.bracketed_paste(), Some(false), "not a private mode");
    }

    #[test]
    fn escapes_are_removed_even_when_split_across_reads() {
        let mut s = LineSplitter::default();
        assert!(s.feed(b"\x1b[1;3").is_empty());
        assert_eq!(s.feed(b"1mred\x1b[0m text\r\n"), vec!["red text"]);
        assert_eq!(s.feed(b"\x1b]0;title\x07plain\n"), vec!["plain"]);
    }

    #[test]
    fn carriage_return_keeps_the_last_redraw_and_blank_lines_are_dropped() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"10%\r50%\r100%\n\n  \n"), vec!["100%"]);
    }

    #[test]
    fn cursor_moves_end_lines_and_long_lines_are_cut() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"one\x1b[5;1Htwo\n"), vec!["one", "two"]);
        let long = vec![b'x'; MAX_LINE_CHARS + 100];
        let mut l = s.feed(&long);
        l.extend(s.feed(b"\n"));
        assert_eq!(l[0].chars().count(), MAX_LINE_CHARS + 1);
        assert!(l[0].ends_with('…'));
    }

    #[test]
    fn rate_limit_allows_a_burst_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(t0);
        let admitted = (0..1000).filter(|_| r.admit(t0)).count();
        assert_eq!(admitted, BURST_LINES as usize);
        assert_eq!(r.suppressed, 1000 - BURST_LINES as u64);
        let later = t0 + Duration::from_secs(1);
        let admitted = (0..1000).filter(|_| r.admit(later)).count();
        assert_eq!(admitted, LINES_PER_SEC as usize);
    }
}
