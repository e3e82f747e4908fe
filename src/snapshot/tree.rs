//! Copying a directory tree into a snapshot and back: hard links for files that are only
//! ever replaced by rename, a copy for files rewritten in place (`std::fs::copy` uses
//! `copy_file_range`, which reflinks on btrfs and XFS), modes and owners kept.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{Entry, EntryKind, Progress, Result, SnapshotError};

/// How to take a tree.
pub struct Copy<'a> {
    /// Hard-link files instead of copying them.
    pub link: bool,
    /// Relative paths left out (a stale postmaster.pid, S3 temp files).
    pub skip: &'a (dyn Fn(&str) -> bool + Sync),
    pub progress: &'a dyn Progress,
    /// Bring an earlier copy up to date instead of making a new one: a file is taken again
    /// unless the copy has its size and it was neither written nor renamed at or after this
    /// time (a hard link: unless it is still the same inode); what is gone is removed.
    pub since: Option<SystemTime>,
}

/// Relative paths a snapshot never holds: a postmaster.pid is never valid in another run, and
/// S3 temp files are emptied at every start.
pub fn never_saved(path: &str) -> bool {
    path == "postmaster.pid" || path == ".opsbox-s3/tmp" || path.starts_with(".opsbox-s3/tmp/")
}

/// Copy `from` into `to` (which must not exist yet) and return its entries, sorted by path.
pub fn copy_tree(from: &Path, to: &Path, how: &Copy<'_>) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    // Files are taken once every directory exists, by a few threads at once: creating a file
    // costs the kernel more than copying its bytes, and it does that work on every core.
    let mut files: Vec<FileJob> = Vec::new();
    // Modes of directories are set last, so that a read-only directory can still be filled.
    let mut dirs: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    let root = fs_err::symlink_metadata(from).map_err(SnapshotError::io("read", from))?;
    create_dir(to, how)?;
    dirs.push((to.to_path_buf(), root));
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let source_dir = from.join(&relative);
        let mut children: Vec<_> = fs_err::read_dir(&source_dir)
            .map_err(SnapshotError::io("read", &source_dir))?
            .collect::<std::io::Result<_>>()
            .map_err(SnapshotError::io("read", &source_dir))?;
        children.sort_by_key(|c| c.file_name());
        if how.since.is_some() {
            remove_extra(&to.join(&relative), &relative, &children, how)?;
        }
        for child in children {
            let rel = relative.join(child.file_name());
            let rel_text = rel.to_string_lossy().into_owned();
            if (how.skip)(&rel_text) {
                continue;
            }
            let source = from.join(&rel);
            let target = to.join(&rel);
            let meta =
                fs_err::symlink_metadata(&source).map_err(SnapshotError::io("read", &source))?;
            let mode = meta.permissions().mode() & 0o7777;
            let kind = meta.file_type();
            if kind.is_dir() {
                create_dir(&target, how)?;
                entries.push(Entry {
                    path: rel_text,
                    kind: EntryKind::Dir,
                    mode,
                    size: 0,
                    sha256: None,
                    target: None,
                });
                dirs.push((target, meta));
                pending.push(rel);
            } else if kind.is_symlink() {
                if how.since.is_some() {
                    remove_any(&target)?;
                }
                let link =
                    fs_err::read_link(&source).map_err(SnapshotError::io("read", &source))?;
                fs_err::os::unix::fs::symlink(&link, &target)
                    .map_err(SnapshotError::io("create", &target))?;
                set_owner(&target, &meta)?;
                entries.push(Entry {
                    path: rel_text,
                    kind: EntryKind::Symlink,
                    mode,
                    size: 0,
                    sha256: None,
                    target: Some(link.to_string_lossy().into_owned()),
                });
            } else if kind.is_file() {
                files.push(FileJob {
                    source,
                    target,
                    meta,
                    path: rel_text,
                    mode,
                });
            }
            // Sockets and fifos are not data; none of the three services keeps one there.
        }
    }
    entries.extend(take_files(files, how)?);
    for (dir, meta) in dirs.iter().rev() {
        set_owner(dir, meta)?;
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(SnapshotError::io("set the mode of", dir))?;
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// One file to take.
struct FileJob {
    source: PathBuf,
    target: PathBuf,
    meta: std::fs::Metadata,
    path: String,
    mode: u32,
}

/// How many threads take files at once.
fn file_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// Take every file (link, copy, or keep an unchanged copy), on a few threads; the first error
/// stops the rest.
fn take_files(files: Vec<FileJob>, how: &Copy<'_>) -> Result<Vec<Entry>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<Vec<Entry>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..file_threads().min(files.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut entries = Vec::new();
                    loop {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            return Ok(entries);
                        }
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = files.get(index) else {
                            return Ok(entries);
                        };
                        match take_file(job, how) {
                            Ok(entry) => entries.push(entry),
                            Err(e) => {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a file worker panicked"))
            .collect()
    });
    let mut entries = Vec::with_capacity(files.len());
    for result in results {
        entries.extend(result?);
    }
    Ok(entries)
}

fn take_file(job: &FileJob, how: &Copy<'_>) -> Result<Entry> {
    let entry = Entry {
        path: job.path.clone(),
        kind: EntryKind::File,
        mode: job.mode,
        size: job.meta.len(),
        sha256: None,
        target: None,
    };
    if let Some(cutoff) = how.since {
        if unchanged(&job.meta, &job.target, how.link, cutoff) {
            return Ok(entry);
        }
        remove_any(&job.target)?;
    }
    if how.link {
        fs_err::hard_link(&job.source, &job.target)
            .map_err(SnapshotError::io("link", &job.target))?;
    } else {
        fs_err::copy(&job.source, &job.target).map_err(SnapshotError::io("copy", &job.source))?;
        set_owner(&job.target, &job.meta)?;
    }
    how.progress.advance(job.meta.len());
    Ok(entry)
}

/// How far file times may lag the clock: the kernel stamps them from a coarse clock.
const TIME_SLACK: Duration = Duration::from_secs(1);

/// Whether the copy `target` of a file with `meta` is still good (see `Copy::since`).
fn unchanged(meta: &std::fs::Metadata, target: &Path, link: bool, since: SystemTime) -> bool {
    let Ok(copy) = fs_err::symlink_metadata(target) else {
        return false;
    };
    if !copy.is_file() {
        return false;
    }
    if link {
        return copy.ino() == meta.ino() && copy.dev() == meta.dev();
    }
    let cutoff = since
        .checked_sub(TIME_SLACK)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let changed = SystemTime::UNIX_EPOCH
        + Duration::new(
            meta.ctime().max(0) as u64,
            meta.ctime_nsec().clamp(0, 999_999_999) as u32,
        );
    copy.len() == meta.len()
        && meta.modified().is_ok_and(|modified| modified < cutoff)
        && changed < cutoff
}

fn create_dir(path: &Path, how: &Copy<'_>) -> Result<()> {
    match fs_err::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if how.since.is_some() && e.kind() == std::io::ErrorKind::AlreadyExists => {
            if fs_err::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
                Ok(())
            } else {
                remove_any(path)?;
                fs_err::create_dir(path).map_err(SnapshotError::io("create", path))
            }
        }
        Err(e) => Err(SnapshotError::io("create", path)(e)),
    }
}

/// Remove `path`, whatever it is (gone already is fine).
fn remove_any(path: &Path) -> Result<()> {
    let Ok(meta) = fs_err::symlink_metadata(path) else {
        return Ok(());
    };
    if meta.is_dir() {
        super::remove_tree(path)
    } else {
        match fs_err::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SnapshotError::io("remove", path)(e)),
        }
    }
}

/// Remove from the copy `dir` what the source (`children` of `relative`) no longer has.
fn remove_extra(
    dir: &Path,
    relative: &Path,
    children: &[fs_err::DirEntry],
    how: &Copy<'_>,
) -> Result<()> {
    let kept: HashSet<std::ffi::OsString> = children
        .iter()
        .map(|c| c.file_name())
        .filter(|name| !(how.skip)(&relative.join(name).to_string_lossy()))
        .collect();
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if !kept.contains(&entry.file_name()) {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// Give `path` the owner `meta` names (PGDATA belongs to PostgreSQL's account when opsbox
/// runs as root); a no-op when it already has it.
fn set_owner(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    let current = fs_err::symlink_metadata(path).map_err(SnapshotError::io("read", path))?;
    if current.uid() == meta.uid() && current.gid() == meta.gid() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(SnapshotError::io("set the owner of", path))
}

/// Give every entry under `root` (and `root`) to `uid`/`gid`.
pub fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .map_err(SnapshotError::io("set the owner of", &path))?;
        let meta = fs_err::symlink_metadata(&path).map_err(SnapshotError::io("read", &path))?;
        if meta.is_dir() {
            for child in fs_err::read_dir(&path).map_err(SnapshotError::io("read", &path))? {
                pending.push(child.map_err(SnapshotError::io("read", &path))?.path());
            }
        }
    }
    Ok(())
}

/// The sha256 of a file, `progress` advanced as it is read (a large file moves the bar too).
pub fn sha256_file(path: &Path, progress: &dyn Progress) -> Result<String> {
    let mut file = fs_err::File::open(path).map_err(SnapshotError::io("read", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(SnapshotError::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        progress.advance(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Files and bytes under `dir` (for progress totals), leaving out what `skip` names.
pub fn measure(dir: &Path, skip: &dyn Fn(&str) -> bool) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let Ok(children) = fs_err::read_dir(dir.join(&relative)) else {
            continue;
        };
        for child in children.flatten() {
            let rel = relative.join(child.file_name());
            if skip(&rel.to_string_lossy()) {
                continue;
            }
            match child.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(rel),
                Ok(meta) if meta.is_file() => {
                    files += 1;
                    bytes += meta.len();
                }
                _ => {}
            }
        }
    }
    (files, bytes)
}
