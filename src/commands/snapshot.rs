//! `opsbox snapshot save|restore|ls|rm|export|import`.

use std::process::ExitCode;
use std::time::Instant;

use crate::cli::{BinaryArgs, GlobalArgs, PortArgs, ServiceArg, SnapshotArgs, SnapshotCommand};
use crate::error::{Error, Result};
use crate::output::{self, SnapshotProgress};
use crate::settings::Settings;
use crate::snapshot::Snapshots;
use crate::snapshot::archive::{self, ImportTarget};
use crate::snapshot::restore;
use crate::snapshot::save;
use crate::state::{StateError, StateLock};
use crate::types::ServiceName;

pub async fn run(global: &GlobalArgs, args: &SnapshotArgs) -> Result<ExitCode> {
    let settings = resolve(global)?;
    let snapshots = Snapshots::new(&settings.state);
    let progress = SnapshotProgress::default();
    let began = Instant::now();
    match &args.command {
        SnapshotCommand::Save { name, json } => {
            let _lock = lock_stopped(&settings, "save a snapshot")?;
            let manifest = blocking(
                move |s| save::save(&s, name, &crate::stack::versions(&settings), &progress),
                &snapshots,
            )?;
            output::snapshot::done("saved", &manifest.summary(), began.elapsed(), None, *json);
        }
        SnapshotCommand::Restore {
            name,
            services,
            json,
        } => {
            let _lock = lock_stopped(&settings, "restore a snapshot")?;
            let services = service_names(services)?;
            let manifest = blocking(
                move |s| restore::restore(&s, name, &services, &progress),
                &snapshots,
            )?;
            output::snapshot::done(
                "restored",
                &manifest.summary(),
                began.elapsed(),
                None,
                *json,
            );
        }
        SnapshotCommand::Ls { json } => {
            let listed: Vec<_> = snapshots
                .list()?
                .into_iter()
                .map(|(name, manifest)| (name, manifest.map(|m| m.summary())))
                .collect();
            output::snapshot::list(&listed, *json);
        }
        SnapshotCommand::Rm { name } => {
            snapshots.remove(name)?;
            output::info(&format!("removed snapshot {name}"));
        }
        SnapshotCommand::Export { name, file, json } => {
            let manifest = blocking(
                move |s| archive::export(&s, name, file, &progress),
                &snapshots,
            )?;
            let size = fs_err::metadata(file).map_or(0, |m| m.len());
            output::snapshot::done(
                "exported",
                &manifest.summary(),
                began.elapsed(),
                Some(("archive", format!("{} ({size} bytes)", file.display()))),
                *json,
            );
        }
        SnapshotCommand::Import { file, name, json } => {
            let target = ImportTarget {
                postgres_majors: std::iter::once(settings.postgres.major)
                    .chain(settings.postgres.allow_major)
                    .collect(),
                postgres_owner: crate::supervisor::Account::unprivileged_for_root("PostgreSQL")?
                    .map(|account| (account.uid, account.gid)),
            };
            settings.state.create()?;
            let manifest = blocking(
                move |s| archive::import(&s, file, name.as_deref(), &target, &progress),
                &snapshots,
            )?;
            output::snapshot::done(
                "imported",
                &manifest.summary(),
                began.elapsed(),
                Some((
                    "next",
                    format!("`opsbox snapshot restore {}`", manifest.name),
                )),
                *json,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Settings without any per-command flags: snapshots need the data dir and the versions.
pub fn resolve(global: &GlobalArgs) -> Result<Settings> {
    Settings::resolve(
        global,
        None,
        &PortArgs::default(),
        &BinaryArgs::default(),
        &[],
    )
}

/// Take the data dir's lock, which also proves the stack is stopped, and finish or discard
/// a restore a killed opsbox left.
pub fn lock_stopped(settings: &Settings, action: &str) -> Result<StateLock> {
    settings.state.create()?;
    let lock = match StateLock::acquire(&settings.state) {
        Ok(lock) => lock,
        Err(StateError::AlreadyRunning { pid, data_dir }) => {
            return Err(Error::Usage {
                message: format!(
                    "cannot {action}: the stack of {} is running (opsbox pid {pid})",
                    data_dir.display()
                ),
                hint: Some(
                    "stop it with `opsbox down`, run the command, then `opsbox up` again".into(),
                ),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(message) = restore::recover(&Snapshots::new(&settings.state))?.message() {
        output::warn(&message);
    }
    Ok(lock)
}

pub fn service_names(services: &[ServiceArg]) -> Result<Vec<ServiceName>> {
    services
        .iter()
        .map(|service| match service {
            ServiceArg::Nats => Ok(ServiceName::Nats),
            ServiceArg::Postgres => Ok(ServiceName::Postgres),
            ServiceArg::S3 => Ok(ServiceName::S3),
            ServiceArg::Console => Err(Error::Usage {
                message: "the console keeps no data to snapshot".into(),
                hint: Some("name nats, postgres or s3".into()),
            }),
        })
        .collect()
}

/// Run file work off the async runtime's threads.
fn blocking<T: Send>(
    work: impl FnOnce(Snapshots) -> crate::snapshot::Result<T> + Send,
    snapshots: &Snapshots,
) -> Result<T> {
    let snapshots = snapshots.clone();
    Ok(tokio::task::block_in_place(move || work(snapshots))?)
}
