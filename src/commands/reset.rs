//! `opsbox reset [SERVICE...]`: restore the "initial" snapshot kept after the first `up`.

use std::process::ExitCode;
use std::time::Instant;

use super::snapshot::{Access, resolve, service_names};
use crate::cli::{GlobalArgs, ResetArgs};
use crate::error::{Error, Result};
use crate::output::{self, SnapshotProgress};
use crate::snapshot::{INITIAL, SnapshotError, Snapshots, restore};
use crate::state::control::Request;

pub async fn run(global: &GlobalArgs, args: &ResetArgs) -> Result<ExitCode> {
    let settings = resolve(global)?;
    let began = Instant::now();
    let services = service_names(&args.services)?;
    let snapshots = Snapshots::new(&settings.state);
    let progress = SnapshotProgress::default();
    let restored = match tokio::task::block_in_place(|| {
        restore::prepare(&snapshots, INITIAL, &services, &progress)
    }) {
        Ok(prepared) => {
            let access = Access::take(&settings, "reset it", Request::Hold)?;
            let swapped = tokio::task::block_in_place(|| prepared.swap());
            let paused = access.end()?;
            swapped.map(|manifest| (manifest, paused))
        }
        Err(e) => Err(e),
    };
    let (manifest, paused) = match restored {
        Ok(done) => done,
        Err(SnapshotError::NotFound { .. }) => {
            return Err(Error::Usage {
                message: format!(
                    "cannot reset {}: it has no initial snapshot",
                    settings.state.root.display()
                ),
                hint: Some(
                    "opsbox keeps it after the first successful `opsbox up` of a new data dir; run `opsbox up` once (or `opsbox snapshot save initial` on a stopped stack)".into(),
                ),
            });
        }
        Err(e) => return Err(e.into()),
    };
    output::snapshot::done(
        "reset to",
        &manifest.summary(),
        began.elapsed(),
        None,
        paused,
        args.json,
    );
    Ok(ExitCode::SUCCESS)
}
