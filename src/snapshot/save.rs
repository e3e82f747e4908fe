//! Saving the data of a stopped stack as a named snapshot: built under a staging name, given
//! its name by one rename once complete and on disk.

use std::time::{SystemTime, UNIX_EPOCH};

use super::manifest::{self, Manifest, Part};
use super::tree::{self, Copy};
use super::{Progress, Result, SnapshotError, Snapshots, links_files, part_path};
use crate::types::ServiceName;

/// Versions recorded in the manifest.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    pub nats_server: Option<String>,
}

/// Save the data of every service that has some as snapshot `name`.
pub fn save(
    snapshots: &Snapshots,
    name: &str,
    versions: &Versions,
    progress: &dyn Progress,
) -> Result<Manifest> {
    super::validate_name(name)?;
    let target = snapshots.dir(name);
    if target.exists() {
        return Err(SnapshotError::Exists {
            name: name.into(),
            dir: snapshots.root(),
        });
    }
    let root = snapshots.root();
    fs_err::create_dir_all(&root).map_err(SnapshotError::io("create", &root))?;
    let staging = snapshots.staging();
    let built = build(snapshots, &staging, name, versions, progress);
    let manifest = match built {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = super::remove_tree(&staging);
            return Err(e);
        }
    };
    super::sync_file_system(&staging)?;
    if let Err(e) = fs_err::rename(&staging, &target) {
        let _ = super::remove_tree(&staging);
        return Err(SnapshotError::io("name the snapshot", &target)(e));
    }
    super::sync_dir(&root)?;
    Ok(manifest)
}

fn build(
    snapshots: &Snapshots,
    staging: &std::path::Path,
    name: &str,
    versions: &Versions,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let data_root = snapshots.state.root.clone();
    let present: Vec<ServiceName> = ServiceName::ALL
        .into_iter()
        .filter(|s| data_root.join(part_path(*s)).is_dir())
        .collect();
    let total: u64 = present
        .iter()
        .map(|s| tree::measure(&data_root.join(part_path(*s)), &tree::never_saved).1)
        .sum();
    let data = staging.join("data");
    fs_err::create_dir_all(&data).map_err(SnapshotError::io("create", &data))?;
    progress.begin(&format!("saving {name}"), total);
    let mut parts = Vec::new();
    for service in present {
        let from = data_root.join(part_path(service));
        let to = data.join(part_path(service));
        if let Some(parent) = to.parent() {
            fs_err::create_dir_all(parent).map_err(SnapshotError::io("create", parent))?;
        }
        let entries = tree::copy_tree(
            &from,
            &to,
            &Copy {
                link: links_files(service),
                hash: true,
                skip: &tree::never_saved,
                progress,
            },
        )?;
        let mut part = part_of(service, entries);
        part.mode = fs_err::metadata(&from)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .map_err(SnapshotError::io("read", &from))?;
        parts.push(part);
    }
    progress.end();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let manifest = Manifest {
        format: manifest::FORMAT,
        name: name.into(),
        opsbox_version: env!("CARGO_PKG_VERSION").into(),
        created: time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default(),
        created_unix_ms: now.as_millis() as u64,
        postgres_major: crate::services::postgres::data_directory_major(
            &data_root.join(part_path(ServiceName::Postgres)),
        ),
        nats_server_version: versions.nats_server.clone(),
        parts,
    };
    let path = staging.join(manifest::FILE);
    fs_err::write(&path, manifest.to_json()).map_err(SnapshotError::io("write", &path))?;
    Ok(manifest)
}

pub(crate) fn part_of(service: ServiceName, entries: Vec<super::Entry>) -> Part {
    let files = entries
        .iter()
        .filter(|e| e.kind == super::EntryKind::File)
        .count() as u64;
    let bytes = entries.iter().map(|e| e.size).sum();
    Part {
        service,
        path: part_path(service).into(),
        mode: 0o700,
        files,
        bytes,
        entries,
    }
}
