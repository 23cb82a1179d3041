//! The `stowage` binary: parse, run, map the error to an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::tune_allocator();
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("stowage: {err:#}");
            cli::exit_code(&err)
        }
    }
}
