//! The binary cache: `<cache>/nats-server/<version>/nats-server` and
//! `<cache>/postgresql/<version>/{bin,lib,share}`, each entry with a verification record
//! (sha256 of its executables) checked on every use, an exclusive lock file per entry while
//! fetching, and installs that appear by one atomic rename of a fully prepared directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::download::{Subject, sha256_file};
use super::error::FetchError;
use crate::state::LockMode;

/// The file inside each cache entry listing `<sha256>  <relative path>` of its executables.
pub(crate) const RECORD_FILE: &str = ".opsbox-verified";

/// One versioned entry of the cache, e.g. `<cache>/postgresql/16.14.0`.
pub(crate) struct CacheEntry {
    pub dir: PathBuf,
    /// Paths (relative to `dir`) whose hashes the record holds.
    pub executables: Vec<&'static str>,
}

/// What a look at a cache entry found.
pub(crate) enum EntryState {
    Valid,
    Missing,
    Corrupt(String),
}

impl CacheEntry {
    pub(crate) fn new(
        cache_dir: &Path,
        kind: &str,
        version: &str,
        executables: Vec<&'static str>,
    ) -> Self {
        CacheEntry {
            dir: cache_dir.join(kind).join(version),
            executables,
        }
    }

    fn parent(&self) -> &Path {
        self.dir
            .parent()
            .expect("a cache entry has a parent directory")
    }

    /// Checks the entry against its verification record.
    pub(crate) fn check(&self) -> EntryState {
        if !self.dir.exists() {
            return EntryState::Missing;
        }
        let record_path = self.dir.join(RECORD_FILE);
        let Ok(record) = fs_err::read_to_string(&record_path) else {
            return EntryState::Corrupt(format!(
                "its verification record {} is missing",
                record_path.display()
            ));
        };
        for executable in &self.executables {
            let expected = record.lines().find_map(|line| {
                let (hash, path) = line.split_once("  ")?;
                (path == *executable).then_some(hash)
            });
            let Some(expected) = expected else {
                return EntryState::Corrupt(format!(
                    "its verification record lists no checksum for {executable}"
                ));
            };
            let path = self.dir.join(executable);
            match sha256_file(&path) {
                Ok(actual) if actual == expected => {}
                Ok(actual) => {
                    return EntryState::Corrupt(format!(
                        "checksum mismatch for {}: recorded {expected}, found {actual}",
                        path.display()
                    ));
                }
                Err(error) => {
                    return EntryState::Corrupt(format!(
                        "cannot read {}: {}",
                        path.display(),
                        super::error::without_path(error)
                    ));
                }
            }
        }
        EntryState::Valid
    }

    /// Whether the entry can be used as it is. A corrupt entry is reported and removed, so it
    /// is fetched again.
    pub(crate) fn usable(
        &self,
        fetcher: &super::Fetcher,
        subject: Subject<'_>,
    ) -> Result<bool, FetchError> {
        match self.check() {
            EntryState::Valid => Ok(true),
            EntryState::Missing => Ok(false),
            EntryState::Corrupt(reason) => {
                fetcher.reporter.warn(&format!(
                    "the cached {} {} in {} is corrupt ({reason}); fetching it again",
                    subject.name,
                    subject.version,
                    self.dir.display()
                ));
                self.remove(subject)?;
                Ok(false)
            }
        }
    }

    /// Removes a corrupt entry so it can be fetched again.
    pub(crate) fn remove(&self, subject: Subject<'_>) -> Result<(), FetchError> {
        match fs_err::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(subject.io("remove the corrupt cache entry", &self.dir)(
                error,
            )),
        }
    }

    /// Takes the entry's exclusive lock (blocking until other fetchers are done).
    pub(crate) async fn lock(&self, subject: Subject<'_>) -> Result<EntryLock, FetchError> {
        let parent = self.parent().to_path_buf();
        fs_err::create_dir_all(&parent).map_err(subject.io("create the directory", &parent))?;
        let file_name = self
            .dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = parent.join(format!("{file_name}.lock"));
        crate::state::lock_file(&path, LockMode::Exclusive)
            .await
            .map(|file| EntryLock { _file: file })
            .map_err(|source| FetchError::Lock {
                name: subject.name.into(),
                version: subject.version.into(),
                path,
                source,
            })
    }

    /// A fresh staging directory next to the entry (same file system, so the final rename is
    /// atomic); it is deleted on drop unless installed.
    pub(crate) fn staging(&self, subject: Subject<'_>) -> Result<tempfile::TempDir, FetchError> {
        let parent = self.parent();
        fs_err::create_dir_all(parent).map_err(subject.io("create the directory", parent))?;
        tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(parent)
            .map_err(subject.io("create a staging directory in", parent))
    }

    /// Installs one executable file, `bytes` at `relative`, as the whole entry.
    pub(crate) fn install_file(
        &self,
        subject: Subject<'_>,
        relative: &str,
        bytes: &[u8],
        origin: &Path,
    ) -> Result<(), FetchError> {
        let staging = self.staging(subject)?;
        let target = staging.path().join(relative);
        fs_err::write(&target, bytes).map_err(subject.io("write", &target))?;
        fs_err::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
            .map_err(subject.io("set permissions of", &target))?;
        self.install(subject, staging, origin)
    }

    /// Checks that the staged tree (unpacked from `origin`) has every executable the record
    /// covers, makes it readable by all, writes the verification record, and renames the
    /// staging directory into place.
    pub(crate) fn install(
        &self,
        subject: Subject<'_>,
        staging: tempfile::TempDir,
        origin: &Path,
    ) -> Result<(), FetchError> {
        let root = staging.path().to_path_buf();
        for executable in &self.executables {
            if !super::system::is_executable(&root.join(executable)) {
                return Err(subject.archive_error(origin)(format!(
                    "it holds no executable {executable}"
                )));
            }
        }
        make_world_readable(&root).map_err(subject.io("set permissions under", &root))?;
        let mut record = String::new();
        for executable in &self.executables {
            let path = root.join(executable);
            let hash = sha256_file(&path).map_err(subject.io("hash", &path))?;
            record.push_str(&format!("{hash}  {executable}\n"));
        }
        let record_path = root.join(RECORD_FILE);
        fs_err::write(&record_path, record).map_err(subject.io("write", &record_path))?;
        fs_err::set_permissions(&record_path, std::fs::Permissions::from_mode(0o644))
            .map_err(subject.io("set permissions of", &record_path))?;
        // The staging dir itself was created 0700 by tempfile.
        fs_err::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(subject.io("set permissions of", &root))?;
        let staged = staging.keep();
        if let Err(error) = fs_err::rename(&staged, &self.dir) {
            let _ = fs_err::remove_dir_all(&staged);
            return Err(subject.io("rename the staged install into", &self.dir)(
                error,
            ));
        }
        Ok(())
    }
}

/// Holds the entry's lock until dropped.
pub(crate) struct EntryLock {
    _file: std::fs::File,
}

/// Directories 0755, executables 0755, other files 0644; symlinks are left alone.
pub(crate) fn make_world_readable(root: &Path) -> std::io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_symlink() {
                continue;
            }
            if file_type.is_dir() {
                stack.push(path);
            } else {
                let mode = fs_err::metadata(&path)?.permissions().mode();
                let new_mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(new_mode))?;
            }
        }
    }
    Ok(())
}
