//! Reading the agent's screen: the pane as tmux shows it, and what it shows
//! the agent doing (its profile's classifier). The screen only changes when
//! the program prints, so a read is reused until the output pipe saw more:
//! the hub's idle check, the health check and the delivery that follows
//! share one read, and an idle fleet costs no tmux calls for its screens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use torch_core::config::{config_files, Config};
use torch_core::profile::{builtin, Activity, Classifier, ProfileRules};
use torch_core::AgentDefinition;
use torch_tmux::{Screen, Tmux, TmuxError};

/// How long a screen read may be reused while the pane printed nothing: a
/// bound in case the output pipe ever stops counting.
const SCREEN_REUSE: Duration = Duration::from_millis(250);

/// Reads the pane's screen, and reads it again only after the pane printed
/// something (the screen cannot change otherwise).
pub struct ScreenReader {
    tmux: Tmux,
    pane: String,
    output: watch::Receiver<u64>,
    last: Mutex<Option<(u64, Instant, Screen)>>,
    classifier: Classifier,
    /// The last classification, with the output count it was made at.
    activity_seen: Mutex<Option<(u64, Activity)>>,
    /// The output pump stopped: the output count no longer tells whether
    /// the screen changed, so the activity is read afresh each time.
    output_lost: AtomicBool,
}

impl ScreenReader {
    /// A reader of `pane`; `output` counts reads of the pane's output;
    /// `classifier` reads the agent's activity off the screen.
    pub fn new(
        tmux: Tmux,
        pane: String,
        output: watch::Receiver<u64>,
        classifier: Classifier,
    ) -> Self {
        Self {
            tmux,
            pane,
            output,
            last: Mutex::new(None),
            classifier,
            activity_seen: Mutex::new(None),
            output_lost: AtomicBool::new(false),
        }
    }

    /// The agent's tmux server.
    pub fn tmux(&self) -> &Tmux {
        &self.tmux
    }

    /// The pane it reads.
    pub fn pane(&self) -> &str {
        &self.pane
    }

    /// Notes that the output count stopped.
    pub fn output_lost(&self) {
        self.output_lost.store(true, Ordering::Relaxed);
    }

    /// The screen as it is now.
    pub async fn read(&self) -> Result<Screen, TmuxError> {
        // Counted before the capture: output arriving meanwhile makes the
        // next call read again, never the other way round.
        let reads = *self.output.borrow();
        if let Ok(last) = self.last.lock() {
            if let Some((at, when, screen)) = last.as_ref() {
                if *at == reads && when.elapsed() < SCREEN_REUSE {
                    return Ok(screen.clone());
                }
            }
        }
        let screen = self.tmux.screen(&self.pane).await?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((reads, Instant::now(), screen.clone()));
        }
        Ok(screen)
    }

    /// The text left in the TUI's input box on `screen` (empty: none);
    /// `None` when the profile knows no input box.
    pub fn input_box(&self, screen: &Screen) -> Option<String> {
        self.classifier.input_box(&screen.rows)
    }

    /// What the agent's screen shows it doing, classified again only after
    /// new output.
    pub async fn activity(&self) -> Activity {
        // Read before the capture: output arriving meanwhile makes the next
        // call look again, never the other way round.
        let reads = *self.output.borrow();
        let lost = self.output_lost.load(Ordering::Relaxed);
        if let Ok(seen) = self.activity_seen.lock() {
            if let Some((at, activity)) = *seen {
                if at == reads && !lost {
                    return activity;
                }
            }
        }
        let activity = match self.read().await {
            Ok(screen) => self.classifier.classify(&screen.rows),
            Err(_) => return Activity::Unknown,
        };
        if let Ok(mut seen) = self.activity_seen.lock() {
            *seen = Some((reads, activity));
        }
        activity
    }
}

/// `torch.toml` as the supervisor reads it; a broken file falls back to the
/// built-in configuration (the journal says why).
pub fn fleet_config(def: &AgentDefinition) -> Config {
    Config::load(&config_files()).unwrap_or_else(|e| {
        tracing::warn!(
            "{e}; using the built-in configuration (profile {})",
            def.profile.as_str()
        );
        Config::default()
    })
}

/// The screen reader for `rules`; a broken pattern falls back to the
/// built-in rules of the agent's profile.
pub fn profile_classifier(def: &AgentDefinition, rules: &ProfileRules) -> Classifier {
    Classifier::new(rules).unwrap_or_else(|e| {
        tracing::warn!(
            "{e}; using the built-in rules of profile {}",
            def.profile.as_str()
        );
        // The built-in patterns are unit-tested to compile.
        Classifier::new(&builtin(def.profile)).unwrap_or_default()
    })
}
