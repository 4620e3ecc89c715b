//! Check-ins as systemd timers.
//!
//! A schedule is a row in the store (the truth) and, for its next due time
//! T, an instance of the packaged template `torch-checkin@.timer` named
//! after T (`torch-checkin@2026\x2d11\x2d25\x2017:30:00.000\x20UTC.timer`,
//! `OnCalendar=%I`, `AccuracySec=100ms`). When it elapses its service runs
//! `torch fire-due` as the torch user, and the hub fires every schedule due
//! by then and starts the timer of each one's next time.
//!
//! Why template instances and not StartTransientUnit: the hub runs as the
//! unprivileged torch user, and polkit can limit it by unit name only for
//! StartUnit/StopUnit (transient units come without a name to check, and
//! would let it run anything as root). Why not generated unit files: they
//! need root and a daemon-reload. The note never enters a unit: only a
//! time does. Timers do not survive a reboot; at start the hub fires once
//! what fell due meanwhile and restarts the timers of the rest.

use std::collections::HashSet;
use std::time::Duration;

use torch_core::schedule::When;
use torch_store::{NewSchedule, Schedule};
use torch_systemd::JobKind;

use crate::error::HubError;
use crate::hub::{now_ms, Hub};

/// Schedules due within this much of a firing timer fire with it.
const FIRE_SLACK_MS: i64 = 50;

/// Unix milliseconds as a calendar time systemd reads, in UTC.
pub fn calendar_utc(ms: i64) -> String {
    // Due times come from now plus at most a year; the clamp only keeps an
    // absurd one printable.
    let t = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::MAX);
    t.strftime("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

/// The timer that fires at `due_ms`.
pub fn timer_unit(due_ms: i64) -> String {
    format!(
        "torch-checkin@{}.timer",
        torch_systemd::escape(&calendar_utc(due_ms))
    )
}

/// How many elapses of a calendar expression a new schedule looks at: the
/// first is its due time, and no two consecutive ones may be closer than
/// the minimum interval. More than two, so that an expression with uneven
/// gaps (`*-*-* 09:00:00,30`, twice a day 30 s apart) is judged by its
/// closest ones.
const CALENDAR_ITERATIONS: usize = 10;

/// The next `n` times a calendar expression elapses, Unix milliseconds,
/// from `systemd-analyze calendar` (no privileges needed); empty when it
/// never elapses again. The error says what is wrong with the expression.
async fn calendar_elapses(expr: &str, n: usize) -> Result<Vec<i64>, String> {
    let out = tokio::process::Command::new("systemd-analyze")
        .args(["calendar", &format!("--iterations={n}"), expr])
        .output()
        .await
        .map_err(|e| format!("cannot run systemd-analyze: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "systemd does not understand the calendar expression {expr:?}: {}",
            err.trim()
        ));
    }
    parse_elapses(&String::from_utf8_lossy(&out.stdout))
}

/// The elapses in `systemd-analyze calendar` output: each is a `Next
/// elapse:` or `Iter. #N:` line in local time, followed by an `(in UTC):`
/// line unless local time is UTC; `Next elapse: never` when there is none.
fn parse_elapses(text: &str) -> Result<Vec<i64>, String> {
    let bad = |line: &str| format!("unexpected systemd-analyze output {line:?}");
    let utc = |stamp: &str| match stamp.split_whitespace().collect::<Vec<_>>().as_slice() {
        [.., date, time, "UTC"] => parse_utc(date, time),
        _ => None,
    };
    let mut elapses: Vec<Option<i64>> = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some((label, stamp)) = line.split_once(':') else {
            continue;
        };
        if label == "Next elapse" || label.starts_with("Iter. #") {
            if stamp.trim() == "never" {
                break;
            }
            elapses.push(utc(stamp));
        } else if label == "(in UTC)" {
            let last = elapses.last_mut().ok_or_else(|| bad(line))?;
            *last = Some(utc(stamp).ok_or_else(|| bad(line))?);
        }
    }
    elapses
        .into_iter()
        .map(|e| e.ok_or_else(|| bad(text.trim())))
        .collect()
}

/// `YYYY-MM-DD` and `HH:MM:SS` in UTC to Unix milliseconds.
fn parse_utc(date: &str, time: &str) -> Option<i64> {
    let t: jiff::Timestamp = format!("{date}T{time}Z").parse().ok()?;
    Some(t.as_millisecond())
}

/// The next due time of a check-in every `period_ms` that was due at
/// `prev_ms`, at `now_ms`: one period after the previous due time, in step,
/// unless that is past already (the hub or the machine was down, or the
/// firing was late). Then the firing now catches up once and the next one
/// comes a full period after it: a backlog is never fired in a burst.
fn next_every(period_ms: i64, prev_ms: i64, now_ms: i64) -> i64 {
    if prev_ms + period_ms > now_ms {
        prev_ms + period_ms
    } else {
        now_ms + period_ms
    }
}

/// The due time of a new schedule, once it is checked: a recurring one may
/// not fire more often than `min_interval` (`[schedules]` in torch.toml).
/// `typed` is the spec as the requester typed it, for the error.
pub async fn first_due(when: &When, typed: &str, min_interval: Duration) -> Result<i64, String> {
    let now = now_ms();
    Ok(match when {
        When::In(d) => now + d.as_millis() as i64,
        When::Every(d) => {
            when.check_interval(Some(typed), *d, min_interval)?;
            now + d.as_millis() as i64
        }
        When::At(clock) => {
            let expr = format!("*-*-* {clock}");
            *calendar_elapses(&expr, 1)
                .await?
                .first()
                .ok_or_else(|| format!("{expr:?} never elapses"))?
        }
        When::Calendar(expr) => {
            let elapses = calendar_elapses(expr, CALENDAR_ITERATIONS).await?;
            let first = *elapses
                .first()
                .ok_or_else(|| format!("the calendar expression {expr:?} never elapses again"))?;
            if let Some(gap) = elapses.windows(2).map(|w| w[1] - w[0]).min() {
                let gap = Duration::from_millis(gap.max(0) as u64);
                when.check_interval(Some(typed), gap, min_interval)?;
            }
            first
        }
    })
}

/// The due time after a firing of a schedule that was due at `prev_ms`:
/// None when it is done (one-shot, or a calendar expression that never
/// elapses again).
async fn next_due(when: &When, prev_ms: i64) -> Result<Option<i64>, String> {
    Ok(match when {
        When::In(_) | When::At(_) => None,
        When::Every(d) => Some(next_every(d.as_millis() as i64, prev_ms, now_ms())),
        // The first elapse after the one being fired: a timer may fire a
        // moment before its second, when systemd's next elapse is still it.
        When::Calendar(expr) => calendar_elapses(expr, 2)
            .await?
            .into_iter()
            .find(|&e| e > prev_ms),
    })
}

/// Starts the timer for `due_ms` (idempotent: schedules due at the same
/// time share it).
pub async fn arm(hub: &Hub, due_ms: i64) -> Result<(), HubError> {
    let unit = timer_unit(due_ms);
    hub.systemd
        .run_job(JobKind::Start, &unit)
        .await
        .map_err(|e| HubError::Systemd(format!("cannot start {unit}: {e}")))
}

/// Stops the timer for `due_ms` unless another active schedule needs it.
pub async fn disarm(hub: &Hub, due_ms: Option<i64>) {
    let Some(due) = due_ms else { return };
    let shared = torch_store::call(&hub.store, |s| s.active_schedules(None))
        .await
        .is_ok_and(|a| a.iter().any(|s| s.due_ms == Some(due)));
    let unit = timer_unit(due);
    if !shared && hub.systemd.loaded(&unit).await {
        if let Err(e) = hub.systemd.run_job(JobKind::Stop, &unit).await {
            tracing::warn!("cannot stop {unit}: {e}");
        }
    }
}

/// The text typed into the agent when a check-in fires: the note, after a
/// header when the agent's profile takes one (`[delivery.envelope]`; a
/// shell would run the header as a command).
fn checkin_text(hub: &Hub, s: &Schedule) -> String {
    let profile = hub.fleet.agents().get(&s.agent).ok().map(|a| a.def.profile);
    // The note is the requester's text: it may not pass for a header.
    let note = crate::courier::neutralise(&s.note);
    if profile.is_some_and(|p| !hub.config.envelope(p)) {
        return note.into_owned();
    }
    let set = calendar_utc(s.created_ms);
    format!(
        "[torch check-in #{}, set by {} at {} UTC] {}",
        s.id,
        s.created_by,
        &set[..16],
        note
    )
}

async fn store_call<T: Send + 'static>(
    hub: &Hub,
    f: impl FnOnce(&torch_store::Store) -> Result<T, torch_store::StoreError> + Send + 'static,
) -> Result<T, HubError> {
    Ok(torch_store::call(&hub.store, f).await?)
}

/// Fires one schedule now: stores the check-in as a message (delivered
/// like any other), then ends a one-shot schedule or arms the next time of
/// a recurring one. Returns the message id, or None when another timer's
/// call fired it first.
pub async fn fire(hub: &Hub, s: &Schedule) -> Result<Option<i64>, HubError> {
    let when = When::from_stored(&s.kind, &s.spec).map_err(HubError::Store)?;
    // The next time is known before the firing is recorded, so that claiming
    // it, storing the message and moving the due time are one write: a
    // second timer's call can never see it fired but still due.
    let next = next_due(&when, s.due_ms.unwrap_or_else(now_ms))
        .await
        .map_err(HubError::Systemd)?;
    let (sc, body) = (s.clone(), checkin_text(hub, s));
    let Some(msg) = store_call(hub, move |st| st.fire_schedule(&sc, &body, next)).await? else {
        tracing::debug!("check-in #{} was fired by another timer's call", s.id);
        return Ok(None);
    };
    tracing::info!("check-in #{} fired for {}: message #{msg}", s.id, s.agent);
    hub.events.checkin_fired(s.id, &s.agent, msg).await;
    hub.courier.kick(&s.agent);
    if let Some(next) = next {
        arm(hub, next).await?;
    }
    Ok(Some(msg))
}

/// Fires every active schedule due by now (what a timer calls).
pub async fn fire_due(hub: &Hub) -> Result<usize, HubError> {
    let active = store_call(hub, |st| st.active_schedules(None)).await?;
    let limit = now_ms() + FIRE_SLACK_MS;
    let mut n = 0;
    for s in active
        .iter()
        .filter(|s| s.due_ms.is_some_and(|d| d <= limit))
    {
        match fire(hub, s).await {
            Ok(Some(_)) => n += 1,
            Ok(None) => {}
            Err(e) => tracing::error!("check-in #{}: {e}", s.id),
        }
    }
    Ok(n)
}

/// Creates a schedule, arms its timer; returns its id and due time. `typed`
/// is the spec as the requester typed it: shown by `Schedules()`.
pub async fn create(
    hub: &Hub,
    agent: &str,
    when: &When,
    typed: &str,
    note: &str,
    by: &str,
) -> Result<(i64, i64), HubError> {
    let due = first_due(when, typed, hub.config.schedules.min_interval)
        .await
        .map_err(HubError::InvalidArgs)?;
    let new = NewSchedule {
        agent: agent.to_string(),
        kind: when.kind().to_string(),
        spec: when.spec(),
        typed: typed.to_string(),
        note: note.to_string(),
        created_by: by.to_string(),
        due_ms: due,
    };
    // The row and its due time in one write: a crash right after it leaves
    // a schedule that the next start arms (`resync`), never one without a
    // due time, which would never fire.
    let id = store_call(hub, move |st| st.add_schedule(new)).await?;
    if let Err(e) = arm(hub, due).await {
        store_call(hub, move |st| st.end_schedule(id, "cancelled")).await?;
        return Err(e);
    }
    Ok((id, due))
}

/// Cancels a schedule and stops its timer if nothing else needs it.
pub async fn cancel(hub: &Hub, id: i64) -> Result<(), HubError> {
    let s = store_call(hub, move |st| st.schedule(id))
        .await?
        .filter(|s| s.state == "active")
        .ok_or_else(|| {
            HubError::Refused(format!("no active schedule #{id} (see `torch schedules`)"))
        })?;
    store_call(hub, move |st| st.end_schedule(id, "cancelled")).await?;
    disarm(hub, s.due_ms).await;
    Ok(())
}

/// After a start (or a reboot): fire once what fell due while no timer
/// ran, and make sure every other active schedule has its timer.
pub async fn resync(hub: &Hub) {
    match fire_due(hub).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            "fired {n} check-ins that fell due while the hub or the machine was down"
        ),
        Err(e) => tracing::error!("cannot fire overdue check-ins: {e}"),
    }
    let active = match store_call(hub, |st| st.active_schedules(None)).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("cannot read schedules: {e}");
            return;
        }
    };
    for s in active {
        let Some(due) = s.due_ms else {
            // Only an older hub, stopped between storing a schedule and its
            // due time, left such a row.
            tracing::warn!(
                "check-in #{} for {} has no due time and never fires: end it with \
                 `torch unschedule {}` and set it again",
                s.id,
                s.agent,
                s.id
            );
            continue;
        };
        if !hub.systemd.loaded(&timer_unit(due)).await {
            match arm(hub, due).await {
                Ok(()) => tracing::info!("re-armed check-in #{} for {}", s.id, s.agent),
                Err(e) => tracing::error!("check-in #{}: {e}", s.id),
            }
        }
    }
}

/// Active schedules with their next fire time, as far as systemd has a timer
/// waiting for it.
pub async fn list(hub: &Hub, agent: Option<String>) -> Result<Vec<torch_api::Schedule>, HubError> {
    let active = store_call(hub, move |st| st.active_schedules(agent.as_deref())).await?;
    // One call for all timers: a property read per timer took 14 s with
    // 10,000 pending check-ins (docs/benchmarks.md). A waiting timer fires at
    // the time its name says (`OnCalendar=%I`).
    // Without systemd's answer the schedules are still listed, unarmed.
    let timers = hub
        .systemd
        .list("torch-checkin@*.timer")
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("cannot list the check-in timers: {e}");
            Vec::new()
        });
    let waiting: HashSet<String> = timers
        .into_iter()
        .filter(|u| u.sub == "waiting")
        .map(|u| u.name)
        .collect();
    Ok(active
        .into_iter()
        .map(|s| {
            let timer = s.due_ms.map(timer_unit);
            let next_ms = timer
                .as_ref()
                .filter(|t| waiting.contains(*t))
                .and(s.due_ms);
            let when = When::from_stored(&s.kind, &s.spec)
                .map(|w| w.shown(s.typed.as_deref()))
                .unwrap_or_else(|_| format!("{} {}", s.kind, s.spec));
            torch_api::Schedule {
                id: s.id,
                agent: s.agent,
                kind: s.kind,
                spec: s.spec,
                typed: s.typed,
                when,
                note: s.note,
                created_by: s.created_by,
                created_ms: s.created_ms,
                due_ms: s.due_ms,
                fired: s.fired,
                last_fired_ms: s.last_fired_ms,
                state: s.state,
                timer,
                next_ms,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn calendar_times_round_trip() {
        assert_eq!(calendar_utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            calendar_utc(1_764_091_449_250),
            "2025-11-25 17:24:09.250 UTC"
        );
        assert_eq!(parse_utc("2025-11-25", "17:24:09"), Some(1_764_091_449_000));
        assert_eq!(
            parse_utc("2024-02-29", "00:00:00")
                .map(calendar_utc)
                .as_deref(),
            Some("2024-02-29 00:00:00.000 UTC")
        );
        assert!(
            timer_unit(0).starts_with("torch-checkin@1970\\x2d01\\x2d01\\x2000:00:00.000\\x20UTC")
        );
    }

    #[test]
    fn a_recurring_check_in_catches_up_once_then_keeps_its_period() {
        let p = 5_000;
        // On time (or a moment late): in step with the previous due time.
        assert_eq!(next_every(p, 100_000, 100_000), 105_000);
        assert_eq!(next_every(p, 100_000, 100_300), 105_000);
        // Two periods and more after the due time (the hub was down): the
        // catch-up firing now, the next one a full period after it, not a
        // second one a moment later.
        assert_eq!(next_every(p, 100_000, 112_000), 117_000);
        // Exactly one period late: the same.
        assert_eq!(next_every(p, 100_000, 105_000), 110_000);
    }

    #[tokio::test]
    async fn first_due_times_and_the_minimum_interval() {
        let now = now_ms();
        let min = Duration::from_secs(60);
        let d = first_due(&When::In(Duration::from_secs(2)), "2s", min)
            .await
            .unwrap();
        assert!((d - now - 2_000).abs() < 1000, "a one-shot is not limited");
        let e = first_due(&When::Every(Duration::from_secs(60)), "1m", min)
            .await
            .unwrap();
        assert!((e - now - 60_000).abs() < 1000);
        let err = first_due(&When::Every(Duration::from_secs(30)), "30s", min)
            .await
            .unwrap_err();
        assert!(err.starts_with("every 30s is too often"), "{err}");
    }

    #[tokio::test]
    async fn calendar_expressions_are_judged_by_their_closest_elapses() {
        let min = Duration::from_secs(60);
        let every_second = When::Calendar("*-*-* *:*:*".into());
        let err = first_due(&every_second, "*-*-* *:*:*", min)
            .await
            .unwrap_err();
        assert!(
            err.starts_with("on-calendar *-*-* *:*:* fires every 1s, which is too often"),
            "{err}"
        );
        // Daily, but twice 30 s apart: refused whatever the time now.
        let uneven = "*-*-* 09:00:00,30";
        let err = first_due(&When::Calendar(uneven.into()), uneven, min)
            .await
            .unwrap_err();
        assert!(err.contains("fires every 30s"), "{err}");
        let hourly = When::Calendar("hourly".into());
        let due = first_due(&hourly, "hourly", min).await.unwrap();
        assert!(due > now_ms(), "{due}");
        // After a firing: the next hour, also when fired a moment early.
        assert_eq!(next_due(&hourly, due).await.unwrap(), Some(due + 3_600_000));
        let past = When::Calendar("2020-01-01".into());
        assert!(first_due(&past, "2020-01-01", min).await.is_err());
        assert_eq!(next_due(&past, 0).await.unwrap(), None);
    }

    #[test]
    fn systemd_analyze_output_is_read_in_utc() {
        let utc = "  Original form: *:*:*\nNormalized form: *-*-* *:*:*\n    Next elapse: Fri 2026-11-27 01:16:08 UTC\n       From now: 794ms left\n       Iter. #2: Fri 2026-11-27 01:16:09 UTC\n       From now: 1s left\n";
        let first = parse_utc("2026-11-27", "01:16:08").unwrap();
        assert_eq!(parse_elapses(utc), Ok(vec![first, first + 1000]));
        let paris = "Normalized form: Mon *-*-* 09:00:00\n    Next elapse: Mon 2026-11-30 09:00:00 CET\n       (in UTC): Mon 2026-11-30 08:00:00 UTC\n       From now: 3 days left\n       Iter. #2: Mon 2026-12-07 09:00:00 CET\n       (in UTC): Mon 2026-12-07 08:00:00 UTC\n";
        let monday = parse_utc("2026-11-30", "08:00:00").unwrap();
        assert_eq!(
            parse_elapses(paris),
            Ok(vec![monday, monday + 7 * 86_400_000])
        );
        assert_eq!(
            parse_elapses("Normalized form: 2020-01-01 00:00:00\n    Next elapse: never\n"),
            Ok(vec![])
        );
        assert!(parse_elapses("    Next elapse: Mon 2026-11-30 09:00:00 CET\n").is_err());
    }
}
