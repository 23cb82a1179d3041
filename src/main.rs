//! The `stowage` binary: parse, run, map the error to an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::tune_allocator();
    // restore_command reads exit 1–125 as "not archived" and ends recovery there, so for
    // wal-fetch every failure to answer (a bad flag, an unreadable settings file, a bug)
    // must exit above 125 instead (reference/postgresql.md §7).
    let fetching = std::env::args_os().any(|a| a == "wal-fetch");
    if fetching {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("stowage: internal error: {info}");
            std::process::exit(i32::from(cli::wal::EXIT_CANNOT_TELL));
        }));
    }
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) if fetching && e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(cli::wal::EXIT_CANNOT_TELL);
        }
        Err(e) => e.exit(),
    };
    cli::init_logging(&args);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            let message = format!("{err:#}");
            if !message.is_empty() {
                eprintln!("stowage: {message}");
            }
            if fetching {
                cli::wal::fetch_exit_code(&err)
            } else {
                cli::exit_code(&err)
            }
        }
    }
}
