//! The top-level error and how it is shown: one `error:` line naming the thing and the failed
//! action, `caused by:` lines, and a `hint:` with what to do.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::console::ConsoleError;
use crate::fetch::FetchError;
use crate::services::ServiceError;
use crate::services::s3::S3Error;
use crate::snapshot::SnapshotError;
use crate::state::StateError;
use crate::state::control::ControlError;
use crate::supervisor::SupervisorError;
use crate::types::ServiceName;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Fetch(Box<FetchError>),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Ports(#[from] crate::ports::PortError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("cannot start {service}: port {port} on {host} is already in use{owner}")]
    PortInUse {
        service: ServiceName,
        what: &'static str,
        host: String,
        port: u16,
        /// " (pid N: command)" when the OS lets us see the owner.
        owner: String,
        flag: &'static str,
        ours: bool,
    },
    #[error("refusing to delete the data directory {path}: it is {reason}")]
    DeleteRefused { path: PathBuf, reason: String },
    #[error("cannot delete the data directory {path}")]
    Delete {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "opsbox (pid {pid}) did not stop: it still holds the lock on {data_dir} after {waited_ms} ms"
    )]
    StillRunning {
        pid: String,
        data_dir: PathBuf,
        waited_ms: u64,
    },
    #[error("cannot tell which process runs opsbox for {data_dir}: {reason}")]
    UnknownSupervisor { data_dir: PathBuf, reason: String },
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    #[error("{0}")]
    Message(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<FetchError> for Error {
    fn from(error: FetchError) -> Self {
        Error::Fetch(Box::new(error))
    }
}

impl Error {
    /// An I/O failure; `context` names the path, so fs-err's copy of it is dropped.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source: crate::fetch::without_path(source),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Fetch(e) => e.hint(),
            Error::State(e) => e.hint(),
            Error::Supervisor(e) => e.hint(),
            Error::Console(e) => e.hint(),
            Error::Ports(e) => e.hint(),
            Error::Snapshot(e) => e.hint(),
            Error::Control(e) => e.hint(),
            Error::Config(_) => Some(
                "fix the file (it is shared with docker compose), or run from a directory without ops/ to use the built-in defaults".into(),
            ),
            Error::PortInUse {
                port, flag, ours, ..
            } => Some(if *ours {
                "a previous opsbox of this project still holds it: run `opsbox down`".to_string()
            } else {
                format!(
                    "stop whatever listens on {port} (`ss -ltnp 'sport = {port}'`) or run `opsbox up {flag} <free port>`"
                )
            }),
            Error::Service(e) => e.hint(),
            Error::DeleteRefused { .. } => Some(
                "point --data-dir / OPSBOX_DATA_DIR at this project's own data directory, or delete the data by hand".into(),
            ),
            Error::Delete { path, .. } => Some(format!(
                "check the permissions under {} (PostgreSQL's files belong to the account it ran as), then run `opsbox down -v` again",
                path.display()
            )),
            Error::StillRunning { data_dir, .. } | Error::UnknownSupervisor { data_dir, .. } => {
                Some(format!(
                    "if opsbox is still starting, wait and run `opsbox down` again; otherwise find the process with `fuser -v {}` and stop it by hand",
                    data_dir.join("opsbox.lock").display()
                ))
            }
            Error::Usage { hint, .. } => hint.clone(),
            _ => None,
        }
    }

    /// Extra lines shown after the hint (e.g. the last lines of a service log).
    pub fn details(&self) -> &[String] {
        match self {
            Error::Service(e) => e.details(),
            Error::Supervisor(SupervisorError::Exited { log_tail, .. }) => log_tail,
            _ => &[],
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } => 2,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
