//! `opsbox snapshot save|restore|ls|rm|export|import`.

use std::process::ExitCode;
use std::time::Instant;

use crate::cli::{BinaryArgs, GlobalArgs, PortArgs, ServiceArg, SnapshotArgs, SnapshotCommand};
use crate::error::{Error, Result};
use crate::output::{self, SnapshotProgress};
use crate::settings::Settings;
use crate::snapshot::archive::{self, ImportTarget};
use crate::snapshot::restore;
use crate::snapshot::save;
use crate::snapshot::{NoProgress, Snapshots};
use crate::state::control::{ControlClient, Request};
use crate::state::{StateError, StateLock};
use crate::types::ServiceName;

pub async fn run(global: &GlobalArgs, args: &SnapshotArgs) -> Result<ExitCode> {
    let settings = resolve(global)?;
    let snapshots = Snapshots::new(&settings.state);
    let progress = SnapshotProgress::default();
    let began = Instant::now();
    match &args.command {
        SnapshotCommand::Save { name, json } => {
            crate::snapshot::validate_name(name)?;
            if snapshots.dir(name).exists() {
                return Err(crate::snapshot::SnapshotError::Exists {
                    name: name.clone(),
                    dir: snapshots.root(),
                }
                .into());
            }
            // Copied while the stack runs on, then brought up to date while it holds still
            // (only what changed meanwhile is taken again); hashing reads the copy after.
            Access::checkpoint_if_running(&settings);
            let mut copied = blocking(|s| save::copy(&s, name, &progress), &snapshots)?;
            let access = Access::take(&settings, "save a snapshot", Request::Freeze)?;
            let caught_up = blocking(|_| copied.catch_up(&NoProgress), &snapshots);
            let paused = access.end();
            let caught_up = caught_up?;
            let paused = paused?;
            if paused.is_some() {
                output::snapshot::caught_up(caught_up.files, caught_up.bytes);
            }
            let versions = crate::stack::versions(&settings);
            let manifest = blocking(|_| copied.finish(&versions, &progress), &snapshots)?;
            output::snapshot::done(
                "saved",
                &manifest.summary(),
                began.elapsed(),
                None,
                paused,
                *json,
            );
        }
        SnapshotCommand::Restore {
            name,
            services,
            json,
        } => {
            let services = service_names(services)?;
            // Built next to the live data while the stack runs on; only the swap needs it
            // stopped.
            let prepared = blocking(
                |s| restore::prepare(&s, name, &services, &progress),
                &snapshots,
            )?;
            let access = Access::take(&settings, "restore a snapshot", Request::Hold)?;
            let swapped = blocking(|_| prepared.swap(), &snapshots);
            let paused = access.end();
            let manifest = swapped?;
            output::snapshot::done(
                "restored",
                &manifest.summary(),
                began.elapsed(),
                None,
                paused?,
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
                None,
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
                None,
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

/// How a command has the stack's data to itself: the data dir's lock when the stack is
/// stopped, or the running supervisor holding it still (a freeze for a save) or stopped (a
/// hold for a restore) over the control channel.
pub enum Access {
    Stopped(StateLock),
    Running(ControlClient, Request),
}

impl Access {
    /// Take the data dir for `action`; on a running stack, ask its supervisor for `request`
    /// (freeze or hold). A restore a killed opsbox left half done is finished first (by the
    /// supervisor when it runs).
    pub fn take(settings: &Settings, action: &str, request: Request) -> Result<Access> {
        settings.state.create()?;
        match StateLock::acquire(&settings.state) {
            Ok(lock) => {
                if let Some(message) = restore::recover(&Snapshots::new(&settings.state))?.message()
                {
                    output::warn(&message);
                }
                Ok(Access::Stopped(lock))
            }
            Err(StateError::AlreadyRunning { pid, .. }) => {
                let mut client = ControlClient::connect(&settings.state)?;
                output::info(&format!(
                    "the stack is running (opsbox pid {pid}): {} to {action}",
                    match request {
                        Request::Hold =>
                            "stopping nats-server and PostgreSQL and holding S3 requests",
                        _ => "holding it still",
                    }
                ));
                client.request(request)?;
                let end = match request {
                    Request::Hold => Request::Release,
                    _ => Request::Thaw,
                };
                Ok(Access::Running(client, end))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// On a running stack, have PostgreSQL write its dirty pages before a save copies it (a
    /// restored copy then starts without replaying much WAL). Best effort: a stopped stack,
    /// or one that cannot, is saved all the same.
    pub fn checkpoint_if_running(settings: &Settings) {
        if StateLock::is_held(&settings.state)
            && let Ok(mut client) = ControlClient::connect(&settings.state)
            && let Err(e) = client.request(Request::Checkpoint)
        {
            output::warn(&format!("no CHECKPOINT before the copy: {e}"));
        }
    }

    /// Let the stack go: on a running one, how long its clients were held.
    pub fn end(self) -> Result<Option<u64>> {
        match self {
            Access::Stopped(_) => Ok(None),
            Access::Running(mut client, end) => Ok(client.request(end)?.paused_ms),
        }
    }
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
