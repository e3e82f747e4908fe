//! Opening the archives the sources deliver (release tarballs, npm tarballs, wheels): each
//! failure becomes one `FetchError::Archive` naming the file.

use std::io::BufReader;
use std::ops::ControlFlow;
use std::path::Path;

use super::download::Subject;
use super::error::FetchError;

/// One entry of a tar.gz being read.
pub(crate) type TarEntry<'a> = tar::Entry<'a, flate2::read::GzDecoder<BufReader<fs_err::File>>>;

impl Subject<'_> {
    /// Builds the error for an unusable archive at `path`.
    pub(crate) fn archive_error(&self, path: &Path) -> impl Fn(String) -> FetchError + use<> {
        let (name, version, path) = (
            self.name.to_string(),
            self.version.to_string(),
            path.to_path_buf(),
        );
        move |cause| FetchError::Archive {
            name: name.clone(),
            version: version.clone(),
            path: path.clone(),
            cause,
        }
    }
}

/// Calls `visit` with each entry of the tar.gz at `path` (and the entry's path inside the
/// archive) until it breaks.
pub(crate) fn each_tar_gz_entry(
    subject: Subject<'_>,
    path: &Path,
    mut visit: impl FnMut(&Path, &mut TarEntry<'_>) -> Result<ControlFlow<()>, FetchError>,
) -> Result<(), FetchError> {
    let archive_error = subject.archive_error(path);
    let file = fs_err::File::open(path).map_err(subject.io("open", path))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    for item in tar.entries().map_err(|e| archive_error(e.to_string()))? {
        let mut item = item.map_err(|e| archive_error(e.to_string()))?;
        let item_path = item
            .path()
            .map_err(|e| archive_error(e.to_string()))?
            .into_owned();
        if visit(&item_path, &mut item)?.is_break() {
            break;
        }
    }
    Ok(())
}

/// Opens the zip archive (a wheel) at `path`.
pub(crate) fn open_zip(
    subject: Subject<'_>,
    path: &Path,
) -> Result<zip::ZipArchive<fs_err::File>, FetchError> {
    let file = fs_err::File::open(path).map_err(subject.io("open", path))?;
    zip::ZipArchive::new(file).map_err(|e| subject.archive_error(path)(e.to_string()))
}
