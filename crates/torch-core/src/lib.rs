//! Torch's shared vocabulary, used by the supervisor, the hub and the CLI.
//!
//! Everything here is pure: no I/O beyond reading an agent definition file,
//! writing an agent's environment file and talking to a supervisor's
//! control socket, so each rule (what a valid agent name is, what a message
//! may contain, what a definition holds) lives in exactly one place and is
//! unit-tested without a running system.

pub mod config;
pub mod definition;
pub mod envfile;
pub mod git;
pub mod hooks;
pub mod message;
pub mod name;
pub mod paths;
pub mod policy;
pub mod pool;
pub mod profile;
pub mod protocol;
pub mod schedule;

pub use definition::{AgentDefinition, DefinitionError, Profile, Role};
pub use envfile::{EnvFileError, EnvVars};
pub use message::{validate_message, MessageError, MAX_MESSAGE_BYTES};
pub use name::{AgentName, NameError};
