//! Torch's systemd layer: org.freedesktop.systemd1 over D-Bus.
//!
//! Torch talks to systemd through its D-Bus API, never by running
//! `systemctl`: typed calls, real errors, and job results we can wait for.

use futures_util::StreamExt;
use zbus::zvariant::OwnedObjectPath;

/// One row of `ListUnitsByPatterns`.
pub type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

/// The parts of `org.freedesktop.systemd1.Manager` Torch uses.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    /// Loaded units whose names match the glob patterns.
    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<Vec<UnitRow>>;
    /// Queues a start job.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queues a stop job.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queues a restart job.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// The unit a process belongs to.
    #[zbus(name = "GetUnitByPID")]
    fn get_unit_by_pid(&self, pid: u32) -> zbus::Result<OwnedObjectPath>;
    /// The object path of a loaded unit (NoSuchUnit when not loaded).
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    /// When the service manager started, microseconds since the epoch: a
    /// new value means a new boot.
    #[zbus(property, name = "UserspaceTimestamp")]
    fn userspace_timestamp(&self) -> zbus::Result<u64>;
    /// Asks systemd to emit job and unit signals to us.
    fn subscribe(&self) -> zbus::Result<()>;
    /// A job finished; `result` is `done` on success.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// The generic unit interface.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Unit {
    /// The unit's name.
    #[zbus(property)]
    fn id(&self) -> zbus::Result<String>;
}

/// A service unit's restart count.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Service {
    /// Restarts systemd made since the unit was last started by hand.
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
}

/// A timer unit's next elapse times.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Timer",
    default_service = "org.freedesktop.systemd1"
)]
pub trait Timer {
    /// Next elapse on the wall clock (calendar timers), microseconds since the epoch; 0 if none.
    #[zbus(property, name = "NextElapseUSecRealtime")]
    fn next_elapse_usec_realtime(&self) -> zbus::Result<u64>;
    /// Next elapse on the monotonic clock (relative timers), microseconds; 0 if none.
    #[zbus(property, name = "NextElapseUSecMonotonic")]
    fn next_elapse_usec_monotonic(&self) -> zbus::Result<u64>;
}

/// Why a systemd call failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// The bus or systemd refused or failed the call.
    #[error("systemd D-Bus call failed: {0} (is systemd running, and are you root or in the torch group?)")]
    Bus(#[from] zbus::Error),
    /// The job ran and did not succeed.
    #[error("{verb} {unit} finished with result '{result}'; see `journalctl -u {unit}`")]
    Job {
        /// start, stop, restart.
        verb: &'static str,
        /// The unit.
        unit: String,
        /// systemd's job result (failed, timeout, dependency, ...).
        result: String,
    },
}

/// A unit's name and states as systemd reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnitState {
    /// Unit name.
    pub name: String,
    /// loaded, not-found, masked...
    pub load: String,
    /// active, inactive, failed, activating...
    pub active: String,
    /// The type-specific sub-state (running, dead, auto-restart...).
    pub sub: String,
}

/// A connection to the system's service manager.
pub struct Systemd {
    manager: ManagerProxy<'static>,
}

/// A unit operation that queues a job.
#[derive(Debug, Clone, Copy)]
pub enum JobKind {
    /// StartUnit.
    Start,
    /// StopUnit.
    Stop,
    /// RestartUnit.
    Restart,
}

impl Systemd {
    /// Connects to systemd on the system bus.
    pub async fn system() -> Result<Self, SystemdError> {
        let conn = zbus::Connection::system().await?;
        Ok(Self {
            manager: ManagerProxy::new(&conn).await?,
        })
    }

    /// Uses an existing system-bus connection.
    pub async fn with_connection(conn: &zbus::Connection) -> Result<Self, SystemdError> {
        Ok(Self {
            manager: ManagerProxy::new(conn).await?,
        })
    }

    /// Loaded units matching `pattern`, e.g. `torch-agent@*.service`.
    pub async fn list(&self, pattern: &str) -> Result<Vec<UnitState>, SystemdError> {
        let rows = self.manager.list_units_by_patterns(&[], &[pattern]).await?;
        Ok(rows
            .into_iter()
            .map(|r| UnitState {
                name: r.0,
                load: r.2,
                active: r.3,
                sub: r.4,
            })
            .collect())
    }

    /// The name of the unit process `pid` runs in.
    pub async fn unit_of_pid(&self, pid: u32) -> Result<String, SystemdError> {
        let path = self.manager.get_unit_by_pid(pid).await?;
        let unit = UnitProxy::builder(self.manager.inner().connection())
            .path(path)?
            .build()
            .await?;
        Ok(unit.id().await?)
    }

    /// A value that changes with each boot of the service manager (the
    /// wall-clock time it started; unlike the kernel's boot id, it changes
    /// when a container's systemd starts again too).
    pub async fn boot_stamp(&self) -> Result<u64, SystemdError> {
        Ok(self.manager.userspace_timestamp().await?)
    }

    /// Whether `unit` is loaded.
    pub async fn loaded(&self, unit: &str) -> bool {
        self.manager.get_unit(unit).await.is_ok()
    }

    /// When the timer `unit` fires next, in Unix microseconds.
    pub async fn next_elapse(&self, unit: &str) -> Result<Option<u64>, SystemdError> {
        let path = self.manager.get_unit(unit).await?;
        let timer = TimerProxy::builder(self.manager.inner().connection())
            .path(path)?
            .build()
            .await?;
        let real = timer.next_elapse_usec_realtime().await?;
        if real != 0 && real != u64::MAX {
            return Ok(Some(real));
        }
        let mono = timer.next_elapse_usec_monotonic().await?;
        if mono == 0 || mono == u64::MAX {
            return Ok(None);
        }
        let now_mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map_err(|e| zbus::Error::Failure(e.to_string()))?;
        let now_mono_us = now_mono.tv_sec() as u64 * 1_000_000 + now_mono.tv_nsec() as u64 / 1000;
        let now_real_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Ok(Some(now_real_us + mono.saturating_sub(now_mono_us)))
    }

    /// How many times systemd restarted the service `unit` (after a
    /// crash, a watchdog timeout) since it was last started by hand.
    pub async fn restarts(&self, unit: &str) -> Result<u32, SystemdError> {
        let path = self.manager.get_unit(unit).await?;
        // One property read: no cache (a cache would subscribe to the
        // unit's changes and read all its properties first).
        let service = ServiceProxy::builder(self.manager.inner().connection())
            .path(path)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        Ok(service.n_restarts().await?)
    }

    async fn subscribe(&self) -> Result<(), SystemdError> {
        // One subscription per connection; a long-lived daemon's second job
        // finds it in place.
        match self.manager.subscribe().await {
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" =>
            {
                Ok(())
            }
            other => Ok(other?),
        }
    }

    /// Runs a start, stop or restart job and waits until systemd finished it.
    pub async fn run_job(&self, kind: JobKind, unit: &str) -> Result<(), SystemdError> {
        self.subscribe().await?;
        let mut removed = self.manager.receive_job_removed().await?;
        let (verb, job) = match kind {
            JobKind::Start => ("start", self.manager.start_unit(unit, "replace").await?),
            JobKind::Stop => ("stop", self.manager.stop_unit(unit, "replace").await?),
            JobKind::Restart => ("restart", self.manager.restart_unit(unit, "replace").await?),
        };
        wait_job(&mut removed, &job, verb, unit).await
    }
}

/// Escapes `s` for use as a unit instance name, as `systemd-escape` does:
/// ASCII letters, digits, `:`, `_` and `.` stay (but a leading `.`), `/`
/// becomes `-`, every other byte becomes `\xNN`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.') => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Waits for `job` to leave systemd's queue and reports its result.
async fn wait_job(
    removed: &mut JobRemovedStream,
    job: &OwnedObjectPath,
    verb: &'static str,
    unit: &str,
) -> Result<(), SystemdError> {
    while let Some(signal) = removed.next().await {
        let args = signal.args()?;
        if args.job == *job {
            if args.result == "done" {
                return Ok(());
            }
            return Err(SystemdError::Job {
                verb,
                unit: unit.to_string(),
                result: args.result,
            });
        }
    }
    Err(SystemdError::Bus(zbus::Error::Failure(
        "systemd closed the signal stream".into(),
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_matches_systemd_escape() {
        assert_eq!(
            super::escape("2026-11-25 17:14:09 UTC"),
            "2026\\x2d11\\x2d25\\x2017:14:09\\x20UTC"
        );
        assert_eq!(super::escape(".a/b"), "\\x2ea-b");
    }
}
