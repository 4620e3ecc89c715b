//! Message delivery: the one primitive every later Torch feature uses.
//!
//! One worker per agent takes messages from a queue, so messages to one
//! agent never interleave however many senders there are. Each message is
//! pasted whole (bracketed paste: multi-line text is one message, key names
//! are letters), then submitted with Enter, and each step is confirmed by
//! reading the pane:
//!
//! 1. with a `ready_pattern`, wait until the cursor line shows it;
//! 2. paste; the paste counts as taken when the end of the text shows near
//!    the cursor, or (TUIs that show a placeholder) when the screen changed;
//!    a screen that stays unchanged means the program threw the input away
//!    (as TUIs do while starting), and the paste is repeated;
//! 3. record the hub's id on disk ([`crate::typed`]), then press Enter until
//!    the screen changes: a slow TUI that swallows the first Enter gets
//!    another. A message whose id is on record is never typed again.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use torch_core::protocol::Response;
use torch_tmux::{Screen, TmuxError};

use crate::screen::ScreenReader;
use crate::typed::Outcome;
pub use crate::typed::TypedIds;

/// How long a confirmation step waits for pane output before it reads the
/// screen anyway (the output pipe is the trigger, not the only source).
const OUTPUT_FALLBACK: Duration = Duration::from_millis(20);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PASTE_UNCHANGED_TIMEOUT: Duration = Duration::from_secs(3);
const PASTE_TEXT_GRACE: Duration = Duration::from_millis(500);
const PASTE_ATTEMPTS: u32 = 3;
const SUBMIT_TIMEOUT: Duration = Duration::from_millis(700);
const SUBMIT_ATTEMPTS: u32 = 5;
/// Characters of the message's end we look for on the screen.
const PROBE_CHARS: usize = 16;

/// Why a message could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// tmux failed.
    #[error(transparent)]
    Tmux(#[from] TmuxError),
    /// The program never showed its prompt.
    #[error("the agent is not at its prompt: {pattern:?} did not appear on the cursor line within {secs} s; message not delivered")]
    NotReady {
        /// The definition's `ready_pattern`.
        pattern: String,
        /// How long we waited.
        secs: u64,
    },
    /// The program threw every paste away.
    #[error("the agent did not take the text after {PASTE_ATTEMPTS} pastes (screen unchanged); is it frozen or still starting? message not delivered")]
    PasteIgnored,
    /// The program never reacted to Enter.
    #[error("the agent did not react to Enter after {SUBMIT_ATTEMPTS} tries; the text may sit unsent in its input box")]
    SubmitIgnored,
}

/// A confirmed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Enter presses needed.
    pub submits: u32,
    /// Whether the text itself was seen before submitting.
    pub text_seen: bool,
    /// Time taken.
    pub elapsed: Duration,
}

/// A message waiting for the worker: text, the hub's id, the channel for
/// the outcome.
pub type Job = (String, Option<String>, oneshot::Sender<Response>);

/// The end of the message as the screen will show it: the last non-blank
/// line, after its last tab (tabs become spaces on screen), trimmed.
fn probe(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let tail = line.rsplit('\t').next().unwrap_or(line).trim();
    let skip = tail.chars().count().saturating_sub(PROBE_CHARS);
    tail.chars().skip(skip).collect()
}

/// Waits until the pane printed something new (`output` counts the reads of
/// its output pipe), or `OUTPUT_FALLBACK` passed. The screen only changes
/// when the program prints, so reading it after each output instead of
/// every millisecond costs tmux a few captures per message, not dozens.
async fn next_output(output: &mut watch::Receiver<u64>) {
    if tokio::time::timeout(OUTPUT_FALLBACK, output.changed())
        .await
        .is_ok_and(|r| r.is_err())
    {
        // The output pump is gone: fall back to plain polling.
        tokio::time::sleep(OUTPUT_FALLBACK).await;
    }
}

/// Delivers one message into `pane`; see the module doc for the steps.
/// `before_enter` runs once, just before the first Enter.
pub async fn deliver(
    screen: &ScreenReader,
    text: &str,
    ready_pattern: Option<&str>,
    output: &mut watch::Receiver<u64>,
    typed: &(dyn Fn() + Sync),
    before_enter: &mut (dyn FnMut() + Send),
) -> Result<Delivered, DeliveryError> {
    let (tmux, pane) = (screen.tmux(), screen.pane());
    let start = Instant::now();
    if let Some(pattern) = ready_pattern {
        wait_for_prompt(screen, pattern, output).await?;
    }
    let probe = probe(text);
    let mut before = screen.read().await?;
    let mut taken = None;
    for _ in 0..PASTE_ATTEMPTS {
        tmux.paste(pane, text).await?;
        typed();
        if let Some(t) = wait_for_paste(screen, &before, &probe, output).await? {
            taken = Some(t);
            break;
        }
        before = screen.read().await?;
    }
    let (pasted, text_seen) = taken.ok_or(DeliveryError::PasteIgnored)?;
    before_enter();
    for submits in 1..=SUBMIT_ATTEMPTS {
        tmux.press_enter(pane).await?;
        typed();
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        while Instant::now() < deadline {
            next_output(output).await;
            if screen.read().await? != pasted {
                return Ok(Delivered {
                    submits,
                    text_seen,
                    elapsed: start.elapsed(),
                });
            }
        }
    }
    Err(DeliveryError::SubmitIgnored)
}

async fn wait_for_prompt(
    reader: &ScreenReader,
    pattern: &str,
    output: &mut watch::Receiver<u64>,
) -> Result<(), DeliveryError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    // tmux trims trailing spaces from captured rows, so "> " shows as ">".
    let pattern_seen = pattern.trim_end();
    loop {
        let screen = reader.read().await?;
        if screen.near_cursor(0).contains(pattern_seen) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DeliveryError::NotReady {
                pattern: pattern.to_string(),
                secs: READY_TIMEOUT.as_secs(),
            });
        }
        next_output(output).await;
    }
}

/// Waits for a paste to show. `Some((screen, true))`: the text's end is at
/// the cursor; `Some((screen, false))`: only the screen changed; `None`: the
/// screen stayed as it was (the paste was thrown away).
async fn wait_for_paste(
    screen: &ScreenReader,
    before: &Screen,
    probe: &str,
    output: &mut watch::Receiver<u64>,
) -> Result<Option<(Screen, bool)>, DeliveryError> {
    let start = Instant::now();
    let mut changed_at = None;
    loop {
        next_output(output).await;
        let now = screen.read().await?;
        if now != *before {
            if now.near_cursor(1).contains(probe) {
                return Ok(Some((now, true)));
            }
            let since = *changed_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= PASTE_TEXT_GRACE {
                return Ok(Some((now, false)));
            }
        } else if start.elapsed() >= PASTE_UNCHANGED_TIMEOUT {
            return Ok(None);
        }
    }
}

/// Runs the agent's delivery queue until every sender is gone, calling
/// `typed()` each time it typed into the pane and `after_attempt(delivered,
/// id)` after each message. A message whose id is in `ids` is not typed again.
pub async fn worker(
    screen: std::sync::Arc<ScreenReader>,
    ready_pattern: Option<String>,
    mut jobs: mpsc::Receiver<Job>,
    mut output: watch::Receiver<u64>,
    mut ids: TypedIds,
    typed: impl Fn() + Send + Sync,
    after_attempt: impl Fn(bool, Option<&str>),
) {
    while let Some((text, id, reply)) = jobs.recv().await {
        if let Some(id) = &id {
            if let Some(outcome) = ids.seen(id, &text) {
                refuse_repeat(id, outcome, reply);
                continue;
            }
        }
        // Recorded on disk before Enter: from then on the hub's retry, even
        // to a new supervisor, is answered "duplicate".
        let mut record = || {
            if let Some(id) = &id {
                if let Err(e) = ids.entering(id, &text) {
                    tracing::warn!("typing message {id} anyway: {e}");
                }
            }
        };
        let outcome = deliver(
            &screen,
            &text,
            ready_pattern.as_deref(),
            &mut output,
            &typed,
            &mut record,
        )
        .await;
        if let Some(id) = &id {
            let settled = if outcome.is_ok() {
                Outcome::Taken
            } else {
                Outcome::Unsure
            };
            if let Err(e) = ids.settle(id, settled) {
                tracing::warn!("{e}");
            }
        }
        after_attempt(outcome.is_ok(), id.as_deref());
        let response = match outcome {
            Ok(d) => {
                let millis = d.elapsed.as_millis() as u64;
                tracing::info!(
                    bytes = text.len(),
                    submits = d.submits,
                    millis,
                    "message delivered ({} bytes, {} submits, {millis} ms)",
                    text.len(),
                    d.submits
                );
                Response::Delivered {
                    submits: d.submits,
                    millis,
                    text_seen: d.text_seen,
                    duplicate: false,
                }
            }
            Err(e) => {
                tracing::warn!(bytes = text.len(), "message not delivered: {e}");
                Response::error(e.to_string())
            }
        };
        // The caller may have given up waiting; the outcome is logged anyway.
        let _ = reply.send(response);
    }
}

/// Answers a message typed before: delivered, duplicate, nothing typed.
fn refuse_repeat(id: &str, outcome: Outcome, reply: oneshot::Sender<Response>) {
    if outcome == Outcome::Taken {
        tracing::info!("message {id} was delivered before; not typing it again");
    } else {
        tracing::warn!("message {id} was submitted before, but the agent never showed it took it; not typing it again (a message is typed at most once)");
    }
    let _ = reply.send(Response::Delivered {
        submits: 0,
        millis: 0,
        text_seen: false,
        duplicate: true,
    });
}

#[cfg(test)]
mod tests {
    use super::probe;

    #[test]
    fn probe_is_the_visible_end_of_the_text() {
        assert_eq!(probe("hello"), "hello");
        assert_eq!(probe("first\nsecond line\n\n"), "second line");
        assert_eq!(probe("a\tb c"), "b c");
        assert_eq!(probe(&"x".repeat(100)), "x".repeat(16));
        assert_eq!(
            probe("ünïcødé ✓ ünïcødé ✓ ü"),
            "cødé ✓ ünïcødé ✓ ü"
                .chars()
                .rev()
                .take(16)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        );
    }
}
