//! Caches of built things (PostgreSQL cluster templates, stack templates) keep the few most
//! recently used entries: every change of a recipe (an init script, a password, a PostgreSQL
//! version) makes a new one, and the old ones would pile up.
//!
//! An entry is a directory `NAME` in the cache root with its lock `NAME.lock` beside it, maybe
//! companions `NAME<suffix>` (a spare, with its builder's lock `NAME<suffix>.lock`), and a
//! marker file inside whose modification time says when it was last used.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// How to recognise and remove the entries of one cache.
pub struct Cache<'a> {
    pub root: &'a Path,
    /// The file inside an entry whose modification time is its last use.
    pub used_marker: &'a str,
    /// Companion directories removed with an entry (`NAME<suffix>`).
    pub companions: &'a [&'a str],
}

impl Cache<'_> {
    /// Remove the entries beyond the `keep` most recently used, never `kept` (the one just
    /// built or used, which counts as one of them) and never one whose lock another process
    /// holds (tried, not waited for). Errors leave an entry for the next pruning.
    pub fn prune(&self, kept: &Path, keep: usize) {
        let Ok(entries) = fs_err::read_dir(self.root) else {
            return;
        };
        let mut found: Vec<(SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                !name.starts_with('.') && !self.companions.iter().any(|s| name.ends_with(s))
            })
            .map(|entry| entry.path())
            .filter(|path| path != kept)
            .map(|path| {
                let used = fs_err::metadata(path.join(self.used_marker))
                    .and_then(|meta| meta.modified())
                    .unwrap_or(UNIX_EPOCH);
                (used, path)
            })
            .collect();
        found.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        for (_, dir) in found.into_iter().skip(keep.saturating_sub(1)) {
            let Some(_lock) = super::try_lock_file(&sibling(&dir, ".lock")) else {
                continue;
            };
            for suffix in self.companions {
                let _ = remove_dir(&sibling(&dir, suffix));
                let _ = fs_err::remove_file(sibling(&dir, &format!("{suffix}.lock")));
            }
            let _ = remove_dir(&dir);
        }
    }
}

/// Mark `entry` as used now.
pub fn touch(entry: &Path, used_marker: &str) {
    if let Ok(file) = fs_err::OpenOptions::new()
        .write(true)
        .open(entry.join(used_marker))
    {
        let _ = file.file().set_modified(SystemTime::now());
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_dir(path: &Path) -> std::io::Result<()> {
    match fs_err::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MARKER: &str = ".used";

    #[test]
    fn pruning_keeps_the_most_recently_used_entries_and_the_one_just_kept() {
        let root = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let make = |name: &str, age_secs: u64| {
            let dir = root.path().join(name);
            fs_err::create_dir_all(dir.join("data")).unwrap();
            fs_err::create_dir_all(sibling(&dir, ".spare")).unwrap();
            fs_err::File::create(sibling(&dir, ".spare.lock")).unwrap();
            let marker = fs_err::File::create(dir.join(MARKER)).unwrap();
            marker
                .file()
                .set_modified(now - Duration::from_secs(age_secs))
                .unwrap();
            dir
        };
        // The one just kept is the oldest by its marker, and is kept all the same. Names
        // with dots (a PostgreSQL version) are entries too.
        let kept = make("kept", 10_000);
        for (name, age) in [("16.4.0-a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)] {
            make(name, age);
        }
        // One in use by another process (its lock held) is not removed either.
        let busy = fs_err::File::create(root.path().join("e.lock")).unwrap();
        busy.file().lock().unwrap();
        Cache {
            root: root.path(),
            used_marker: MARKER,
            companions: &[".spare"],
        }
        .prune(&kept, 4);
        let mut left: Vec<String> = fs_err::read_dir(root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".lock") || name.ends_with(".spare.lock"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "16.4.0-a",
                "16.4.0-a.spare",
                "16.4.0-a.spare.lock",
                "b",
                "b.spare",
                "b.spare.lock",
                "c",
                "c.spare",
                "c.spare.lock",
                "e",
                "e.spare",
                "e.spare.lock",
                "kept",
                "kept.spare",
                "kept.spare.lock"
            ]
        );
    }
}
