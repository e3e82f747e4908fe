//! `opsbox up` in the foreground (and the background supervisor of `up -d`): take the
//! project's lock, listen for Ctrl-C, check the ports, then run the stack until stopped.

use std::process::ExitCode;
use std::time::Instant;

use super::preflight;
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::stack;
use crate::state::StateLock;
use crate::supervisor::signals;

/// Run the stack in this process until SIGINT/SIGTERM.
pub async fn run(settings: &Settings, detached: bool) -> Result<ExitCode> {
    let began = Instant::now();
    let _lock = StateLock::acquire(&settings.state)?;
    let stop = signals::install().map_err(|e| Error::io("cannot install signal handlers", e))?;
    let listeners = preflight::bind(settings)?;
    stack::run(settings, listeners, stop, began, detached).await
}
