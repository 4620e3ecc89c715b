//! Renders the compatibility matrix of the real agent CLIs from the records the suite's
//! tests left (see `torch_tests::compat`), and checks or writes it in the document.
//!
//! torch-compat                 prints the matrix
//! torch-compat --check FILE    fails, printing the matrix, when FILE's differs
//! torch-compat --write FILE    puts the matrix in FILE

use std::fs;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use torch_tests::compat::{matrix, records_dir, replace_matrix};
use torch_tests::llm::ALL_CLIS;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("torch-compat: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let table = matrix(&ALL_CLIS, &records_dir())?;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => print!("{table}"),
        ["--check", file] => {
            let doc = fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
            if replace_matrix(&doc, &table)? != doc {
                eprintln!(
                    "torch-compat: the matrix in {file} is not what this run of the suite verified:\n\n{table}\n\
                     Put this one there with: target/debug/torch-compat --write {file}"
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("torch-compat: the matrix in {file} is what the suite verified");
        }
        ["--write", file] => {
            let doc = fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
            fs::write(file, replace_matrix(&doc, &table)?)
                .with_context(|| format!("writing {file}"))?;
            println!("torch-compat: wrote the matrix in {file}");
        }
        _ => bail!("usage: torch-compat [--check FILE | --write FILE]"),
    }
    Ok(ExitCode::SUCCESS)
}
