//! `torch config check`: which files make the configuration, and what it
//! says once merged; an error names the file and the line.

use anyhow::{bail, Context, Result};
use torch_core::config::{config_files, Config};

/// Prints the files read and the merged configuration, or fails with the
/// first error.
pub fn run() -> Result<()> {
    let files = config_files();
    let config = match Config::load(&files) {
        Ok(c) => c,
        Err(e) => bail!("{e}"),
    };
    if let Some(cluster) = &config.cluster {
        cluster.node_name().map_err(anyhow::Error::msg)?;
    }
    println!("# Files read, lowest priority first:");
    for f in &files {
        let state = if f.exists() { "" } else { " (missing)" };
        println!("#   {}{state}", f.display());
    }
    println!("# The configuration they make:");
    print!(
        "{}",
        toml::to_string(&config).context("cannot print the configuration")?
    );
    Ok(())
}
