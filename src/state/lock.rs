//! File locks (flock): the exclusive lock a running supervisor holds on its data directory,
//! and the one way every other lock file (binary cache entries, cluster templates, the
//! host-wide port lock) is opened and taken.

use std::fs::{File, TryLockError};

use fs_err::OpenOptions;
use std::path::Path;

use super::{StateDir, StateError};

/// Held for as long as a supervisor runs; the kernel drops it when the process dies, however
/// it dies, so a stale lock cannot exist.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Take the lock, or report who holds it.
    pub fn acquire(state: &StateDir) -> Result<StateLock, StateError> {
        let path = state.lock_file();
        let file = open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StateError::AlreadyRunning {
                pid: super::RunFile::read(&state.run_file())
                    .ok()
                    .flatten()
                    .map_or("unknown".into(), |run| run.supervisor.pid.to_string()),
                data_dir: state.root.clone(),
            }),
            Err(TryLockError::Error(source)) => Err(StateError::Lock { path, source }),
        }
    }

    /// Whether some process holds the lock right now (without taking it for long).
    pub fn is_held(state: &StateDir) -> bool {
        let path = state.lock_file();
        let Ok(file) = OpenOptions::new().read(true).open(&path) else {
            return false;
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        }
    }
}

fn open(path: &Path) -> Result<File, StateError> {
    open_lock_file(path).map_err(|source| StateError::Lock {
        path: path.to_path_buf(),
        source,
    })
}

/// Shared (readers) or exclusive (a writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// Open (creating) the lock file `path`. The std file underneath: callers' errors name the
/// path themselves.
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(path)
        .map(fs_err::File::into_file)
}

/// Open the lock file `path` and take its lock, waiting for other holders; the lock is held
/// until the returned file is dropped (or its process dies).
pub fn lock_file_blocking(path: &Path, mode: LockMode) -> std::io::Result<File> {
    let file = open_lock_file(path)?;
    match mode {
        LockMode::Shared => file.lock_shared()?,
        LockMode::Exclusive => file.lock()?,
    }
    Ok(file)
}

/// Open the lock file `path` and take its exclusive lock if nobody holds it (`None` when
/// somebody does, or it cannot be opened): for work that gives way to other holders.
pub fn try_lock_file(path: &Path) -> Option<File> {
    let file = open_lock_file(path).ok()?;
    file.try_lock().ok()?;
    Some(file)
}

/// [`lock_file_blocking`] on a blocking thread, for async callers.
pub async fn lock_file(path: &Path, mode: LockMode) -> std::io::Result<File> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || lock_file_blocking(&path, mode))
        .await
        .map_err(|join| std::io::Error::other(join.to_string()))?
}
