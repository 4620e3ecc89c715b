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
//!
//! A CLI with a channel of its own for prompts (opencode through Torch's
//! plugin, Codex through its app server: [`crate::channel`]) is handed the
//! message instead of steps 2 and 3, once it is idle; its id is recorded
//! first, the same way.

use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use torch_core::hooks;
use torch_core::profile::Activity;
use torch_core::protocol::Response;
use torch_tmux::{Screen, TmuxError};

use crate::channel::{ChannelError, PromptChannel};
use crate::hooks::HookFeed;
use crate::output::PasteMode;
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
/// A CLI that reported its session is past its start-up and does not throw
/// pastes away; a slow one (a loaded machine) may take seconds to show one,
/// and a second paste would then land beside the first.
const HOOKED_PASTE_TIMEOUT: Duration = Duration::from_secs(15);
const SUBMIT_TIMEOUT: Duration = Duration::from_millis(700);
const SUBMIT_ATTEMPTS: u32 = 5;
/// A TUI takes an Enter that follows a paste too closely as part of the
/// paste (Claude Code: about 100 ms).
const PASTE_SETTLE: Duration = Duration::from_millis(150);
/// How long a hook-reporting CLI has to report the prompt after Enter.
const HOOK_SUBMIT_TIMEOUT: Duration = Duration::from_secs(3);
const HOOK_SUBMIT_ATTEMPTS: u32 = 3;
/// How long the screen stays unchanged before a message is typed into a CLI
/// whose screen may lag its hooks (see [`settle`]), and how long that wait
/// may take at most.
const SETTLE_QUIET: Duration = Duration::from_millis(1500);
const SETTLE_MAX: Duration = Duration::from_secs(15);
/// Lines of leftover input cleared at most (one per round).
const CLEAR_ROUNDS: u32 = 20;
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
    #[error("the agent did not take the pasted text (its screen did not change); is it frozen or still starting? message not delivered")]
    PasteIgnored,
    /// The program never reacted to Enter.
    #[error("the agent did not react to Enter after {SUBMIT_ATTEMPTS} tries; the text may sit unsent in its input box")]
    SubmitIgnored,
    /// The CLI's hooks never reported the prompt as taken.
    #[error("the agent's CLI did not report taking the message after {HOOK_SUBMIT_ATTEMPTS} Enter presses; the text may sit unsent in its input box")]
    NotTaken,
    /// The CLI's own channel failed after the message was handed to it.
    #[error("{0}; message not delivered")]
    Channel(ChannelError),
    /// The CLI's own channel took the message, but its hooks never reported
    /// it as a prompt.
    #[error("the agent's CLI accepted the message through its own channel but did not report taking it as a prompt within {secs} s")]
    HandedNotTaken {
        /// How long we waited.
        secs: u64,
    },
    /// The program reads pastes bracketed, but did not turn that on again.
    #[error("the agent's program did not ask for bracketed paste again within {secs} s (it does at its prompt), so the lines of a message would each be taken for Enter; message not delivered")]
    NoBracketedPaste {
        /// How long we waited.
        secs: u64,
    },
    /// The CLI never came to its prompt.
    #[error("the agent did not come to its prompt within {secs} s (it reads {activity}); message not delivered")]
    NeverIdle {
        /// What it read instead.
        activity: &'static str,
        /// How long we waited.
        secs: u64,
    },
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
    /// Handed to the CLI through its own channel, not typed.
    pub handed_over: bool,
}

/// What a message waits for before it is typed, and who confirms it.
#[derive(Clone, Default)]
pub struct Gate {
    /// The definition's `ready_pattern`: text the cursor line must show.
    pub ready_pattern: Option<String>,
    /// The CLI's hooks, for CLIs that report through them.
    pub hooks: Option<std::sync::Arc<HookFeed>>,
    /// Whether the program reads pasted text bracketed just now.
    pub paste_mode: Option<std::sync::Arc<PasteMode>>,
    /// The CLI's own way to take a prompt, tried before typing.
    pub channel: Option<PromptChannel>,
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
/// `before_enter` runs once, just before the first Enter. With the gate's
/// hooks, the agent's CLI reports through hooks: nothing is typed before it is idle,
/// and the message counts only when the CLI reports taking it.
pub async fn deliver(
    screen: &ScreenReader,
    text: &str,
    gate: &Gate,
    output: &mut watch::Receiver<u64>,
    typed: &(dyn Fn() + Sync),
    before_enter: &mut (dyn FnMut() + Send),
) -> Result<Delivered, DeliveryError> {
    let start = Instant::now();
    let hooks = gate.hooks.as_deref();
    if let Some(pattern) = gate.ready_pattern.as_deref() {
        wait_for_prompt(screen, pattern, output).await?;
    }
    if let Some(hooks) = hooks {
        wait_until_idle(screen, hooks, output).await?;
    }
    // A CLI whose hooks are not heard is confirmed by its screen.
    let hooks = hooks.filter(|h| h.confirms_prompts());
    if let (Some(channel), Some(hooks)) = (&gate.channel, hooks) {
        if let Some(delivered) = hand_over(channel, hooks, text, typed, before_enter).await? {
            return Ok(Delivered {
                elapsed: start.elapsed(),
                ..delivered
            });
        }
    }
    if hooks.is_some() {
        clear_input(screen, output).await?;
    }
    let (attempts, patience) = match hooks {
        Some(_) => (1, HOOKED_PASTE_TIMEOUT),
        None => (PASTE_ATTEMPTS, PASTE_UNCHANGED_TIMEOUT),
    };
    // The CLIs Torch knows turn bracketed paste on at their prompt; a
    // plain program or shell is typed into as before.
    if text.contains('\n') && gate.hooks.is_some() {
        if let Some(mode) = gate.paste_mode.as_deref() {
            wait_for_bracketed_paste(mode, output).await?;
        }
    }
    let (pasted, text_seen) = paste(screen, text, output, typed, (attempts, patience)).await?;
    let pasted_at = Instant::now();
    before_enter();
    let submits = match hooks {
        Some(hooks) => submit_to_cli(screen, hooks, text, pasted_at, typed).await?,
        None => submit(screen, &pasted, output, typed).await?,
    };
    Ok(Delivered {
        submits,
        text_seen,
        elapsed: start.elapsed(),
        handed_over: false,
    })
}

/// Hands `text` to the CLI through its own channel, then waits for its hook
/// to report the prompt taken. `None`: nothing listens on the channel, and
/// nothing was sent, so the message is typed instead.
async fn hand_over(
    channel: &PromptChannel,
    hooks: &HookFeed,
    text: &str,
    typed: &(dyn Fn() + Sync),
    before_enter: &mut (dyn FnMut() + Send),
) -> Result<Option<Delivered>, DeliveryError> {
    let connected = match channel.connect(hooks.session()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("typing the message instead of handing it over: {e}");
            return Ok(None);
        }
    };
    let mut prompts = hooks.prompts();
    before_enter();
    typed();
    connected
        .submit(text)
        .await
        .map_err(DeliveryError::Channel)?;
    let patience = HOOK_SUBMIT_TIMEOUT * HOOK_SUBMIT_ATTEMPTS;
    if !await_prompt(&mut prompts, text, patience).await {
        hooks.prompt_unreported();
        return Err(DeliveryError::HandedNotTaken {
            secs: patience.as_secs(),
        });
    }
    Ok(Some(Delivered {
        submits: 0,
        text_seen: false,
        elapsed: Duration::ZERO,
        handed_over: true,
    }))
}

/// Pastes `text` until the screen shows it taken (`tries` times at most,
/// each waiting that long for the screen to change); the screen then, and
/// whether the text itself was seen.
async fn paste(
    screen: &ScreenReader,
    text: &str,
    output: &mut watch::Receiver<u64>,
    typed: &(dyn Fn() + Sync),
    tries: (u32, Duration),
) -> Result<(Screen, bool), DeliveryError> {
    let probe = probe(text);
    let mut before = screen.read().await?;
    for _ in 0..tries.0 {
        screen.tmux().paste(screen.pane(), text).await?;
        typed();
        if let Some(taken) = wait_for_paste(screen, &before, &probe, output, tries.1).await? {
            return Ok(taken);
        }
        before = screen.read().await?;
    }
    Err(DeliveryError::PasteIgnored)
}

/// Empties the TUI's input box of text left there (an interrupted turn's
/// prompt, a human's half-typed line), so the message is its own turn:
/// Ctrl-U clears the line the cursor is on, Backspace joins the one above.
async fn clear_input(
    screen: &ScreenReader,
    output: &mut watch::Receiver<u64>,
) -> Result<(), DeliveryError> {
    let (tmux, pane) = (screen.tmux(), screen.pane());
    let mut said = false;
    for _ in 0..CLEAR_ROUNDS {
        let now = screen.read().await?;
        let left = screen.input_box(&now).unwrap_or_default();
        if left.is_empty() {
            return Ok(());
        }
        if !said {
            tracing::warn!(
                "the agent's input box held {} characters of text; cleared it before typing the message",
                left.chars().count()
            );
            said = true;
        }
        tmux.send_key(pane, "C-u").await?;
        tmux.send_key(pane, "BSpace").await?;
        let before = now;
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        while Instant::now() < deadline && screen.read().await? == before {
            next_output(output).await;
        }
    }
    tracing::warn!("the agent's input box still holds text after {CLEAR_ROUNDS} tries; typing the message anyway");
    Ok(())
}

/// Presses Enter until the screen changes; the presses needed.
async fn submit(
    screen: &ScreenReader,
    pasted: &Screen,
    output: &mut watch::Receiver<u64>,
    typed: &(dyn Fn() + Sync),
) -> Result<u32, DeliveryError> {
    for submits in 1..=SUBMIT_ATTEMPTS {
        screen.tmux().press_enter(screen.pane()).await?;
        typed();
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        while Instant::now() < deadline {
            next_output(output).await;
            if screen.read().await? != *pasted {
                return Ok(submits);
            }
        }
    }
    Err(DeliveryError::SubmitIgnored)
}

/// Waits until the CLI, by its hooks and its chrome, is idle at its prompt
/// (after a start: once it reported its session).
/// Waits, for a text of several lines, until a program that reads pastes
/// bracketed has its bracketed paste on again: one that turned it off is
/// between two prompts (it showed its prompt a moment before asking for
/// it), and would take each newline for Enter. A program that never asked
/// for it is not waited for.
async fn wait_for_bracketed_paste(
    mode: &PasteMode,
    output: &mut watch::Receiver<u64>,
) -> Result<(), DeliveryError> {
    let start = Instant::now();
    let deadline = start + READY_TIMEOUT;
    if mode.get() == Some(false) {
        tracing::debug!("waiting for the program to turn bracketed paste on again");
    }
    while mode.get() == Some(false) {
        if Instant::now() >= deadline {
            return Err(DeliveryError::NoBracketedPaste {
                secs: READY_TIMEOUT.as_secs(),
            });
        }
        next_output(output).await;
    }
    Ok(())
}

async fn wait_until_idle(
    screen: &ScreenReader,
    hooks: &HookFeed,
    output: &mut watch::Receiver<u64>,
) -> Result<(), DeliveryError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let activity = hooks.activity(screen.activity().await);
        if activity == Activity::Idle && hooks.ready_for_input() {
            if hooks.take_unsettled() {
                settle(output).await;
                continue;
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DeliveryError::NeverIdle {
                activity: activity.as_str(),
                secs: READY_TIMEOUT.as_secs(),
            });
        }
        next_output(output).await;
        tokio::time::sleep(OUTPUT_FALLBACK).await;
    }
}

/// Waits until the screen has not changed for [`SETTLE_QUIET`] (at most
/// [`SETTLE_MAX`]): a message must not land in an input box the CLI
/// is about to redraw, as it loads a resumed session's history (Gemini CLI
/// 0.61.0 reports the session first, then shows "Resuming session..." and
/// clears its input), or as it draws a permission dialog its hooks already
/// answered.
async fn settle(output: &mut watch::Receiver<u64>) {
    let until = tokio::time::Instant::now() + SETTLE_MAX;
    loop {
        output.borrow_and_update();
        match tokio::time::timeout(SETTLE_QUIET, output.changed()).await {
            Err(_) => return,
            Ok(Err(_)) => return,
            Ok(Ok(())) if tokio::time::Instant::now() >= until => return,
            Ok(Ok(())) => {}
        }
    }
}

/// Presses Enter (once the paste settled) until the CLI's hook reports the
/// prompt taken; the presses needed.
async fn submit_to_cli(
    screen: &ScreenReader,
    hooks: &HookFeed,
    text: &str,
    pasted_at: Instant,
    typed: &(dyn Fn() + Sync),
) -> Result<u32, DeliveryError> {
    // Subscribed before the first Enter: a prompt reported meanwhile counts.
    let mut prompts = hooks.prompts();
    tokio::time::sleep(PASTE_SETTLE.saturating_sub(pasted_at.elapsed())).await;
    for submits in 1..=HOOK_SUBMIT_ATTEMPTS {
        screen.tmux().press_enter(screen.pane()).await?;
        typed();
        if await_prompt(&mut prompts, text, HOOK_SUBMIT_TIMEOUT).await {
            return Ok(submits);
        }
    }
    hooks.prompt_unreported();
    Err(DeliveryError::NotTaken)
}

/// Waits up to `patience` for the CLI to report taking `text` as a prompt.
async fn await_prompt(
    prompts: &mut broadcast::Receiver<String>,
    text: &str,
    patience: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    while let Ok(heard) = tokio::time::timeout_at(deadline, prompts.recv()).await {
        match heard {
            Ok(prompt) => match taken(&prompt, text) {
                Taken::Whole => return true,
                Taken::WithOther => {
                    tracing::warn!("the message was taken together with other text that was in the agent's input box");
                    return true;
                }
                Taken::Not => tracing::info!("the agent took a prompt that is not this message (typed by hand?); still waiting"),
            },
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
    false
}

/// How a prompt the CLI reported relates to the message typed.
#[derive(Debug, PartialEq, Eq)]
enum Taken {
    Whole,
    WithOther,
    Not,
}

fn taken(prompt: &str, text: &str) -> Taken {
    if hooks::is_prompt_of(prompt, text) {
        Taken::Whole
    } else if hooks::as_submitted(prompt).contains(&hooks::as_submitted(text)) {
        Taken::WithOther
    } else {
        Taken::Not
    }
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
    patience: Duration,
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
        } else if start.elapsed() >= patience {
            return Ok(None);
        }
    }
}

/// Runs the agent's delivery queue until every sender is gone, calling
/// `typed()` each time it typed into the pane and `after_attempt(delivered,
/// id)` after each message. A message whose id is in `ids` is not typed again.
pub async fn worker(
    screen: std::sync::Arc<ScreenReader>,
    gate: Gate,
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
        let outcome = deliver(&screen, &text, &gate, &mut output, &typed, &mut record).await;
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
                let how = if d.handed_over {
                    "handed to its CLI's own channel".to_string()
                } else {
                    format!("typed, {} submits", d.submits)
                };
                tracing::info!(
                    bytes = text.len(),
                    submits = d.submits,
                    millis,
                    "message delivered ({} bytes, {how}, {millis} ms)",
                    text.len(),
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
