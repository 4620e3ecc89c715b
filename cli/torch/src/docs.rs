//! `torch generate-docs DIR`: man pages (one per subcommand) and shell
//! completions, generated from the clap definitions when the packages are
//! built (scripts/package.sh), so they never drift from the parser.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::Cli;

/// Writes `man/torch.1`, `man/torch-SUB.1` and `completions/{torch.bash,_torch,torch.fish}` under `dir`.
pub fn generate(dir: &Path) -> Result<()> {
    let man = dir.join("man");
    let comp = dir.join("completions");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    std::fs::create_dir_all(&comp).with_context(|| format!("cannot create {}", comp.display()))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man).context("cannot write the man pages")?;
    for (shell, file) in [
        (Shell::Bash, "torch.bash"),
        (Shell::Zsh, "_torch"),
        (Shell::Fish, "torch.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "torch", &mut out);
        std::fs::write(comp.join(file), out)
            .with_context(|| format!("cannot write the {shell} completion"))?;
    }
    Ok(())
}
