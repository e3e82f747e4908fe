//! Multipart uploads: create, parts (uploaded or copied from an object), list parts, abort,
//! complete (and a retried complete), and the listing of uploads in progress.
//!
//! ```text
//! <root>/.opsbox-s3/uploads/<id>/upload.json      UploadInfo (removed when completed)
//!                                part-<n>.json     PartInfo: which file is part n now; its
//!                                                  rename is the commit point of a part
//!                                part-<n>-<seq>    the bytes of one upload of part n
//!                                completed.json    CompletedInfo, for a retried complete
//! ```
//!
//! Upload ids start with the creation time in hex, so their order is the order of creation.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3Response, S3Result, s3_error};

use super::backend::{
    Backend, Received, check_key, copy_source, format_expires, hex, stored_content_encoding,
};
use super::checksum::verify_content_md5;
use super::conditions::Conditions;
use super::storage::{self, ObjectMeta, TempPath};
use crate::types::unix_now_ms as now_ms;

const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_UPLOADS: usize = 1000;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct UploadInfo {
    pub bucket: String,
    pub key: String,
    pub meta: ObjectMeta,
    /// Milliseconds since the epoch (absent in uploads created before it was recorded).
    #[serde(default)]
    pub initiated_ms: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PartInfo {
    e_tag: String,
    md5: String,
    size: u64,
    /// The data file in the upload directory (`part-<n>` for parts stored before it was recorded).
    #[serde(default)]
    file: Option<String>,
    /// When the request that sent these bytes started: a later request's part wins.
    #[serde(default)]
    sequence: u64,
}

impl PartInfo {
    fn file_name(&self, number: i32) -> String {
        self.file
            .clone()
            .unwrap_or_else(|| format!("part-{number}"))
    }
}

/// What a completed upload was completed with, so that a retried complete gets the same answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CompletedInfo {
    bucket: String,
    key: String,
    e_tag: String,
    parts: Vec<(i32, String)>,
}

fn check_part_number(number: i32) -> S3Result<()> {
    if (1..=10_000).contains(&number) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

/// `x-amz-copy-source-range: bytes=first-last` as (start, length) within an object of `size`
/// bytes; S3 answers 400 InvalidArgument both to malformed ranges and to ranges beyond the object.
pub fn copy_source_range(text: Option<&str>, size: u64) -> S3Result<(u64, u64)> {
    let Some(text) = text else {
        return Ok((0, size));
    };
    let improper = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last \
             where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let spec = text.trim().strip_prefix("bytes=").ok_or_else(improper)?;
    let (first, last) = spec.split_once('-').ok_or_else(improper)?;
    let number = |s: &str| -> S3Result<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(improper());
        }
        s.parse().map_err(|_| improper())
    };
    let (first, last) = (number(first)?, number(last)?);
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidArgument,
            "Range specified is not valid for source object of size: {size}"
        ));
    }
    Ok((first, last - first + 1))
}

fn owner() -> Owner {
    super::acl::owner()
}

impl Backend {
    fn upload_dir_checked(&self, upload_id: &str) -> S3Result<PathBuf> {
        if upload_id.is_empty()
            || !upload_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(self.layout.upload_dir(upload_id))
    }

    async fn load_upload(&self, upload_id: &str, bucket: &str, key: &str) -> S3Result<UploadInfo> {
        let path = self.upload_dir_checked(upload_id)?.join("upload.json");
        let bytes = match fs_err::tokio::read(&path).await {
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

    /// A number that orders requests by their start, also across restarts (it starts from the
    /// clock in nanoseconds).
    fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) async fn create_upload(
        &self,
        input: CreateMultipartUploadInput,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        check_key(&input.key)?;
        self.require_bucket(&input.bucket)?;
        let initiated_ms = now_ms();
        let upload_id = format!(
            "{initiated_ms:012x}{}",
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..20)
                .unwrap_or("0")
        );
        let info = UploadInfo {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            meta: ObjectMeta {
                content_type: input.content_type,
                content_encoding: stored_content_encoding(input.content_encoding),
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                cache_control: input.cache_control,
                expires: format_expires(input.expires),
                website_redirect_location: input.website_redirect_location,
                user_metadata: input.metadata,
                ..Default::default()
            },
            initiated_ms,
        };
        let json = serde_json::to_vec(&info).map_err(|e| self.failed_any("encode upload", e))?;
        let layout = Arc::clone(&self.layout);
        let path = self.upload_dir_checked(&upload_id)?.join("upload.json");
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

    /// Make an fsynced temp file part `number` of the upload, unless a request that started
    /// later already stored that part (last write wins by start, not by finish).
    async fn store_part(
        &self,
        upload_id: &str,
        number: i32,
        sequence: u64,
        temp: TempPath,
        md5: [u8; 16],
        size: u64,
    ) -> S3Result<String> {
        let dir = self.upload_dir_checked(upload_id)?;
        let e_tag = hex(&md5);
        let file = format!("part-{number}-{sequence}");
        let info = PartInfo {
            e_tag: e_tag.clone(),
            md5: e_tag.clone(),
            size,
            file: Some(file.clone()),
            sequence,
        };
        let json = serde_json::to_vec(&info).map_err(|e| self.failed_any("encode part", e))?;
        let layout = Arc::clone(&self.layout);
        let _guard = self.upload_lock(upload_id).lock().await;
        let stored = self
            .blocking("store part", move || {
                if !dir.join("upload.json").is_file() {
                    return Ok(false);
                }
                let data = dir.join(&file);
                fs_err::rename(temp.path(), &data)?;
                temp.disarm();
                let json_path = dir.join(format!("part-{number}.json"));
                let previous: Option<PartInfo> = match fs_err::read(&json_path) {
                    Ok(bytes) => serde_json::from_slice(&bytes).ok(),
                    Err(_) => None,
                };
                if let Some(previous) = &previous
                    && previous.sequence > sequence
                {
                    // A request that started after this one already stored the part.
                    fs_err::remove_file(&data)?;
                    return Ok(true);
                }
                storage::write_durably(&layout, &json, &json_path, &dir)?;
                if let Some(previous) = previous {
                    let old = dir.join(previous.file_name(number));
                    if old != data {
                        let _ = fs_err::remove_file(old);
                    }
                }
                Ok(true)
            })
            .await?;
        if stored {
            Ok(e_tag)
        } else {
            Err(s3_error!(NoSuchUpload))
        }
    }

    pub(super) async fn upload_part(
        &self,
        input: UploadPartInput,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let sequence = self.next_sequence();
        check_part_number(input.part_number)?;
        self.load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let mut hasher = s3s::checksum::ChecksumHasher::default();
        let received: Received = self.receive(input.body, &mut hasher).await?;
        verify_content_md5(input.content_md5.as_deref(), &received.md5)?;
        received
            .file
            .sync_all()
            .await
            .map_err(|e| self.failed("fsync", received.temp.path(), &e))?;
        drop(received.file);
        let e_tag = self
            .store_part(
                &input.upload_id,
                input.part_number,
                sequence,
                received.temp,
                received.md5,
                received.size,
            )
            .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_copy(
        &self,
        input: UploadPartCopyInput,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let sequence = self.next_sequence();
        check_part_number(input.part_number)?;
        let (source_bucket, source_key) = copy_source(&input.copy_source)?;
        check_key(&source_key)?;
        self.load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let (source_path, stat, meta) = self.open_source(&source_bucket, &source_key).await?;
        let modified = stat.modified().unwrap_or(UNIX_EPOCH);
        Conditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        }
        .check_copy_source(&meta.e_tag, modified)?;
        let (start, length) = copy_source_range(input.copy_source_range.as_deref(), stat.len())?;
        let temp = self.layout.temp_path();
        let temp_path = temp.path().to_owned();
        let md5 = self
            .blocking("copy part", move || {
                copy_hashing(&source_path, start, length, &temp_path)
            })
            .await?;
        let e_tag = self
            .store_part(
                &input.upload_id,
                input.part_number,
                sequence,
                temp,
                md5,
                length,
            )
            .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(e_tag)),
                last_modified: Some(Timestamp::from(SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn list_parts(
        &self,
        input: ListPartsInput,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let dir = self.upload_dir_checked(&input.upload_id)?;
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
            owner: Some(owner()),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_upload(
        &self,
        input: AbortMultipartUploadInput,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let dir = self.upload_dir_checked(&input.upload_id)?;
        let _guard = self.upload_lock(&input.upload_id).lock().await;
        self.blocking("abort upload", move || fs_err::remove_dir_all(&dir))
            .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn complete_upload(
        &self,
        input: CompleteMultipartUploadInput,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
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
        let asked: Vec<(i32, String)> = requested
            .iter()
            .map(|p| {
                (
                    p.part_number.unwrap_or(0),
                    p.e_tag
                        .as_ref()
                        .map(|t| t.value().trim_matches('"').to_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        let dir = self.upload_dir_checked(&input.upload_id)?;
        let _guard = self.upload_lock(&input.upload_id).lock().await;
        let completed_path = dir.join("completed.json");
        if let Ok(bytes) = fs_err::tokio::read(&completed_path).await {
            let done: CompletedInfo =
                serde_json::from_slice(&bytes).map_err(|e| self.failed_any("decode upload", e))?;
            let same_parts = done.parts.len() == asked.len()
                && done
                    .parts
                    .iter()
                    .zip(&asked)
                    .all(|(d, a)| d.0 == a.0 && (a.1.is_empty() || d.1 == a.1));
            if done.bucket == input.bucket && done.key == input.key && same_parts {
                return Ok(S3Response::new(CompleteMultipartUploadOutput {
                    bucket: Some(input.bucket),
                    key: Some(input.key),
                    e_tag: Some(ETag::Strong(done.e_tag)),
                    ..Default::default()
                }));
            }
            return Err(s3_error!(NoSuchUpload));
        }
        let info = self
            .load_upload(&input.upload_id, &input.bucket, &input.key)
            .await?;
        let mut files = Vec::with_capacity(requested.len());
        let mut sizes = Vec::with_capacity(requested.len());
        let mut recorded = Vec::with_capacity(requested.len());
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
            let stored: PartInfo = match fs_err::tokio::read(&json_path).await {
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
            files.push(dir.join(stored.file_name(number)));
            sizes.push(stored.size);
            recorded.push((number, stored.e_tag));
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
            parts: Some(sizes),
            ..info.meta
        };
        self.commit(
            &input.bucket,
            &input.key,
            tokio::fs::File::from_std(file),
            temp,
            &meta,
            None,
        )
        .await?;
        let done = CompletedInfo {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            e_tag: e_tag.clone(),
            parts: recorded,
        };
        let json = serde_json::to_vec(&done).map_err(|e| self.failed_any("encode upload", e))?;
        let layout = Arc::clone(&self.layout);
        self.blocking("record the finished upload", move || {
            storage::write_durably(&layout, &json, &completed_path, &dir)?;
            // The parts are in the object now; only the record of the completion stays.
            for entry in fs_err::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_name() != "completed.json" {
                    fs_err::remove_file(entry.path())?;
                }
            }
            Ok(())
        })
        .await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
    }

    pub(super) async fn list_uploads(
        &self,
        input: ListMultipartUploadsInput,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.require_bucket(&input.bucket)?;
        let max = match input.max_uploads {
            None => MAX_UPLOADS,
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-uploads must not be negative"
                ));
            }
            Some(n) => usize::try_from(n).unwrap_or(MAX_UPLOADS).min(MAX_UPLOADS),
        };
        let uploads_dir = self.layout.uploads_dir();
        let bucket = input.bucket.clone();
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut found = self
            .blocking("list uploads", move || {
                let mut found = Vec::new();
                for entry in fs_err::read_dir(&uploads_dir)? {
                    let entry = entry?;
                    let Ok(bytes) = fs_err::read(entry.path().join("upload.json")) else {
                        continue; // completed, aborted or being removed
                    };
                    let Ok(info) = serde_json::from_slice::<UploadInfo>(&bytes) else {
                        continue;
                    };
                    if info.bucket == bucket && info.key.starts_with(&prefix) {
                        let id = entry.file_name().to_string_lossy().into_owned();
                        found.push((info.key, id, info.initiated_ms));
                    }
                }
                Ok(found)
            })
            .await?;
        // By key, then by creation (ids start with the creation time).
        found.sort();
        let prefix = input.prefix.as_deref().unwrap_or("");
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        let key_marker = input.key_marker.as_deref().filter(|m| !m.is_empty());
        let id_marker = input
            .upload_id_marker
            .as_deref()
            .filter(|m| !m.is_empty() && key_marker.is_some());
        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut truncated = false;
        let mut next: Option<(String, Option<String>)> = None;
        for (key, id, initiated_ms) in found {
            if let Some(marker) = key_marker {
                let after = match id_marker {
                    Some(id_marker) => {
                        key.as_str() > marker || (key == marker && id.as_str() > id_marker)
                    }
                    None => key.as_str() > marker,
                };
                if !after {
                    continue;
                }
            }
            let common = delimiter.and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|at| key[..prefix.len() + at + d.len()].to_owned())
            });
            if let Some(common) = &common
                && (prefixes.last() == Some(common)
                    || key_marker.is_some_and(|m| common.as_str() <= m))
            {
                continue;
            }
            if uploads.len() + prefixes.len() >= max {
                truncated = true;
                break;
            }
            match common {
                Some(common) => {
                    next = Some((common.clone(), None));
                    prefixes.push(common);
                }
                None => {
                    next = Some((key.clone(), Some(id.clone())));
                    uploads.push(MultipartUpload {
                        key: Some(key),
                        upload_id: Some(id),
                        initiated: Some(Timestamp::from(
                            UNIX_EPOCH + Duration::from_millis(initiated_ms),
                        )),
                        initiator: Some(Initiator {
                            id: owner().id,
                            display_name: owner().display_name,
                        }),
                        owner: Some(owner()),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    });
                }
            }
        }
        let (next_key, next_id) = match next.filter(|_| truncated) {
            Some((key, id)) => (Some(key), id),
            None => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter.filter(|d| !d.is_empty()),
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            encoding_type: input.encoding_type,
            uploads: (!uploads.is_empty()).then_some(uploads),
            common_prefixes: (!prefixes.is_empty()).then(|| {
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect()
            }),
            ..Default::default()
        }))
    }
}

/// Copy `length` bytes of `source` from `start` into a new file at `dest`, fsynced, and
/// return their MD5 (a part's ETag).
fn copy_hashing(
    source: &std::path::Path,
    start: u64,
    length: u64,
    dest: &std::path::Path,
) -> io::Result<[u8; 16]> {
    use std::io::{Read, Seek, Write};
    let mut input = fs_err::File::open(source)?;
    input.seek(io::SeekFrom::Start(start))?;
    let mut input = input.take(length);
    let mut output = fs_err::File::create(dest)?;
    let mut md5 = Md5::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    let mut copied = 0;
    loop {
        let n = input.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        md5.update(&buffer[..n]);
        output.write_all(&buffer[..n])?;
        copied += n as u64;
    }
    if copied != length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} ended after {copied} of {length} bytes",
                source.display()
            ),
        ));
    }
    output.sync_all()?;
    Ok(md5.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_ranges() {
        assert_eq!(copy_source_range(None, 10).unwrap(), (0, 10));
        assert_eq!(copy_source_range(Some("bytes=2-4"), 10).unwrap(), (2, 3));
        assert_eq!(copy_source_range(Some("bytes=0-9"), 10).unwrap(), (0, 10));
        for bad in [
            "bytes=0-10",
            "0-2",
            "bytes=0",
            "bytes=hello-world",
            "bytes=0-bar",
            "bytes=hello-",
            "bytes=0-2,3-5",
            "bytes=-5",
            "bytes=5-",
            "bytes=4-2",
        ] {
            let error = copy_source_range(Some(bad), 10).unwrap_err();
            assert_eq!(
                error.code().as_str(),
                "InvalidArgument",
                "{bad} should be InvalidArgument"
            );
        }
    }
}
