//! `opsbox up`: foreground, detached (`-d`), and the hidden `supervise` that a detached run
//! starts in the background.

use std::process::ExitCode;

use crate::cli::{GlobalArgs, UpArgs};
use crate::error::Result;

pub async fn run(global: &GlobalArgs, args: &UpArgs, background: bool) -> Result<ExitCode> {
    let _ = (global, args, background);
    todo!("up")
}
