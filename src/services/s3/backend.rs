//! The `s3s::S3` implementation: bucket calls delegate to `s3s_fs::FileSystem`; object,
//! listing and multipart calls are ours, on the layout of storage.rs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Mutex;

use super::access_log::AccessLog;
use super::keys;
use super::listing;
use super::storage::{self, Layout, ObjectMeta, TempPath};

/// Reads of object data use buffers this large (s3s-fs uses 4 KiB, which caps throughput).
const READ_BUFFER: usize = 512 * 1024;
/// Uploads are written through a buffer this large, so memory per upload stays bounded.
const WRITE_BUFFER: usize = 1024 * 1024;
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const KEY_LOCKS: usize = 64;

/// The storage backend behind the S3 service. Clones share everything (the console calls the
/// same storage in-process).
#[derive(Clone)]
pub struct Backend {
    fs: Arc<s3s_fs::FileSystem>,
    layout: Arc<Layout>,
    log: AccessLog,
    /// Striped locks that serialise the commit (data + sidecar rename) of writes to one key.
    key_locks: Arc<Vec<Mutex<()>>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("root", &self.layout.root())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct UploadInfo {
    bucket: String,
    key: String,
    meta: ObjectMeta,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PartInfo {
    e_tag: String,
    md5: String,
    size: u64,
}

fn hex(bytes: &[u8]) -> String {
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

fn check_key(key: &str) -> S3Result<()> {
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

fn timestamp(time: io::Result<SystemTime>) -> Option<Timestamp> {
    time.ok().map(Timestamp::from)
}

fn parse_expires(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.expires
        .as_deref()
        .and_then(|s| Timestamp::parse(TimestampFormat::DateTime, s).ok())
}

fn format_expires(expires: Option<Timestamp>) -> Option<String> {
    let mut buf = Vec::new();
    expires?.format(TimestampFormat::DateTime, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

/// The checksums a request announced (headers or trailers) and the hasher that checks them.
fn checksum_hasher(
    announced: &Checksum,
    algorithm: Option<&ChecksumAlgorithm>,
) -> S3Result<s3s::checksum::ChecksumHasher> {
    let mut hasher = s3s::checksum::ChecksumHasher::default();
    let mut enable = |name: &str| -> S3Result<()> {
        match name {
            ChecksumAlgorithm::CRC32 => hasher.crc32 = Some(Default::default()),
            ChecksumAlgorithm::CRC32C => hasher.crc32c = Some(Default::default()),
            ChecksumAlgorithm::SHA1 => hasher.sha1 = Some(Default::default()),
            ChecksumAlgorithm::SHA256 => hasher.sha256 = Some(Default::default()),
            ChecksumAlgorithm::CRC64NVME => hasher.crc64nvme = Some(Default::default()),
            _ => return Err(s3_error!(NotImplemented, "Unsupported checksum algorithm")),
        }
        Ok(())
    };
    for (value, name) in [
        (&announced.checksum_crc32, ChecksumAlgorithm::CRC32),
        (&announced.checksum_crc32c, ChecksumAlgorithm::CRC32C),
        (&announced.checksum_sha1, ChecksumAlgorithm::SHA1),
        (&announced.checksum_sha256, ChecksumAlgorithm::SHA256),
        (&announced.checksum_crc64nvme, ChecksumAlgorithm::CRC64NVME),
    ] {
        if value.is_some() {
            enable(name)?;
        }
    }
    if let Some(algorithm) = algorithm {
        enable(algorithm.as_str())?;
    }
    Ok(hasher)
}

/// Fill in checksums sent as trailers (aws-chunked uploads) after the body was read.
fn add_trailers(announced: &mut Checksum, trailers: Option<s3s::TrailingHeaders>) -> S3Result<()> {
    let Some(trailers) = trailers.and_then(|t| t.take()) else {
        return Ok(());
    };
    let slots = [
        ("x-amz-checksum-crc32", &mut announced.checksum_crc32),
        ("x-amz-checksum-crc32c", &mut announced.checksum_crc32c),
        ("x-amz-checksum-sha1", &mut announced.checksum_sha1),
        ("x-amz-checksum-sha256", &mut announced.checksum_sha256),
        (
            "x-amz-checksum-crc64nvme",
            &mut announced.checksum_crc64nvme,
        ),
    ];
    for (name, slot) in slots {
        if let Some(value) = trailers.get(name) {
            *slot = Some(
                value
                    .to_str()
                    .map_err(|_| s3_error!(InvalidArgument, "bad {name} trailer"))?
                    .to_owned(),
            );
        }
    }
    Ok(())
}

fn verify_checksums(announced: &Checksum, computed: &Checksum) -> S3Result<()> {
    let pairs = [
        ("crc32", &announced.checksum_crc32, &computed.checksum_crc32),
        (
            "crc32c",
            &announced.checksum_crc32c,
            &computed.checksum_crc32c,
        ),
        ("sha1", &announced.checksum_sha1, &computed.checksum_sha1),
        (
            "sha256",
            &announced.checksum_sha256,
            &computed.checksum_sha256,
        ),
        (
            "crc64nvme",
            &announced.checksum_crc64nvme,
            &computed.checksum_crc64nvme,
        ),
    ];
    for (name, expected, actual) in pairs {
        if let Some(expected) = expected
            && actual.as_ref() != Some(expected)
        {
            return Err(s3_error!(
                BadDigest,
                "The {name} checksum you specified did not match the data received"
            ));
        }
    }
    Ok(())
}

fn verify_content_md5(content_md5: Option<&str>, md5: &[u8]) -> S3Result<()> {
    use base64::Engine as _;
    let Some(content_md5) = content_md5 else {
        return Ok(());
    };
    let expected = base64::engine::general_purpose::STANDARD
        .decode(content_md5.trim())
        .map_err(|_| {
            s3_error!(
                InvalidDigest,
                "The Content-MD5 you specified is not valid base64"
            )
        })?;
    if expected.len() != 16 {
        return Err(s3_error!(
            InvalidDigest,
            "The Content-MD5 you specified is not an MD5"
        ));
    }
    if expected != md5 {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received"
        ));
    }
    Ok(())
}

/// A received upload body: in a temp file, not yet fsynced nor visible.
struct Received {
    temp: TempPath,
    file: tokio::fs::File,
    md5: [u8; 16],
    size: u64,
}

impl Backend {
    pub fn new(layout: Arc<Layout>, log: AccessLog) -> io::Result<Backend> {
        let fs = s3s_fs::FileSystem::new(layout.root())
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        let key_locks = Arc::new((0..KEY_LOCKS).map(|_| Mutex::new(())).collect());
        Ok(Backend {
            fs: Arc::new(fs),
            layout,
            log,
            key_locks,
        })
    }

    fn key_lock(&self, bucket: &str, key: &str) -> &Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (bucket, key).hash(&mut hasher);
        &self.key_locks[(hasher.finish() as usize) % KEY_LOCKS]
    }

    /// Log an internal failure with its path and turn it into an S3 error for the client.
    fn failed(&self, action: &str, path: &Path, e: &io::Error) -> s3s::S3Error {
        if is_name_too_long(e) {
            return key_too_long();
        }
        self.log
            .error(&format!("cannot {action} {}: {e}", path.display()));
        internal_error(action)
    }

    fn failed_any(&self, action: &str, e: impl std::fmt::Display) -> s3s::S3Error {
        self.log.error(&format!("cannot {action}: {e}"));
        internal_error(action)
    }

    async fn blocking<T: Send + 'static>(
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

    fn require_bucket(&self, bucket: &str) -> S3Result<PathBuf> {
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

    /// Stream a request body into a temp file while hashing it; memory use is bounded by the buffer.
    async fn receive(
        &self,
        body: Option<StreamingBlob>,
        hasher: &mut s3s::checksum::ChecksumHasher,
    ) -> S3Result<Received> {
        let mut body = body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let temp = self.layout.temp_path();
        let file = tokio::fs::File::create(temp.path())
            .await
            .map_err(|e| self.failed("create temp file", temp.path(), &e))?;
        let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut md5 = Md5::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_error)?;
            md5.update(&chunk);
            hasher.update(&chunk);
            size += chunk.len() as u64;
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| self.failed("write temp file", temp.path(), &e))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| self.failed("write temp file", temp.path(), &e))?;
        Ok(Received {
            temp,
            file: writer.into_inner(),
            md5: md5.finalize().into(),
            size,
        })
    }

    /// Make a verified temp file the object `bucket/key` with `meta`, durably:
    /// fsync data, rename, fsync dir; then the same for the sidecar.
    async fn commit(
        &self,
        bucket: &str,
        key: &str,
        file: tokio::fs::File,
        temp: TempPath,
        meta: &ObjectMeta,
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

    async fn list(
        &self,
        bucket: &str,
        query: &listing::Query<'_>,
    ) -> S3Result<(Vec<Object>, Vec<CommonPrefix>, listing::Page)> {
        let bucket_dir = self.require_bucket(bucket)?;
        let prefix = query.prefix.to_owned();
        let mut found = self
            .blocking("list bucket", move || {
                storage::walk_keys(&bucket_dir, &prefix)
            })
            .await?;
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<String> = found.iter().map(|(k, _)| k.clone()).collect();
        let page = listing::page(&keys, query);
        let mut wanted = Vec::new();
        let mut prefixes = Vec::new();
        for item in &page.items {
            match item {
                listing::Item::Object(i) => wanted.push(found[*i].clone()),
                listing::Item::CommonPrefix(p) => prefixes.push(CommonPrefix {
                    prefix: Some(p.clone()),
                }),
            }
        }
        let layout = Arc::clone(&self.layout);
        let bucket = bucket.to_owned();
        let objects = self
            .blocking("list bucket", move || {
                let mut objects = Vec::with_capacity(wanted.len());
                for (key, path) in wanted {
                    // The object may be deleted while we list; skip it then.
                    let Ok(stat) = std::fs::metadata(&path) else {
                        continue;
                    };
                    let meta_path = layout.meta_path(&bucket, &key);
                    let meta = match storage::read_meta(&meta_path).ok().flatten() {
                        Some(meta) if meta.describes(&stat) => Some(meta),
                        _ => storage::rebuild_meta(&layout, &path, &meta_path).ok(),
                    };
                    objects.push(Object {
                        key: Some(key),
                        size: Some(i64::try_from(stat.len()).unwrap_or(i64::MAX)),
                        last_modified: timestamp(stat.modified()),
                        e_tag: meta.map(|m| ETag::Strong(m.e_tag)),
                        storage_class: Some(ObjectStorageClass::from_static(
                            ObjectStorageClass::STANDARD,
                        )),
                        ..Default::default()
                    });
                }
                Ok(objects)
            })
            .await?;
        Ok((objects, prefixes, page))
    }

    fn upload_info_path(&self, upload_id: &str) -> S3Result<PathBuf> {
        if upload_id.is_empty()
            || !upload_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(self.layout.upload_dir(upload_id).join("upload.json"))
    }

    async fn load_upload(&self, upload_id: &str, bucket: &str, key: &str) -> S3Result<UploadInfo> {
        let path = self.upload_info_path(upload_id)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(s3_error!(NoSuchUpload)),
            Err(e) => return Err(self.failed("read upload", &path, &e)),
        };
        let info: UploadInfo =
            serde_json::from_slice(&bytes).map_err(|e| self.failed_any("decode upload", e))?;
        if info.bucket != bucket || info.key != key {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(info)
    }
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

fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

fn wants_url_encoding(e: Option<&EncodingType>) -> bool {
    e.is_some_and(|e| e.as_str().eq_ignore_ascii_case("url"))
}

fn encode_listing(objects: &mut [Object], prefixes: &mut [CommonPrefix]) {
    for o in objects {
        o.key = o.key.as_deref().map(url_encode);
    }
    for p in prefixes {
        p.prefix = p.prefix.as_deref().map(url_encode);
    }
}

fn token_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn token_decode(s: &str) -> S3Result<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(1000).min(1000)),
    }
}

#[async_trait::async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let response = self.fs.create_bucket(req).await?;
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
        if let Some(condition) = &input.if_none_match
            && condition.is_any()
            && self.layout.object_path(&input.bucket, &input.key).is_file()
        {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
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
            content_encoding: input.content_encoding,
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
        };
        self.commit(
            &input.bucket,
            &input.key,
            received.file,
            received.temp,
            &meta,
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
        let file_len = stat.len();
        let (start, length, content_range) = match &input.range {
            None => (0, file_len, None),
            Some(range) => {
                let r = range.check(file_len)?;
                let range_text = format!("bytes {}-{}/{}", r.start, r.end - 1, file_len);
                (r.start, r.end - r.start, Some(range_text))
            }
        };
        if start > 0 {
            file.seek(io::SeekFrom::Start(start))
                .await
                .map_err(|e| self.failed("seek object", &path, &e))?;
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(length), READ_BUFFER);
        let whole = content_range.is_none();
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some(i64::try_from(length).unwrap_or(i64::MAX)),
            content_range,
            last_modified: timestamp(stat.modified()),
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
            // S3 sends checksums only for whole-object reads.
            checksum_crc32: meta.checksum_crc32.filter(|_| whole),
            checksum_crc32c: meta.checksum_crc32c.filter(|_| whole),
            checksum_sha1: meta.checksum_sha1.filter(|_| whole),
            checksum_sha256: meta.checksum_sha256.filter(|_| whole),
            checksum_crc64nvme: meta.checksum_crc64nvme.filter(|_| whole),
            ..Default::default()
        }))
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
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(i64::try_from(stat.len()).unwrap_or(i64::MAX)),
            last_modified: timestamp(stat.modified()),
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
            checksum_crc32: meta.checksum_crc32,
            checksum_crc32c: meta.checksum_crc32c,
            checksum_sha1: meta.checksum_sha1,
            checksum_sha256: meta.checksum_sha256,
            checksum_crc64nvme: meta.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "Only bucket copy sources are supported"
                ));
            }
        };
        check_key(&src_key)?;
        check_key(&input.key)?;
        self.require_bucket(&src_bucket)?;
        self.require_bucket(&input.bucket)?;
        let src_path = self.layout.object_path(&src_bucket, &src_key);
        let src_stat = match std::fs::metadata(&src_path) {
            Ok(stat) if stat.is_file() => stat,
            _ => return Err(s3_error!(NoSuchKey)),
        };
        let src_meta = self.object_meta(&src_bucket, &src_key, &src_stat).await?;
        if let Some(ETagCondition::ETag(expected)) = &input.copy_source_if_match
            && !ETag::Strong(src_meta.e_tag.clone()).strong_cmp(expected)
        {
            return Err(s3_error!(PreconditionFailed));
        }
        let temp = self.layout.temp_path();
        let temp_path = temp.path().to_owned();
        let file = self
            .blocking("copy object", move || {
                fs_err::copy(&src_path, &temp_path)?;
                Ok(fs_err::File::open(&temp_path)?.into_parts().0)
            })
            .await?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
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
        let input = req.input;
        let resume = input
            .continuation_token
            .as_deref()
            .map(token_decode)
            .transpose()?;
        let query = listing::Query {
            prefix: input.prefix.as_deref().unwrap_or(""),
            delimiter: input.delimiter.as_deref(),
            start_after: input.start_after.as_deref(),
            resume_after: resume.as_deref(),
            max_keys: max_keys(input.max_keys)?,
        };
        let (mut objects, mut prefixes, page) = self.list(&input.bucket, &query).await?;
        let encode = wants_url_encoding(input.encoding_type.as_ref());
        if encode {
            encode_listing(&mut objects, &mut prefixes);
        }
        let key_count = i32::try_from(objects.len() + prefixes.len()).unwrap_or(i32::MAX);
        let text = |s: Option<String>| if encode { s.map(|s| url_encode(&s)) } else { s };
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: text(input.prefix.clone()),
            delimiter: text(input.delimiter.clone()),
            start_after: text(input.start_after.clone()),
            max_keys: Some(i32::try_from(query.max_keys).unwrap_or(1000)),
            key_count: Some(key_count),
            is_truncated: Some(page.is_truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next.as_deref().map(token_encode),
            encoding_type: input.encoding_type,
            contents: (!objects.is_empty()).then_some(objects),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let query = listing::Query {
            prefix: input.prefix.as_deref().unwrap_or(""),
            delimiter: input.delimiter.as_deref(),
            start_after: None,
            resume_after: input.marker.as_deref().filter(|m| !m.is_empty()),
            max_keys: max_keys(input.max_keys)?,
        };
        let (mut objects, mut prefixes, page) = self.list(&input.bucket, &query).await?;
        let encode = wants_url_encoding(input.encoding_type.as_ref());
        if encode {
            encode_listing(&mut objects, &mut prefixes);
        }
        let text = |s: Option<String>| if encode { s.map(|s| url_encode(&s)) } else { s };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: text(input.prefix.clone()),
            delimiter: text(input.delimiter.clone()),
            marker: text(input.marker.clone()),
            max_keys: Some(i32::try_from(query.max_keys).unwrap_or(1000)),
            is_truncated: Some(page.is_truncated),
            next_marker: text(page.next),
            encoding_type: input.encoding_type,
            contents: (!objects.is_empty()).then_some(objects),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        self.require_bucket(&input.bucket)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let info = UploadInfo {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            meta: ObjectMeta {
                content_type: input.content_type,
                content_encoding: input.content_encoding,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                expires: format_expires(input.expires),
                website_redirect_location: input.website_redirect_location,
                user_metadata: input.metadata,
                ..Default::default()
            },
        };
        let json = serde_json::to_vec(&info).map_err(|e| self.failed_any("encode upload", e))?;
        let layout = Arc::clone(&self.layout);
        let path = self.upload_info_path(&upload_id)?;
        self.blocking("create upload", move || {
            let stop = layout.root().to_owned();
            storage::write_durably(&layout, &json, &path, &stop)
        })
        .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        self.load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let mut hasher = s3s::checksum::ChecksumHasher::default();
        let received = self.receive(input.body, &mut hasher).await?;
        verify_content_md5(input.content_md5.as_deref(), &received.md5)?;
        received
            .file
            .sync_all()
            .await
            .map_err(|e| self.failed("fsync", received.temp.path(), &e))?;
        drop(received.file);
        let e_tag = hex(&received.md5);
        let part = PartInfo {
            e_tag: e_tag.clone(),
            md5: e_tag.clone(),
            size: received.size,
        };
        let json = serde_json::to_vec(&part).map_err(|e| self.failed_any("encode part", e))?;
        let dir = self.layout.upload_dir(&input.upload_id);
        let layout = Arc::clone(&self.layout);
        let number = input.part_number;
        let temp = received.temp;
        self.blocking("store part", move || {
            storage::persist(temp, &dir.join(format!("part-{number}")), &dir)?;
            storage::write_durably(
                &layout,
                &json,
                &dir.join(format!("part-{number}.json")),
                &dir,
            )
        })
        .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        self.load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let dir = self.layout.upload_dir(&input.upload_id);
        let mut parts = self
            .blocking("list parts", move || {
                let mut parts = Vec::new();
                for entry in fs_err::read_dir(&dir)? {
                    let name = entry?.file_name();
                    let Some(number) = name
                        .to_str()
                        .and_then(|n| n.strip_prefix("part-")?.strip_suffix(".json"))
                    else {
                        continue;
                    };
                    let Ok(number) = number.parse::<i32>() else {
                        continue;
                    };
                    let info: PartInfo = serde_json::from_slice(&fs_err::read(dir.join(&name))?)
                        .map_err(io::Error::other)?;
                    parts.push(Part {
                        part_number: Some(number),
                        e_tag: Some(ETag::Strong(info.e_tag)),
                        size: Some(i64::try_from(info.size).unwrap_or(i64::MAX)),
                        ..Default::default()
                    });
                }
                Ok(parts)
            })
            .await?;
        parts.sort_by_key(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let dir = self.layout.upload_dir(&input.upload_id);
        self.blocking("abort upload", move || fs_err::remove_dir_all(&dir))
            .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let info = self
            .load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                InvalidRequest,
                "You must specify at least one part"
            ));
        }
        let dir = self.layout.upload_dir(&input.upload_id);
        let mut files = Vec::with_capacity(requested.len());
        let mut etag_hash = Md5::new();
        let mut last_number = 0;
        for (index, part) in requested.iter().enumerate() {
            let number = part
                .part_number
                .ok_or_else(|| s3_error!(InvalidPart, "A part number is missing"))?;
            if number <= last_number {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order"
                ));
            }
            last_number = number;
            let json_path = dir.join(format!("part-{number}.json"));
            let stored: PartInfo = match tokio::fs::read(&json_path).await {
                Ok(bytes) => {
                    serde_json::from_slice(&bytes).map_err(|e| self.failed_any("decode part", e))?
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(s3_error!(InvalidPart, "Part {number} was not uploaded"));
                }
                Err(e) => return Err(self.failed("read part", &json_path, &e)),
            };
            if let Some(given) = &part.e_tag
                && given.value().trim_matches('"') != stored.e_tag
            {
                return Err(s3_error!(
                    InvalidPart,
                    "The ETag of part {number} does not match"
                ));
            }
            if index + 1 < requested.len() && stored.size < MIN_PART_SIZE {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Part {number} is smaller than 5 MiB"
                ));
            }
            let md5 =
                hex::decode(&stored.md5).map_err(|e| self.failed_any("decode part md5", e))?;
            etag_hash.update(&md5);
            files.push(dir.join(format!("part-{number}")));
        }
        let e_tag = format!("{}-{}", hex(&etag_hash.finalize()), files.len());
        let temp = self.layout.temp_path();
        let temp_path = temp.path().to_owned();
        let (file, size) = self
            .blocking("assemble multipart object", move || {
                let mut out = fs_err::File::create(&temp_path)?;
                let mut size = 0;
                for part in &files {
                    // io::copy between files uses copy_file_range: no user-space buffer.
                    size += io::copy(&mut fs_err::File::open(part)?, &mut out)?;
                }
                Ok((out.into_parts().0, size))
            })
            .await?;
        let meta = ObjectMeta {
            e_tag: e_tag.clone(),
            size,
            ..info.meta
        };
        self.commit(
            &input.bucket,
            &input.key,
            tokio::fs::File::from_std(file),
            temp,
            &meta,
        )
        .await?;
        self.blocking("remove finished upload", move || {
            fs_err::remove_dir_all(&dir)
        })
        .await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
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
