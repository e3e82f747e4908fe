//! The control channel of a running stack: a Unix socket in the abstract namespace named
//! after the data dir, on which the supervisor takes the requests `opsbox snapshot` and
//! `opsbox reset` make of a running stack. One JSON object per line each way. Only the same
//! user (or root) is served: the supervisor checks the peer's credentials.
//!
//! ```text
//! client                          supervisor (stack/control.rs)
//! {"op":"checkpoint"}      ->     PostgreSQL's CHECKPOINT (before a save copies)
//!                          <-     {"ok":true}
//! {"op":"freeze"}          ->     S3 closed to writes, nats-server and PostgreSQL frozen
//!                          <-     {"ok":true,"services":[...]}
//! ...copies the data dir...
//! {"op":"thaw"}            ->     everything runs again
//!                          <-     {"ok":true,"paused_ms":N}
//! {"op":"hold"}            ->     S3 closed, nats-server and PostgreSQL stopped cleanly
//!                          <-     {"ok":true,...}
//! ...swaps the data in...
//! {"op":"release"}         ->     interrupted swap finished, services started, S3 opened
//!                          <-     {"ok":true,"paused_ms":N}
//! ```
//!
//! A client that goes away (killed, crashed) counts as `thaw` / `release`.

use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::StateDir;
use crate::types::ServiceName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Write PostgreSQL's dirty pages now (before a save copies it: the restored copy then
    /// replays little WAL at its first start).
    Checkpoint,
    /// Hold still for a save: S3 writes held, nats-server and PostgreSQL frozen.
    Freeze,
    /// End a freeze.
    Thaw,
    /// Stop for a restore: S3 requests held, nats-server and PostgreSQL stopped.
    Hold,
    /// End a hold: start them on what is now in the data dir.
    Release,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The services held still (freeze, hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceName>,
    /// How long clients were held (thaw, release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_ms: Option<u64>,
}

impl Reply {
    pub fn failed(error: impl Into<String>) -> Self {
        Reply {
            ok: false,
            error: Some(error.into()),
            ..Reply::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "the stack of {data_dir} is running, but its supervisor takes no control requests (it may be an older opsbox)"
    )]
    NoChannel {
        data_dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the control channel of the stack of {data_dir} failed")]
    Io {
        data_dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the running stack refused: {0}")]
    Refused(String),
}

impl ControlError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ControlError::NoChannel { .. } | ControlError::Io { .. } => Some(
                "stop the stack with `opsbox down`, run the command, then `opsbox up` again".into(),
            ),
            ControlError::Refused(_) => Some(
                "the stack was left running as it was; see `opsbox logs opsbox`, and try again"
                    .into(),
            ),
        }
    }
}

/// The socket's name: per user and data dir (canonical, so two spellings meet).
pub fn address(state: &StateDir) -> std::io::Result<SocketAddr> {
    let root = fs_err::canonicalize(&state.root).unwrap_or_else(|_| state.root.clone());
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    let name = format!(
        "opsbox-control/{}/{}",
        nix::unistd::geteuid(),
        hex::encode(&digest[..16])
    );
    SocketAddr::from_abstract_name(name.as_bytes())
}

/// A connection to the running stack's supervisor.
pub struct ControlClient {
    data_dir: PathBuf,
    stream: BufReader<UnixStream>,
}

impl ControlClient {
    pub fn connect(state: &StateDir) -> Result<Self, ControlError> {
        let no_channel = |source| ControlError::NoChannel {
            data_dir: state.root.clone(),
            source,
        };
        let stream =
            UnixStream::connect_addr(&address(state).map_err(no_channel)?).map_err(no_channel)?;
        Ok(Self {
            data_dir: state.root.clone(),
            stream: BufReader::new(stream),
        })
    }

    /// Send `request` and wait for the reply; a refusal is an error carrying its reason.
    pub fn request(&mut self, request: Request) -> Result<Reply, ControlError> {
        let io = |source| ControlError::Io {
            data_dir: self.data_dir.clone(),
            source,
        };
        let mut line = serde_json::to_string(&request).expect("a request serialises");
        line.push('\n');
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .map_err(io)?;
        let mut answer = String::new();
        if self.stream.read_line(&mut answer).map_err(io)? == 0 {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the supervisor closed the channel without an answer",
            )));
        }
        let reply: Reply = serde_json::from_str(&answer)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        if reply.ok {
            Ok(reply)
        } else {
            Err(ControlError::Refused(
                reply.error.unwrap_or_else(|| "no reason given".into()),
            ))
        }
    }
}
