//! `run.json`: what the supervisor runs, written atomically on every change.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StateError, write_atomically};
use crate::types::ProcessIdentity;
use crate::types::ServiceName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    Starting,
    Ready,
    Restarting,
    CrashLooping,
    Stopping,
    Stopped,
    Failed,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Ready => "ready",
            ServiceState::Restarting => "restarting",
            ServiceState::CrashLooping => "crash-looping",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: ServiceName,
    pub state: ServiceState,
    /// The child process (none for the in-process S3 endpoint).
    pub process: Option<ProcessIdentity>,
    pub url: String,
    pub port: u16,
    /// Unix seconds when the current process (or listener) started.
    pub started_at: Option<u64>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub restarts: u32,
    pub last_error: Option<String>,
    /// How the last process of this service ended, when one did.
    #[serde(default)]
    pub last_exit: Option<ExitRecord>,
    /// Unix milliseconds when the next start is due, while a restart waits.
    #[serde(default)]
    pub next_start_at_ms: Option<u64>,
    /// Why the pending (or last) restart waited as long as it did.
    #[serde(default)]
    pub restart_reason: Option<String>,
}

/// How a process ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: Option<i32>,
    /// The signal's name, e.g. "SIGKILL".
    pub signal: Option<String>,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Whether it had passed its readiness check before it ended.
    pub was_ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFile {
    pub opsbox_version: String,
    pub supervisor: ProcessIdentity,
    pub started_at: u64,
    pub detached: bool,
    pub project_dir: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub host: String,
    pub services: Vec<ServiceRecord>,
    /// The web console's URL, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
}

impl RunFile {
    /// Read the run file; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<RunFile>, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::ReadRunFile {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::ReadRunFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(self).expect("run file serialises");
        write_atomically(path, &bytes).map_err(|source| StateError::WriteRunFile {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn service(&self, name: ServiceName) -> Option<&ServiceRecord> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn service_mut(&mut self, name: ServiceName) -> Option<&mut ServiceRecord> {
        self.services.iter_mut().find(|s| s.name == name)
    }
}
