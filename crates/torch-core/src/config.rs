//! The fleet's configuration, `torch.toml`.
//!
//! Read from `/usr/lib/torch/torch.toml` (vendor) and then
//! `/etc/torch/torch.toml` (admin); a key in the admin file replaces the
//! vendor's, table by table. Unknown keys are errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::policy::PolicyMode;
use crate::profile::{builtin, ProfileRules};
use crate::{Profile, Role};

/// Message routing rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// `hierarchy` (default) or `open`.
    pub mode: PolicyMode,
}

/// Limits on spawning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Children one agent may have.
    pub max_children: usize,
    /// Depth of the tree (an orchestrator is depth 1).
    pub max_depth: usize,
    /// Agents in the fleet.
    pub max_fleet: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            max_children: 8,
            max_depth: 4,
            max_fleet: 50,
        }
    }
}

/// How the hub delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Hold messages while the agent's screen shows it working, asking or
    /// in trouble (see the profiles).
    pub hold_until_idle: bool,
    /// Per profile, whether a message is typed after its header (who sent
    /// it, its id); a profile left out keeps its built-in setting
    /// ([`Profile::default_envelope`]).
    pub envelope: BTreeMap<Profile, bool>,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            hold_until_idle: true,
            envelope: Profile::ALL
                .into_iter()
                .map(|p| (p, p.default_envelope()))
                .collect(),
        }
    }
}

/// The work ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ledger {
    /// Whether the hub gives open tasks to idle agents with the skills by
    /// itself (else agents claim them).
    pub route: bool,
    /// How long an agent may sit idle holding a task before it is nudged,
    /// and between nudges.
    #[serde(with = "duration_text")]
    pub stall_after: Duration,
    /// Nudges before its parent is told the task stalled.
    pub nudges: u32,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            route: true,
            stall_after: Duration::from_secs(600),
            nudges: 2,
        }
    }
}

/// The periodic commit of work in progress (`torch-autocommit.timer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Autocommit {
    /// Branches never committed to: names, or prefixes ending in `*`.
    pub protected_branches: Vec<String>,
}

impl Default for Autocommit {
    fn default() -> Self {
        Self {
            protected_branches: vec!["main".into(), "master".into(), "release/*".into()],
        }
    }
}

impl Autocommit {
    /// Whether `branch` is protected.
    pub fn protects(&self, branch: &str) -> bool {
        self.protected_branches
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => branch.starts_with(prefix),
                None => branch == p,
            })
    }
}

/// How long the hub keeps message history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Delivered and failed messages older than this are deleted (a
    /// duration such as `30d` or `12h`); queued ones are always kept.
    #[serde(with = "duration_text")]
    pub messages: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            messages: Duration::from_secs(30 * 86400),
        }
    }
}

/// Check-in schedules (`torch schedule`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedules {
    /// The shortest time between two firings of a recurring check-in
    /// (`--every`, or two elapses of an `--on-calendar` expression), as a
    /// duration (`1m`, `30s`); one-shot check-ins are not limited.
    #[serde(with = "duration_text")]
    pub min_interval: Duration,
}

impl Default for Schedules {
    fn default() -> Self {
        Self {
            min_interval: crate::schedule::DEFAULT_MIN_INTERVAL,
        }
    }
}

/// A duration in `torch.toml`, written as `torch schedule` takes it (`1m`).
/// How long an agent may wait on a question (`asking`) or sit in trouble
/// before its parent gets a message and the journal a `TORCH_ALERT=1`
/// warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Attention {
    /// Time an agent may ask before the alert.
    #[serde(with = "duration_text")]
    pub asking: Duration,
    /// Time an agent may be in trouble before the alert.
    #[serde(with = "duration_text")]
    pub trouble: Duration,
}

impl Default for Attention {
    fn default() -> Self {
        Self {
            asking: Duration::from_secs(600),
            trouble: Duration::from_secs(600),
        }
    }
}

/// Where alerts go besides the journal: `torch-alerts.service` posts each
/// to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// The URL (http or https) each alert is posted to as JSON; empty for
    /// none. Agents read `torch.toml`: a URL holding a secret belongs in
    /// `/etc/torch/alerts.env` (`TORCH_ALERTS_WEBHOOK=`), which wins.
    pub webhook: String,
    /// How long one try may take.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Tries per alert (the waits between them double from 1 s) before
    /// it is given up, with a line in the journal.
    pub tries: u32,
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            webhook: String::new(),
            timeout: Duration::from_secs(10),
            tries: 5,
        }
    }
}

/// What happens when an agent's CLI stops on a rate or usage limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// How long to wait when the CLI gives no reset time.
    #[serde(with = "duration_text")]
    pub wait: Duration,
    /// The most added to the reset time, spread over the agents by name,
    /// so a fleet limited together does not continue all at once.
    #[serde(with = "duration_text")]
    pub jitter: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(300),
            jitter: Duration::from_secs(60),
        }
    }
}

/// What the supervisor does when an agent's CLI asks permission to use a
/// tool (Claude Code's PermissionRequest hook).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermissionPolicy {
    /// Allow the tool at once.
    Approve,
    /// Refuse it at once (the CLI tells the model why).
    Deny,
    /// Leave the question on screen for `torch answer`, alerting the parent
    /// after `[attention] asking`.
    #[default]
    Escalate,
}

/// The permission policy, per role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Permissions {
    /// For roles not listed.
    pub default: PermissionPolicy,
    /// Per role (`engineer = "approve"`).
    pub roles: BTreeMap<Role, PermissionPolicy>,
}

impl Permissions {
    /// The policy for agents of `role`.
    pub fn for_role(&self, role: Role) -> PermissionPolicy {
        self.roles.get(&role).copied().unwrap_or(self.default)
    }
}

pub(crate) mod duration_text {
    use super::Duration;
    use crate::schedule::{format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// How far an agent reaches through the hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// Itself and the agents below it.
    #[default]
    Subtree,
    /// Every agent, as the operator.
    Fleet,
}

/// What agents of one role reach, beyond the default (their subtree).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleAccess {
    /// Reads: capture, inbox, messages, status, check-ins.
    pub sees: Reach,
    /// Acts: start, stop, restart, retire (never itself), answer (never
    /// for itself), unschedule.
    pub acts: Reach,
}

/// `[access]`: per role, widens what an agent may see and do through the
/// hub. Message routes and spawning ranks are not widened here (`[policy]`
/// governs routes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// Roles not listed reach their subtree only.
    pub roles: BTreeMap<Role, RoleAccess>,
}

impl Access {
    /// What agents of `role` reach.
    pub fn of(&self, role: Role) -> RoleAccess {
        self.roles.get(&role).copied().unwrap_or_default()
    }
}

/// The whole of `torch.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Routing.
    pub policy: Policy,
    /// What agents of each role may see and do through the hub.
    pub access: Access,
    /// The work ledger.
    pub ledger: Ledger,
    /// Spawning limits.
    pub quotas: Quotas,
    /// Delivery behaviour.
    pub delivery: Delivery,
    /// The periodic commit of work in progress.
    pub autocommit: Autocommit,
    /// How long history is kept.
    pub retention: Retention,
    /// Check-in schedules.
    pub schedules: Schedules,
    /// When a waiting agent's parent is told.
    pub attention: Attention,
    /// Where alerts go besides the journal.
    pub alerts: Alerts,
    /// Answers to an agent CLI's permission questions.
    pub permissions: Permissions,
    /// Continuing after rate and usage limits.
    pub limits: Limits,
    /// Replacements for the built-in profile rules, by profile name.
    pub profiles: BTreeMap<Profile, ProfileRules>,
    /// Pools of agents that grow and shrink with the work, by name.
    pub pools: BTreeMap<String, crate::pool::Pool>,
    /// This hub as one node of several, through Redis; alone without it.
    pub cluster: Option<Cluster>,
}

/// `[cluster]`: this hub is one node of a fleet on several machines, which
/// share a Redis-compatible server (`docs/cluster.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// This node's name; the hostname when not given.
    #[serde(default)]
    pub node: Option<String>,
    /// The server: `redis://[USER@]HOST[:PORT][/DB]`, with TLS
    /// `rediss://[USER@]HOST[:PORT][/DB]`, or `unix:///PATH?user=USER`. The
    /// password is never written here: it comes from the hub's systemd
    /// credential `redis-password`, else from `password_file`.
    pub redis: String,
    /// A file holding the Redis password, readable by the hub's user, for
    /// when no systemd credential gives it.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// With `rediss://`: the certificate authority (PEM) that signed the
    /// server's certificate; the system's trust store when not given.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// With `rediss://` and a server that asks for client certificates
    /// (`tls-auth-clients yes`): this node's certificate (PEM)...
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// ...and its private key (PEM), readable by the hub's user only.
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    /// Seconds between this node's heartbeats; a node unheard for three
    /// is lost.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
}

fn default_heartbeat_secs() -> u64 {
    5
}

impl Cluster {
    /// This node's name: `node`, else the hostname. The error says what
    /// to fix.
    pub fn node_name(&self) -> Result<String, String> {
        let name = match &self.node {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .map_err(|e| format!("[cluster] has no node and the hostname cannot be read ({e}); set node = \"NAME\""))?,
        };
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(format!(
                "[cluster] node {name:?}: use 1 to 63 letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(name)
    }
}

impl Config {
    /// The rules for `profile`: the configured ones, else the built-in.
    pub fn profile_rules(&self, profile: Profile) -> ProfileRules {
        self.profiles
            .get(&profile)
            .cloned()
            .unwrap_or_else(|| builtin(profile))
    }

    /// Whether messages to agents of `profile` are typed after their header.
    pub fn envelope(&self, profile: Profile) -> bool {
        self.delivery
            .envelope
            .get(&profile)
            .copied()
            .unwrap_or_else(|| profile.default_envelope())
    }
}

/// The files read, lowest priority first: the vendor's
/// `/usr/lib/torch/torch.toml`, the admin's `/etc/torch/torch.toml`, then
/// the drop-ins `*.toml` of `torch.toml.d/` in `/usr/lib/torch`,
/// `/run/torch` and `/etc/torch` in the order of their file names, a name
/// in `/etc` hiding the same name in `/run` and `/usr/lib` (as systemd's
/// drop-ins). `TORCH_CONFIG` names a single file instead, for development.
pub fn config_files() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("TORCH_CONFIG") {
        return vec![PathBuf::from(p)];
    }
    let mut files = vec![
        PathBuf::from("/usr/lib/torch/torch.toml"),
        PathBuf::from("/etc/torch/torch.toml"),
    ];
    files.extend(drop_ins(&[
        Path::new("/etc/torch/torch.toml.d"),
        Path::new("/run/torch/torch.toml.d"),
        Path::new("/usr/lib/torch/torch.toml.d"),
    ]));
    files
}

/// The `*.toml` files of `dirs` (highest priority first), one per name,
/// in name order.
pub fn drop_ins(dirs: &[&Path]) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "toml") {
                by_name.entry(e.file_name()).or_insert(path);
            }
        }
    }
    by_name.into_values().collect()
}

impl Config {
    /// Loads and merges `files`; missing files are skipped. The error is one
    /// line naming the file and line.
    pub fn load(files: &[PathBuf]) -> Result<Self, String> {
        let mut merged = toml::Table::new();
        for f in files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: cannot read: {e}", f.display())),
            };
            // Each file alone is a valid (partial) configuration: a bad key
            // or value is reported where it is written.
            toml::from_str::<Config>(&text).map_err(|e| parse_error(f, &text, &e))?;
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| parse_error(f, &text, &e))?;
            for (k, v) in table {
                match (merged.get_mut(&k), v) {
                    (Some(toml::Value::Table(old)), toml::Value::Table(new)) => old.extend(new),
                    (_, v) => {
                        merged.insert(k, v);
                    }
                }
            }
        }
        let which = files
            .iter()
            .rev()
            .find(|f| f.exists())
            .map_or(Path::new("torch.toml"), |p| p.as_path());
        let text = toml::to_string(&merged).map_err(|e| e.to_string())?;
        toml::from_str(&text)
            .map_err(|e| format!("{}: {}", which.display(), e.message().replace('\n', " ")))
    }
}

fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        .unwrap_or(1);
    format!(
        "{}:{line}: {}",
        path.display(),
        e.message().replace('\n', " ")
    )
}

#[cfg(test)]
mod attention_tests {
    use super::*;

    #[test]
    fn a_cluster_names_its_node_and_its_server() {
        let c: Config =
            toml::from_str("[cluster]\nnode = \"n-1\"\nredis = \"redis://r:6379\"\n").unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.node_name().unwrap(), "n-1");
        assert_eq!(cluster.heartbeat_secs, 5);
        let bad = Cluster {
            node: Some("a b".into()),
            ..cluster
        };
        assert!(bad.node_name().unwrap_err().contains("letters"));
        assert!(toml::from_str::<Config>("[cluster]\nnode = \"x\"\n").is_err());
        assert!(Config::default().cluster.is_none());
    }

    #[test]
    fn attention_and_permissions_read_per_role() {
        let c: Config = toml::from_str(
            "[attention]\nasking = \"2m\"\n[permissions]\ndefault = \"deny\"\n[permissions.roles]\nengineer = \"approve\"\n",
        )
        .unwrap();
        assert_eq!(c.attention.asking, Duration::from_secs(120));
        assert_eq!(c.attention.trouble, Duration::from_secs(600));
        assert_eq!(
            c.permissions.for_role(Role::Engineer),
            PermissionPolicy::Approve
        );
        assert_eq!(c.permissions.for_role(Role::Qa), PermissionPolicy::Deny);
        assert_eq!(
            Config::default().permissions.for_role(Role::Engineer),
            PermissionPolicy::Escalate
        );
        assert!(toml::from_str::<Config>("[permissions.roles]\nboss = \"approve\"\n").is_err());
    }

    #[test]
    fn access_widens_per_role_and_defaults_to_the_subtree() {
        let c: Config = toml::from_str(
            "[access.roles.project-manager]\nsees = \"fleet\"\n[access.roles.reviewer]\nsees = \"fleet\"\nacts = \"fleet\"\n",
        )
        .unwrap();
        let pm = c.access.of(Role::ProjectManager);
        assert_eq!((pm.sees, pm.acts), (Reach::Fleet, Reach::Subtree));
        assert_eq!(c.access.of(Role::Reviewer).acts, Reach::Fleet);
        assert_eq!(c.access.of(Role::Engineer), RoleAccess::default());
        assert_eq!(RoleAccess::default().sees, Reach::Subtree);
        assert!(toml::from_str::<Config>("[access.roles.engineer]\nsees = \"all\"\n").is_err());
        assert!(toml::from_str::<Config>("[access.roles.engineer]\nsend = \"fleet\"\n").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_branches() {
        let a = Autocommit::default();
        assert!(a.protects("main") && a.protects("release/1.2"));
        assert!(!a.protects("feature/x") && !a.protects("mainline"));
    }

    #[test]
    fn drop_ins_go_by_name_and_etc_hides_the_rest() {
        let dir = std::env::temp_dir().join(format!("torch-dropin-{}", std::process::id()));
        let (etc, run, lib) = (dir.join("etc"), dir.join("run"), dir.join("lib"));
        for (d, files) in [
            (&etc, &["20-b.toml", "README"][..]),
            (&run, &["20-b.toml", "30-c.toml"][..]),
            (&lib, &["10-a.toml"][..]),
        ] {
            std::fs::create_dir_all(d).unwrap();
            for f in files {
                std::fs::write(d.join(f), "").unwrap();
            }
        }
        let got = drop_ins(&[&etc, &run, &lib, &dir.join("missing")]);
        assert_eq!(
            got,
            [
                lib.join("10-a.toml"),
                etc.join("20-b.toml"),
                run.join("30-c.toml")
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn admin_overrides_vendor_key_by_key() {
        let dir = std::env::temp_dir().join(format!("torch-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (v, a) = (dir.join("vendor.toml"), dir.join("admin.toml"));
        std::fs::write(&v, "[quotas]\nmax_children = 3\nmax_depth = 2\n").unwrap();
        std::fs::write(&a, "[quotas]\nmax_depth = 5\n[policy]\nmode = \"open\"\n").unwrap();
        let c = Config::load(&[v.clone(), a.clone(), dir.join("missing.toml")]).unwrap();
        assert_eq!(c.quotas.max_children, 3);
        assert_eq!(c.quotas.max_depth, 5);
        assert_eq!(c.quotas.max_fleet, 50);
        assert_eq!(c.policy.mode, PolicyMode::Open);
        std::fs::write(
            &a,
            "[profiles.shell]\nidle = ['ready']\notherwise = \"unknown\"\n",
        )
        .unwrap();
        let c = Config::load(std::slice::from_ref(&a)).unwrap();
        let rules = c.profile_rules(crate::Profile::Shell);
        assert_eq!(rules.idle, ["ready"]);
        assert_eq!(rules.otherwise, Some(crate::profile::Activity::Unknown));
        assert_eq!(
            c.profile_rules(crate::Profile::Claude),
            builtin(crate::Profile::Claude)
        );
        let shipped =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/usr/lib/torch/torch.toml");
        assert_eq!(Config::load(&[shipped]).unwrap(), Config::default());
        assert!(!c.envelope(crate::Profile::Shell) && c.envelope(crate::Profile::Claude));
        std::fs::write(&a, "[delivery.envelope]\nshell = true\naider = false\n").unwrap();
        let c = Config::load(&[v.clone(), a.clone()]).unwrap();
        assert!(c.envelope(crate::Profile::Shell) && !c.envelope(crate::Profile::Aider));
        assert!(
            c.envelope(crate::Profile::Claude),
            "unlisted keeps its default"
        );
        assert!(c.delivery.hold_until_idle);
        std::fs::write(&a, "[schedules]\nmin_interval = \"1h30m\"\n").unwrap();
        let c = Config::load(std::slice::from_ref(&a)).unwrap();
        assert_eq!(c.schedules.min_interval, Duration::from_secs(5400));
        std::fs::write(&a, "[schedules]\nmin_interval = \"5 minutes\"\n").unwrap();
        let e = Config::load(std::slice::from_ref(&a)).unwrap_err();
        assert!(e.contains("bad duration \"5 minutes\""), "{e}");
        std::fs::write(&a, "[quotas]\nmax_dept = 5\n").unwrap();
        let e = Config::load(std::slice::from_ref(&a)).unwrap_err();
        assert!(e.contains("max_dept"), "{e}");
        std::fs::write(&a, "[quotas\n").unwrap();
        assert!(Config::load(std::slice::from_ref(&a))
            .unwrap_err()
            .contains(":1: "));
        std::fs::write(&a, "[retention]\nmessages = \"12h\"\n").unwrap();
        let c = Config::load(std::slice::from_ref(&a)).unwrap();
        assert_eq!(c.retention.messages.as_secs(), 12 * 3600);
        std::fs::write(&a, "[retention]\nmessages = \"forever\"\n").unwrap();
        let e = Config::load(&[a]).unwrap_err();
        assert!(e.contains("admin.toml:2: bad duration \"forever\""), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
