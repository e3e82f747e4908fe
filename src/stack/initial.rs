//! The "initial" snapshot: the state the first `up` of a new data dir reaches (init scripts
//! run, EVENTS created, buckets made), which `opsbox reset` goes back to.

use std::time::Instant;

use super::child::{AutoPorts, ChildService, READY_TIMEOUT, start_all};
use crate::error::Result;
use crate::output;
use crate::settings::Settings;
use crate::snapshot::{self, Snapshots};
use crate::supervisor::RunningChild;
use crate::types::ServiceName;

/// Whether this `up` creates the data of every service (and so its state is the initial one).
pub fn is_fresh(settings: &Settings, snapshots: &Snapshots) -> bool {
    ServiceName::ALL.iter().all(|&service| {
        settings.runs(service)
            && !settings
                .state
                .root
                .join(snapshot::part_path(service))
                .exists()
    }) && !snapshots.dir(snapshot::INITIAL).exists()
}

pub fn versions(settings: &Settings) -> snapshot::save::Versions {
    snapshot::save::Versions {
        nats_server: Some(settings.nats.version.clone()),
    }
}

/// Stop nats-server and PostgreSQL cleanly, save the "initial" snapshot, start them again.
/// Runs before the run file says ready, so no client writes meanwhile (S3 objects are only
/// hard-linked, which takes milliseconds).
pub async fn keep(
    settings: &Settings,
    snapshots: &Snapshots,
    running: Vec<(ChildService, RunningChild)>,
    auto_ports: Option<&AutoPorts>,
) -> Result<Vec<(ChildService, RunningChild)>> {
    let began = Instant::now();
    // Started again as they ran (with the ports they got, which `--ports auto` may have moved).
    let children: Vec<ChildService> = running.iter().map(|(service, _)| service.clone()).collect();
    futures::future::join_all(
        running
            .into_iter()
            .map(|(service, child)| async move { child.stop(service.grace()).await }),
    )
    .await;
    let versions = versions(settings);
    tokio::task::block_in_place(|| {
        snapshot::save::save(
            snapshots,
            snapshot::INITIAL,
            &versions,
            &snapshot::NoProgress,
        )
    })?;
    let running = start_all(&children, READY_TIMEOUT, auto_ports).await?;
    output::info(&format!(
        "opsbox: kept this first state as snapshot '{}' for `opsbox reset` ({} ms)",
        snapshot::INITIAL,
        began.elapsed().as_millis()
    ));
    Ok(running)
}
