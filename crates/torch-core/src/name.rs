//! Agent names and how they map onto systemd units and tmux sessions.
//!
//! A name is what users type (`torch send backend-dev ...`), what systemd sees
//! as the instance of `torch-agent@.service`, and what the pane exports as
//! `TORCH_AGENT`. Plain names (ASCII letters, digits, `-`, `_`, `.`) are used
//! verbatim as the unit instance. Other letters (e.g. `développeur`) are kept
//! but escaped the systemd way (`\xNN` per byte, as `systemd-escape` does), so
//! `%I` in the unit gives the original name back.

use std::fmt;

/// The longest unit instance (the name escaped the systemd way) we accept,
/// in bytes: each agent runs as its own system user, named `ta-INSTANCE`
/// (see [`crate::paths::agent_user`]), and `useradd` takes user names of at
/// most 32 bytes. (Its sockets' paths, `/run/torch-agent/INSTANCE/...`,
/// would allow 77.)
pub const MAX_INSTANCE_BYTES: usize = 32 - crate::paths::AGENT_USER_PREFIX.len();

/// The longest agent name we accept, in characters: a plain name is its own
/// instance.
pub const MAX_NAME_CHARS: usize = MAX_INSTANCE_BYTES;

/// Names with a meaning of their own in Torch's CLI and messaging.
const RESERVED: &[&str] = &["self", "operator", "all", "torch", "hub"];

/// Why a string is not a valid agent name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("agent name is empty; use letters, digits, '-', '_' or '.'")]
    Empty,
    /// The name is longer than [`MAX_NAME_CHARS`].
    #[error("agent name is {0} characters long; the limit is {MAX_NAME_CHARS}")]
    TooLong(usize),
    /// The name is too long once escaped for systemd.
    #[error("agent name {name:?} takes {len} bytes in its unit name (each byte of a non-ASCII letter is written \\xNN there); the limit is {MAX_INSTANCE_BYTES}, as it also names the agent's system user; choose a shorter name")]
    TooLongEscaped {
        /// The refused name.
        name: String,
        /// The length of its escaped form.
        len: usize,
    },
    /// The name holds a character that is not allowed.
    #[error("agent name {name:?} contains {ch:?}; use letters, digits, '-', '_' or '.'")]
    BadChar {
        /// The refused name.
        name: String,
        /// The first character that is not allowed.
        ch: char,
    },
    /// The name does not start with a letter or digit.
    #[error("agent name {0:?} must start with a letter or a digit")]
    BadStart(String),
    /// The name is reserved by Torch.
    #[error("agent name {0:?} is reserved by Torch; choose another")]
    Reserved(String),
}

/// A validated agent name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentName(String);

impl AgentName {
    /// Checks `s` against the naming rules.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let count = s.chars().count();
        let first = s.chars().next().ok_or(NameError::Empty)?;
        if count > MAX_NAME_CHARS {
            return Err(NameError::TooLong(count));
        }
        if let Some(ch) = s
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(NameError::BadChar {
                name: s.to_string(),
                ch,
            });
        }
        if !first.is_alphanumeric() {
            return Err(NameError::BadStart(s.to_string()));
        }
        if RESERVED.contains(&s) {
            return Err(NameError::Reserved(s.to_string()));
        }
        let name = Self(s.to_string());
        let len = name.instance().len();
        if len > MAX_INSTANCE_BYTES {
            return Err(NameError::TooLongEscaped {
                name: s.to_string(),
                len,
            });
        }
        Ok(name)
    }

    /// The name as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The systemd instance string: plain bytes kept, others `\xNN`-escaped.
    pub fn instance(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        out
    }

    /// The agent's unit, e.g. `torch-agent@backend-dev.service`.
    pub fn unit(&self) -> String {
        format!("torch-agent@{}.service", self.instance())
    }

    /// The tmux session name; tmux itself rewrites `.` and `:` in names.
    pub fn tmux_session(&self) -> String {
        self.0.replace('.', "_")
    }

    /// Recovers an agent name from a `torch-agent@INSTANCE.service` unit name.
    pub fn from_unit(unit: &str) -> Option<Self> {
        let inst = unit
            .strip_prefix("torch-agent@")?
            .strip_suffix(".service")?;
        Self::from_instance(inst).ok()
    }

    /// Recovers an agent name from a unit instance string (`%i`): `\xNN`
    /// sequences are decoded, everything else is taken as it is. (`%I` is no
    /// use here: systemd's own unescaping turns `-` into `/`.)
    pub fn from_instance(inst: &str) -> Result<Self, NameError> {
        let raw = inst.as_bytes();
        let mut bytes = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let hex = (raw[i] == b'\\' && raw.get(i + 1) == Some(&b'x'))
                .then(|| raw.get(i + 2..i + 4))
                .flatten()
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    bytes.push(b);
                    i += 4;
                }
                None => {
                    bytes.push(raw[i]);
                    i += 1;
                }
            }
        }
        Self::parse(&String::from_utf8_lossy(&bytes))
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AgentName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_map_verbatim() {
        let n = AgentName::parse("backend-dev_2.x").unwrap();
        assert_eq!(n.unit(), "torch-agent@backend-dev_2.x.service");
        assert_eq!(n.tmux_session(), "backend-dev_2_x");
    }

    #[test]
    fn unicode_names_are_escaped_like_systemd_escape() {
        let n = AgentName::parse("dév").unwrap();
        assert_eq!(n.instance(), "d\\xc3\\xa9v");
        assert_eq!(AgentName::from_unit(&n.unit()), Some(n.clone()));
        assert_eq!(AgentName::from_instance("d\\xc3\\xa9v"), Ok(n));
        // systemd-escape's spelling of '-' decodes to the same agent.
        assert_eq!(
            AgentName::from_instance("a\\x2db").map(|n| n.instance()),
            Ok("a-b".to_string())
        );
        assert!(AgentName::from_instance("a\\x2fb").is_err());
    }

    #[test]
    fn bad_names_are_refused_with_reasons() {
        assert_eq!(AgentName::parse(""), Err(NameError::Empty));
        assert!(matches!(
            AgentName::parse("a b"),
            Err(NameError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            AgentName::parse("a/b"),
            Err(NameError::BadChar { ch: '/', .. })
        ));
        assert!(matches!(
            AgentName::parse("x;rm"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            AgentName::parse("-x"),
            Err(NameError::BadStart(_))
        ));
        assert!(matches!(
            AgentName::parse(".x"),
            Err(NameError::BadStart(_))
        ));
        assert!(matches!(
            AgentName::parse("self"),
            Err(NameError::Reserved(_))
        ));
        assert!(matches!(
            AgentName::parse(&"a".repeat(30)),
            Err(NameError::TooLong(30))
        ));
        assert!(AgentName::parse(&"a".repeat(29)).is_ok());
    }

    #[test]
    fn names_whose_user_names_would_not_fit_are_refused() {
        assert_eq!(MAX_INSTANCE_BYTES, 29);
        // Each CJK letter is 3 bytes, 12 once escaped.
        let longest = format!("{}abcde", "数".repeat(2));
        let name = AgentName::parse(&longest).unwrap();
        assert_eq!(crate::paths::agent_user(&name).len(), 32);
        let e = AgentName::parse(&"数".repeat(3)).unwrap_err();
        assert_eq!(
            e,
            NameError::TooLongEscaped {
                name: "数".repeat(3),
                len: 36
            }
        );
        assert!(e.to_string().contains("the limit is 29"), "{e}");
    }

    #[test]
    fn from_unit_rejects_foreign_units() {
        assert_eq!(AgentName::from_unit("sshd.service"), None);
        assert_eq!(
            AgentName::from_unit("torch-agent@x.service"),
            Some(AgentName::parse("x").unwrap())
        );
    }
}
