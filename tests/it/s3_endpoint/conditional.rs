//! Conditional requests: GET/HEAD with If-Match, If-None-Match, If-Modified-Since and
//! If-Unmodified-Since (S3's precedence), conditional PUT atomic with the write, and
//! CopyObject's x-amz-copy-source-if-* headers.

use aws_sdk_s3::primitives::{ByteStream, DateTime};

use crate::support::endpoint::{Endpoint, PRESET};
use crate::support::s3::{code, get, head_object, md5_hex, outcome, put, quoted};

/// (status, error code) of a GET with the given conditions; 200 and "ok" when it succeeds.
#[derive(Default, Clone)]
struct When {
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<DateTime>,
    if_unmodified_since: Option<DateTime>,
}

impl When {
    fn if_match(self, e_tag: &str) -> Self {
        Self {
            if_match: Some(e_tag.into()),
            ..self
        }
    }
    fn if_none_match(self, e_tag: &str) -> Self {
        Self {
            if_none_match: Some(e_tag.into()),
            ..self
        }
    }
    fn if_modified_since(self, time: DateTime) -> Self {
        Self {
            if_modified_since: Some(time),
            ..self
        }
    }
    fn if_unmodified_since(self, time: DateTime) -> Self {
        Self {
            if_unmodified_since: Some(time),
            ..self
        }
    }
}

#[tokio::test]
async fn get_and_head_answer_conditions_with_s3_precedence() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "cond", b"conditional body").await;
    let head = head_object(&c, PRESET, "cond").await;
    let e_tag = head.e_tag().unwrap().to_owned();
    assert_eq!(e_tag, quoted(&md5_hex(b"conditional body")));
    let modified = head.last_modified().unwrap().secs();
    let (past, same, future) = (
        DateTime::from_secs(modified - 3600),
        DateTime::from_secs(modified),
        DateTime::from_secs(modified + 3600),
    );
    let other = quoted(&md5_hex(b"something else"));
    let w = When::default;
    let cases: Vec<(&str, When, u16)> = vec![
        ("If-Match right", w().if_match(&e_tag), 200),
        ("If-Match *", w().if_match("*"), 200),
        ("If-Match wrong", w().if_match(&other), 412),
        ("If-None-Match right", w().if_none_match(&e_tag), 304),
        ("If-None-Match *", w().if_none_match("*"), 304),
        ("If-None-Match wrong", w().if_none_match(&other), 200),
        (
            "If-Modified-Since same second",
            w().if_modified_since(same),
            304,
        ),
        (
            "If-Modified-Since future",
            w().if_modified_since(future),
            304,
        ),
        ("If-Modified-Since past", w().if_modified_since(past), 200),
        (
            "If-Unmodified-Since past",
            w().if_unmodified_since(past),
            412,
        ),
        (
            "If-Unmodified-Since same second",
            w().if_unmodified_since(same),
            200,
        ),
        (
            "If-Match right wins over a failing If-Unmodified-Since",
            w().if_match(&e_tag).if_unmodified_since(past),
            200,
        ),
        (
            "If-None-Match right gives 304 even if modified since",
            w().if_none_match(&e_tag).if_modified_since(past),
            304,
        ),
        (
            "If-None-Match wrong ignores If-Modified-Since",
            w().if_none_match(&other).if_modified_since(future),
            200,
        ),
        (
            "412 wins over 304",
            w().if_match(&other).if_none_match(&e_tag),
            412,
        ),
    ];
    let mut failures = Vec::new();
    for (what, when, want) in cases {
        let got = c
            .get_object()
            .bucket(PRESET)
            .key("cond")
            .set_if_match(when.if_match.clone())
            .set_if_none_match(when.if_none_match.clone())
            .set_if_modified_since(when.if_modified_since)
            .set_if_unmodified_since(when.if_unmodified_since)
            .send()
            .await;
        let (get_code, get_status) = match got {
            Ok(out) => {
                let body = out.body.collect().await.unwrap().into_bytes();
                assert_eq!(body.as_ref(), b"conditional body", "{what}");
                ("ok".to_owned(), 200)
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
                if status == 304 {
                    let headers = e.raw_response().unwrap().headers();
                    if headers.get("etag") != Some(e_tag.as_str()) {
                        failures.push(format!("{what}: 304 without the ETag header"));
                    }
                    if headers.get("last-modified").is_none() {
                        failures.push(format!("{what}: 304 without Last-Modified"));
                    }
                }
                (
                    format!("{:?}", aws_sdk_s3::error::ProvideErrorMetadata::code(&e)),
                    status,
                )
            }
        };
        if get_status != want {
            failures.push(format!("GET {what}: {get_status} {get_code}, want {want}"));
        }
        if want == 412 && get_code != format!("{:?}", Some("PreconditionFailed")) {
            failures.push(format!(
                "GET {what}: code {get_code}, want PreconditionFailed"
            ));
        }
        let head_status = outcome(
            c.head_object()
                .bucket(PRESET)
                .key("cond")
                .set_if_match(when.if_match)
                .set_if_none_match(when.if_none_match)
                .set_if_modified_since(when.if_modified_since)
                .set_if_unmodified_since(when.if_unmodified_since)
                .send()
                .await,
        )
        .1;
        if head_status != want {
            failures.push(format!("HEAD {what}: {head_status}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn conditional_put_checks_the_current_object() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    let put_when = |if_match: Option<&str>, if_none_match: Option<&str>, body: &'static [u8]| {
        c.put_object()
            .bucket(PRESET)
            .key("guarded")
            .set_if_match(if_match.map(str::to_owned))
            .set_if_none_match(if_none_match.map(str::to_owned))
            .body(ByteStream::from_static(body))
            .send()
    };
    assert_eq!(
        code(put_when(Some(&quoted(&md5_hex(b"x"))), None, b"no such object").await),
        ("NoSuchKey".into(), 404),
        "If-Match on a missing key"
    );
    put_when(None, Some("*"), b"first").await.unwrap();
    assert_eq!(
        code(put_when(None, Some("*"), b"second").await),
        ("PreconditionFailed".into(), 412),
        "If-None-Match: * on an existing key"
    );
    assert_eq!(
        code(put_when(Some(&quoted(&md5_hex(b"other"))), None, b"third").await),
        ("PreconditionFailed".into(), 412),
        "If-Match with another ETag"
    );
    assert_eq!(get(&c, PRESET, "guarded").await, b"first");
    put_when(Some(&quoted(&md5_hex(b"first"))), None, b"fourth")
        .await
        .unwrap();
    assert_eq!(get(&c, PRESET, "guarded").await, b"fourth");
}

/// Eight writers race `If-None-Match: *` for one new key: exactly one wins, and the stored
/// bytes are the winner's. The bodies are large enough that every writer passes the early
/// check before any of them commits, so only the check under the key's lock can hold this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put_is_atomic_with_the_write() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    for round in 0..3 {
        let key = format!("race-{round}");
        let mut writers = Vec::new();
        for writer in 0..8u8 {
            let c = c.clone();
            let key = key.clone();
            writers.push(tokio::spawn(async move {
                let body = vec![writer; 4 * 1024 * 1024];
                let result = c
                    .put_object()
                    .bucket(PRESET)
                    .key(&key)
                    .if_none_match("*")
                    .body(ByteStream::from(body))
                    .send()
                    .await;
                (writer, outcome(result))
            }));
        }
        let mut winners = Vec::new();
        for writer in writers {
            let (id, (result, status)) = writer.await.unwrap();
            match status {
                200 => winners.push(id),
                412 => assert_eq!(result, "PreconditionFailed"),
                other => panic!("writer {id}: {other} {result}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let stored = get(&c, PRESET, &key).await;
        assert!(
            stored.len() == 4 * 1024 * 1024 && stored.iter().all(|b| *b == winners[0]),
            "round {round}: the stored object is not the winner's"
        );
    }
}

#[tokio::test]
async fn copy_object_honours_copy_source_conditions() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "src", b"copy me").await;
    let head = head_object(&c, PRESET, "src").await;
    let e_tag = head.e_tag().unwrap().to_owned();
    let modified = head.last_modified().unwrap().secs();
    let (past, future) = (
        DateTime::from_secs(modified - 3600),
        DateTime::from_secs(modified + 3600),
    );
    let other = quoted(&md5_hex(b"other"));
    let copy = || {
        c.copy_object()
            .bucket(PRESET)
            .key("dst")
            .copy_source("preset/src")
    };
    let cases = [
        (
            "if-match wrong",
            outcome(copy().copy_source_if_match(&other).send().await),
            412,
        ),
        (
            "if-none-match right",
            outcome(copy().copy_source_if_none_match(&e_tag).send().await),
            412,
        ),
        (
            "if-modified-since future",
            outcome(copy().copy_source_if_modified_since(future).send().await),
            412,
        ),
        (
            "if-unmodified-since past",
            outcome(copy().copy_source_if_unmodified_since(past).send().await),
            412,
        ),
        (
            "if-match right and if-unmodified-since past",
            outcome(
                copy()
                    .copy_source_if_match(&e_tag)
                    .copy_source_if_unmodified_since(past)
                    .send()
                    .await,
            ),
            200,
        ),
        (
            "if-none-match wrong",
            outcome(copy().copy_source_if_none_match(&other).send().await),
            200,
        ),
        (
            "if-modified-since past",
            outcome(copy().copy_source_if_modified_since(past).send().await),
            200,
        ),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter(|(_, (code, status), want)| {
            *status != *want || (*want == 412 && code != "PreconditionFailed")
        })
        .map(|(what, got, want)| format!("{what}: got {got:?}, want {want}"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(get(&c, PRESET, "dst").await, b"copy me");
}
