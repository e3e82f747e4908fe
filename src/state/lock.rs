//! The exclusive lock (flock) a running supervisor holds on its data directory.

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
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(path)
        // The std file underneath: StateError::Lock names the path itself.
        .map(fs_err::File::into_file)
        .map_err(|source| StateError::Lock {
            path: path.to_path_buf(),
            source,
        })
}
