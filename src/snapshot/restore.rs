//! Restoring a snapshot atomically. The new state is built next to the old one
//! (`snapshots/.restore/`), flushed to disk, and only then is the intent journal written; the
//! swap is one pair of renames per part (live -> `.previous/`, `.restore/` -> live). Whoever
//! finds the journal later (the next `up`, any snapshot command) finishes the swap, since the
//! new state was complete before the journal existed; without a journal a half-built
//! `.restore/` is simply removed. So a restore killed at any point leaves the old state or the
//! new one, never a mix.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::manifest::Manifest;
use super::tree::{self, Copy};
use super::{Progress, Result, SnapshotError, Snapshots, links_files, part_path};
use crate::types::ServiceName;

/// The swap in progress.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    snapshot: String,
    /// The directory (in `snapshots/`) the new state was built in.
    #[serde(default = "legacy_staging")]
    staging: String,
    parts: Vec<JournalPart>,
}

fn legacy_staging() -> String {
    ".restore".into()
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalPart {
    /// Relative to the data dir.
    path: String,
    /// Whether the snapshot holds this part; if not, restoring it means removing it.
    present: bool,
}

/// What `recover` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    Nothing,
    /// A swap the journal describes was completed.
    Finished {
        snapshot: String,
    },
    /// A restore cut short before its swap began was discarded.
    Discarded,
}

impl Recovery {
    /// What to tell the user, when something was done.
    pub fn message(&self) -> Option<String> {
        match self {
            Recovery::Nothing => None,
            Recovery::Finished { snapshot } => Some(format!(
                "finished the restore of snapshot {snapshot} that an interrupted opsbox had begun"
            )),
            Recovery::Discarded => Some(
                "discarded a restore that an interrupted opsbox had begun; the data was not changed"
                    .into(),
            ),
        }
    }
}

/// Restore `services` (all three when empty) from snapshot `name`, on a stopped stack whose
/// lock the caller holds.
pub fn restore(
    snapshots: &Snapshots,
    name: &str,
    services: &[ServiceName],
    progress: &dyn Progress,
) -> Result<Manifest> {
    recover(snapshots)?;
    prepare(snapshots, name, services, progress)?.swap()
}

/// A restore whose new state is built and on disk, next to the live one, and not swapped in
/// yet. Building needs no lock and leaves the running stack alone (each restore builds in a
/// directory of its own); only `swap` needs the stack stopped.
#[must_use = "a prepared restore that is not swapped in is deleted by the next `up`"]
pub struct Prepared {
    snapshots: Snapshots,
    manifest: Manifest,
    journal: Journal,
    /// Once the journal promises the swap, the built state is needed by whoever finishes it.
    journaled: bool,
}

impl Drop for Prepared {
    /// A restore given up before its journal removes what it built.
    fn drop(&mut self) {
        if !self.journaled {
            let _ = self
                .snapshots
                .discard(&self.snapshots.root().join(&self.journal.staging));
        }
    }
}

/// Build the new state of `services` (all three when empty) from snapshot `name`, checked
/// against its manifest and flushed to disk.
pub fn prepare(
    snapshots: &Snapshots,
    name: &str,
    services: &[ServiceName],
    progress: &dyn Progress,
) -> Result<Prepared> {
    let manifest = snapshots.manifest(name)?;
    let services: Vec<ServiceName> = if services.is_empty() {
        ServiceName::ALL.to_vec()
    } else {
        services.to_vec()
    };
    // All of a snapshot with a spare ready: claimed by one rename instead of copied.
    if services.len() == ServiceName::ALL.len()
        && let Some(claimed) = super::spare::claim(
            snapshots,
            &super::spare::of_snapshot(snapshots, name),
            &snapshots.manifest_path(name),
            super::spare::Wait::ForBuilder,
        )
    {
        return Ok(from_build(snapshots, name, manifest, &claimed));
    }
    let staging_name = format!(
        ".restore-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let staging = snapshots.root().join(&staging_name);
    fs_err::create_dir_all(&staging).map_err(SnapshotError::io("create", &staging))?;
    let built = build(snapshots, name, &manifest, &services, &staging, progress);
    match built {
        Ok(parts) => Ok(Prepared {
            snapshots: snapshots.clone(),
            manifest,
            journal: Journal {
                snapshot: name.into(),
                staging: staging_name,
                parts,
            },
            journaled: false,
        }),
        Err(e) => {
            let _ = super::remove_tree(&staging);
            Err(e)
        }
    }
}

/// A restore of every part of `manifest` whose build is the directory `built` (a claimed
/// spare, complete and on disk).
pub fn from_build(snapshots: &Snapshots, name: &str, manifest: Manifest, built: &Path) -> Prepared {
    let parts = ServiceName::ALL
        .into_iter()
        .map(|service| JournalPart {
            path: part_path(service).into(),
            present: manifest.part(service).is_some(),
        })
        .collect();
    Prepared {
        snapshots: snapshots.clone(),
        manifest,
        journal: Journal {
            snapshot: name.into(),
            staging: built
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            parts,
        },
        journaled: false,
    }
}

fn build(
    snapshots: &Snapshots,
    name: &str,
    manifest: &Manifest,
    services: &[ServiceName],
    staging: &Path,
    progress: &dyn Progress,
) -> Result<Vec<JournalPart>> {
    let source = snapshots.dir(name).join("data");
    let total: u64 = services
        .iter()
        .filter_map(|s| manifest.part(*s))
        .map(|p| p.bytes)
        .sum();
    progress.begin(&format!("restoring {name}"), total);
    let mut parts = Vec::new();
    for &service in services {
        let relative = part_path(service);
        let Some(part) = manifest.part(service) else {
            parts.push(JournalPart {
                path: relative.into(),
                present: false,
            });
            continue;
        };
        let to = staging.join(relative);
        if let Some(parent) = to.parent() {
            fs_err::create_dir_all(parent).map_err(SnapshotError::io("create", parent))?;
        }
        let entries = tree::copy_tree(
            &source.join(relative),
            &to,
            &Copy {
                link: links_files(service),
                skip: &|_| false,
                progress,
                since: None,
            },
        )
        .map_err(|e| match e {
            SnapshotError::Io { source, path, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                SnapshotError::Damaged {
                    name: name.into(),
                    reason: format!("{} is missing", path.display()),
                }
            }
            other => other,
        })?;
        let found = super::save::part_of(service, entries);
        if found.files != part.files || found.bytes != part.bytes {
            return Err(SnapshotError::Damaged {
                name: name.into(),
                reason: format!(
                    "its {service} data has {} files, {} bytes; the manifest says {} files, {} bytes",
                    found.files, found.bytes, part.files, part.bytes
                ),
            });
        }
        parts.push(JournalPart {
            path: relative.into(),
            present: true,
        });
    }
    progress.end();
    test_hook("built")?;
    // The new state must be on disk before the journal promises it.
    super::sync_file_system(staging)?;
    Ok(parts)
}

impl Prepared {
    /// Swap the new state in: the caller holds the stack stopped (its lock, or the running
    /// supervisor's hold) and has run `recover`.
    pub fn swap(mut self) -> Result<Manifest> {
        let snapshots = &self.snapshots;
        let bytes = serde_json::to_vec_pretty(&self.journal).unwrap_or_default();
        crate::state::write_atomically(&snapshots.journal(), &bytes)
            .map_err(SnapshotError::io("write", &snapshots.journal()))?;
        self.journaled = true;
        let snapshots = &self.snapshots;
        test_hook("journal")?;
        swap(snapshots, &self.journal)?;
        snapshots.discard(&snapshots.root().join(&self.journal.staging))?;
        snapshots.discard(&snapshots.restore_previous())?;
        Ok(self.manifest.clone())
    }
}

/// Finish or discard a restore a killed opsbox left; call with the data dir's lock held,
/// before any service starts.
pub fn recover(snapshots: &Snapshots) -> Result<Recovery> {
    let path = snapshots.journal();
    let recovery = match fs_err::read(&path) {
        Ok(bytes) => {
            let journal: Journal =
                serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Damaged {
                    name: "restore journal".into(),
                    reason: format!("{} is unreadable: {e}", path.display()),
                })?;
            swap(snapshots, &journal)?;
            snapshots.discard(&snapshots.root().join(&journal.staging))?;
            Recovery::Finished {
                snapshot: journal.snapshot,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A restore cut short before its journal: what it built is dropped (never that
            // of a restore still being prepared by a live process).
            let abandoned = snapshots.abandoned_restores();
            if abandoned.is_empty() {
                Recovery::Nothing
            } else {
                for dir in abandoned {
                    snapshots.discard(&dir)?;
                }
                Recovery::Discarded
            }
        }
        Err(e) => return Err(SnapshotError::io("read", &path)(e)),
    };
    snapshots.discard(&snapshots.restore_previous())?;
    Ok(recovery)
}

/// Bring every part to its new state; each step can be repeated after a crash.
fn swap(snapshots: &Snapshots, journal: &Journal) -> Result<()> {
    let data_root = &snapshots.state.root;
    for part in &journal.parts {
        let live = data_root.join(&part.path);
        let new = snapshots.root().join(&journal.staging).join(&part.path);
        let old = snapshots.restore_previous().join(&part.path);
        let new_waiting = exists(&new);
        if part.present && !new_waiting {
            continue; // already swapped
        }
        if exists(&live) && !exists(&old) {
            rename(&live, &old)?;
            test_hook(&format!("moved-old:{}", part.path))?;
        }
        if part.present {
            rename(&new, &live)?;
            test_hook(&format!("moved-new:{}", part.path))?;
        }
    }
    let _ = fs_err::remove_file(snapshots.journal());
    super::sync_dir(&snapshots.root())?;
    test_hook("committed")?;
    Ok(())
}

fn exists(path: &Path) -> bool {
    fs_err::symlink_metadata(path).is_ok()
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs_err::create_dir_all(parent).map_err(SnapshotError::io("create", parent))?;
    }
    fs_err::rename(from, to).map_err(SnapshotError::io("move", from))?;
    if let Some(parent) = to.parent() {
        super::sync_dir(parent)?;
    }
    if let Some(parent) = from.parent() {
        super::sync_dir(parent)?;
    }
    Ok(())
}

/// For the kill -9 tests: with `OPSBOX_TEST_RESTORE_PAUSE=<step>` the restore writes
/// `<step>` to the file named by `OPSBOX_TEST_RESTORE_PAUSED` and then waits forever at that
/// step, for the test to kill it there.
fn test_hook(step: &str) -> Result<()> {
    if std::env::var("OPSBOX_TEST_RESTORE_PAUSE").ok().as_deref() != Some(step) {
        return Ok(());
    }
    if let Some(marker) = std::env::var_os("OPSBOX_TEST_RESTORE_PAUSED") {
        fs_err::write(&marker, step).map_err(SnapshotError::io("write", Path::new(&marker)))?;
    }
    loop {
        std::thread::park();
    }
}
