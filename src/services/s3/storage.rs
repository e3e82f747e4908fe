//! The on-disk layout of the S3 root and its durable, atomic writes.
//!
//! ```text
//! <root>/<bucket>/...                    object data, paths from keys.rs
//! <root>/.opsbox-s3/meta/<bucket>/...    one JSON sidecar per object (same relative path)
//! <root>/.opsbox-s3/uploads/<id>/        multipart uploads: upload.json, part-<n>, part-<n>.json
//! <root>/.opsbox-s3/tmp/                 temp files, emptied at start
//! ```
//!
//! Bucket names cannot start with `.`, so no bucket can reach `.opsbox-s3`, and keys.rs keeps
//! keys inside their bucket directory.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::keys;

const INTERNAL: &str = ".opsbox-s3";

/// Everything stored about an object besides its bytes; written once, at write time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Without quotes: hex MD5, or `<hex>-<parts>` for multipart objects.
    pub e_tag: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_redirect_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc64nvme: Option<String>,
    /// The inode of the data file this metadata was written with. Data and metadata are two
    /// renames; a crash between them would pair new bytes with old metadata. The inode tells:
    /// a replaced data file always has a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_inode: Option<u64>,
    /// Part sizes of a multipart object, in order (for GET/HEAD with `partNumber`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<u64>>,
}

impl ObjectMeta {
    /// Whether this metadata was written together with the data file `stat` describes.
    pub fn describes(&self, stat: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.data_inode.is_none_or(|inode| inode == stat.ino()) && self.size == stat.len()
    }
}

/// Metadata for `data` rebuilt from its bytes (MD5 ETag, size; headers given at PUT are lost),
/// stored durably at `meta_path`. Only for data whose metadata is missing or belongs to another
/// version after a crash; the normal path never re-reads objects.
pub fn rebuild_meta(layout: &Layout, data: &Path, meta_path: &Path) -> io::Result<ObjectMeta> {
    use md5::Digest;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut file = fs_err::File::open(data)?;
    let stat = file.metadata()?;
    let mut md5 = md5::Md5::new();
    let mut buffer = vec![0u8; 512 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        md5.update(&buffer[..n]);
    }
    let meta = ObjectMeta {
        e_tag: hex::encode(md5.finalize()),
        size: stat.len(),
        data_inode: Some(stat.ino()),
        ..Default::default()
    };
    let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
    write_durably(layout, &json, meta_path, layout.root())?;
    Ok(meta)
}

/// Paths of the S3 root.
#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
    temp_counter: AtomicU64,
}

impl Layout {
    /// Create the internal directories and remove temp files a crash may have left.
    pub fn open(root: &Path) -> io::Result<Layout> {
        let layout = Layout {
            root: root.to_owned(),
            temp_counter: AtomicU64::new(0),
        };
        layout.ensure_dirs()?;
        Ok(layout)
    }

    /// Create the internal directories and remove temp files a crash may have left.
    pub fn ensure_dirs(&self) -> io::Result<()> {
        let layout = self;
        fs_err::create_dir_all(layout.internal().join("meta"))?;
        fs_err::create_dir_all(layout.internal().join("uploads"))?;
        let temp_dir = layout.temp_dir();
        if temp_dir.exists() {
            fs_err::remove_dir_all(&temp_dir)?;
        }
        fs_err::create_dir_all(&temp_dir)?;
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn internal(&self) -> PathBuf {
        self.root.join(INTERNAL)
    }

    pub fn temp_dir(&self) -> PathBuf {
        self.internal().join("tmp")
    }

    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    pub fn bucket_meta_dir(&self, bucket: &str) -> PathBuf {
        self.internal().join("meta").join(bucket)
    }

    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.bucket_dir(bucket)
            .join(keys::key_to_relative_path(key))
    }

    pub fn meta_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.bucket_meta_dir(bucket)
            .join(keys::key_to_relative_path(key))
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.internal().join("uploads")
    }

    pub fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.uploads_dir().join(upload_id)
    }

    /// A fresh temp file path on the same file system as the data (so rename is atomic).
    pub fn temp_path(&self) -> TempPath {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        TempPath(Some(
            self.temp_dir()
                .join(format!("{}-{n}.part", std::process::id())),
        ))
    }
}

/// A temp file that is removed on drop unless it was moved into place.
#[derive(Debug)]
pub struct TempPath(Option<PathBuf>);

impl TempPath {
    pub fn path(&self) -> &Path {
        self.0
            .as_deref()
            .expect("temp path is present until persisted")
    }

    /// Give up ownership (the file was renamed away).
    pub fn disarm(mut self) -> PathBuf {
        self.0.take().expect("temp path is present until persisted")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs_err::remove_file(path);
        }
    }
}

/// fsync a directory so that a rename or create inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs_err::File::open(dir)?.sync_all()
}

/// Create `dir` and its missing parents, fsyncing the parent of each new directory; `stop`
/// bounds the walk (it is never created by this function's callers' intent, only found).
pub fn create_dirs_durably(dir: &Path, stop: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut current = dir;
    while !current.is_dir() && current.starts_with(stop.parent().unwrap_or(stop)) {
        missing.push(current.to_owned());
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    for new_dir in missing.iter().rev() {
        match fs_err::create_dir(new_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = new_dir.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Move a fully written and fsynced temp file to `dest`, then fsync `dest`'s directory.
pub fn persist(temp: TempPath, dest: &Path, stop: &Path) -> io::Result<()> {
    let parent = dest.parent().expect("object paths have a parent");
    create_dirs_durably(parent, stop)?;
    fs_err::rename(temp.path(), dest)?;
    temp.disarm();
    sync_dir(parent)
}

/// Write `bytes` to a temp file, fsync it and move it to `dest` durably.
pub fn write_durably(layout: &Layout, bytes: &[u8], dest: &Path, stop: &Path) -> io::Result<()> {
    let temp = layout.temp_path();
    {
        let mut file = fs_err::File::create(temp.path())?;
        io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
    }
    persist(temp, dest, stop)
}

/// Remove `path`'s empty parent directories up to (not including) `stop`.
pub fn remove_empty_parents(path: &Path, stop: &Path) {
    let mut current = path.parent();
    while let Some(dir) = current {
        if dir == stop || !dir.starts_with(stop) {
            break;
        }
        // remove_dir fails on non-empty directories, which ends the walk.
        if fs_err::remove_dir(dir).is_err() {
            break;
        }
        current = dir.parent();
    }
}

pub fn read_meta(path: &Path) -> io::Result<Option<ObjectMeta>> {
    match fs_err::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        // fs-err's error already reads "failed to read from file `PATH`: CAUSE".
        Err(e) => Err(e),
    }
}

/// Whether a bucket directory holds any object file (empty directories do not count).
pub fn tree_has_files(dir: &Path) -> io::Result<bool> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if tree_has_files(&entry.path())? {
                return Ok(true);
            }
        } else {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every (key, data file path) in a bucket tree that can start with `prefix`, in no particular
/// order. Only the directory of the prefix's complete segments is walked.
pub fn walk_keys(bucket_dir: &Path, prefix: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let start = match prefix.rfind('/') {
        Some(at) => {
            let probe = keys::key_to_relative_path(&format!("{}x", &prefix[..=at]));
            bucket_dir.join(probe.parent().expect("a key with a slash has a directory"))
        }
        None => bucket_dir.to_owned(),
    };
    if !start.is_dir() {
        return Ok(found);
    }
    let mut stack = vec![start];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(bucket_dir)
                && let Some(key) = keys::relative_path_to_key(relative)
            {
                found.push((key, path));
            }
        }
    }
    Ok(found)
}

/// After the S3 root was copied file by file (a snapshot import), every data file has a new
/// inode: record it in the metadata written with it, which the copy carried over unchanged,
/// so that the metadata is still trusted (ObjectMeta::describes) instead of rebuilt without
/// its headers. Returns the sidecars updated, relative to `root`. Each is replaced by a rename,
/// never rewritten in place (it may be a hard link).
pub fn adopt_copied_inodes(root: &Path) -> io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let meta_root = root.join(INTERNAL).join("meta");
    let mut updated = Vec::new();
    let mut stack = vec![meta_root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(relative) = path.strip_prefix(&meta_root) else {
                continue;
            };
            let Ok(stat) = fs_err::metadata(root.join(relative)) else {
                continue;
            };
            let Some(mut meta) = read_meta(&path)? else {
                continue;
            };
            if meta.data_inode.is_some_and(|inode| inode != stat.ino()) && meta.size == stat.len() {
                meta.data_inode = Some(stat.ino());
                let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
                let temp = path.with_extension("opsbox-adopt");
                fs_err::write(&temp, json)?;
                fs_err::rename(&temp, &path)?;
                updated.push(Path::new(INTERNAL).join("meta").join(relative));
            }
        }
    }
    Ok(updated)
}
