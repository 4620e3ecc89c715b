//! What Torch passes git when it commits an agent's work itself (autocommit,
//! and what a worktree holds when its agent is retired).

/// The arguments of `git commit` for a commit authored by `agent`, with
/// Torch as the committer: the repository's own identity may be unset.
pub fn commit_args<'a>(author: &'a str, message: &'a str) -> [&'a str; 10] {
    [
        "-c",
        "user.name=Torch",
        "-c",
        "user.email=torch@localhost",
        "commit",
        "--quiet",
        "--author",
        author,
        "-m",
        message,
    ]
}

/// The author line Torch gives an agent's commits.
pub fn author(agent: &str) -> String {
    format!("{agent} <{agent}@torch.invalid>")
}
