//! Spares: a ready-made copy of a snapshot's data, built ahead of time (in the background,
//! while nobody waits), that a restore claims with one rename instead of copying, so that
//! `reset` and a new instance from a stack template cost a rename, not a copy of every file.
//!
//! ```text
//! <spare>/<part path>...    the data, laid out like a restore's build (`.restore-*`)
//! <spare>/.spare-of         sha256 of the manifest.json it was built from
//! ```
//!
//! A spare is complete before it gets its name (built under a staging name, flushed, renamed),
//! and a claim is one rename into the claimer's own `.restore-<pid>-*`: two claimers never get
//! the same spare, and a claimed spare is a restore's build like any other.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{self, Manifest};
use super::tree::{self, Copy};
use super::{NoProgress, Result, SnapshotError, Snapshots, links_files};

const SPARE_OF: &str = ".spare-of";
/// A spare is only built when the file system keeps at least this much free beside it.
const KEEP_FREE: u64 = 1 << 30;

/// Free bytes for an unprivileged writer on the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// The identity of the snapshot (or template) whose manifest is at `manifest_path`.
fn identity(manifest_path: &Path) -> Result<String> {
    let bytes = fs_err::read(manifest_path).map_err(SnapshotError::io("read", manifest_path))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// Build a spare of the snapshot whose `manifest.json` and `data/` are in `snapshot_dir`, at
/// `spare` (unless one is there already, or the file system would keep less than 1 GiB free),
/// working under `staging` (a name the cleanup of dead processes' leftovers covers). Returns
/// whether one was built.
pub fn build(snapshot_dir: &Path, spare: &Path, staging: &Path) -> Result<bool> {
    if spare.exists() {
        return Ok(false);
    }
    let manifest_path = snapshot_dir.join(manifest::FILE);
    let manifest = Manifest::read(&manifest_path).map_err(|reason| SnapshotError::Damaged {
        name: snapshot_dir.display().to_string(),
        reason,
    })?;
    // A spare is a convenience: it never takes space the services may need.
    let bytes: u64 = manifest.parts.iter().map(|part| part.bytes).sum();
    let parent = spare.parent().unwrap_or(spare);
    if free_bytes(parent).is_some_and(|free| free < bytes.saturating_add(KEEP_FREE)) {
        return Ok(false);
    }
    let of = identity(&manifest_path)?;
    let built = (|| {
        fs_err::create_dir_all(staging).map_err(SnapshotError::io("create", staging))?;
        for part in &manifest.parts {
            let to = staging.join(&part.path);
            if let Some(parent) = to.parent() {
                fs_err::create_dir_all(parent).map_err(SnapshotError::io("create", parent))?;
            }
            tree::copy_tree(
                &snapshot_dir.join("data").join(&part.path),
                &to,
                &Copy {
                    link: links_files(part.service),
                    skip: &|_| false,
                    progress: &NoProgress,
                    since: None,
                },
            )?;
        }
        let record = staging.join(SPARE_OF);
        fs_err::write(&record, &of).map_err(SnapshotError::io("write", &record))?;
        super::sync_file_system(staging)?;
        Ok(())
    })();
    if let Err(e) = built {
        let _ = super::remove_tree(staging);
        return Err(e);
    }
    match fs_err::rename(staging, spare) {
        Ok(()) => Ok(true),
        // Another builder was first (a directory already there is not empty).
        Err(_) if spare.exists() => {
            super::remove_tree(staging)?;
            Ok(false)
        }
        Err(e) => {
            let _ = super::remove_tree(staging);
            Err(SnapshotError::io("name the spare", spare)(e))
        }
    }
}

/// Claim `spare` for a restore of the snapshot whose manifest is at `manifest_path`: renamed
/// into `snapshots`' root as a restore build of this process. `None` when there is no spare,
/// another process claimed it first, it is on another file system, or it was built from
/// another state (then it is thrown away).
pub fn claim(snapshots: &Snapshots, spare: &Path, manifest_path: &Path) -> Option<PathBuf> {
    if !spare.is_dir() {
        return None;
    }
    let claimed = snapshots.root().join(format!(
        ".restore-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    fs_err::rename(spare, &claimed).ok()?;
    let matches = fs_err::read_to_string(claimed.join(SPARE_OF))
        .ok()
        .zip(identity(manifest_path).ok())
        .is_some_and(|(of, expected)| of.trim() == expected);
    if matches {
        Some(claimed)
    } else {
        let _ = snapshots.discard(&claimed);
        None
    }
}

/// The spare of snapshot `name` inside the data dir.
pub fn of_snapshot(snapshots: &Snapshots, name: &str) -> PathBuf {
    snapshots.root().join(format!(".spare-{name}"))
}

/// Build the data dir's spare of snapshot `name` when it has none (`up` does this in the
/// background for `initial`, so that `reset` is a rename).
pub fn replenish(snapshots: &Snapshots, name: &str) -> Result<bool> {
    if !snapshots.dir(name).is_dir() {
        return Ok(false);
    }
    build(
        &snapshots.dir(name),
        &of_snapshot(snapshots, name),
        &snapshots.staging(),
    )
}
