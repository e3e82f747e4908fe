//! The only code that spawns processes or sends signals: children in their own session with a
//! parent-death signal, stops with a grace period, verified signalling of recorded pids, the
//! restart policy and the shutdown signals opsbox itself receives.

pub mod account;
pub mod child;
pub mod freeze;
pub mod process;
pub mod restart_policy;
pub mod signals;
mod spawner;

use std::path::PathBuf;

pub use account::Account;
pub use child::{
    ChildSpec, RunningChild, capture_output, run_to_completion, spawn, spawn_detached,
};
pub use freeze::{FreezeError, Frozen};
pub use restart_policy::{RestartDecision, RestartPolicy};

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start {name} ({program})")]
    Spawn {
        name: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} exited with {status} while {action}")]
    Exited {
        name: String,
        action: String,
        status: String,
        log: PathBuf,
        log_tail: Vec<String>,
    },
    #[error("cannot open the log file {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no unprivileged account to run {purpose} as (looked for {looked_for})")]
    NoAccount { purpose: String, looked_for: String },
    #[error(transparent)]
    Freeze(#[from] FreezeError),
    #[error("cannot send {signal} to {name} (pid {pid})")]
    Signal {
        name: String,
        pid: i32,
        signal: String,
        #[source]
        source: nix::Error,
    },
}

impl SupervisorError {
    pub fn hint(&self) -> Option<String> {
        match self {
            SupervisorError::Spawn { program, .. } => Some(format!(
                "check that {} exists and is executable; remove it from the cache to have opsbox fetch it again",
                program.display()
            )),
            SupervisorError::Exited { log, .. } => Some(format!(
                "see the full log: {} (or `opsbox logs`)",
                log.display()
            )),
            SupervisorError::NoAccount { .. } => Some(
                "create one (`useradd --system postgres`) or set OPSBOX_POSTGRES_USER to an existing unprivileged account".into(),
            ),
            _ => None,
        }
    }
}

/// The last `n` lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &std::path::Path, n: usize) -> Vec<String> {
    let Ok(text) = fs_err::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}
