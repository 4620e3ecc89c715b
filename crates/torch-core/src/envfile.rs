//! An agent's environment file: variables (an API key) that reach its
//! program without appearing in its command line, definition or journal.
//!
//! systemd reads the file as root (`EnvironmentFile=` in
//! `torch-agent@.service`) before it drops privileges. What users write is
//! a strict subset of systemd's syntax, read literally: `KEY=VALUE` lines,
//! blank lines and `#`/`;` comments; the value is everything after the
//! first `=` up to the end of the line, with no quote or escape processing.
//! [`EnvVars::render`] writes it back quoted the systemd way, so the
//! program gets exactly those bytes whatever they hold.
//!
//! Values are secrets: no error and no `Debug` output shows one.

use std::fmt;
use std::path::Path;

/// The largest environment file accepted, in bytes: enough for many keys
/// and certificates, small enough for one D-Bus call.
pub const MAX_ENV_FILE_BYTES: usize = 64 * 1024;

/// Names the supervisor or systemd set for the supervisor alone: from the
/// file they would cut the supervisor off from systemd or move its files.
const RESERVED: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "RUNTIME_DIRECTORY",
    "STATE_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
    "SYSTEMD_EXEC_PID",
    "MAINPID",
    "TMUX",
];

/// Prefixes reserved the same way: Torch's own settings, and the dynamic
/// loader's, which would run code inside the supervisor.
const RESERVED_PREFIXES: &[&str] = &["TORCH_", "LD_"];

/// Why an environment file was refused. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    /// The file is larger than [`MAX_ENV_FILE_BYTES`].
    #[error("the environment file has {0} bytes; the limit is {MAX_ENV_FILE_BYTES}: keep only the variables the agent needs")]
    TooLarge(usize),
    /// A line that is not a comment holds no `=`.
    #[error("line {0}: no '=': write KEY=VALUE (comments start with '#')")]
    NoEquals(usize),
    /// The text before `=` is not a portable variable name; not shown, as
    /// it may be part of a secret pasted in the wrong place.
    #[error("line {line}: the name before '=' is not a valid variable name: use ASCII letters, digits and '_', not starting with a digit{}", if *export { " (drop the `export`)" } else { "" })]
    BadName {
        /// The line, from 1.
        line: usize,
        /// Whether it starts with a shell's `export`.
        export: bool,
    },
    /// A name the supervisor needs for itself.
    #[error("line {0}: {1} is reserved for Torch's supervisor and systemd; choose another name")]
    Reserved(usize, String),
    /// The same name twice (systemd would keep the last silently).
    #[error("line {0}: {1} is set twice (first on line {2}); keep one")]
    Duplicate(usize, String, usize),
    /// A value starting with a quote: systemd and shells would strip it,
    /// this syntax keeps it.
    #[error("line {0}: the value of {1} starts with a quote; values are taken literally (quotes would stay part of it): write it without quotes")]
    Quoted(usize, String),
    /// A value holding a control character other than a tab.
    #[error("line {0}: the value of {1} holds a control character; only printable text and tabs are allowed")]
    Control(usize, String),
}

/// The variables of an environment file, in file order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvVars(Vec<(String, String)>);

/// Names only: values are secrets.
impl fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn reserved(name: &str) -> bool {
    RESERVED.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

impl EnvVars {
    /// Reads an environment file's text; errors name the line, never a value.
    pub fn parse(text: &str) -> Result<Self, EnvFileError> {
        if text.len() > MAX_ENV_FILE_BYTES {
            return Err(EnvFileError::TooLarge(text.len()));
        }
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut lines_of: Vec<usize> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_start();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or(EnvFileError::NoEquals(n))?;
            let key = key.trim_end();
            if !valid_name(key) {
                return Err(EnvFileError::BadName {
                    line: n,
                    export: key.starts_with("export "),
                });
            }
            if reserved(key) {
                return Err(EnvFileError::Reserved(n, key.into()));
            }
            if let Some(first) = vars.iter().position(|(k, _)| k == key) {
                return Err(EnvFileError::Duplicate(n, key.into(), lines_of[first]));
            }
            if value.starts_with(['"', '\'']) {
                return Err(EnvFileError::Quoted(n, key.into()));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(EnvFileError::Control(n, key.into()));
            }
            vars.push((key.into(), value.into()));
            lines_of.push(n);
        }
        Ok(EnvVars(vars))
    }

    /// The variables' names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// How many variables there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `name`, for the program that needs it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The file systemd reads: each value double-quoted, with the four
    /// characters systemd unescapes there (`"`, `\`, `` ` ``, `$`)
    /// backslash-escaped, so it reads back exactly the parsed value.
    pub fn render(&self) -> String {
        let mut out = String::from("# Written by Torch; systemd reads it (EnvironmentFile=).\n");
        for (k, v) in &self.0 {
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                if matches!(c, '"' | '\\' | '`' | '$') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push_str("\"\n");
        }
        out
    }
}

/// Writes `vars` to `path` for systemd, readable by the writer alone
/// (mode 0600 from the first byte), replacing any older file atomically so
/// systemd never reads half of one.
pub fn write_private(path: &Path, vars: &EnvVars) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // A leftover temporary file keeps its old mode through open().
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(vars.render().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Removes the environment file at `path`; one that is not there is fine.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_values_and_comments_literally() {
        let text = "# the API key\n\n  ; another comment\nSECRET_TOKEN=s3cr3t value\n_X=a=b \nEMPTY=\nTAB=\tx\r\n";
        let v = EnvVars::parse(text).unwrap();
        let names: Vec<&str> = v.names().collect();
        assert_eq!(names, ["SECRET_TOKEN", "_X", "EMPTY", "TAB"]);
        assert_eq!(v.get("SECRET_TOKEN"), Some("s3cr3t value"));
        assert_eq!(v.get("_X"), Some("a=b "));
        assert_eq!(v.get("EMPTY"), Some(""));
        assert_eq!(v.get("TAB"), Some("\tx"));
    }

    #[test]
    fn errors_name_the_line_and_never_the_value() {
        let cases = [
            ("A=1\njust-a-secret\n", EnvFileError::NoEquals(2)),
            (
                "1A=x\n",
                EnvFileError::BadName {
                    line: 1,
                    export: false,
                },
            ),
            (
                "sk-secret=x\n",
                EnvFileError::BadName {
                    line: 1,
                    export: false,
                },
            ),
            (
                "export A=x\n",
                EnvFileError::BadName {
                    line: 1,
                    export: true,
                },
            ),
            (
                "A B=x\n",
                EnvFileError::BadName {
                    line: 1,
                    export: false,
                },
            ),
            (
                "=x\n",
                EnvFileError::BadName {
                    line: 1,
                    export: false,
                },
            ),
            (
                "NOTIFY_SOCKET=x\n",
                EnvFileError::Reserved(1, "NOTIFY_SOCKET".into()),
            ),
            (
                "TORCH_AGENT=x\n",
                EnvFileError::Reserved(1, "TORCH_AGENT".into()),
            ),
            (
                "LD_PRELOAD=x\n",
                EnvFileError::Reserved(1, "LD_PRELOAD".into()),
            ),
            ("A=1\n#\nA=2\n", EnvFileError::Duplicate(3, "A".into(), 1)),
            ("A=\"hidden\"\n", EnvFileError::Quoted(1, "A".into())),
            ("A='hidden'\n", EnvFileError::Quoted(1, "A".into())),
            ("A=hid\x1bden\n", EnvFileError::Control(1, "A".into())),
        ];
        for (text, want) in cases {
            let got = EnvVars::parse(text).unwrap_err();
            assert_eq!(got, want, "{text:?}");
            let shown = got.to_string();
            assert!(
                !shown.contains("hid") && !shown.contains("secret"),
                "{shown}"
            );
        }
        let big = "A=".to_string() + &"x".repeat(MAX_ENV_FILE_BYTES);
        assert!(matches!(
            EnvVars::parse(&big),
            Err(EnvFileError::TooLarge(_))
        ));
    }

    #[test]
    fn written_for_its_owner_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("torch-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.env");
        let v = EnvVars::parse("KEY=v\n").unwrap();
        write_private(&path, &v).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), v.render());
        remove(&path).unwrap();
        remove(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_shows_names_only() {
        let v = EnvVars::parse("KEY=hidden\n").unwrap();
        assert_eq!(format!("{v:?}"), "[\"KEY\"]");
    }

    #[test]
    fn renders_what_systemd_reads_back_exactly() {
        let v = EnvVars::parse("A=s3cr3t value\nB=a\"b\\c`d$e'f\n").unwrap();
        assert_eq!(
            v.render().lines().skip(1).collect::<Vec<_>>(),
            ["A=\"s3cr3t value\"", "B=\"a\\\"b\\\\c\\`d\\$e'f\""]
        );
    }
}
