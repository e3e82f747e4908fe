//! What can go wrong while preparing, starting or checking a service.

use std::path::PathBuf;

use crate::supervisor::SupervisorError;
use crate::types::ServiceName;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{service} did not become ready: {reason} (after {waited_secs} s)")]
    NotReady {
        service: ServiceName,
        waited_secs: u64,
        reason: String,
        log: Option<PathBuf>,
        log_tail: Vec<String>,
    },
    #[error("{service}: {message}")]
    Failed {
        service: ServiceName,
        message: String,
        hint: Option<String>,
    },
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ServiceError {
    /// An I/O failure; `context` names the path, so fs-err's copy of it is dropped.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ServiceError::Io {
            context: context.into(),
            source: crate::fetch::without_path(source),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ServiceError::NotReady { log, .. } => log
                .as_ref()
                .map(|log| format!("see the full log: {} (or `opsbox logs`)", log.display())),
            ServiceError::Failed { hint, .. } => hint.clone(),
            ServiceError::Supervisor(e) => e.hint(),
            ServiceError::Io { .. } => None,
        }
    }

    /// Extra lines shown after the hint: the last lines of the service's log.
    pub fn details(&self) -> &[String] {
        match self {
            ServiceError::NotReady { log_tail, .. } => log_tail,
            ServiceError::Supervisor(SupervisorError::Exited { log_tail, .. }) => log_tail,
            _ => &[],
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
