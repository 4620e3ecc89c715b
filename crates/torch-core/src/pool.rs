//! Pools: agents the hub spawns while tasks that they can do wait, and
//! retires once they have sat idle (`[pools.NAME]` in `torch.toml`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::duration_text;
use crate::definition::{check_skills, Profile, Role};
use crate::AgentName;

/// The most members a pool may have.
pub const MAX_MEMBERS: u32 = 100;

/// One pool: what its members are, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The members' role.
    #[serde(default)]
    pub role: Role,
    /// The agent the members report to.
    #[serde(default)]
    pub parent: Option<String>,
    /// Their working directory.
    pub workdir: PathBuf,
    /// What they can do: the tasks that make the pool grow ask for no
    /// other skill.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Their profile.
    #[serde(default)]
    pub profile: Profile,
    /// Their program (empty: the profile's default).
    #[serde(default)]
    pub command: Vec<String>,
    /// Tasks each takes at once.
    #[serde(default = "one")]
    pub capacity: u32,
    /// Whether each works in a git worktree of its own.
    #[serde(default)]
    pub worktree: bool,
    /// Members kept however idle.
    #[serde(default)]
    pub min: u32,
    /// Members at most.
    #[serde(default = "four")]
    pub max: u32,
    /// How long a task it could do waits before the pool grows.
    #[serde(default = "thirty_seconds", with = "duration_text")]
    pub scale_up_after: Duration,
    /// How long a member sits idle, holding no task, before it is retired
    /// (down to `min`).
    #[serde(default = "ten_minutes", with = "duration_text")]
    pub idle_retire_after: Duration,
    /// In a cluster, the nodes its members may run on (empty: this node
    /// only). The first of them that is not lost runs the pool, so every
    /// node listed gives it the same `[pools.NAME]`; members lost with
    /// their node are replaced on the others.
    #[serde(default)]
    pub nodes: Vec<String>,
}

fn one() -> u32 {
    1
}
fn four() -> u32 {
    4
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

impl Pool {
    /// Checks the pool named `name`; says what is wrong.
    pub fn check(&self, name: &str) -> Result<(), String> {
        member_name(name, MAX_MEMBERS)
            .map_err(|e| format!("pool {name:?}: its members' names would not do: {e}"))?;
        if self.max == 0 || self.max > MAX_MEMBERS || self.min > self.max {
            return Err(format!(
                "pool {name}: min ({}) and max ({}) must satisfy 0 <= min <= max, 1 <= max <= {MAX_MEMBERS}",
                self.min, self.max
            ));
        }
        if !self.workdir.is_absolute() {
            return Err(format!(
                "pool {name}: workdir {} must be an absolute path",
                self.workdir.display()
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if self.nodes[..i].contains(node) {
                return Err(format!("pool {name}: node {node} is listed twice in nodes"));
            }
        }
        check_skills(&self.skills, self.capacity).map_err(|e| format!("pool {name}: {e}"))
    }

    /// Whether a task asking for `skills` is one its members can do.
    pub fn can_do(&self, skills: &[String]) -> bool {
        skills.iter().all(|s| self.skills.contains(s))
    }
}

/// The name of member `n` of pool `pool`: `shop-dev-3`.
pub fn member_name(pool: &str, n: u32) -> Result<AgentName, String> {
    AgentName::parse(&format!("{pool}-{n}")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(text: &str) -> Pool {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let p = pool("workdir = \"/srv/shop\"\nskills = [\"rust\"]\n");
        assert_eq!((p.min, p.max, p.capacity), (0, 4, 1));
        assert_eq!(p.scale_up_after, Duration::from_secs(30));
        assert_eq!(p.idle_retire_after, Duration::from_secs(600));
        assert!(p.check("shop-dev").is_ok());
        assert!(p.can_do(&["rust".into()]) && p.can_do(&[]));
        assert!(!p.can_do(&["go".into()]));
        let e = pool("workdir = \"/srv\"\nmin = 5\nmax = 2\n")
            .check("p")
            .unwrap_err();
        assert!(e.contains("min (5) and max (2)"), "{e}");
        let e = pool("workdir = \"srv\"\n").check("p").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        let long = "a".repeat(27);
        let e = pool("workdir = \"/srv\"\n").check(&long).unwrap_err();
        assert!(e.contains("would not do"), "{e}");
        assert!(toml::from_str::<Pool>("workdir = \"/srv\"\nsize = 3\n").is_err());
        let spread = pool("workdir = \"/srv\"\nnodes = [\"a\", \"b\"]\n");
        assert_eq!(spread.nodes, ["a", "b"]);
        assert!(spread.check("p").is_ok());
        let e = pool("workdir = \"/srv\"\nnodes = [\"a\", \"a\"]\n")
            .check("p")
            .unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn members_are_numbered() {
        assert_eq!(member_name("shop-dev", 3).unwrap().as_str(), "shop-dev-3");
    }
}
