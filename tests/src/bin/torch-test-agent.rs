//! `torch-test-agent`: a scripted terminal "agent" for Torch's tests (never a real LLM).
//!
//! It runs inside a tmux pane and behaves like the interesting parts of a coding-agent TUI:
//!
//! ```text
//! torch-test-agent echo  --record FILE [--prompt STR] [--ack-delay-ms MS]
//!                                                                (prompt "echo> ")
//! torch-test-agent slow  --record FILE --startup SECS [--swallow-enter-ms MS] [--prompt STR]
//!                                                                (prompt "slow> ")
//! torch-test-agent hang  [--after SECS]                          (default 1)
//! torch-test-agent crash [--after SECS] [--code N]               (defaults 1 and 3)
//! torch-test-agent chatty [--lines N]                            (default 100000)
//! ```
//!
//! * `echo`: raw terminal, bracketed paste on (`ESC[?2004h`), prints `[echo] ready` then the
//!   prompt. Typed and pasted bytes go to an input buffer and are echoed. Inside a bracketed
//!   paste `\r` becomes `\n`; outside, `\r`/`\n` submits: a non-empty buffer is appended to
//!   FILE as one JSON string per line, then `[echo] received N bytes` is printed. Backspace
//!   (0x7f/0x08) deletes the last character, Ctrl-C (0x03) clears the buffer, Ctrl-D (0x04)
//!   on an empty buffer (or EOF) exits 0. Other escape sequences typed outside a paste (arrow
//!   keys...) are ignored. With `--ack-delay-ms MS`, the `received` line comes MS ms after
//!   the message was recorded: the message has arrived but the screen does not show it yet
//!   (a window for tests that kill something right after an agent took a message).
//! * `slow`: prints `loading...` and discards all input for SECS seconds (like a TUI that is
//!   still starting), then behaves like `echo` with the tag `[slow]`. With
//!   `--swallow-enter-ms MS`, an Enter arriving within MS ms after a paste ended is ignored.
//! * `hang`: prints `hang: working`, after SECS prints `hang: now hanging` and never reads
//!   its input again (alive, state S, like a deadlocked TUI).
//! * `crash`: prints `crash: starting` and a few lines, then after SECS prints
//!   `crash: fatal error, exiting with N` and exits with code N.
//! * `chatty`: prints N numbered, ANSI-colored lines as fast as it can, then idles forever.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::termios::{cfmakeraw, tcflush, tcgetattr, tcsetattr, FlushArg, SetArg, Termios};

const USAGE: &str = "usage: torch-test-agent echo --record FILE [--prompt STR] [--ack-delay-ms MS]
       torch-test-agent slow --record FILE --startup SECS [--swallow-enter-ms MS] [--prompt STR]
       torch-test-agent hang [--after SECS]
       torch-test-agent crash [--after SECS] [--code N]
       torch-test-agent chatty [--lines N]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        bail!("missing mode\n{USAGE}");
    };
    match mode.as_str() {
        "echo" => {
            let o = parse_opts(rest, &["--record", "--prompt", "--ack-delay-ms"])?;
            let cfg = EchoConfig {
                tag: "echo",
                record: required(&o, "--record")?,
                prompt: o
                    .get("--prompt")
                    .cloned()
                    .unwrap_or_else(|| "echo> ".into()),
                startup: None,
                swallow_enter: None,
                ack_delay: Duration::from_millis(opt_num(&o, "--ack-delay-ms", 0)?),
            };
            run_echo(cfg)
        }
        "slow" => {
            let o = parse_opts(
                rest,
                &["--record", "--prompt", "--startup", "--swallow-enter-ms"],
            )?;
            let cfg = EchoConfig {
                tag: "slow",
                record: required(&o, "--record")?,
                prompt: o
                    .get("--prompt")
                    .cloned()
                    .unwrap_or_else(|| "slow> ".into()),
                startup: Some(Duration::from_secs_f64(num(
                    &required(&o, "--startup")?,
                    "--startup",
                )?)),
                swallow_enter: o
                    .get("--swallow-enter-ms")
                    .map(|v| num::<u64>(v, "--swallow-enter-ms").map(Duration::from_millis))
                    .transpose()?,
                ack_delay: Duration::ZERO,
            };
            run_echo(cfg)
        }
        "hang" => {
            let o = parse_opts(rest, &["--after"])?;
            let after = opt_num(&o, "--after", 1.0)?;
            run_hang(Duration::from_secs_f64(after))
        }
        "crash" => {
            let o = parse_opts(rest, &["--after", "--code"])?;
            let after = opt_num(&o, "--after", 1.0)?;
            let code = opt_num(&o, "--code", 3)?;
            run_crash(Duration::from_secs_f64(after), code)
        }
        "chatty" => {
            let o = parse_opts(rest, &["--lines"])?;
            run_chatty(opt_num(&o, "--lines", 100_000u64)?)
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown mode {other:?}\n{USAGE}"),
    }
}

// ---------------------------------------------------------------------------------------------
// argument parsing

/// Parses `--flag value` pairs, accepting only `allowed` flags.
fn parse_opts(args: &[String], allowed: &[&str]) -> Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if !allowed.contains(&flag.as_str()) {
            bail!("unexpected argument {flag:?}\n{USAGE}");
        }
        let value = it
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
        map.insert(flag.clone(), value.clone());
    }
    Ok(map)
}

fn required(o: &HashMap<String, String>, flag: &str) -> Result<String> {
    o.get(flag)
        .cloned()
        .ok_or_else(|| anyhow!("{flag} is required\n{USAGE}"))
}

fn num<T: std::str::FromStr>(v: &str, flag: &str) -> Result<T> {
    v.parse()
        .map_err(|_| anyhow!("{flag}: not a valid number: {v:?}"))
}

fn opt_num<T: std::str::FromStr>(o: &HashMap<String, String>, flag: &str, default: T) -> Result<T> {
    o.get(flag).map_or(Ok(default), |v| num(v, flag))
}

// ---------------------------------------------------------------------------------------------
// output helpers

fn out(bytes: &[u8]) -> Result<()> {
    let mut so = std::io::stdout().lock();
    so.write_all(bytes).context("writing to stdout")?;
    so.flush().context("flushing stdout")?;
    Ok(())
}

/// Sleeps forever (the process is meant to be killed).
fn idle_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// ---------------------------------------------------------------------------------------------
// hang, crash, chatty

fn run_hang(after: Duration) -> Result<()> {
    out(b"hang: working\n")?;
    std::thread::sleep(after);
    out(b"hang: now hanging\n")?;
    // A hung program is alive but never reads its input again. (SIGSTOP
    // would not do: tmux sends SIGCONT to a stopped pane at once.)
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn run_crash(after: Duration, code: i32) -> Result<()> {
    out(b"crash: starting\n")?;
    let steps = 3u32;
    for i in 1..=steps {
        std::thread::sleep(after / steps);
        out(format!("crash: step {i}/{steps}\n").as_bytes())?;
    }
    out(format!("crash: fatal error, exiting with {code}\n").as_bytes())?;
    std::process::exit(code)
}

fn run_chatty(lines: u64) -> Result<()> {
    {
        let mut so = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        for i in 1..=lines {
            writeln!(so, "\x1b[1;32m{i:07}\x1b[0m chatty line {i}: the quick brown fox jumps over the lazy dog")
                .context("writing to stdout")?;
        }
        writeln!(so, "chatty: done, {lines} lines").context("writing to stdout")?;
        so.flush().context("flushing stdout")?;
    }
    idle_forever()
}

// ---------------------------------------------------------------------------------------------
// echo / slow

struct EchoConfig {
    /// Tag used in status lines: `[echo] ready`, `[slow] received N bytes`.
    tag: &'static str,
    record: String,
    prompt: String,
    /// `slow`: discard input for this long first.
    startup: Option<Duration>,
    /// `slow`: ignore an Enter this soon after a paste ended.
    swallow_enter: Option<Duration>,
    /// `echo`: how long after recording a message its `received` line comes.
    ack_delay: Duration,
}

/// Puts stdin in raw mode (if it is a terminal) and restores it on drop.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enable() -> Result<RawMode> {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return Ok(RawMode { saved: None }); // not a terminal: nothing to do
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("tcsetattr(raw)")?;
        Ok(RawMode { saved: Some(saved) })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = out(b"\x1b[?2004l");
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}

/// What the input parser recognized.
#[derive(Debug, PartialEq)]
enum Event {
    Byte(u8),
    PasteStart,
    PasteEnd,
}

const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";

/// Splits terminal input into bytes and bracketed-paste markers; escape sequences may be
/// split across reads. Outside a paste, other escape sequences are dropped; inside one, they
/// are passed through literally.
#[derive(Default)]
struct Parser {
    esc: Vec<u8>,
    in_paste: bool,
}

impl Parser {
    fn feed(&mut self, b: u8, ev: &mut Vec<Event>) {
        if self.esc.is_empty() {
            if b == 0x1b {
                self.esc.push(b);
            } else {
                ev.push(Event::Byte(b));
            }
            return;
        }
        self.esc.push(b);
        if self.esc == PASTE_START {
            self.esc.clear();
            self.in_paste = true;
            ev.push(Event::PasteStart);
            return;
        }
        if self.esc == PASTE_END {
            self.esc.clear();
            self.in_paste = false;
            ev.push(Event::PasteEnd);
            return;
        }
        if PASTE_START.starts_with(&self.esc) || PASTE_END.starts_with(&self.esc) {
            return; // maybe a marker: wait for more
        }
        if self.in_paste {
            // Not a marker: literal pasted bytes. A trailing ESC may start a marker.
            let mut pending = std::mem::take(&mut self.esc);
            let restart = pending.last() == Some(&0x1b) && pending.len() > 1;
            if restart {
                pending.pop();
            }
            ev.extend(pending.into_iter().map(Event::Byte));
            if restart {
                self.esc.push(0x1b);
            }
            return;
        }
        // Outside a paste: swallow the whole sequence (CSI ends with 0x40..=0x7e, SS3 and
        // Alt-<key> after one more byte).
        let done = match self.esc.get(1) {
            Some(b'[') => self.esc.len() > 2 && (0x40..=0x7e).contains(&b),
            Some(b'O') => self.esc.len() > 2,
            _ => true,
        };
        if done {
            self.esc.clear();
        }
    }
}

/// Spawns a thread that forwards stdin chunks; an empty chunk means EOF or error.
fn stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if tx.send(buf[..n].to_vec()).is_err() || n == 0 {
                return;
            }
        }
    });
    rx
}

fn record(path: &str, text: &str) -> Result<()> {
    let line = serde_json::to_string(text).context("encoding JSON")?;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {path}"))?;
    f.write_all(format!("{line}\n").as_bytes())
        .with_context(|| format!("appending to {path}"))?;
    f.flush().with_context(|| format!("flushing {path}"))?;
    Ok(())
}

/// Echoes bytes to the screen, showing newlines as CR LF (the terminal is raw).
fn echo_bytes(bytes: &[u8]) -> Result<()> {
    let mut v = Vec::with_capacity(bytes.len() + 8);
    for &b in bytes {
        if b == b'\n' {
            v.extend_from_slice(b"\r\n");
        } else {
            v.push(b);
        }
    }
    out(&v)
}

fn run_echo(cfg: EchoConfig) -> Result<()> {
    let _raw = RawMode::enable()?;
    let rx = stdin_reader();
    out(b"\x1b[?2004h")?;

    if let Some(startup) = cfg.startup {
        out(b"loading...\r\n")?;
        let deadline = Instant::now() + startup;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(chunk) if chunk.is_empty() => return Ok(()), // EOF while loading
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {} // discarded
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
        let _ = tcflush(std::io::stdin(), FlushArg::TCIFLUSH);
        while let Ok(chunk) = rx.try_recv() {
            if chunk.is_empty() {
                return Ok(());
            }
        }
    }

    let tag = cfg.tag;
    out(format!("[{tag}] ready\r\n{}", cfg.prompt).as_bytes())?;
    let mut parser = Parser::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut paste_ended: Option<Instant> = None;
    let mut in_paste = false; // persists across reads: a paste may span several
    let mut events = Vec::new();
    while let Ok(chunk) = rx.recv() {
        if chunk.is_empty() {
            return Ok(()); // EOF
        }
        events.clear();
        for &b in &chunk {
            parser.feed(b, &mut events);
        }
        for e in events.drain(..) {
            match e {
                Event::PasteStart => in_paste = true,
                Event::PasteEnd => {
                    in_paste = false;
                    paste_ended = Some(Instant::now());
                }
                Event::Byte(b) if in_paste => {
                    let b = if b == b'\r' { b'\n' } else { b };
                    buf.push(b);
                    echo_bytes(&[b])?;
                }
                Event::Byte(b'\r' | b'\n') => {
                    let swallow = matches!((cfg.swallow_enter, paste_ended),
                        (Some(win), Some(t)) if t.elapsed() < win);
                    if swallow {
                        continue;
                    }
                    if buf.is_empty() {
                        out(format!("\r\n{}", cfg.prompt).as_bytes())?;
                    } else {
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        record(&cfg.record, &text)?;
                        std::thread::sleep(cfg.ack_delay);
                        out(
                            format!("\r\n[{tag}] received {} bytes\r\n{}", buf.len(), cfg.prompt)
                                .as_bytes(),
                        )?;
                        buf.clear();
                    }
                }
                Event::Byte(0x04) if buf.is_empty() => {
                    out(b"\r\n")?;
                    return Ok(());
                }
                Event::Byte(0x03) => {
                    buf.clear();
                    out(format!("^C\r\n{}", cfg.prompt).as_bytes())?;
                }
                Event::Byte(0x7f | 0x08) => {
                    // delete one (possibly multi-byte) character
                    while let Some(last) = buf.pop() {
                        if last & 0xc0 != 0x80 {
                            break;
                        }
                    }
                    out(b"\x08 \x08")?;
                }
                Event::Byte(b) => {
                    buf.push(b);
                    echo_bytes(&[b])?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::default();
        let mut ev = Vec::new();
        for c in chunks {
            for &b in *c {
                p.feed(b, &mut ev);
            }
        }
        ev
    }

    #[test]
    fn paste_markers_split_across_reads() {
        let ev = parse(&[b"a\x1b[20", b"0~x\x1b", b"[201~b"]);
        assert_eq!(
            ev,
            vec![
                Event::Byte(b'a'),
                Event::PasteStart,
                Event::Byte(b'x'),
                Event::PasteEnd,
                Event::Byte(b'b')
            ]
        );
    }

    #[test]
    fn other_escapes_dropped_outside_paste_kept_inside() {
        assert_eq!(parse(&[b"\x1b[Aq"]), vec![Event::Byte(b'q')]);
        assert_eq!(
            parse(&[b"\x1b[200~\x1b[Aq\x1b[201~"]),
            vec![
                Event::PasteStart,
                Event::Byte(0x1b),
                Event::Byte(b'['),
                Event::Byte(b'A'),
                Event::Byte(b'q'),
                Event::PasteEnd
            ]
        );
    }
}
