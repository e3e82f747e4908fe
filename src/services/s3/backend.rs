//! The `s3s::S3` implementation: bucket calls delegate to `s3s_fs::FileSystem`; object calls
//! are here, listing, multipart and ACL calls in their own files, on the layout of storage.rs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use futures::StreamExt;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Mutex;

use super::access_log::AccessLog;
use super::checksum::{add_trailers, checksum_hasher, verify_checksums, verify_content_md5};
use super::conditions::{Conditions, WriteCondition};
use super::keys;
use super::storage::{self, Layout, ObjectMeta, TempPath};

/// Reads of object data use buffers this large (s3s-fs uses 4 KiB, which caps throughput).
const READ_BUFFER: usize = 512 * 1024;
/// Uploads are written through a buffer this large, so memory per upload stays bounded.
const WRITE_BUFFER: usize = 1024 * 1024;
const KEY_LOCKS: usize = 64;
/// Bodies above this size are hashed on another thread while they are written.
const HASH_ON_THREAD_ABOVE: usize = 1024 * 1024;
/// S3's limit on the keys of one DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;

/// The storage backend behind the S3 service. Clones share everything (the console calls the
/// same storage in-process).
#[derive(Clone)]
pub struct Backend {
    fs: Arc<s3s_fs::FileSystem>,
    pub(super) layout: Arc<Layout>,
    log: AccessLog,
    /// Striped locks that serialise the commit (data + sidecar rename) of writes to one key.
    key_locks: Arc<Vec<Mutex<()>>>,
    /// Striped locks that serialise changes to one multipart upload (parts, complete, abort).
    upload_locks: Arc<Vec<Mutex<()>>>,
    /// Orders part uploads by their start (multipart.rs).
    pub(super) sequence: Arc<AtomicU64>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("root", &self.layout.root())
            .finish_non_exhaustive()
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn is_name_too_long(e: &io::Error) -> bool {
    // fs-err wraps the OS error (raw_os_error is then None) but keeps its kind.
    e.raw_os_error() == Some(nix::libc::ENAMETOOLONG) || e.kind() == io::ErrorKind::InvalidFilename
}

/// The client sees the failed action; paths and causes go to the S3 log only.
fn internal_error(action: &str) -> s3s::S3Error {
    s3s::S3Error::with_message(
        S3ErrorCode::InternalError,
        format!("cannot {action}; the S3 log has the cause"),
    )
}

fn key_too_long() -> s3s::S3Error {
    s3_error!(KeyTooLongError, "Your key is too long")
}

pub(super) fn check_key(key: &str) -> S3Result<()> {
    match keys::validate(key) {
        Ok(()) => Ok(()),
        Err(keys::KeyProblem::Empty) => {
            Err(s3_error!(InvalidArgument, "The key must not be empty"))
        }
        Err(keys::KeyProblem::TooLong(_)) => Err(key_too_long()),
    }
}

fn body_error(e: s3s::StdError) -> s3s::S3Error {
    match e.downcast::<s3s::S3Error>() {
        Ok(e) => *e,
        Err(e) => s3_error!(IncompleteBody, "failed to receive the request body: {e}"),
    }
}

pub(super) fn timestamp(time: io::Result<SystemTime>) -> Option<Timestamp> {
    time.ok().map(Timestamp::from)
}

fn parse_expires(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.expires
        .as_deref()
        .and_then(|s| Timestamp::parse(TimestampFormat::DateTime, s).ok())
}

pub(super) fn format_expires(expires: Option<Timestamp>) -> Option<String> {
    let mut buf = Vec::new();
    expires?.format(TimestampFormat::DateTime, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

/// Where the MD5 (and requested checksums) of an upload are computed.
enum Hashing {
    Inline(Md5),
    Thread(
        tokio::sync::mpsc::Sender<bytes::Bytes>,
        tokio::task::JoinHandle<([u8; 16], s3s::checksum::ChecksumHasher)>,
    ),
}

/// A received upload body: in a temp file, not yet fsynced nor visible.
pub(super) struct Received {
    pub temp: TempPath,
    pub file: tokio::fs::File,
    pub md5: [u8; 16],
    pub size: u64,
}

/// The bucket and key of a copy source (`x-amz-copy-source`).
pub(super) fn copy_source(source: &CopySource) -> S3Result<(String, String)> {
    match source {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket.to_string(), key.to_string())),
        _ => Err(s3_error!(
            NotImplemented,
            "Only bucket copy sources are supported"
        )),
    }
}

impl Backend {
    pub fn new(layout: Arc<Layout>, log: AccessLog) -> io::Result<Backend> {
        let fs = s3s_fs::FileSystem::new(layout.root())
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        let key_locks = Arc::new((0..KEY_LOCKS).map(|_| Mutex::new(())).collect());
        let upload_locks = Arc::new((0..KEY_LOCKS).map(|_| Mutex::new(())).collect());
        // Part uploads are ordered by this counter; starting from the clock keeps the order
        // across restarts.
        let start = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2))
            .unwrap_or_default();
        Ok(Backend {
            fs: Arc::new(fs),
            layout,
            log,
            key_locks,
            upload_locks,
            sequence: Arc::new(AtomicU64::new(start)),
        })
    }

    fn key_lock(&self, bucket: &str, key: &str) -> &Mutex<()> {
        &self.key_locks[stripe(&(bucket, key))]
    }

    pub(super) fn upload_lock(&self, upload_id: &str) -> &Mutex<()> {
        &self.upload_locks[stripe(&upload_id)]
    }

    /// Log an internal failure with its path and turn it into an S3 error for the client.
    pub(super) fn failed(&self, action: &str, path: &Path, e: &io::Error) -> s3s::S3Error {
        if is_name_too_long(e) {
            return key_too_long();
        }
        self.log
            .error(&format!("cannot {action} {}: {e}", path.display()));
        internal_error(action)
    }

    pub(super) fn failed_any(&self, action: &str, e: impl std::fmt::Display) -> s3s::S3Error {
        self.log.error(&format!("cannot {action}: {e}"));
        internal_error(action)
    }

    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        action: &str,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> S3Result<T> {
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if is_name_too_long(&e) => Err(key_too_long()),
            Ok(Err(e)) => Err(self.failed_any(action, e)),
            Err(e) => Err(self.failed_any(action, e)),
        }
    }

    pub(super) fn require_bucket(&self, bucket: &str) -> S3Result<PathBuf> {
        let dir = self.layout.bucket_dir(bucket);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }

    /// The metadata of the object whose data file `stat` describes; rebuilt from the data
    /// when it is missing or was left from another version by a crash.
    async fn object_meta(
        &self,
        bucket: &str,
        key: &str,
        stat: &std::fs::Metadata,
    ) -> S3Result<ObjectMeta> {
        let layout = Arc::clone(&self.layout);
        let data = self.layout.object_path(bucket, key);
        let path = self.layout.meta_path(bucket, key);
        let stat = stat.clone();
        self.blocking("read object metadata", move || {
            match storage::read_meta(&path)? {
                Some(meta) if meta.describes(&stat) => Ok(meta),
                _ => storage::rebuild_meta(&layout, &data, &path),
            }
        })
        .await
    }

    /// The ETag of the object stored under `bucket/key` now, if there is one.
    async fn current_e_tag(&self, bucket: &str, key: &str) -> S3Result<Option<String>> {
        let path = self.layout.object_path(bucket, key);
        match tokio::fs::metadata(&path).await {
            Ok(stat) if stat.is_file() => {
                Ok(Some(self.object_meta(bucket, key, &stat).await?.e_tag))
            }
            Ok(_) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) || is_name_too_long(&e) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.failed("stat object", &path, &e)),
        }
    }

    /// The data file, its stat and metadata of an existing object (a copy source).
    pub(super) async fn open_source(
        &self,
        bucket: &str,
        key: &str,
    ) -> S3Result<(PathBuf, std::fs::Metadata, ObjectMeta)> {
        self.require_bucket(bucket)?;
        let path = self.layout.object_path(bucket, key);
        let stat = match tokio::fs::metadata(&path).await {
            Ok(stat) if stat.is_file() => stat,
            _ => return Err(s3_error!(NoSuchKey)),
        };
        let meta = self.object_meta(bucket, key, &stat).await?;
        Ok((path, stat, meta))
    }

    /// Stream a request body into a temp file while hashing it; memory use is bounded by the
    /// buffer. Large bodies are hashed (MD5 and any requested checksum) on a blocking thread
    /// while this task writes, so hashing and writing overlap on two cores instead of taking
    /// turns; small ones are hashed inline, where a thread hand-off would cost more.
    pub(super) async fn receive(
        &self,
        body: Option<StreamingBlob>,
        hasher: &mut s3s::checksum::ChecksumHasher,
    ) -> S3Result<Received> {
        use s3s::stream::ByteStream as _;
        let mut body = body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let temp = self.layout.temp_path();
        let file = tokio::fs::File::create(temp.path())
            .await
            .map_err(|e| self.failed("create temp file", temp.path(), &e))?;
        let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let on_thread = body
            .remaining_length()
            .exact()
            .is_none_or(|n| n > HASH_ON_THREAD_ABOVE);
        let mut hashing = if on_thread {
            let (chunks, mut received) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
            let mut hasher = std::mem::take(hasher);
            let task = tokio::task::spawn_blocking(move || {
                let mut md5 = Md5::new();
                while let Some(chunk) = received.blocking_recv() {
                    md5.update(&chunk);
                    hasher.update(&chunk);
                }
                (<[u8; 16]>::from(md5.finalize()), hasher)
            });
            Hashing::Thread(chunks, task)
        } else {
            Hashing::Inline(Md5::new())
        };
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_error)?;
            size += chunk.len() as u64;
            match &mut hashing {
                Hashing::Inline(md5) => {
                    md5.update(&chunk);
                    hasher.update(&chunk);
                }
                // Bytes is reference-counted: the thread hashes the same buffer.
                Hashing::Thread(chunks, _) => chunks
                    .send(chunk.clone())
                    .await
                    .map_err(|e| self.failed_any("hash upload", e))?,
            }
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| self.failed("write temp file", temp.path(), &e))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| self.failed("write temp file", temp.path(), &e))?;
        let md5 = match hashing {
            Hashing::Inline(md5) => md5.finalize().into(),
            Hashing::Thread(chunks, task) => {
                drop(chunks);
                let (md5, done) = task.await.map_err(|e| self.failed_any("hash upload", e))?;
                *hasher = done;
                md5
            }
        };
        Ok(Received {
            temp,
            file: writer.into_inner(),
            md5,
            size,
        })
    }

    /// Make a verified temp file the object `bucket/key` with `meta`, durably:
    /// fsync data, rename, fsync dir; then the same for the sidecar. `condition` (a
    /// conditional PUT) is checked under the key's lock, right before the renames.
    pub(super) async fn commit(
        &self,
        bucket: &str,
        key: &str,
        file: tokio::fs::File,
        temp: TempPath,
        meta: &ObjectMeta,
        condition: Option<&WriteCondition>,
    ) -> S3Result<()> {
        let inode = file
            .metadata()
            .await
            .map_err(|e| self.failed("stat", temp.path(), &e))?;
        let meta = ObjectMeta {
            data_inode: Some(std::os::unix::fs::MetadataExt::ino(&inode)),
            ..meta.clone()
        };
        let meta_json =
            serde_json::to_vec(&meta).map_err(|e| self.failed_any("encode metadata", e))?;
        let meta_temp = self.layout.temp_path();
        let meta_temp_path = meta_temp.path().to_owned();
        // The two file fsyncs run concurrently, then both renames, then both directory
        // fsyncs concurrently: two fsync latencies per write instead of four.
        let sync_data = async {
            file.sync_all()
                .await
                .map_err(|e| self.failed("fsync", temp.path(), &e))
        };
        let write_meta = self.blocking("write object metadata", move || {
            let mut out = fs_err::File::create(&meta_temp_path)?;
            io::Write::write_all(&mut out, &meta_json)?;
            out.sync_all()
        });
        let (synced, written) = tokio::join!(sync_data, write_meta);
        synced?;
        written?;
        drop(file);
        let layout = Arc::clone(&self.layout);
        let data_path = layout.object_path(bucket, key);
        let meta_path = layout.meta_path(bucket, key);
        let bucket_dir = layout.bucket_dir(bucket);
        let meta_dir = layout.bucket_meta_dir(bucket);
        let guard = self.key_lock(bucket, key).lock().await;
        if let Some(condition) = condition {
            let current = self.current_e_tag(bucket, key).await?;
            condition.check(current.as_deref())?;
        }
        let (data_parent, meta_parent) = self
            .blocking("store object", move || {
                let data_parent = place_retrying(temp, &data_path, &bucket_dir)?;
                let meta_parent = place_retrying(meta_temp, &meta_path, &meta_dir)?;
                Ok((data_parent, meta_parent))
            })
            .await?;
        drop(guard);
        let (a, b) = tokio::join!(
            self.blocking("fsync directory", move || storage::sync_dir(&data_parent)),
            self.blocking("fsync directory", move || storage::sync_dir(&meta_parent)),
        );
        a.and(b)
    }
}

fn stripe(value: &impl std::hash::Hash) -> usize {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    (hasher.finish() as usize) % KEY_LOCKS
}

/// Rename into place (without the directory fsync; the caller does it) and return the
/// directory. A concurrent delete may remove a just-created empty parent, so retry.
fn place_retrying(temp: TempPath, dest: &Path, stop: &Path) -> io::Result<PathBuf> {
    let parent = dest
        .parent()
        .expect("object paths have a parent")
        .to_owned();
    let mut attempts = 0;
    loop {
        storage::create_dirs_durably(&parent, stop)?;
        match fs_err::rename(temp.path(), dest) {
            Ok(()) => {
                temp.disarm();
                return Ok(parent);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// GetObject's and HeadObject's shared headers (two s3s output types with the same fields),
/// filled from the object's metadata and the selected range; `$output { .. }` adds the
/// type's own fields. S3 sends checksums only for whole-object reads.
macro_rules! object_output {
    ($output:ident { $($field:ident: $value:expr),* $(,)? }, $meta:expr, $selected:expr, $modified:expr) => {{
        let meta = $meta;
        let selected = $selected;
        let whole = selected.content_range.is_none();
        $output {
            $($field: $value,)*
            content_length: Some(i64::try_from(selected.length).unwrap_or(i64::MAX)),
            content_range: selected.content_range,
            parts_count: selected.parts_count,
            last_modified: Some(Timestamp::from($modified)),
            accept_ranges: Some("bytes".to_owned()),
            e_tag: (!meta.e_tag.is_empty()).then(|| ETag::Strong(meta.e_tag.clone())),
            expires: parse_expires(&meta),
            content_type: meta.content_type,
            content_encoding: meta.content_encoding,
            content_disposition: meta.content_disposition,
            content_language: meta.content_language,
            cache_control: meta.cache_control,
            website_redirect_location: meta.website_redirect_location,
            metadata: meta.user_metadata,
            checksum_crc32: meta.checksum_crc32.filter(|_| whole),
            checksum_crc32c: meta.checksum_crc32c.filter(|_| whole),
            checksum_sha1: meta.checksum_sha1.filter(|_| whole),
            checksum_sha256: meta.checksum_sha256.filter(|_| whole),
            checksum_crc64nvme: meta.checksum_crc64nvme.filter(|_| whole),
            ..Default::default()
        }
    }};
}

#[async_trait::async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        // s3s-fs answers BucketAlreadyExists; with one account every existing bucket is the
        // caller's own, which S3 answers with BucketAlreadyOwnedByYou (contents untouched).
        if self.layout.bucket_dir(&req.input.bucket).is_dir() {
            return Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it"
            ));
        }
        let response = self.fs.create_bucket(req).await.map_err(|e| {
            if *e.code() == S3ErrorCode::BucketAlreadyExists {
                s3_error!(BucketAlreadyOwnedByYou)
            } else {
                e
            }
        })?;
        let root = self.layout.root().to_owned();
        self.blocking("fsync the S3 root", move || storage::sync_dir(&root))
            .await?;
        Ok(response)
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        // s3s-fs lists in directory order; S3 lists buckets sorted by name.
        let mut response = self.fs.list_buckets(req).await?;
        if let Some(buckets) = &mut response.output.buckets {
            buckets.sort_by(|a, b| a.name.cmp(&b.name));
        }
        response.output.owner = Some(super::acl::owner());
        Ok(response)
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket;
        let dir = self.require_bucket(&bucket)?;
        let meta_dir = self.layout.bucket_meta_dir(&bucket);
        let root = self.layout.root().to_owned();
        let emptied = self
            .blocking("delete bucket", move || {
                if storage::tree_has_files(&dir)? {
                    return Ok(false);
                }
                fs_err::remove_dir_all(&dir)?;
                if meta_dir.exists() {
                    fs_err::remove_dir_all(&meta_dir)?;
                }
                storage::sync_dir(&root)?;
                Ok(true)
            })
            .await?;
        if !emptied {
            return Err(s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            ));
        }
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        self.require_bucket(&input.bucket)?;
        let condition =
            WriteCondition::from_headers(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        if let Some(condition) = &condition {
            // Fail before the body is read; commit checks again under the key's lock.
            let current = self.current_e_tag(&input.bucket, &input.key).await?;
            condition.check(current.as_deref())?;
        }
        let mut announced = Checksum {
            checksum_crc32: input.checksum_crc32.clone(),
            checksum_crc32c: input.checksum_crc32c.clone(),
            checksum_sha1: input.checksum_sha1.clone(),
            checksum_sha256: input.checksum_sha256.clone(),
            checksum_crc64nvme: input.checksum_crc64nvme.clone(),
            ..Default::default()
        };
        let mut hasher = checksum_hasher(&announced, input.checksum_algorithm.as_ref())?;
        let received = self.receive(input.body, &mut hasher).await?;
        // Verify before the temp file is moved, so a bad upload never replaces the old object.
        verify_content_md5(input.content_md5.as_deref(), &received.md5)?;
        add_trailers(&mut announced, req.trailing_headers)?;
        let computed = hasher.finalize();
        verify_checksums(&announced, &computed)?;
        let e_tag = hex(&received.md5);
        let meta = ObjectMeta {
            e_tag: e_tag.clone(),
            size: received.size,
            content_type: input.content_type,
            content_encoding: stored_content_encoding(input.content_encoding),
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires: format_expires(input.expires),
            website_redirect_location: input.website_redirect_location,
            user_metadata: input.metadata,
            checksum_crc32: computed.checksum_crc32.clone(),
            checksum_crc32c: computed.checksum_crc32c.clone(),
            checksum_sha1: computed.checksum_sha1.clone(),
            checksum_sha256: computed.checksum_sha256.clone(),
            checksum_crc64nvme: computed.checksum_crc64nvme.clone(),
            data_inode: None,
            parts: None,
        };
        self.commit(
            &input.bucket,
            &input.key,
            received.file,
            received.temp,
            &meta,
            condition.as_ref(),
        )
        .await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(e_tag)),
            checksum_crc32: computed.checksum_crc32,
            checksum_crc32c: computed.checksum_crc32c,
            checksum_sha1: computed.checksum_sha1,
            checksum_sha256: computed.checksum_sha256,
            checksum_crc64nvme: computed.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let path = self.layout.object_path(&input.bucket, &input.key);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.require_bucket(&input.bucket)?;
                return Err(s3_error!(NoSuchKey));
            }
            Err(e) => return Err(self.failed("open object", &path, &e)),
        };
        let stat = file
            .metadata()
            .await
            .map_err(|e| self.failed("stat object", &path, &e))?;
        if stat.is_dir() {
            return Err(s3_error!(NoSuchKey));
        }
        let meta = self.object_meta(&input.bucket, &input.key, &stat).await?;
        let modified = stat.modified().unwrap_or(std::time::UNIX_EPOCH);
        Conditions {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
        }
        .check_read(&meta.e_tag, modified)?;
        let file_len = stat.len();
        let selected = select(&meta, file_len, input.range.as_ref(), input.part_number)?;
        if selected.start > 0 {
            file.seek(io::SeekFrom::Start(selected.start))
                .await
                .map_err(|e| self.failed("seek object", &path, &e))?;
        }
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file.take(selected.length), READ_BUFFER);
        Ok(S3Response::new(object_output!(
            GetObjectOutput {
                body: Some(StreamingBlob::wrap(stream)),
            },
            meta,
            selected,
            modified
        )))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let path = self.layout.object_path(&input.bucket, &input.key);
        let stat = match tokio::fs::metadata(&path).await {
            Ok(s) if s.is_file() => s,
            Ok(_) => return Err(s3_error!(NoSuchKey)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.require_bucket(&input.bucket)?;
                return Err(s3_error!(NoSuchKey));
            }
            Err(e) => return Err(self.failed("stat object", &path, &e)),
        };
        let meta = self.object_meta(&input.bucket, &input.key, &stat).await?;
        let modified = stat.modified().unwrap_or(std::time::UNIX_EPOCH);
        Conditions {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
        }
        .check_read(&meta.e_tag, modified)?;
        let selected = select(&meta, stat.len(), input.range.as_ref(), input.part_number)?;
        let status = if selected.content_range.is_none() {
            http::StatusCode::OK
        } else {
            http::StatusCode::PARTIAL_CONTENT
        };
        let output = object_output!(HeadObjectOutput {}, meta, selected, modified);
        Ok(S3Response::with_status(output, status))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        check_key(&src_key)?;
        check_key(&input.key)?;
        self.require_bucket(&input.bucket)?;
        let (src_path, src_stat, src_meta) = self.open_source(&src_bucket, &src_key).await?;
        Conditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        }
        .check_copy_source(
            &src_meta.e_tag,
            src_stat.modified().unwrap_or(std::time::UNIX_EPOCH),
        )?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if src_bucket == input.bucket
            && src_key == input.key
            && !replace
            && input.website_redirect_location.is_none()
            && input.storage_class.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself \
                 without changing the object's metadata, storage class, website redirect \
                 location or encryption attributes."
            ));
        }
        let temp = self.layout.temp_path();
        let temp_path = temp.path().to_owned();
        let file = self
            .blocking("copy object", move || {
                fs_err::copy(&src_path, &temp_path)?;
                Ok(fs_err::File::open(&temp_path)?.into_parts().0)
            })
            .await?;
        let meta = if replace {
            ObjectMeta {
                content_type: input.content_type,
                content_encoding: input.content_encoding,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                expires: format_expires(input.expires),
                website_redirect_location: input.website_redirect_location,
                user_metadata: input.metadata,
                ..src_meta
            }
        } else {
            src_meta
        };
        let e_tag = meta.e_tag.clone();
        self.commit(
            &input.bucket,
            &input.key,
            tokio::fs::File::from_std(file),
            temp,
            &meta,
            None,
        )
        .await?;
        let stat = tokio::fs::metadata(self.layout.object_path(&input.bucket, &input.key)).await;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(e_tag)),
                last_modified: stat.ok().and_then(|s| timestamp(s.modified())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        self.require_bucket(&input.bucket)?;
        self.remove_object(&input.bucket, &input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket)?;
        if input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "A DeleteObjects request may name at most {MAX_DELETE_KEYS} keys"
            ));
        }
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in input.delete.objects {
            let result = match check_key(&object.key) {
                Ok(()) => self.remove_object(&input.bucket, &object.key).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(object.key),
                    ..Default::default()
                }),
                Err(e) => errors.push(Error {
                    key: Some(object.key),
                    code: Some(e.code().as_str().to_owned()),
                    message: e.message().map(str::to_owned),
                    ..Default::default()
                }),
            }
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_objects_v2(req.input).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_objects_v1(req.input).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_upload(req.input).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        Backend::upload_part(self, req.input).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        Backend::upload_part_copy(self, req.input).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        Backend::list_parts(self, req.input).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_upload(req.input).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_upload(req.input).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_uploads(req.input).await
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.require_bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketAclOutput {
            owner: Some(super::acl::owner()),
            grants: Some(super::acl::grants()),
        }))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket)?;
        super::acl::check_put(&super::acl::Requested {
            canned: input.acl.as_ref().map(BucketCannedACL::as_str),
            policy: input.access_control_policy.as_ref(),
            any_grant_header: input.grant_full_control.is_some()
                || input.grant_read.is_some()
                || input.grant_read_acp.is_some()
                || input.grant_write.is_some()
                || input.grant_write_acp.is_some(),
        })?;
        Ok(S3Response::new(PutBucketAclOutput {}))
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        self.open_source(&input.bucket, &input.key).await?;
        Ok(S3Response::new(GetObjectAclOutput {
            owner: Some(super::acl::owner()),
            grants: Some(super::acl::grants()),
            ..Default::default()
        }))
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        self.open_source(&input.bucket, &input.key).await?;
        super::acl::check_put(&super::acl::Requested {
            canned: input.acl.as_ref().map(ObjectCannedACL::as_str),
            policy: input.access_control_policy.as_ref(),
            any_grant_header: input.grant_full_control.is_some()
                || input.grant_read.is_some()
                || input.grant_read_acp.is_some()
                || input.grant_write.is_some()
                || input.grant_write_acp.is_some(),
        })?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }
}

impl Backend {
    /// Remove an object and its sidecar; a missing object is not an error (S3 answers 204).
    async fn remove_object(&self, bucket: &str, key: &str) -> S3Result<()> {
        let data = self.layout.object_path(bucket, key);
        let meta = self.layout.meta_path(bucket, key);
        let bucket_dir = self.layout.bucket_dir(bucket);
        let meta_dir = self.layout.bucket_meta_dir(bucket);
        let _guard = self.key_lock(bucket, key).lock().await;
        self.blocking("delete object", move || {
            for (path, stop) in [(&data, &bucket_dir), (&meta, &meta_dir)] {
                match std::fs::remove_file(path) {
                    Ok(()) => {
                        if let Some(parent) = path.parent() {
                            storage::sync_dir(parent)?;
                        }
                        storage::remove_empty_parents(path, stop);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                        ) || is_name_too_long(&e) => {}
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("failed to remove {}: {e}", path.display()),
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }
}

/// The bytes a GET or HEAD selects: a Range, a part of a multipart object, or everything.
struct Selected {
    start: u64,
    length: u64,
    content_range: Option<String>,
    parts_count: Option<i32>,
}

fn select(
    meta: &ObjectMeta,
    file_len: u64,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> S3Result<Selected> {
    let whole = Selected {
        start: 0,
        length: file_len,
        content_range: None,
        parts_count: None,
    };
    match (range, part_number) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        (Some(range), None) => {
            let r = range.check(file_len)?;
            Ok(Selected {
                start: r.start,
                length: r.end - r.start,
                content_range: Some(format!("bytes {}-{}/{}", r.start, r.end - 1, file_len)),
                parts_count: None,
            })
        }
        (None, None) => Ok(whole),
        (None, Some(number)) => {
            let not_satisfiable =
                || s3_error!(InvalidPart, "The requested partnumber is not satisfiable");
            let Some(sizes) = &meta.parts else {
                // A plain object is its own part 1.
                return if number == 1 {
                    Ok(whole)
                } else {
                    Err(not_satisfiable())
                };
            };
            let index = usize::try_from(number)
                .ok()
                .filter(|n| (1..=sizes.len()).contains(n))
                .ok_or_else(not_satisfiable)?;
            let start: u64 = sizes[..index - 1].iter().sum();
            let length = sizes[index - 1];
            let content_range =
                (length > 0).then(|| format!("bytes {start}-{}/{file_len}", start + length - 1));
            Ok(Selected {
                start,
                length,
                content_range,
                parts_count: Some(i32::try_from(sizes.len()).unwrap_or(i32::MAX)),
            })
        }
    }
}

/// The Content-Encoding to store: `aws-chunked` describes the transfer, not the object.
pub(super) fn stored_content_encoding(sent: Option<String>) -> Option<String> {
    let sent = sent?;
    let kept: Vec<&str> = sent
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}
