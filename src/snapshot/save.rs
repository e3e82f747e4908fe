//! Saving the data of a stopped stack as a named snapshot: built under a staging name, given
//! its name by one rename once complete and on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
    copy(snapshots, name, progress)?.finish(versions, progress)
}

/// How much a catch-up took again.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaughtUp {
    pub files: u64,
    pub bytes: u64,
}

/// A snapshot copied under its staging name, not yet hashed nor named. The copy is all that
/// needs the data to hold still (the stack stopped or frozen); `finish` works on the copy.
#[must_use = "a copy that is not finished is left as staging for `up` to delete"]
pub struct Copied {
    snapshots: Snapshots,
    staging: PathBuf,
    name: String,
    parts: Vec<Part>,
    created: SystemTime,
}

/// Copy the data of every service that has some under a staging name.
pub fn copy(snapshots: &Snapshots, name: &str, progress: &dyn Progress) -> Result<Copied> {
    super::validate_name(name)?;
    if snapshots.dir(name).exists() {
        return Err(SnapshotError::Exists {
            name: name.into(),
            dir: snapshots.root(),
        });
    }
    let root = snapshots.root();
    fs_err::create_dir_all(&root).map_err(SnapshotError::io("create", &root))?;
    let staging = snapshots.staging();
    let created = SystemTime::now();
    match copy_parts(snapshots, &staging, name, progress, None) {
        Ok(parts) => Ok(Copied {
            snapshots: snapshots.clone(),
            staging,
            name: name.into(),
            parts,
            created,
        }),
        Err(e) => {
            let _ = super::remove_tree(&staging);
            Err(e)
        }
    }
}

fn copy_parts(
    snapshots: &Snapshots,
    staging: &Path,
    name: &str,
    progress: &dyn Progress,
    since: Option<SystemTime>,
) -> Result<Vec<Part>> {
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
    // A part the data dir no longer has is no longer in the copy either.
    for service in ServiceName::ALL {
        if !present.contains(&service) {
            super::remove_tree(&data.join(part_path(service)))?;
        }
    }
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
                skip: &tree::never_saved,
                progress,
                since,
            },
        )?;
        let mut part = part_of(service, entries);
        part.mode = fs_err::metadata(&from)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .map_err(SnapshotError::io("read", &from))?;
        parts.push(part);
    }
    progress.end();
    Ok(parts)
}

impl Drop for Copied {
    /// A copy given up (or failed) is removed; once named it is no longer at `staging`.
    fn drop(&mut self) {
        let _ = super::remove_tree(&self.staging);
    }
}

/// Progress that also counts the files taken (one `advance` each).
struct Counting<'a> {
    inner: &'a dyn Progress,
    files: AtomicU64,
    bytes: AtomicU64,
}

impl Progress for Counting<'_> {
    fn begin(&self, label: &str, total: u64) {
        self.inner.begin(label, total);
    }
    fn advance(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.inner.advance(bytes);
    }
    fn end(&self) {
        self.inner.end();
    }
}

impl Copied {
    /// Bring the copy up to date with the data dir: what was written, renamed, created or
    /// removed since the copy began is taken again (tree.rs, `Copy::since`). A copy made while
    /// the stack ran, caught up while it holds still, is the state of that moment; the
    /// still part is only as long as the catch-up.
    pub fn catch_up(&mut self, progress: &dyn Progress) -> Result<CaughtUp> {
        let counting = Counting {
            inner: progress,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        let parts = copy_parts(
            &self.snapshots,
            &self.staging,
            &self.name,
            &counting,
            Some(self.created),
        )?;
        let caught = CaughtUp {
            files: counting.files.load(Ordering::Relaxed),
            bytes: counting.bytes.load(Ordering::Relaxed),
        };
        self.parts = parts;
        Ok(caught)
    }

    /// Record the sha256 of every copied file (read from the copy, so the stack need not hold
    /// still meanwhile), write the manifest, flush the file system, and give the snapshot its
    /// name by one rename.
    pub fn finish(self, versions: &Versions, progress: &dyn Progress) -> Result<Manifest> {
        let staging = self.staging.clone();
        let finished = self.hash_and_describe(versions, progress);
        let manifest = match finished {
            Ok(manifest) => manifest,
            Err(e) => {
                let _ = super::remove_tree(&staging);
                return Err(e);
            }
        };
        super::name_staging(&staging, &self.snapshots.dir(&self.name))?;
        Ok(manifest)
    }

    fn hash_and_describe(&self, versions: &Versions, progress: &dyn Progress) -> Result<Manifest> {
        let data = self.staging.join("data");
        let total = self.parts.iter().map(|part| part.bytes).sum();
        progress.begin(&format!("hashing {}", self.name), total);
        let mut parts = self.parts.clone();
        for part in &mut parts {
            for entry in &mut part.entries {
                if entry.kind == super::EntryKind::File {
                    entry.sha256 = Some(tree::sha256_file(
                        &data.join(&part.path).join(&entry.path),
                        progress,
                    )?);
                }
            }
        }
        progress.end();
        let since_epoch = self.created.duration_since(UNIX_EPOCH).unwrap_or_default();
        let manifest = Manifest {
            format: manifest::FORMAT,
            name: self.name.clone(),
            opsbox_version: env!("CARGO_PKG_VERSION").into(),
            created: time::OffsetDateTime::from_unix_timestamp(since_epoch.as_secs() as i64)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default(),
            created_unix_ms: since_epoch.as_millis() as u64,
            postgres_major: crate::services::postgres::data_directory_major(
                &data.join(part_path(ServiceName::Postgres)),
            ),
            nats_server_version: versions.nats_server.clone(),
            parts,
        };
        let path = self.staging.join(manifest::FILE);
        fs_err::write(&path, manifest.to_json()).map_err(SnapshotError::io("write", &path))?;
        Ok(manifest)
    }
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
