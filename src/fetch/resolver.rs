//! The one routine that resolves a binary from an ordered list of sources: the verified cache;
//! then, online and under the cache entry's lock (checking the cache again once it is held),
//! each network source in turn, which installs into the cache entry; then what the machine has
//! installed. Each fallback is reported in one short line, with the full error as detail.

use std::path::PathBuf;

use async_trait::async_trait;

use super::cache::CacheEntry;
use super::download::Subject;
use super::error::{FetchError, chain};
use super::{Fetcher, Source};

/// What kind of binary is resolved, and how it sits in a cache entry.
pub(crate) struct Binary {
    /// "nats-server", "postgresql": the cache directory and the name in messages.
    pub name: &'static str,
    /// Paths (relative to the cache entry) that must be executable; their hashes form the
    /// entry's verification record.
    pub executables: &'static [&'static str],
    /// The resolved path inside a cache entry: this file, or the entry itself.
    pub entry_file: Option<&'static str>,
}

/// One resolution in progress, handed to each source.
pub(crate) struct Request<'a> {
    pub fetcher: &'a Fetcher,
    pub binary: &'a Binary,
    pub version: &'a str,
    pub entry: CacheEntry,
}

impl Request<'_> {
    pub(crate) fn subject(&self) -> Subject<'_> {
        Subject {
            name: self.binary.name,
            version: self.version,
        }
    }

    fn in_cache(&self, source: Source) -> Resolved {
        let path = match self.binary.entry_file {
            Some(file) => self.entry.dir.join(file),
            None => self.entry.dir.clone(),
        };
        Resolved {
            path,
            version: self.version.to_string(),
            source,
        }
    }

    /// The verified cache entry, if any; a corrupt one is reported and removed.
    fn cached(&self) -> Result<Option<Resolved>, FetchError> {
        Ok(self
            .entry
            .usable(self.fetcher, self.subject())?
            .then(|| self.in_cache(Source::Cache)))
    }
}

/// What a source provided.
pub(crate) enum Provided {
    /// Installed into the request's cache entry.
    Cached(Source),
    /// Found elsewhere on the machine.
    Found(Resolved),
}

/// A binary and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub path: PathBuf,
    pub version: String,
    pub source: Source,
}

/// One place a binary can come from.
#[async_trait]
pub(crate) trait BinarySource: Send + Sync {
    /// How messages name it: "GitHub", "pip", "npm", "PATH".
    fn label(&self) -> String;
    /// Network sources run only when online, under the cache entry's lock, and install into
    /// the entry; the others look at what the machine has.
    fn uses_network(&self) -> bool;
    async fn provide(&self, request: &Request<'_>) -> Result<Provided, FetchError>;
}

/// A binary the user named explicitly (`path`, whose version `executable` reports): used as
/// it is, whatever its version.
pub(crate) async fn explicit(
    fetcher: &Fetcher,
    binary: &Binary,
    path: PathBuf,
    executable: &std::path::Path,
) -> Result<Resolved, FetchError> {
    let version = super::system::binary_version(binary.name, executable).await?;
    let source = Source::Explicit(path.clone());
    fetcher.reporter.resolved(binary.name, &version, &source);
    Ok(Resolved {
        path,
        version,
        source,
    })
}

/// Resolves `binary` at `version` from the cache, then `sources` in order.
pub(crate) async fn resolve(
    fetcher: &Fetcher,
    binary: &Binary,
    version: &str,
    sources: &[&dyn BinarySource],
) -> Result<Resolved, FetchError> {
    let request = Request {
        fetcher,
        binary,
        version,
        entry: CacheEntry::new(
            &fetcher.cache_dir,
            binary.name,
            version,
            binary.executables.to_vec(),
        ),
    };
    let resolved = |found: Resolved| {
        fetcher
            .reporter
            .resolved(binary.name, &found.version, &found.source);
        found
    };
    if let Some(found) = request.cached()? {
        return Ok(resolved(found));
    }

    let usable: Vec<&dyn BinarySource> = sources
        .iter()
        .copied()
        .filter(|source| !(fetcher.offline && source.uses_network()))
        .collect();
    let mut failures: Vec<(String, FetchError)> = Vec::new();
    let mut lock = None;
    for (index, source) in usable.iter().enumerate() {
        if !source.uses_network() {
            lock = None;
        } else if lock.is_none() {
            lock = Some(request.entry.lock(request.subject()).await?);
            // Another process may have installed it while we waited for the lock.
            if let Some(found) = request.cached()? {
                return Ok(resolved(found));
            }
        }
        match source.provide(&request).await {
            Ok(provided) => return Ok(resolved(request.outcome(provided))),
            Err(error) => {
                let next = usable.get(index + 1).map(|next| next.label());
                failures.push(report(&request, *source, error, next));
            }
        }
    }
    drop(lock);
    Err(final_error(&request, failures))
}

impl Request<'_> {
    fn outcome(&self, provided: Provided) -> Resolved {
        match provided {
            Provided::Cached(source) => self.in_cache(source),
            Provided::Found(found) => found,
        }
    }
}

/// Reports a failed source when another one follows: one short line, the full chain as
/// detail.
fn report(
    request: &Request<'_>,
    source: &dyn BinarySource,
    error: FetchError,
    next: Option<String>,
) -> (String, FetchError) {
    let label = source.label();
    if let Some(next) = next {
        let (name, version) = (request.binary.name, request.version);
        request.fetcher.reporter.fallback(
            &format!("{name} {version}: {label} {}, trying {next}", error.brief()),
            &format!("{name} {version}: {label}: {}", chain(&error)),
        );
    }
    (label, error)
}

/// The error when no source provided the binary: one that explains a wrong major version
/// wins, then "offline", then every source's failure.
fn final_error(request: &Request<'_>, failures: Vec<(String, FetchError)>) -> FetchError {
    let fetcher = request.fetcher;
    let explained = failures
        .iter()
        .position(|(_, error)| matches!(error, FetchError::PostgresMajorUnavailable { .. }));
    if let Some(position) = explained {
        let mut failures = failures;
        let (_, mut error) = failures.remove(position);
        if let FetchError::PostgresMajorUnavailable { attempts, .. } = &mut error {
            *attempts = failures
                .iter()
                .map(|(label, error)| (label.clone(), error.brief()))
                .collect();
        }
        return error;
    }
    if fetcher.offline {
        return FetchError::Offline {
            name: request.binary.name.into(),
            version: request.version.into(),
            cache_dir: fetcher.cache_dir.clone(),
        };
    }
    FetchError::AllSourcesFailed {
        name: request.binary.name.into(),
        version: request.version.into(),
        attempts: failures
            .iter()
            .map(|(label, error)| (label.clone(), chain(error)))
            .collect(),
    }
}
