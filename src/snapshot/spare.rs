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
//!
//! A builder holds `<spare>.lock` (flock) while it builds; a claimer that finds no spare can
//! wait for a build under way instead of copying the same files beside it (a `reset` right
//! after another, while the supervisor rebuilds the spare the first one claimed).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{self, Manifest};
use super::tree::{self, Copy};
use super::{NoProgress, Result, SnapshotError, Snapshots, links_files};
use crate::state::{LockMode, lock_file_blocking};

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
    let lock_path = lock_of(spare);
    let _lock = lock_file_blocking(&lock_path, LockMode::Exclusive)
        .map_err(SnapshotError::io("lock", &lock_path))?;
    // Another builder may have finished while this one waited.
    if spare.exists() {
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

/// The flock a builder of `spare` holds.
fn lock_of(spare: &Path) -> PathBuf {
    let mut name = spare.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Whether a claimer that finds no spare waits for a build under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    ForBuilder,
    No,
}

/// Claim `spare` for a restore of the snapshot whose manifest is at `manifest_path`: renamed
/// into `snapshots`' root as a restore build of this process. `None` when there is no spare
/// (after waiting for a build under way, with `Wait::ForBuilder`), another process claimed it
/// first, it is on another file system, or it was built from another state (then it is
/// thrown away).
pub fn claim(
    snapshots: &Snapshots,
    spare: &Path,
    manifest_path: &Path,
    wait: Wait,
) -> Option<PathBuf> {
    if !spare.is_dir() && wait == Wait::ForBuilder {
        // A build under way holds the lock: a shared lock is granted once it is done.
        let _ = lock_file_blocking(&lock_of(spare), LockMode::Shared);
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::state::StateDir;

    /// A data dir with a snapshot manifest, and the place of its spare.
    fn setup() -> (tempfile::TempDir, Snapshots, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::new(&StateDir::new(dir.path().to_path_buf()));
        fs_err::create_dir_all(snapshots.root()).unwrap();
        let manifest = snapshots.root().join("manifest.json");
        fs_err::write(&manifest, b"{\"a manifest\": 1}").unwrap();
        let spare = snapshots.root().join(".spare-initial");
        (dir, snapshots, manifest, spare)
    }

    /// What a builder does at the end: the spare, with the identity of what it was built from.
    fn make_spare(spare: &Path, manifest: &Path) {
        fs_err::create_dir_all(spare).unwrap();
        fs_err::write(spare.join(SPARE_OF), identity(manifest).unwrap()).unwrap();
    }

    #[test]
    fn a_claimer_waits_for_a_build_under_way_only_when_asked_to() {
        let (_dir, snapshots, manifest, spare) = setup();
        for wait in [Wait::No, Wait::ForBuilder] {
            let builder = fs_err::File::create(lock_of(&spare)).unwrap();
            builder.file().lock().unwrap();
            let finish = std::thread::spawn({
                let (spare, manifest) = (spare.clone(), manifest.clone());
                move || {
                    std::thread::sleep(Duration::from_millis(300));
                    make_spare(&spare, &manifest);
                    drop(builder);
                }
            });
            let claimed = claim(&snapshots, &spare, &manifest, wait);
            finish.join().unwrap();
            match wait {
                Wait::No => assert!(claimed.is_none(), "claimed a spare still being built"),
                Wait::ForBuilder => {
                    let claimed = claimed.expect("waited for the build and claimed its spare");
                    assert!(claimed.join(SPARE_OF).is_file());
                    assert!(!spare.exists(), "the spare was renamed away");
                }
            }
            let _ = fs_err::remove_dir_all(&spare);
        }
    }

    #[test]
    fn without_a_build_under_way_a_claimer_does_not_wait() {
        let (_dir, snapshots, manifest, spare) = setup();
        let began = std::time::Instant::now();
        assert!(claim(&snapshots, &spare, &manifest, Wait::ForBuilder).is_none());
        assert!(began.elapsed() < Duration::from_secs(5));
        make_spare(&spare, &manifest);
        assert!(claim(&snapshots, &spare, &manifest, Wait::ForBuilder).is_some());
    }
}
