//! Rate and usage limits: when the agent's CLI gives up on a turn because of
//! one (Claude Code's StopFailure hook with `rate_limit`), the agent is
//! `limited` until the limit resets, holding its messages, and a check-in at
//! that time (plus a jitter that spreads a fleet limited together) tells it
//! to continue. The check-in goes through the hub like any other, so it
//! survives a restart of the agent or the machine.

use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use torch_core::config::Limits;

/// How much of the transcript's end is read for the reset time.
const TRANSCRIPT_TAIL: u64 = 256 * 1024;
/// How long `torch schedule` may take.
const SCHEDULE_TIMEOUT: Duration = Duration::from_secs(30);
/// What the agent is told when the limit has reset.
pub const CONTINUE_NOTE: &str =
    "The rate limit that stopped your last turn has reset: continue where you left off.";

/// The reset time of the last limit in a Claude Code transcript (its
/// `resetsAt`, Unix seconds, on usage limits); `None` when it has none.
pub fn reset_from_transcript(path: &Path) -> Option<SystemTime> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TRANSCRIPT_TAIL)))
        .ok()?;
    let mut tail = String::new();
    file.read_to_string(&mut tail).ok()?;
    tail.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|entry| entry.get("error").and_then(Value::as_str) == Some("rate_limit"))
        .and_then(|entry| find_number(&entry, "resetsAt"))
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
}

/// The first number under `key` anywhere in `v`.
fn find_number(v: &Value, key: &str) -> Option<u64> {
    match v {
        Value::Object(map) => map
            .get(key)
            .and_then(Value::as_u64)
            .or_else(|| map.values().find_map(|x| find_number(x, key))),
        Value::Array(list) => list.iter().find_map(|x| find_number(x, key)),
        _ => None,
    }
}

/// When the agent may go on: the reset time, or `limits.wait` from `now`
/// without one, plus the agent's share of `limits.jitter`.
pub fn continue_at(
    reset: Option<SystemTime>,
    now: SystemTime,
    limits: &Limits,
    agent: &str,
) -> SystemTime {
    let base = reset.filter(|r| *r > now).unwrap_or(now + limits.wait);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    agent.hash(&mut h);
    let spread = limits.jitter.as_secs();
    base + Duration::from_secs(h.finish() % (spread + 1))
}

/// Asks the hub for a check-in that tells `agent` to continue at `at`.
pub async fn schedule_continue(agent: &str, at: SystemTime) {
    let wait = at
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs()
        .max(1);
    // From inside the agent's unit, so the hub takes it as the agent's own.
    let run = tokio::process::Command::new("torch")
        .args(["schedule", "self", "--in", &format!("{wait}s"), "--note"])
        .arg(CONTINUE_NOTE)
        .env("TORCH_AGENT", agent)
        .stdin(std::process::Stdio::null())
        .output();
    match tokio::time::timeout(SCHEDULE_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => {
            tracing::info!("a check-in in {wait} s will tell the agent to continue")
        }
        Ok(Ok(out)) => crate::report::raise(&format!(
            "cannot schedule the agent's continue check-in: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => crate::report::raise(&format!("cannot run torch schedule: {e}")),
        Err(_) => crate::report::raise(&format!("torch schedule took over {SCHEDULE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_time_comes_from_the_last_limit_in_the_transcript() {
        let dir = std::env::temp_dir().join(format!("torch-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.jsonl");
        // As Claude Code 2.1.332 wrote a usage limit (fields shortened).
        let lines = [
            r#"{"type":"user","message":{"content":"hi"}}"#,
            r#"{"type":"assistant","error":"rate_limit","apiError":"usage_limit_reached","apiErrorParams":{"rate_limit_info":{"status":"rejected","resetsAt":1795753323}}}"#,
            r#"{"type":"system","subtype":"x"}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        assert_eq!(
            reset_from_transcript(&path),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_753_323))
        );
        std::fs::write(&path, r#"{"error":"rate_limit","isApiErrorMessage":true}"#).unwrap();
        assert_eq!(reset_from_transcript(&path), None);
        assert_eq!(reset_from_transcript(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn continuing_waits_for_the_reset_or_the_default_plus_a_stable_jitter() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let limits = Limits {
            wait: Duration::from_secs(300),
            jitter: Duration::from_secs(60),
        };
        let later = now + Duration::from_secs(1000);
        let a = continue_at(Some(later), now, &limits, "dev1");
        assert!(a >= later && a <= later + Duration::from_secs(60));
        assert_eq!(a, continue_at(Some(later), now, &limits, "dev1"));
        let b = continue_at(None, now, &limits, "dev1");
        assert!(b >= now + Duration::from_secs(300));
        // A reset time already past counts as none.
        assert_eq!(continue_at(Some(now), now, &limits, "dev1"), b);
        let none = Limits {
            jitter: Duration::ZERO,
            ..limits
        };
        assert_eq!(
            continue_at(None, now, &none, "x"),
            now + Duration::from_secs(300)
        );
    }
}
