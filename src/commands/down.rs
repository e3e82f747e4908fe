//! `opsbox down`.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::error::Result;

pub async fn run(global: &GlobalArgs, args: &crate::cli::DownArgs) -> Result<ExitCode> {
    let _ = (global, args);
    todo!("lifecycle")
}
