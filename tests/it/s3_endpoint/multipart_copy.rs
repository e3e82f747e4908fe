//! Multipart beyond the basics: UploadPartCopy (whole object and ranges), ListMultipartUploads
//! with its markers, GET/HEAD with partNumber, a retried CompleteMultipartUpload, and a part
//! sent twice (the request that started last wins, even when it finishes first).

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::CompletedMultipartUpload;

use crate::support::endpoint::{Endpoint, PRESET, stock};
use crate::support::files_under;
use crate::support::s3::{
    Upload, code, completed, get, md5_hex, multipart_e_tag, outcome, put, quoted,
};

const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn upload_part_copy_whole_object_and_ranges() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let source = pattern(11 * MIB + 17, 3);
    put(&c, PRESET, "big-source", &source).await;
    let small = b"a small object".to_vec();
    put(&c, PRESET, "small-source", &small).await;
    let upload = Upload::start(&c, PRESET, "assembled").await;
    let copy = |part: i32, source: &str, range: Option<String>| {
        c.upload_part_copy()
            .bucket(PRESET)
            .key("assembled")
            .upload_id(&upload.id)
            .part_number(part)
            .copy_source(source)
            .set_copy_source_range(range)
            .send()
    };
    let split = 5 * MIB + 1;
    let first = copy(
        1,
        "preset/big-source",
        Some(format!("bytes=0-{}", split - 1)),
    )
    .await
    .unwrap();
    let second = copy(
        2,
        "preset/big-source",
        Some(format!("bytes={split}-{}", source.len() - 1)),
    )
    .await
    .unwrap();
    let third = copy(3, "preset/small-source", None).await.unwrap();
    let tags: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|o| o.copy_part_result().unwrap().e_tag().unwrap().to_owned())
        .collect();
    assert_eq!(tags[0], quoted(&md5_hex(&source[..split])));
    let done = upload
        .complete(&[(1, &tags[0]), (2, &tags[1]), (3, &tags[2])])
        .await;
    let mut expected = source.clone();
    expected.extend_from_slice(&small);
    assert_eq!(
        done.e_tag().unwrap(),
        multipart_e_tag(&[&source[..split], &source[split..], &small])
    );
    assert!(
        get(&c, PRESET, "assembled").await == expected,
        "assembled bytes differ"
    );

    let Upload { id, .. } = Upload::start(&c, PRESET, "bad-ranges").await;
    let bad = |range: &str| {
        c.upload_part_copy()
            .bucket(PRESET)
            .key("bad-ranges")
            .upload_id(&id)
            .part_number(1)
            .copy_source("preset/small-source")
            .copy_source_range(range)
            .send()
    };
    let len = small.len();
    for range in [
        format!("bytes=0-{len}"),
        format!("bytes={len}-{}", len + 5),
        "0-2".to_owned(),
        "bytes=0".to_owned(),
        "bytes=hello-world".to_owned(),
        "bytes=0-bar".to_owned(),
        "bytes=2-1".to_owned(),
        "bytes=-3".to_owned(),
    ] {
        assert_eq!(
            code(bad(&range).await),
            ("InvalidArgument".into(), 400),
            "x-amz-copy-source-range {range}"
        );
    }
    assert_eq!(
        code(
            c.upload_part_copy()
                .bucket(PRESET)
                .key("bad-ranges")
                .upload_id(&id)
                .part_number(1)
                .copy_source("preset/no-such-source")
                .send()
                .await
        ),
        ("NoSuchKey".into(), 404)
    );
}

#[tokio::test]
async fn list_multipart_uploads_pages_with_prefix_delimiter_and_markers() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let mut expected = Vec::new();
    for key in ["a/1", "a/1", "a/2", "b/1", "c", "c", "d"] {
        let upload = Upload::start(&c, PRESET, key).await;
        expected.push((key.to_owned(), upload.id));
    }
    // Completed and aborted uploads are not in progress any more.
    let done = Upload::start(&c, PRESET, "a/done").await;
    let part = done.part(1, b"x".to_vec()).await;
    done.complete(&[(1, &part)]).await;
    let aborted = Upload::start(&c, PRESET, "a/aborted").await;
    c.abort_multipart_upload()
        .bucket(PRESET)
        .key("a/aborted")
        .upload_id(&aborted.id)
        .send()
        .await
        .unwrap();
    // S3 orders by key, then by creation time (the order created above).
    expected.sort_by(|a, b| a.0.cmp(&b.0));

    let mut seen = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    for page in 0.. {
        assert!(page < 10, "pagination does not end");
        let out = c
            .list_multipart_uploads()
            .bucket(PRESET)
            .max_uploads(2)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await
            .unwrap();
        for upload in out.uploads() {
            seen.push((
                upload.key().unwrap().to_owned(),
                upload.upload_id().unwrap().to_owned(),
            ));
            assert!(upload.initiated().is_some() && upload.owner().is_some());
        }
        if !out.is_truncated().unwrap_or(false) {
            break;
        }
        key_marker = out.next_key_marker().map(str::to_owned);
        id_marker = out.next_upload_id_marker().map(str::to_owned);
    }
    assert_eq!(seen, expected);

    let out = c
        .list_multipart_uploads()
        .bucket(PRESET)
        .prefix("a/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = out.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!(keys, ["a/1", "a/1", "a/2"]);

    let out = c
        .list_multipart_uploads()
        .bucket(PRESET)
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = out
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    let keys: Vec<&str> = out.uploads().iter().map(|u| u.key().unwrap()).collect();
    assert_eq!((prefixes, keys), (vec!["a/", "b/"], vec!["c", "c", "d"]));
}

#[tokio::test]
async fn get_and_head_with_part_number() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let parts = [pattern(5 * MIB, 1), pattern(MIB + 3, 2)];
    let upload = Upload::start(&c, PRESET, "parted").await;
    let mut tags = Vec::new();
    for (i, body) in parts.iter().enumerate() {
        tags.push(upload.part(i as i32 + 1, body.clone()).await);
    }
    let done = upload.complete(&[(1, &tags[0]), (2, &tags[1])]).await;
    let whole_tag = done.e_tag().unwrap().to_owned();
    let total = parts[0].len() + parts[1].len();
    let get_part = |key: &'static str, number: i32| {
        c.get_object()
            .bucket(PRESET)
            .key(key)
            .part_number(number)
            .send()
    };
    let head_part = |key: &'static str, number: i32| {
        c.head_object()
            .bucket(PRESET)
            .key(key)
            .part_number(number)
            .send()
    };
    for (number, body, start) in [(1, &parts[0], 0), (2, &parts[1], parts[0].len())] {
        let out = get_part("parted", number).await.unwrap();
        assert_eq!(out.parts_count(), Some(2), "part {number}");
        assert_eq!(out.e_tag(), Some(whole_tag.as_str()), "part {number}");
        assert_eq!(
            out.content_range(),
            Some(format!("bytes {start}-{}/{total}", start + body.len() - 1).as_str())
        );
        let got = out.body.collect().await.unwrap().into_bytes();
        assert!(
            got.as_ref() == body.as_slice(),
            "part {number} bytes differ"
        );
        let head = head_part("parted", number).await.unwrap();
        assert_eq!(head.content_length(), Some(body.len() as i64));
        assert_eq!(head.parts_count(), Some(2));
    }
    assert_eq!(
        code(get_part("parted", 3).await),
        ("InvalidPart".into(), 400)
    );
    put(&c, PRESET, "plain", b"not multipart").await;
    let out = get_part("plain", 1).await.unwrap();
    assert_eq!(
        out.body.collect().await.unwrap().into_bytes().as_ref(),
        b"not multipart"
    );
    assert_eq!(
        code(get_part("plain", 2).await),
        ("InvalidPart".into(), 400)
    );
    assert_eq!(outcome(head_part("plain", 2).await).1, 400);
}

#[tokio::test]
async fn retried_complete_answers_the_same_etag() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let upload = Upload::start(&c, PRESET, "retried").await;
    let tag = upload.part(1, b"only part".to_vec()).await;
    let id = &upload.id;
    let complete = |parts: CompletedMultipartUpload| {
        c.complete_multipart_upload()
            .bucket(PRESET)
            .key("retried")
            .upload_id(id)
            .multipart_upload(parts)
            .send()
    };
    let first = complete(completed(&[(1, &tag)])).await.unwrap();
    // The client did not see the answer and sends the same request again.
    let again = complete(completed(&[(1, &tag)])).await.unwrap();
    assert_eq!(first.e_tag(), again.e_tag());
    assert_eq!(get(&c, PRESET, "retried").await, b"only part");
    assert_eq!(
        code(complete(completed(&[(2, &tag)])).await),
        ("NoSuchUpload".into(), 404),
        "a complete with other parts after the upload completed"
    );
    assert_eq!(
        code(
            c.upload_part()
                .bucket(PRESET)
                .key("retried")
                .upload_id(id)
                .part_number(2)
                .body(ByteStream::from_static(b"late"))
                .send()
                .await
        ),
        ("NoSuchUpload".into(), 404)
    );
}

/// Part 1 is sent twice. The first request's body is held back until the second request has
/// been answered, so the first finishes last; the part must still be the second request's
/// bytes (S3: the last upload of a part number wins, by when it was sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_sent_again_replaces_the_first_even_when_the_first_finishes_last() {
    let s3 = Endpoint::start().await;
    if stock() {
        return;
    }
    let c = s3.client();
    let upload = Upload::start(&c, PRESET, "resent").await;
    let url = c
        .upload_part()
        .bucket(PRESET)
        .key("resent")
        .upload_id(&upload.id)
        .part_number(1)
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap();
    let first_body = b"first upload of part one".to_vec();
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let (half_sent_tx, half_sent) = tokio::sync::oneshot::channel::<()>();
    let head = first_body[..5].to_vec();
    let rest = first_body[5..].to_vec();
    let stream = async_stream(head, rest, half_sent_tx, held);
    let first = tokio::spawn(
        reqwest::Client::new()
            .put(url.uri())
            .header("content-length", first_body.len())
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    half_sent.await.unwrap();
    // Wait until the server holds the first request (its temp file exists), then send again.
    let temp_dir = s3.root().join(".opsbox-s3/tmp");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while files_under(&temp_dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first upload of part 1 never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = upload.part(1, b"second upload of part one".to_vec()).await;
    release.send(()).unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status().as_u16(), 200, "the first upload of part 1");
    let listed = c
        .list_parts()
        .bucket(PRESET)
        .key("resent")
        .upload_id(&upload.id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 1);
    assert_eq!(listed.parts()[0].e_tag(), Some(second.as_str()));
    upload.complete(&[(1, &second)]).await;
    assert_eq!(
        get(&c, PRESET, "resent").await,
        b"second upload of part one"
    );
}

/// A body that sends `head`, signals `half_sent`, waits for `release`, then sends `rest`.
fn async_stream(
    head: Vec<u8>,
    rest: Vec<u8>,
    half_sent: tokio::sync::oneshot::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold(
        (Some(head), Some(rest), Some(half_sent), Some(release)),
        |(head, rest, half_sent, release)| async move {
            if let Some(head) = head {
                return Some((Ok(head), (None, rest, half_sent, release)));
            }
            if let Some(half_sent) = half_sent {
                let _ = half_sent.send(());
            }
            if let Some(release) = release {
                let _ = release.await;
            }
            let rest = rest?;
            Some((Ok(rest), (None, None, None, None)))
        },
    )
}
