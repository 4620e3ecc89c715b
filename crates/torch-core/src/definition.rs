//! An agent's definition: `NAME.toml` in one of the definition directories.
//!
//! ```toml
//! command = ["claude", "--model", "opus"]   # argv, no shell
//! workdir = "/srv/shop"
//! role = "developer"
//! parent = "pm-shop"
//! profile = "claude"
//! ready_pattern = "> "      # optional: type only once the cursor line shows this
//! hang_after_secs = 600     # input unread this long = hung (0: never)
//! skills = ["rust", "review"]   # what it can do, for `torch agents --skill`
//! capacity = 1              # tasks it takes at once
//! [env]
//! RUST_LOG = "info"
//! ```
//!
//! The first file found wins whole (admin `/etc` over runtime `/run` over
//! vendor `/usr/lib`, as systemd does for units), so an admin overrides a
//! vendor agent by dropping a file, never by editing one. Unknown keys are
//! errors: a typo must not silently drop a setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AgentName;

/// The place of an agent in the fleet's hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Briefs project managers; top of the tree.
    Orchestrator,
    /// Briefs engineers of one project.
    ProjectManager,
    /// An engineer without a more specific kind.
    #[default]
    Engineer,
    /// Writes code.
    Developer,
    /// Tests.
    Qa,
    /// Builds and deploys.
    Devops,
    /// Reviews changes.
    Reviewer,
    /// Looks things up.
    Researcher,
    /// Writes documents.
    Writer,
}

impl Role {
    /// The name used in config files, the journal (`TORCH_ROLE=`) and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Orchestrator => "orchestrator",
            Role::ProjectManager => "project-manager",
            Role::Engineer => "engineer",
            Role::Developer => "developer",
            Role::Qa => "qa",
            Role::Devops => "devops",
            Role::Reviewer => "reviewer",
            Role::Researcher => "researcher",
            Role::Writer => "writer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "orchestrator" => Role::Orchestrator,
            "project-manager" | "pm" => Role::ProjectManager,
            "engineer" => Role::Engineer,
            "developer" | "dev" => Role::Developer,
            "qa" => Role::Qa,
            "devops" => Role::Devops,
            "reviewer" => Role::Reviewer,
            "researcher" => Role::Researcher,
            "writer" => Role::Writer,
            _ => return Err(format!("unknown role {s:?}; use orchestrator, project-manager, engineer, developer, qa, devops, reviewer, researcher or writer")),
        })
    }
}

/// Which terminal program the agent runs, so Torch can read its screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Claude Code.
    Claude,
    /// OpenAI Codex CLI.
    Codex,
    /// Gemini CLI.
    Gemini,
    /// opencode.
    Opencode,
    /// Aider.
    Aider,
    /// Any other terminal program.
    #[default]
    Shell,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 6] = [
        Profile::Claude,
        Profile::Codex,
        Profile::Gemini,
        Profile::Opencode,
        Profile::Aider,
        Profile::Shell,
    ];

    /// The profile's name in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Claude => "claude",
            Profile::Codex => "codex",
            Profile::Gemini => "gemini",
            Profile::Opencode => "opencode",
            Profile::Aider => "aider",
            Profile::Shell => "shell",
        }
    }

    /// Whether messages arrive after their header (`[torch message #3 from
    /// pm] ...`) unless `torch.toml` says otherwise: a shell would run the
    /// header as a command, so it gets the bare text.
    pub fn default_envelope(self) -> bool {
        self != Profile::Shell
    }

    /// Whether the profile's CLI reports its state through hooks that the
    /// supervisor installs (Claude Code, Gemini CLI, Codex CLI; opencode's
    /// plugin; Aider's input history and notifications), rather than only
    /// on its screen.
    pub fn has_hooks(self) -> bool {
        self != Profile::Shell
    }

    /// Whether the CLI reports its session only when it takes its first
    /// prompt (Codex CLI's SessionStart hook fires then; opencode makes its
    /// session then; Aider has none, and Torch says it began with the first
    /// prompt), so its hooks are trusted from the start rather than after a
    /// session report.
    pub fn reports_session_at_first_prompt(self) -> bool {
        matches!(self, Profile::Codex | Profile::Opencode | Profile::Aider)
    }

    /// The command run when a spawn gives none.
    pub fn default_command(self) -> Vec<String> {
        let argv: &[&str] = match self {
            Profile::Claude => &["claude"],
            Profile::Codex => &["codex"],
            Profile::Gemini => &["gemini"],
            Profile::Opencode => &["opencode"],
            Profile::Aider => &["aider"],
            Profile::Shell => &["bash", "-i"],
        };
        argv.iter().map(|s| s.to_string()).collect()
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "claude" => Profile::Claude,
            "codex" => Profile::Codex,
            "gemini" => Profile::Gemini,
            "opencode" => Profile::Opencode,
            "aider" => Profile::Aider,
            "shell" => Profile::Shell,
            _ => {
                return Err(format!(
                    "unknown profile {s:?}; use claude, codex, gemini, opencode, aider or shell"
                ))
            }
        })
    }
}

fn default_hang_after() -> u64 {
    600
}

fn default_true() -> bool {
    true
}

fn default_width() -> u16 {
    200
}

fn default_height() -> u16 {
    50
}

/// One agent, as its definition file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDefinition {
    /// The program and its arguments, run without a shell.
    pub command: Vec<String>,
    /// Working directory of the program; `/` when unset.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Extra environment for the program.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Place in the hierarchy.
    #[serde(default)]
    pub role: Role,
    /// The agent this one reports to.
    #[serde(default)]
    pub parent: Option<String>,
    /// The terminal program's kind.
    #[serde(default)]
    pub profile: Profile,
    /// Text the cursor line shows when the program waits for input.
    #[serde(default)]
    pub ready_pattern: Option<String>,
    /// Seconds that typed input may wait unread before the program counts
    /// as hung (the supervisor stops it and systemd restarts it); 0 turns it off.
    /// Generous by default: a shell agent running a long build in the
    /// foreground does not read its input either.
    #[serde(default = "default_hang_after")]
    pub hang_after_secs: u64,
    /// Whether the periodic autocommit may commit this agent's project
    /// (any agent of a project saying no opts the whole project out).
    #[serde(default = "default_true")]
    pub autocommit: bool,
    /// Pane width in columns.
    #[serde(default = "default_width")]
    pub width: u16,
    /// Pane height in rows.
    #[serde(default = "default_height")]
    pub height: u16,
    /// What it can do (`rust`, `frontend`, `review`), so that peers and
    /// the hub find it by skill.
    #[serde(default)]
    pub skills: Vec<String>,
    /// How many tasks it takes at once.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Work in a git worktree of its own instead of `workdir` itself: a
    /// worktree of `workdir`'s repository on the branch `torch/NAME`, made
    /// at the first start from its parent's branch.
    #[serde(default)]
    pub worktree: bool,
    /// The pool (`[pools.NAME]` in torch.toml) that the hub spawned it
    /// for, and retires it from when it is idle.
    #[serde(default)]
    pub pool: Option<String>,
}

fn default_capacity() -> u32 {
    1
}

/// The most skills one agent declares.
pub const MAX_SKILLS: usize = 32;
/// The most tasks one agent takes at once.
pub const MAX_CAPACITY: u32 = 100;

/// Checks one skill: 1 to 32 characters, lowercase letters, digits and
/// `-_.+#` (`c++`, `c#`), starting with a letter or digit, so that a skill
/// is written one way only.
pub fn check_skill(skill: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.+#".contains(c);
    let starts_well = skill
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if skill.len() > 32 || !starts_well || !skill.chars().all(ok_char) {
        return Err(format!(
            "skill {skill:?} must be 1 to 32 lowercase letters, digits or -_.+#, starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a definition's skills and capacity.
pub fn check_skills(skills: &[String], capacity: u32) -> Result<(), String> {
    if skills.len() > MAX_SKILLS {
        return Err(format!(
            "{} skills; the limit is {MAX_SKILLS}",
            skills.len()
        ));
    }
    for s in skills {
        check_skill(s).map_err(|e| format!("`skills`: {e}"))?;
    }
    if !(1..=MAX_CAPACITY).contains(&capacity) {
        return Err(format!(
            "`capacity` {capacity} is out of range (1-{MAX_CAPACITY})"
        ));
    }
    Ok(())
}

/// A definition file found by [`discover`].
#[derive(Debug, Clone)]
pub struct Found {
    /// The agent, from the file name.
    pub name: AgentName,
    /// The file.
    pub path: PathBuf,
    /// Its contents, or the one-line reason they are unusable.
    pub def: Result<AgentDefinition, String>,
}

/// Every agent defined in `dirs` (first directory wins for a name), broken
/// definitions included. Files that are not `VALID-NAME.toml` are ignored.
pub fn discover(dirs: &[PathBuf]) -> BTreeMap<String, Found> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Some(name) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| AgentName::parse(s).ok())
            else {
                continue;
            };
            if out.contains_key(name.as_str()) {
                continue;
            }
            let def = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: cannot read agent definition: {e}", path.display()))
                .and_then(|t| AgentDefinition::parse(&path, &t).map_err(|e| e.to_string()));
            out.insert(name.to_string(), Found { name, path, def });
        }
    }
    out
}

/// Why a definition could not be used. Each message is one line naming the
/// file and, where there is one, the line.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// No file for this agent in any definition directory.
    #[error("no definition for agent {name:?}: create {} (searched {})", .searched.first().map(|p| p.display().to_string()).unwrap_or_default(), .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// The agent.
        name: String,
        /// The files looked for, highest priority first.
        searched: Vec<PathBuf>,
    },
    /// The file exists but could not be read.
    #[error("{}: cannot read agent definition: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{}:{line}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file parses but a value is unusable.
    #[error("{}: {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl AgentDefinition {
    /// Finds and loads the definition of `name` from `dirs`, first match wins.
    pub fn find(name: &AgentName, dirs: &[PathBuf]) -> Result<(PathBuf, Self), DefinitionError> {
        let file = format!("{}.toml", name.as_str());
        let searched: Vec<PathBuf> = dirs.iter().map(|d| d.join(&file)).collect();
        for path in &searched {
            match std::fs::read_to_string(path) {
                Ok(text) => return Self::parse(path, &text).map(|d| (path.clone(), d)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(DefinitionError::Io {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        Err(DefinitionError::NotFound {
            name: name.to_string(),
            searched,
        })
    }

    /// Parses and checks the text of a definition file.
    pub fn parse(path: &Path, text: &str) -> Result<Self, DefinitionError> {
        let def: Self = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            DefinitionError::Parse {
                path: path.to_path_buf(),
                line,
                message: e.message().replace('\n', " "),
            }
        })?;
        def.check().map_err(|message| DefinitionError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(def)
    }

    fn check(&self) -> Result<(), String> {
        match self.command.first() {
            None => return Err("`command` is empty; give the program and its arguments, e.g. command = [\"claude\"]".into()),
            Some(p) if p.trim().is_empty() => return Err("`command` starts with an empty program name".into()),
            _ => {}
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err("`command` contains a NUL byte".into());
        }
        if let Some(w) = &self.workdir {
            if !w.is_absolute() {
                return Err(format!(
                    "`workdir` {:?} must be an absolute path",
                    w.display().to_string()
                ));
            }
        }
        for (k, v) in &self.env {
            let ok = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!(
                    "`env` key {k:?} is not a valid variable name (letters, digits, '_')"
                ));
            }
            if k.starts_with("TORCH_") || k == "NOTIFY_SOCKET" {
                return Err(format!("`env` key {k:?} is set by Torch itself; remove it"));
            }
            if v.contains('\0') {
                return Err(format!("`env` value of {k:?} contains a NUL byte"));
            }
        }
        if let Some(p) = &self.parent {
            AgentName::parse(p).map_err(|e| format!("`parent`: {e}"))?;
        }
        if !(20..=1000).contains(&self.width) || !(5..=500).contains(&self.height) {
            return Err(format!(
                "pane size {}x{} is out of range (width 20-1000, height 5-500)",
                self.width, self.height
            ));
        }
        if matches!(&self.ready_pattern, Some(p) if p.trim().is_empty()) {
            return Err("`ready_pattern` is blank; remove it or give visible text".into());
        }
        check_skills(&self.skills, self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentDefinition, DefinitionError> {
        AgentDefinition::parse(Path::new("/etc/torch/agents/x.toml"), text)
    }

    #[test]
    fn minimal_definition_gets_defaults() {
        let d = parse("command = [\"bash\"]\n").unwrap();
        assert_eq!(d.role, Role::Engineer);
        assert_eq!(d.profile, Profile::Shell);
        assert_eq!((d.width, d.height), (200, 50));
        assert_eq!(d.hang_after_secs, 600);
    }

    #[test]
    fn full_definition_parses() {
        let d = parse(
            "command = [\"claude\", \"--x\"]\nworkdir = \"/srv\"\nrole = \"project-manager\"\nparent = \"boss\"\nprofile = \"claude\"\n[env]\nA_B = \"1\"\n",
        )
        .unwrap();
        assert_eq!(d.role, Role::ProjectManager);
        assert_eq!(d.env.get("A_B").map(String::as_str), Some("1"));
    }

    #[test]
    fn errors_name_file_and_line_on_one_line() {
        let e = parse("command = [\"bash\"]\n\ncomand = 1\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("/etc/torch/agents/x.toml:3: "), "{msg}");
        assert!(msg.contains("comand"), "{msg}");
        assert!(!msg.contains('\n'));
        let e = parse("command = [\"bash\"\n").unwrap_err().to_string();
        assert!(e.starts_with("/etc/torch/agents/x.toml:"), "{e}");
        let e = parse("command = [\"bash\"]\nrole = \"boss\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2: "), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse("command = []\n").is_err());
        assert!(parse("command = [\"a\"]\nworkdir = \"rel\"\n").is_err());
        assert!(parse("command = [\"a\"]\n[env]\nTORCH_AGENT = \"x\"\n").is_err());
        assert!(parse("command = [\"a\"]\n[env]\n\"A B\" = \"x\"\n").is_err());
        assert!(parse("command = [\"a\"]\nparent = \"a b\"\n").is_err());
        assert!(parse("command = [\"a\"]\nwidth = 5\n").is_err());
        let d =
            parse("command = [\"a\"]\nskills = [\"rust\", \"c++\", \"review\"]\ncapacity = 3\n")
                .unwrap();
        assert_eq!((d.skills.len(), d.capacity), (3, 3));
        assert_eq!(parse("command = [\"a\"]\n").unwrap().capacity, 1);
        for bad in [
            "skills = [\"Rust\"]",
            "skills = [\"\"]",
            "skills = [\"a b\"]",
            "skills = [\"-x\"]",
            "capacity = 0",
        ] {
            assert!(
                parse(&format!("command = [\"a\"]\n{bad}\n")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn first_directory_wins_and_missing_is_explained() {
        let base = std::env::temp_dir().join(format!("torch-def-{}", std::process::id()));
        let (a, b) = (base.join("etc"), base.join("lib"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("x.toml"), "command = [\"vendor\"]\n").unwrap();
        let name = AgentName::parse("x").unwrap();
        let dirs = vec![a.clone(), b.clone()];
        assert_eq!(
            AgentDefinition::find(&name, &dirs).unwrap().1.command,
            ["vendor"]
        );
        std::fs::write(a.join("x.toml"), "command = [\"admin\"]\n").unwrap();
        assert_eq!(
            AgentDefinition::find(&name, &dirs).unwrap().1.command,
            ["admin"]
        );
        let missing = AgentName::parse("nobody").unwrap();
        let e = AgentDefinition::find(&missing, &dirs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nobody.toml"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
