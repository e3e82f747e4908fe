//! `opsbox up`: in the foreground, detached (`-d`), and the hidden `supervise` that a detached
//! run starts in the background.

mod detach;
mod foreground;
mod preflight;

use std::process::ExitCode;

use crate::cli::{GlobalArgs, UpArgs};
use crate::error::Result;
use crate::settings::Settings;

pub async fn run(global: &GlobalArgs, args: &UpArgs, background: bool) -> Result<ExitCode> {
    let settings = Settings::resolve(
        global,
        Some(args.host),
        &args.ports,
        &args.binaries,
        &args.services,
    )?;
    settings.state.create()?;
    if args.detach && !background {
        return detach::run(&settings, args).await;
    }
    foreground::run(&settings, background).await
}
