//! Copying a directory tree into a snapshot and back: hard links for files that are only
//! ever replaced by rename, a copy for files rewritten in place (`std::fs::copy` uses
//! `copy_file_range`, which reflinks on btrfs and XFS), modes and owners kept.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Entry, EntryKind, Progress, Result, SnapshotError};

/// How to take a tree.
pub struct Copy<'a> {
    /// Hard-link files instead of copying them.
    pub link: bool,
    /// Record each file's sha256 (a save); a restore only copies.
    pub hash: bool,
    /// Relative paths left out (a stale postmaster.pid, S3 temp files).
    pub skip: &'a dyn Fn(&str) -> bool,
    pub progress: &'a dyn Progress,
}

/// Relative paths a snapshot never holds: a postmaster.pid is never valid in another run, and
/// S3 temp files are emptied at every start.
pub fn never_saved(path: &str) -> bool {
    path == "postmaster.pid" || path == ".opsbox-s3/tmp" || path.starts_with(".opsbox-s3/tmp/")
}

/// Copy `from` into `to` (which must not exist yet) and return its entries, sorted by path.
pub fn copy_tree(from: &Path, to: &Path, how: &Copy<'_>) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    // Modes of directories are set last, so that a read-only directory can still be filled.
    let mut dirs: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    let root = fs_err::symlink_metadata(from).map_err(SnapshotError::io("read", from))?;
    fs_err::create_dir(to).map_err(SnapshotError::io("create", to))?;
    dirs.push((to.to_path_buf(), root));
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let source_dir = from.join(&relative);
        let mut children: Vec<_> = fs_err::read_dir(&source_dir)
            .map_err(SnapshotError::io("read", &source_dir))?
            .collect::<std::io::Result<_>>()
            .map_err(SnapshotError::io("read", &source_dir))?;
        children.sort_by_key(|c| c.file_name());
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
                fs_err::create_dir(&target).map_err(SnapshotError::io("create", &target))?;
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
                if how.link {
                    fs_err::hard_link(&source, &target)
                        .map_err(SnapshotError::io("link", &target))?;
                } else {
                    fs_err::copy(&source, &target).map_err(SnapshotError::io("copy", &source))?;
                    set_owner(&target, &meta)?;
                }
                let sha256 = if how.hash {
                    Some(sha256_file(&source)?)
                } else {
                    None
                };
                how.progress.advance(meta.len());
                entries.push(Entry {
                    path: rel_text,
                    kind: EntryKind::File,
                    mode,
                    size: meta.len(),
                    sha256,
                    target: None,
                });
            }
            // Sockets and fifos are not data; none of the three services keeps one there.
        }
    }
    for (dir, meta) in dirs.iter().rev() {
        set_owner(dir, meta)?;
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(SnapshotError::io("set the mode of", dir))?;
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
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

pub fn sha256_file(path: &Path) -> Result<String> {
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
