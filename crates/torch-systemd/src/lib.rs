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

    /// Runs a start, stop or restart job and waits until systemd finished it.
    pub async fn run_job(&self, kind: JobKind, unit: &str) -> Result<(), SystemdError> {
        // One subscription per connection; a long-lived daemon's second job
        // finds it in place.
        match self.manager.subscribe().await {
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
            other => other?,
        }
        let mut removed = self.manager.receive_job_removed().await?;
        let (verb, job) = match kind {
            JobKind::Start => ("start", self.manager.start_unit(unit, "replace").await?),
            JobKind::Stop => ("stop", self.manager.stop_unit(unit, "replace").await?),
            JobKind::Restart => ("restart", self.manager.restart_unit(unit, "replace").await?),
        };
        while let Some(signal) = removed.next().await {
            let args = signal.args()?;
            if args.job == job {
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
}
