//! The "initial" snapshot: the state the first `up` of a new data dir reaches (init scripts
//! run, EVENTS created, buckets made), which `opsbox reset` goes back to.

use std::time::Instant;

use super::child::{ChildService, FREEZE_WITHIN};
use crate::error::Result;
use crate::output;
use sha2::Digest;

use crate::services::postgres::PostgresService;
use crate::services::s3::S3Control;
use crate::settings::Settings;
use crate::snapshot::template::StackTemplate;
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

/// The stack template of this stack's recipe (snapshot/template.rs): everything its first
/// state depends on.
pub fn template(settings: &Settings, postgres: &PostgresService) -> StackTemplate {
    let nats = settings.nats_config();
    let postgres_config = settings.postgres_config();
    let mut scripts = Vec::new();
    if let Some(dir) = &postgres_config.initdb_dir
        && let Ok(entries) = fs_err::read_dir(dir)
    {
        for entry in entries.flatten() {
            let bytes = fs_err::read(entry.path()).unwrap_or_default();
            scripts.push(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                hex::encode(sha2::Sha256::digest(&bytes))
            ));
        }
    }
    scripts.sort();
    let lines = vec![
        format!("opsbox {}", env!("CARGO_PKG_VERSION")),
        format!(
            "postgres cluster template {}",
            postgres.template().dir.display()
        ),
        format!("database {}", postgres_config.database),
        format!("initdb.d {}", scripts.join(", ")),
        format!("nats-server {}", settings.nats.version),
        format!(
            "nats.conf {}",
            hex::encode(sha2::Sha256::digest(nats.conf.text.as_bytes()))
        ),
        format!("stream {:?}", nats.stream),
        format!("buckets {:?}", settings.s3_config().buckets),
    ];
    StackTemplate::new(&settings.cache_dir, &lines)
}

pub fn versions(settings: &Settings) -> snapshot::save::Versions {
    snapshot::save::Versions {
        nats_server: Some(settings.nats.version.clone()),
    }
}

/// Hold the stack still (S3 closed to writes; PostgreSQL checkpointed, then nats-server and
/// PostgreSQL frozen), save the "initial" snapshot, and let it run on. Runs before the run
/// file says ready, so no client of this stack writes meanwhile.
pub async fn keep(
    settings: &Settings,
    snapshots: &Snapshots,
    running: &[(ChildService, RunningChild)],
    s3: Option<&S3Control>,
) -> Result<()> {
    let began = Instant::now();
    for (service, _) in running {
        if let ChildService::Postgres(postgres) = service {
            postgres.checkpoint().await?;
        }
    }
    // Copied while running, brought up to date while frozen.
    let copied = tokio::task::block_in_place(|| {
        snapshot::save::copy(snapshots, snapshot::INITIAL, &snapshot::NoProgress)
    });
    let closed = match s3 {
        Some(s3) => Some(s3.gate.close_writes().await),
        None => None,
    };
    let mut frozen = Vec::new();
    for (_, child) in running {
        frozen.push(
            child
                .freeze(FREEZE_WITHIN)
                .await
                .map_err(crate::supervisor::SupervisorError::from)?,
        );
    }
    let copied = copied.and_then(|mut copied| {
        tokio::task::block_in_place(|| copied.catch_up(&snapshot::NoProgress))?;
        Ok(copied)
    });
    drop(frozen);
    drop(closed);
    let versions = versions(settings);
    tokio::task::block_in_place(|| copied?.finish(&versions, &snapshot::NoProgress))?;
    output::info(&format!(
        "opsbox: kept this first state as snapshot '{}' for `opsbox reset` ({} ms)",
        snapshot::INITIAL,
        began.elapsed().as_millis()
    ));
    Ok(())
}

/// Keep the first state as the stack template (when this data dir built it: `first`), then
/// build the template's spare for the next new data dir.
pub async fn tend_template(template: StackTemplate, snapshots: Snapshots, first: bool) {
    if first {
        match template.keep(&snapshots).await {
            Ok(true) => output::info(&format!(
                "opsbox: kept the first state as the stack template {}",
                template.dir.display()
            )),
            Ok(false) => {}
            Err(e) => {
                output::warn(&format!(
                    "opsbox: cannot keep the stack template {}: {e}; the next new data dir builds its first state again",
                    template.dir.display()
                ));
                return;
            }
        }
    }
    let dir = template.dir.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || template.replenish()).await {
        output::warn(&format!(
            "opsbox: cannot prepare the spare of the stack template {}: {e}",
            dir.display()
        ));
    }
}
