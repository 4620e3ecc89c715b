//! Check-in schedules: what `torch schedule` accepts.
//!
//! Durations are numbers with a unit (`90s`, `15m`, `1.5h`, `1h30m`, `2d`);
//! a fraction is honoured, never rounded to "now" (the seed scripts' bug).
//! The note never goes into a unit file: units carry only the schedule id.

use std::time::Duration;

/// The shortest schedule.
pub const MIN_DELAY: Duration = Duration::from_secs(1);
/// The longest delay or period.
pub const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);
/// The shortest period of a recurring check-in unless `torch.toml` says
/// otherwise (`[schedules] min_interval`).
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// When a check-in fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Once, this long from now.
    In(Duration),
    /// Once, at the next wall-clock time `HH:MM[:SS]`.
    At(String),
    /// Repeatedly, with this period (first after one period).
    Every(Duration),
    /// Repeatedly, on a systemd calendar expression.
    Calendar(String),
}

impl When {
    /// The kind word stored and shown: `in`, `at`, `every`, `calendar`.
    pub fn kind(&self) -> &'static str {
        match self {
            When::In(_) => "in",
            When::At(_) => "at",
            When::Every(_) => "every",
            When::Calendar(_) => "calendar",
        }
    }

    /// The spec as stored: seconds (with fractions) or the expression.
    pub fn spec(&self) -> String {
        match self {
            When::In(d) | When::Every(d) => format!("{}", d.as_secs_f64()),
            When::At(s) | When::Calendar(s) => s.clone(),
        }
    }

    /// Rebuilds from `kind` and `spec` as stored.
    pub fn from_stored(kind: &str, spec: &str) -> Result<Self, String> {
        let secs = || {
            spec.parse::<f64>()
                .map(Duration::from_secs_f64)
                .map_err(|e| format!("bad stored duration {spec:?}: {e}"))
        };
        Ok(match kind {
            "in" => When::In(secs()?),
            "every" => When::Every(secs()?),
            "at" => When::At(spec.to_string()),
            "calendar" => When::Calendar(spec.to_string()),
            _ => return Err(format!("unknown schedule kind {kind:?}")),
        })
    }

    /// Whether it fires more than once.
    pub fn recurring(&self) -> bool {
        matches!(self, When::Every(_) | When::Calendar(_))
    }

    /// How it is shown, as `torch schedule` spells it: `every 30m`,
    /// `on-calendar Mon *-*-* 09:00`. `typed` is the spec as the requester
    /// typed it; without it (schedules stored before it was kept) the
    /// stored form is shown, durations as [`format_duration`] writes them.
    pub fn shown(&self, typed: Option<&str>) -> String {
        let word = match self {
            When::In(_) => "in",
            When::At(_) => "at",
            When::Every(_) => "every",
            When::Calendar(_) => "on-calendar",
        };
        let spec = match (typed, self) {
            (Some(t), _) => t.to_string(),
            (None, When::In(d) | When::Every(d)) => format_duration(*d),
            (None, When::At(s) | When::Calendar(s)) => s.clone(),
        };
        format!("{word} {spec}")
    }

    /// Refuses a recurring check-in whose firings come `interval` apart
    /// (its period, or the gap between two elapses of its calendar
    /// expression) when that is under `min`; `typed` as for [`When::shown`].
    pub fn check_interval(
        &self,
        typed: Option<&str>,
        interval: Duration,
        min: Duration,
    ) -> Result<(), String> {
        if interval >= min {
            return Ok(());
        }
        let what = match self {
            When::Every(_) => self.shown(typed),
            _ => format!(
                "{} fires every {}, which",
                self.shown(typed),
                format_duration(interval)
            ),
        };
        Err(format!(
            "{what} is too often: recurring check-ins must be at least {} apart (the \
             minimum interval; an administrator changes it with `min_interval` under \
             [schedules] in /etc/torch/torch.toml); for a single check-in, use --in",
            format_duration(min)
        ))
    }
}

/// A duration as [`parse_duration`] reads it back, largest units first:
/// `30m`, `1h30m`, `2d`, `1m1.5s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (hours, rest) = (rest / 3_600_000, rest % 3_600_000);
    let (mins, rest) = (rest / 60_000, rest % 60_000);
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (mins, "m")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if rest > 0 || out.is_empty() {
        let secs = format!("{}.{:03}", rest / 1000, rest % 1000);
        out.push_str(secs.trim_end_matches('0').trim_end_matches('.'));
        out.push('s');
    }
    out
}

/// Parses `15m`, `90s`, `1.5h`, `1h30m`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("bad duration {s:?}: use a number and a unit, e.g. 90s, 15m, 1.5h, 1h30m, 2d");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(n) = chars.peek().filter(|n| n.is_ascii_alphabetic()) {
            unit.push(*n);
            chars.next();
        }
        let factor = match unit.as_str() {
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return Err(bad()),
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        total += n * factor;
        num.clear();
        while chars.peek() == Some(&' ') {
            chars.next();
        }
    }
    if !num.is_empty() {
        return Err(bad());
    }
    let d = Duration::from_secs_f64(total);
    if d < MIN_DELAY || d > MAX_DELAY {
        return Err(format!("duration {s:?} is out of range (1s to 366d)"));
    }
    Ok(d)
}

/// Checks `HH:MM` or `HH:MM:SS`.
pub fn parse_clock(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let nums: Option<Vec<u32>> = parts
        .iter()
        .map(|p| (p.len() == 2).then(|| p.parse().ok()).flatten())
        .collect();
    match nums.as_deref() {
        Some([h, m]) if *h < 24 && *m < 60 => Ok(format!("{h:02}:{m:02}:00")),
        Some([h, m, sec]) if *h < 24 && *m < 60 && *sec < 60 => {
            Ok(format!("{h:02}:{m:02}:{sec:02}"))
        }
        _ => Err(format!(
            "bad time {s:?}: use HH:MM or HH:MM:SS (24-hour clock)"
        )),
    }
}

/// Checks a calendar expression's shape; systemd checks its meaning.
pub fn check_calendar(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 200 || t.chars().any(char::is_control) {
        return Err(format!(
            "bad calendar expression {s:?}: see `man systemd.time`, e.g. \"Mon..Fri 09:00\""
        ));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5m"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172800)));
        for bad in ["", "15", "m", "15x", "-5m", "0s", "0.1s", "400d", "1..5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clocks_and_calendars() {
        assert_eq!(parse_clock("14:30"), Ok("14:30:00".into()));
        assert_eq!(parse_clock("09:05:07"), Ok("09:05:07".into()));
        for bad in ["24:00", "9:00", "14:60", "14", "ab:cd", "14:30:00:00"] {
            assert!(parse_clock(bad).is_err(), "{bad}");
        }
        assert!(check_calendar("Mon..Fri 09:00").is_ok());
        assert!(check_calendar("daily\nExecStart=/bin/sh").is_err());
    }

    #[test]
    fn durations_are_shown_as_they_parse() {
        for (text, secs) in [
            ("30m", 1800.0),
            ("1h30m", 5400.0),
            ("2d", 172_800.0),
            ("1s", 1.0),
            ("1m1.5s", 61.5),
            ("1d1s", 86_401.0),
        ] {
            let d = Duration::from_secs_f64(secs);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn schedules_are_shown_as_typed() {
        let every = When::Every(Duration::from_secs(1800));
        assert_eq!(every.shown(Some("30m")), "every 30m");
        assert_eq!(every.shown(Some("0.5h")), "every 0.5h");
        // Stored before the typed spec was kept: shown in the same words.
        assert_eq!(every.shown(None), "every 30m");
        assert_eq!(
            When::Calendar("Mon *-*-* 09:00".into()).shown(None),
            "on-calendar Mon *-*-* 09:00"
        );
        assert_eq!(When::At("14:30:00".into()).shown(Some("14:30")), "at 14:30");
    }

    #[test]
    fn intervals_under_the_minimum_are_refused() {
        let min = DEFAULT_MIN_INTERVAL;
        let (minute, half) = (Duration::from_secs(60), Duration::from_secs(30));
        assert!(When::Every(minute)
            .check_interval(None, minute, min)
            .is_ok());
        let e = When::Every(half)
            .check_interval(Some("0.5m"), half, min)
            .unwrap_err();
        assert!(
            e.starts_with("every 0.5m is too often: ")
                && e.contains("at least 1m apart")
                && e.contains("`min_interval` under [schedules] in /etc/torch/torch.toml"),
            "{e}"
        );
        let e = When::Calendar("*-*-* *:*:*".into())
            .check_interval(None, Duration::from_secs(1), min)
            .unwrap_err();
        assert!(
            e.starts_with("on-calendar *-*-* *:*:* fires every 1s, which is too often"),
            "{e}"
        );
    }

    #[test]
    fn stored_form_round_trips() {
        for w in [
            When::In(Duration::from_millis(1500)),
            When::Every(Duration::from_secs(60)),
            When::At("14:30:00".into()),
            When::Calendar("hourly".into()),
        ] {
            assert_eq!(When::from_stored(w.kind(), &w.spec()), Ok(w.clone()));
        }
    }
}
