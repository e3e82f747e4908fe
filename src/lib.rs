//! opsbox: the historian ops/ stack without Docker.

pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod error;
pub mod fetch;
pub mod output;
pub mod services;
pub mod settings;
pub mod stack;
pub mod state;
pub mod supervisor;
pub mod types;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::Error;

/// Entry point used by `src/main.rs`: parse, run, and turn an error into its message and exit
/// code (0 ok, 1 failure, 2 usage).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init(cli.global.quiet, cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            report(&Error::io("cannot start the async runtime", e));
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Children are already stopped; do not wait for idle blocking threads.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::from(error.exit_code())
        }
    }
}

fn report(error: &Error) {
    output::error(error, error.hint(), error.details());
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let global = &cli.global;
    match &cli.command {
        Command::Up(args) => commands::up::run(global, args, false).await,
        Command::Supervise(args) => commands::up::run(global, args, true).await,
        Command::Down(args) => commands::down::run(global, args).await,
        Command::Status(args) => commands::status::run(global, args).await,
        Command::Logs(args) => commands::logs::run(global, args).await,
        Command::Env(args) => commands::env::run(global, args).await,
        Command::Fetch(args) => commands::fetch::run(global, args).await,
        Command::Completions(args) => {
            commands::completions::run(args);
            Ok(ExitCode::SUCCESS)
        }
    }
}
