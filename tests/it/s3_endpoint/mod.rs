//! The S3 endpoint in process: real aws-sdk-s3, AWS CLI and boto3 clients against `S3Server`
//! on 127.0.0.1 with a temp root per test (`support::endpoint`).
//!
//! `IT_S3_BACKEND=stock` runs the same tests against upstream s3s-fs 0.14.1 (same auth and
//! accept loop), to see which S3 behaviours stock s3s-fs already gets right:
//! `IT_S3_BACKEND=stock cargo test --test it s3_endpoint::`.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use base64::Engine as _;
use md5::Digest as _;

use crate::support::endpoint::{Endpoint, PRESET, Running, stock};
use crate::support::files_under;
use crate::support::s3::{
    self, ACCESS_KEY, SECRET_KEY, Upload, client_for, code, completed, get, head_object, list_keys,
    md5_hex, multipart_e_tag, outcome, put, quoted,
};

mod conditional;
mod gate;
mod multipart_copy;
mod semantics;
mod streaming;

#[tokio::test]
async fn bucket_crud() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    c.create_bucket().bucket("alpha").send().await.unwrap();
    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, vec!["alpha".to_owned(), PRESET.to_owned()]);
    c.head_bucket().bucket("alpha").send().await.unwrap();
    c.delete_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(
        code(c.delete_bucket().bucket("alpha").send().await),
        ("NoSuchBucket".into(), 404)
    );
    assert_eq!(
        code(c.get_object().bucket("alpha").key("k").send().await),
        ("NoSuchBucket".into(), 404)
    );
}

#[tokio::test]
async fn preset_buckets_are_created_idempotently() {
    let mut s3 = Endpoint::start().await;
    put(&s3.client(), PRESET, "k", b"v").await;
    s3.restart().await;
    assert_eq!(get(&s3.client(), PRESET, "k").await, b"v");
}

#[tokio::test]
async fn put_get_head_keep_etag_content_type_and_stored_headers() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let body = b"{\"hello\":1}";
    let out = c
        .put_object()
        .bucket(PRESET)
        .key("doc.json")
        .body(ByteStream::from_static(body))
        .content_type("application/json")
        .content_encoding("identity")
        .cache_control("max-age=60")
        .content_disposition("attachment; filename=doc.json")
        .metadata("owner", "historian")
        .send()
        .await
        .unwrap();
    assert_eq!(out.e_tag(), Some(quoted(&md5_hex(body)).as_str()));
    let head = head_object(&c, PRESET, "doc.json").await;
    let got = c
        .get_object()
        .bucket(PRESET)
        .key("doc.json")
        .send()
        .await
        .unwrap();
    for (etag, ctype, enc, cache, disp, meta, len) in [
        (
            head.e_tag(),
            head.content_type(),
            head.content_encoding(),
            head.cache_control(),
            head.content_disposition(),
            head.metadata(),
            head.content_length(),
        ),
        (
            got.e_tag(),
            got.content_type(),
            got.content_encoding(),
            got.cache_control(),
            got.content_disposition(),
            got.metadata(),
            got.content_length(),
        ),
    ] {
        assert_eq!(etag, Some(quoted(&md5_hex(body)).as_str()));
        assert_eq!(ctype, Some("application/json"));
        assert_eq!(enc, Some("identity"));
        assert_eq!(cache, Some("max-age=60"));
        assert_eq!(disp, Some("attachment; filename=doc.json"));
        assert_eq!(
            meta.and_then(|m| m.get("owner")).map(String::as_str),
            Some("historian")
        );
        assert_eq!(len, Some(body.len() as i64));
    }
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        body
    );
}

#[tokio::test]
async fn etag_is_stored_at_write_time_not_recomputed() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "stable", b"original bytes").await;
    // Change the data file behind the server's back (same length): a server that re-reads
    // the object to compute the ETag would now report a different one.
    let data = files_under(&s3.root())
        .into_iter()
        .find(|p| std::fs::read(p).is_ok_and(|b| b == b"original bytes"))
        .unwrap();
    std::fs::write(&data, b"ORIGINAL BYTES").unwrap();
    let head = head_object(&c, PRESET, "stable").await;
    assert_eq!(
        head.e_tag(),
        Some(quoted(&md5_hex(b"original bytes")).as_str())
    );
}

#[tokio::test]
async fn data_renamed_without_its_metadata_is_served_consistently() {
    if stock() {
        return;
    }
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "torn", b"version one").await;
    // The state a crash between the data rename and the metadata rename leaves: a new data
    // file (new inode) next to the old version's metadata (old ETag, old checksums).
    let data = files_under(&s3.root())
        .into_iter()
        .find(|p| std::fs::read(p).is_ok_and(|b| b == b"version one"))
        .unwrap();
    let replacement = data.with_extension("replacement");
    std::fs::write(&replacement, b"version two, longer").unwrap();
    std::fs::rename(&replacement, &data).unwrap();

    let head = head_object(&c, PRESET, "torn").await;
    assert_eq!(
        head.e_tag(),
        Some(quoted(&md5_hex(b"version two, longer")).as_str()),
        "the ETag belongs to the bytes on disk"
    );
    // A checksum-validating GET must not see the old version's checksum.
    assert_eq!(get(&c, PRESET, "torn").await, b"version two, longer");
    let listed = c.list_objects_v2().bucket(PRESET).send().await.unwrap();
    let object = listed
        .contents()
        .iter()
        .find(|o| o.key() == Some("torn"))
        .unwrap();
    assert_eq!(
        object.e_tag(),
        Some(quoted(&md5_hex(b"version two, longer")).as_str())
    );
}

#[tokio::test]
async fn range_get() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "r", b"0123456789").await;
    let out = c
        .get_object()
        .bucket(PRESET)
        .key("r")
        .range("bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_range(), Some("bytes 2-5/10"));
    assert_eq!(
        out.body.collect().await.unwrap().into_bytes().as_ref(),
        b"2345"
    );
    let out = c
        .get_object()
        .bucket(PRESET)
        .key("r")
        .range("bytes=-3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.body.collect().await.unwrap().into_bytes().as_ref(),
        b"789"
    );
    assert_eq!(
        code(
            c.get_object()
                .bucket(PRESET)
                .key("r")
                .range("bytes=20-")
                .send()
                .await
        )
        .1,
        416
    );
}

#[tokio::test]
async fn copy_object_keeps_or_replaces_metadata() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    c.put_object()
        .bucket(PRESET)
        .key("src")
        .body(ByteStream::from_static(b"copy me"))
        .content_type("text/plain")
        .metadata("a", "1")
        .send()
        .await
        .unwrap();
    let out = c
        .copy_object()
        .bucket(PRESET)
        .key("dst")
        .copy_source("preset/src")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.copy_object_result().and_then(|r| r.e_tag()),
        Some(quoted(&md5_hex(b"copy me")).as_str())
    );
    let head = head_object(&c, PRESET, "dst").await;
    assert_eq!(head.content_type(), Some("text/plain"));
    assert_eq!(
        head.metadata().and_then(|m| m.get("a")).map(String::as_str),
        Some("1")
    );
    c.copy_object()
        .bucket(PRESET)
        .key("dst2")
        .copy_source("preset/src")
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type("text/csv")
        .send()
        .await
        .unwrap();
    let head = head_object(&c, PRESET, "dst2").await;
    assert_eq!(head.content_type(), Some("text/csv"));
    assert_eq!(get(&c, PRESET, "dst2").await, b"copy me");
    // Copy onto itself keeps the bytes.
    c.copy_object()
        .bucket(PRESET)
        .key("src")
        .copy_source("preset/src")
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .send()
        .await
        .unwrap();
    assert_eq!(get(&c, PRESET, "src").await, b"copy me");
}

#[tokio::test]
async fn multipart_upload_has_s3_style_etag() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let parts: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            vec![
                b'a' + i;
                if i < 2 {
                    5 * 1024 * 1024
                } else {
                    1024 * 1024 + 7
                }
            ]
        })
        .collect();
    let id = c
        .create_multipart_upload()
        .bucket(PRESET)
        .key("big/file.bin")
        .content_type("application/x-test")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let upload = Upload {
        client: &c,
        bucket: PRESET,
        key: "big/file.bin",
        id,
    };
    let mut tags = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let tag = upload.part(i as i32 + 1, part.clone()).await;
        assert_eq!(tag, quoted(&md5_hex(part)));
        tags.push((i as i32 + 1, tag));
    }
    let listed = c
        .list_parts()
        .bucket(PRESET)
        .key("big/file.bin")
        .upload_id(&upload.id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 3);
    let done: Vec<(i32, &str)> = tags.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let out = upload.complete(&done).await;
    let parts_as_slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let expected = multipart_e_tag(&parts_as_slices);
    assert_eq!(out.e_tag(), Some(expected.as_str()));
    let head = head_object(&c, PRESET, "big/file.bin").await;
    assert_eq!(head.e_tag(), Some(expected.as_str()));
    assert_eq!(head.content_type(), Some("application/x-test"));
    assert_eq!(
        head.content_length(),
        Some(parts.iter().map(Vec::len).sum::<usize>() as i64)
    );
    let body = get(&c, PRESET, "big/file.bin").await;
    assert_eq!(body, parts.concat());
}

#[tokio::test]
async fn multipart_rejects_small_parts_and_unknown_uploads() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let upload = Upload::start(&c, PRESET, "m").await;
    let id = upload.id.as_str();
    let tags = [
        upload.part(1, b"tiny".to_vec()).await,
        upload.part(2, b"tiny".to_vec()).await,
    ];
    let result = c
        .complete_multipart_upload()
        .bucket(PRESET)
        .key("m")
        .upload_id(id)
        .multipart_upload(completed(&[(1, &tags[0]), (2, &tags[1])]))
        .send()
        .await;
    assert_eq!(code(result), ("EntityTooSmall".into(), 400));
    c.abort_multipart_upload()
        .bucket(PRESET)
        .key("m")
        .upload_id(id)
        .send()
        .await
        .unwrap();
    let result = c
        .upload_part()
        .bucket(PRESET)
        .key("m")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(code(result), ("NoSuchUpload".into(), 404));
}

async fn put_many(c: &Client, keys: &[String]) {
    use futures::StreamExt;
    futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let c = c.clone();
            async move { put(&c, PRESET, &k, k.as_bytes()).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// 2,500 keys: 2,490 under 10 "directories" plus 10 at the top level.
fn many_keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..2490)
        .map(|i| format!("dir{}/file{i:05}", i % 10))
        .collect();
    keys.extend((0..10).map(|i| format!("top{i:02}")));
    keys.sort();
    keys
}

/// A ListObjectsV2 followed page by page to its end: every common prefix and key in order (a
/// page's prefixes first), and how many pages it took.
async fn list_v2_to_the_end(
    c: &Client,
    delimiter: Option<&str>,
    max_keys: Option<i32>,
) -> (Vec<String>, usize) {
    let (mut entries, mut pages, mut token) = (Vec::new(), 0, None);
    loop {
        let out = c
            .list_objects_v2()
            .bucket(PRESET)
            .set_delimiter(delimiter.map(str::to_owned))
            .set_max_keys(max_keys)
            .set_continuation_token(token.take())
            .send()
            .await
            .unwrap();
        pages += 1;
        entries.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        entries.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if delimiter.is_none() {
            assert_eq!(out.key_count(), Some(out.contents().len() as i32));
        }
        if out.is_truncated() != Some(true) {
            assert!(out.next_continuation_token().is_none());
            return (entries, pages);
        }
        token = Some(
            out.next_continuation_token()
                .expect("NextContinuationToken when truncated")
                .to_owned(),
        );
    }
}

/// A ListObjects (v1) followed page by page to its end: every common prefix and key in order.
/// Without a delimiter a client may resume after the last key; with one, NextMarker is
/// required.
async fn list_v1_to_the_end(
    c: &Client,
    delimiter: Option<&str>,
    max_keys: Option<i32>,
) -> Vec<String> {
    let (mut entries, mut marker) = (Vec::new(), None);
    loop {
        let out = c
            .list_objects()
            .bucket(PRESET)
            .set_delimiter(delimiter.map(str::to_owned))
            .set_max_keys(max_keys)
            .set_marker(marker.take())
            .send()
            .await
            .unwrap();
        entries.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        entries.extend(out.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if out.is_truncated() != Some(true) {
            return entries;
        }
        marker = Some(match out.next_marker() {
            Some(next) => next.to_owned(),
            None => {
                assert!(
                    delimiter.is_none(),
                    "NextMarker with a delimiter when truncated"
                );
                entries.last().unwrap().clone()
            }
        });
    }
}

#[tokio::test]
async fn list_pagination_over_2500_keys() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let keys = many_keys();
    put_many(&c, &keys).await;

    // v2 without delimiter, default max-keys (1000) then 333.
    for max in [None, Some(333)] {
        let (seen, pages) = list_v2_to_the_end(&c, None, max).await;
        assert_eq!(seen, keys, "v2 max-keys {max:?}");
        assert_eq!(pages, 2500usize.div_ceil(max.unwrap_or(1000) as usize));
    }

    // v2 start-after.
    let out = c
        .list_objects_v2()
        .bucket(PRESET)
        .start_after("dir9/file02489")
        .max_keys(3)
        .send()
        .await
        .unwrap();
    let got: Vec<&str> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(got, vec!["top00", "top01", "top02"]);

    // v2 with delimiter, 4 entries per page: 10 common prefixes then 10 keys.
    let (entries, _) = list_v2_to_the_end(&c, Some("/"), Some(4)).await;
    let mut expected: Vec<String> = (0..10).map(|i| format!("dir{i}/")).collect();
    expected.extend((0..10).map(|i| format!("top{i:02}")));
    assert_eq!(entries, expected);

    // v2 with prefix and delimiter.
    let out = c
        .list_objects_v2()
        .bucket(PRESET)
        .prefix("dir3/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(out.contents().len(), 249);
    assert!(out.common_prefixes().is_empty());

    // v1 without delimiter: IsTruncated, resume with the last key as marker.
    assert_eq!(list_v1_to_the_end(&c, None, None).await, keys);

    // v1 with delimiter: NextMarker is required to resume.
    assert_eq!(list_v1_to_the_end(&c, Some("/"), Some(3)).await, expected);
}

#[tokio::test]
async fn delete_multiple_objects() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    for k in ["a", "b/c", "d"] {
        put(&c, PRESET, k, b"x").await;
    }
    let ids: Vec<ObjectIdentifier> = ["a", "b/c", "missing"]
        .iter()
        .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
        .collect();
    let out = c
        .delete_objects()
        .bucket(PRESET)
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 3);
    assert!(out.errors().is_empty());
    let left: Vec<String> = list_keys(&c, PRESET, "").await;
    assert_eq!(left, vec!["d".to_owned()]);
}

#[tokio::test]
async fn error_codes() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "k", b"x").await;
    let long = "k".repeat(1025);
    let checks = [
        (
            "GET missing key",
            outcome(c.get_object().bucket(PRESET).key("nope").send().await),
            ("NoSuchKey", 404),
        ),
        (
            "HEAD missing key",
            (
                String::new(),
                outcome(c.head_object().bucket(PRESET).key("nope").send().await).1,
            ),
            ("", 404),
        ),
        (
            "GET in missing bucket",
            outcome(c.get_object().bucket("nobucket").key("k").send().await),
            ("NoSuchBucket", 404),
        ),
        (
            "DeleteBucket non-empty",
            outcome(c.delete_bucket().bucket(PRESET).send().await),
            ("BucketNotEmpty", 409),
        ),
        (
            "PUT key > 1024 bytes",
            outcome(
                c.put_object()
                    .bucket(PRESET)
                    .key(&long)
                    .body(ByteStream::from_static(b"x"))
                    .send()
                    .await,
            ),
            ("KeyTooLongError", 400),
        ),
        (
            "GET key > 1024 bytes",
            outcome(c.get_object().bucket(PRESET).key(&long).send().await),
            ("KeyTooLongError", 400),
        ),
    ];
    let failures: Vec<String> = checks
        .iter()
        .filter(|(_, got, want)| (got.0.as_str(), got.1) != (want.0, want.1))
        .map(|(what, got, want)| format!("{what}: got {got:?}, want {want:?}"))
        .collect();
    let survived = c.get_object().bucket(PRESET).key("k").send().await.is_ok();
    assert!(
        failures.is_empty() && survived,
        "{failures:#?}; object survived DeleteBucket: {survived}"
    );
}

#[tokio::test]
async fn delete_missing_key_is_204() {
    let s3 = Endpoint::start().await;
    let url = s3
        .client()
        .delete_object()
        .bucket(PRESET)
        .key("missing")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .delete(url.uri())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
}

#[tokio::test]
async fn bad_digest_leaves_previous_object_untouched() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "keep", b"version one").await;
    let wrong_md5 =
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(b"something else"));
    let result = c
        .put_object()
        .bucket(PRESET)
        .key("keep")
        .content_md5(wrong_md5)
        .body(ByteStream::from_static(b"version two"))
        .send()
        .await;
    assert_eq!(code(result), ("BadDigest".into(), 400));
    assert_eq!(get(&c, PRESET, "keep").await, b"version one");
    let wrong_sha = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    let result = c
        .put_object()
        .bucket(PRESET)
        .key("keep")
        .checksum_sha256(wrong_sha)
        .body(ByteStream::from_static(b"version three"))
        .send()
        .await;
    let (code_text, status) = code(result);
    assert_eq!(status, 400, "{code_text}");
    assert_eq!(get(&c, PRESET, "keep").await, b"version one");
    let head = head_object(&c, PRESET, "keep").await;
    assert_eq!(
        head.e_tag(),
        Some(quoted(&md5_hex(b"version one")).as_str())
    );
    if !stock() {
        assert!(s3.temp_files().is_empty(), "temp files left behind");
    }
}

#[tokio::test]
async fn hostile_keys_stay_inside_the_bucket() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    // Keys S3 stores like any other: each must round-trip (a 4xx is a failure).
    let ordinary = ["sp ace/+plus", "ü/€", "a//b", "trail/", "/lead", ".hidden"];
    // Keys that try to leave the bucket: stored inside it, or refused with a 4xx.
    let hostile = [
        "../x",
        "a/../../b",
        "..",
        ".",
        "./y",
        "%2e%2e/z",
        "..%2f..%2fw",
        ".bucket-x.object-y.metadata.json",
        ".opsbox-s3",
        "a/./b",
    ];
    let keys: Vec<&str> = ordinary.iter().chain(hostile.iter()).copied().collect();
    let mut failures = Vec::new();
    for &key in &keys {
        let body = format!("body of {key}");
        let result = c
            .put_object()
            .bucket(PRESET)
            .key(key)
            .body(ByteStream::from(body.clone().into_bytes()))
            .send()
            .await;
        match result {
            Ok(_) => match c.get_object().bucket(PRESET).key(key).send().await {
                Ok(out) => {
                    let got = out.body.collect().await.unwrap().into_bytes();
                    if got.as_ref() != body.as_bytes() {
                        failures.push(format!(
                            "{key:?}: read back {:?}",
                            String::from_utf8_lossy(&got)
                        ));
                    }
                }
                Err(e) => failures.push(format!(
                    "{key:?}: stored but GET failed: {:?}",
                    e.into_service_error()
                )),
            },
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
                if ordinary.contains(&key) || !(400..500).contains(&status) {
                    failures.push(format!(
                        "{key:?}: PUT answered {status} {:?}",
                        e.into_service_error()
                    ));
                }
            }
        }
    }
    let outside: Vec<_> = std::fs::read_dir(s3.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "root" && n != "s3.log")
        .collect();
    assert!(outside.is_empty(), "files outside the root: {outside:?}");
    let root_entries: Vec<_> = std::fs::read_dir(s3.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    if !stock() {
        let mut sorted = root_entries.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![".opsbox-s3".to_owned(), PRESET.to_owned()],
            "only the bucket and internal dir in root"
        );
    }
    let listed: Vec<String> = list_keys(&c, PRESET, "").await;
    for &key in &keys {
        if c.head_object().bucket(PRESET).key(key).send().await.is_ok()
            && !listed.iter().any(|k| k == key)
        {
            failures.push(format!(
                "{key:?}: readable but not listed under its key (listed: {listed:?})"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn key_and_directory_collisions() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let mut failures = Vec::new();
    for (first, second) in [("a", "a/b"), ("e/", "e"), ("f/g", "f")] {
        for key in [first, second] {
            let result = c
                .put_object()
                .bucket(PRESET)
                .key(key)
                .body(ByteStream::from(key.as_bytes().to_vec()))
                .send()
                .await;
            if let Err(e) = result {
                let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
                failures.push(format!("PUT {key:?} after {first:?}: {status}"));
            }
        }
        for key in [first, second] {
            match c.get_object().bucket(PRESET).key(key).send().await {
                Ok(out) => {
                    let got = out.body.collect().await.unwrap().into_bytes();
                    if got.as_ref() != key.as_bytes() {
                        failures.push(format!("GET {key:?}: {:?}", String::from_utf8_lossy(&got)));
                    }
                }
                Err(e) => failures.push(format!("GET {key:?}: {:?}", e.into_service_error())),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn data_survives_restart_and_temp_files_are_cleaned() {
    let mut s3 = Endpoint::start().await;
    put(&s3.client(), PRESET, "durable/key", b"still here").await;
    let temp_dir = s3.root().join(".opsbox-s3/tmp");
    s3.stop().await;
    if !stock() {
        std::fs::write(temp_dir.join("123-4.part"), b"partial upload from a crash").unwrap();
    } else {
        std::fs::write(s3.root().join(".tmp.7.internal.part"), b"partial").unwrap();
    }
    s3.restart().await;
    assert_eq!(
        get(&s3.client(), PRESET, "durable/key").await,
        b"still here"
    );
    if !stock() {
        assert!(s3.temp_files().is_empty(), "temp files survived a restart");
    }
    assert_eq!(
        list_keys(&s3.client(), PRESET, "").await,
        vec!["durable/key".to_owned()]
    );
}

#[tokio::test]
async fn unsigned_and_wrongly_signed_requests_are_refused() {
    let s3 = Endpoint::start().await;
    put(&s3.client(), PRESET, "secret", b"x").await;
    let response = reqwest::get(format!("{}/preset/secret", s3.url()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );
    let wrong = client_for(&s3.url(), "not-the-secret", true, true);
    assert_eq!(
        code(wrong.get_object().bucket(PRESET).key("secret").send().await),
        ("SignatureDoesNotMatch".into(), 403)
    );
}

#[tokio::test]
async fn virtual_hosted_style_requests() {
    let s3 = Endpoint::start().await;
    if stock() {
        return; // stock s3s-fs is run without a host configuration here
    }
    put(&s3.client(), PRESET, "vh/key.txt", b"virtual").await;
    let vhost = client_for(
        &format!("http://localhost:{}", s3.addr.port()),
        SECRET_KEY,
        false,
        true,
    );
    let url = vhost
        .get_object()
        .bucket(PRESET)
        .key("vh/key.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    assert!(
        url.uri().starts_with(&format!(
            "http://preset.localhost:{}/vh/key.txt",
            s3.addr.port()
        )),
        "{}",
        url.uri()
    );
    let http = reqwest::Client::builder()
        .resolve("preset.localhost", s3.addr)
        .build()
        .unwrap();
    let response = http.get(url.uri()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"virtual");
}

#[tokio::test]
async fn minio_health_routes_need_no_auth_and_requests_are_logged() {
    let s3 = Endpoint::start().await;
    if stock() {
        return;
    }
    let http = reqwest::Client::new();
    for path in ["/minio/health/live", "/minio/health/ready"] {
        assert_eq!(
            http.get(format!("{}{path}", s3.url()))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
        assert_eq!(
            http.head(format!("{}{path}", s3.url()))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
    let _ = http
        .get(format!("{}/preset/x", s3.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    put(&s3.client(), PRESET, "logged", b"12345").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = std::fs::read_to_string(s3.log()).unwrap();
    assert!(log.contains("GET /minio/health/live 200 0 bytes"), "{log}");
    assert!(log.contains("HEAD /minio/health/ready 200"), "{log}");
    assert!(log.contains("GET /preset/x 403"), "{log}");
    assert!(log.contains("PUT /preset/logged 200"), "{log}");
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let s3 = Endpoint::start().await;
    if stock() {
        return;
    }
    let c = s3.client();
    let body = vec![7u8; 32 * 1024 * 1024];
    put(&c, PRESET, "large", &body).await;
    let out = c
        .get_object()
        .bucket(PRESET)
        .key("large")
        .send()
        .await
        .unwrap();
    let mut s3 = s3;
    let server = s3.server.take();
    let stopper = tokio::spawn(async move {
        if let Some(Running::Ours(server)) = server {
            server.shutdown(Duration::from_secs(10)).await;
        }
    });
    let got = out.body.collect().await.unwrap().into_bytes();
    assert_eq!(got.len(), body.len());
    tokio::time::timeout(Duration::from_secs(10), stopper)
        .await
        .expect("shutdown returned")
        .unwrap();
    assert!(
        reqwest::get(format!("{}/minio/health/live", s3.url()))
            .await
            .is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_smoke() {
    let s3 = Endpoint::start().await;
    let endpoint = s3.url();
    let file = s3.dir.path().join("upload.txt");
    std::fs::write(&file, b"from the aws cli").unwrap();
    let file = file.to_str().unwrap().to_owned();
    let home = s3.dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let aws = |args: &[&str]| s3::aws(&home, &endpoint, args);
        aws(&["s3", "mb", "s3://cli-bucket"]);
        aws(&["s3", "cp", &file, "s3://cli-bucket/dir/upload.txt"]);
        let listing = aws(&["s3", "ls", "s3://cli-bucket/dir/"]);
        assert!(listing.contains("upload.txt"), "{listing}");
        let copy = aws(&["s3", "cp", "s3://cli-bucket/dir/upload.txt", "-"]);
        assert_eq!(copy, "from the aws cli");
        aws(&["s3", "rm", "s3://cli-bucket/dir/upload.txt"]);
        let listing = aws(&["s3", "ls", "s3://cli-bucket/"]);
        assert!(listing.trim().is_empty(), "{listing}");
        aws(&["s3", "rb", "s3://cli-bucket"]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_smoke() {
    let s3 = Endpoint::start().await;
    let endpoint = s3.url();
    let script = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name="us-east-1")
s3.put_object(Bucket="preset", Key="py/obj", Body=b"from boto3", ContentType="text/plain")
o = s3.get_object(Bucket="preset", Key="py/obj")
assert o["Body"].read() == b"from boto3"
assert o["ContentType"] == "text/plain"
keys = [x["Key"] for x in s3.list_objects_v2(Bucket="preset", Prefix="py/")["Contents"]]
assert keys == ["py/obj"], keys
s3.delete_object(Bucket="preset", Key="py/obj")
print("ok")
"#;
    let home = s3.dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        s3::python(&home, script, &[&endpoint, ACCESS_KEY, SECRET_KEY])
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "ok");
}

#[tokio::test]
async fn prefix_listing_of_nested_keys() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    for key in ["x/y/z", "x/y2", "x//q", "xa", "x/"] {
        put(&c, PRESET, key, b"v").await;
    }
    for (prefix, expected) in [
        ("x/", vec!["x/", "x//q", "x/y/z", "x/y2"]),
        ("x/y", vec!["x/y/z", "x/y2"]),
        ("x//", vec!["x//q"]),
        ("x", vec!["x/", "x//q", "x/y/z", "x/y2", "xa"]),
        ("nothere/", vec![]),
    ] {
        let keys = list_keys(&c, PRESET, prefix).await;
        assert_eq!(keys, expected, "prefix {prefix:?}");
    }
}
