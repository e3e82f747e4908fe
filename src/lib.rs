//! opsbox: the historian ops/ stack without Docker.

pub mod cli;
pub mod commands;
pub mod config;
pub mod fetch;
pub mod output;
pub mod services;
pub mod state;
pub mod supervisor;

/// Entry point used by `src/main.rs`.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
