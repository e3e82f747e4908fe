//! Small S3 semantics real clients rely on: DeleteObjects limits, copying onto itself,
//! re-creating an owned bucket, ListObjects v1 markers and URL encoding, presigned expiry,
//! `Date`-signed requests, Content-MD5 validation, request ids, ACL stubs and owners.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketCannedAcl, Delete, EncodingType, MetadataDirective, ObjectCannedAcl, ObjectIdentifier,
};
use sha2::Digest as _;

use crate::support::endpoint::{Endpoint, PRESET, stock};
use crate::support::s3::{ACCESS_KEY, SECRET_KEY, code, get, head_object, put, sha256_hex};

#[tokio::test]
async fn delete_objects_with_more_than_1000_keys_is_malformed_xml() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "k-0", b"kept").await;
    let ids: Vec<ObjectIdentifier> = (0..1001)
        .map(|i| {
            ObjectIdentifier::builder()
                .key(format!("k-{i}"))
                .build()
                .unwrap()
        })
        .collect();
    let result = c
        .delete_objects()
        .bucket(PRESET)
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await;
    assert_eq!(code(result), ("MalformedXML".into(), 400));
    assert_eq!(get(&c, PRESET, "k-0").await, b"kept");
}

#[tokio::test]
async fn copy_onto_itself_needs_replace() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    c.put_object()
        .bucket(PRESET)
        .key("self")
        .content_type("text/plain")
        .body(ByteStream::from_static(b"same"))
        .send()
        .await
        .unwrap();
    let result = c
        .copy_object()
        .bucket(PRESET)
        .key("self")
        .copy_source("preset/self")
        .send()
        .await;
    assert_eq!(code(result), ("InvalidRequest".into(), 400));
    c.copy_object()
        .bucket(PRESET)
        .key("self")
        .copy_source("preset/self")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/json")
        .send()
        .await
        .unwrap();
    let head = head_object(&c, PRESET, "self").await;
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(get(&c, PRESET, "self").await, b"same");
}

#[tokio::test]
async fn creating_an_owned_bucket_again_is_409_and_keeps_it() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "inside", b"still here").await;
    let result = c.create_bucket().bucket(PRESET).send().await;
    assert_eq!(code(result), ("BucketAlreadyOwnedByYou".into(), 409));
    assert_eq!(get(&c, PRESET, "inside").await, b"still here");
}

#[tokio::test]
async fn list_objects_v1_marker_delimiter_and_url_encoding() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    for key in ["a", "b", "c d/a", "c d/ü", "e"] {
        put(&c, PRESET, key, b"v").await;
    }
    let out = c
        .list_objects()
        .bucket(PRESET)
        .marker("a")
        .delimiter("")
        .send()
        .await
        .unwrap();
    assert_eq!(out.marker(), Some("a"), "Marker is echoed");
    assert_eq!(out.delimiter(), None, "an empty Delimiter is omitted");
    let keys: Vec<&str> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["b", "c d/a", "c d/ü", "e"]);
    assert!(
        out.contents().iter().all(|o| o.owner().is_some()),
        "ListObjects v1 names the owner"
    );

    let out = c
        .list_objects()
        .bucket(PRESET)
        .prefix("c d/")
        .delimiter("/")
        .marker("c d/a")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    assert_eq!(out.prefix(), Some("c%20d/"));
    assert_eq!(out.delimiter(), Some("/"));
    assert_eq!(out.marker(), Some("c%20d/a"));
    let keys: Vec<&str> = out.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, ["c%20d/%C3%BC"]);

    let out = c
        .list_objects()
        .bucket(PRESET)
        .delimiter(" ")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    assert_eq!(out.delimiter(), Some("%20"));
    let prefixes: Vec<&str> = out
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(prefixes, ["c%20"]);

    let v2 = c.list_objects_v2().bucket(PRESET).send().await.unwrap();
    assert!(v2.contents().iter().all(|o| o.owner().is_none()));
    let v2 = c
        .list_objects_v2()
        .bucket(PRESET)
        .fetch_owner(true)
        .send()
        .await
        .unwrap();
    assert!(v2.contents().iter().all(|o| o.owner().is_some()));
}

/// Replaces a fixed 1 s expiry and a sleep (which failed when signing landed late in a
/// second, because s3s compares against the whole-second X-Amz-Date): the expired URL is
/// signed with a start time in the past, so nothing depends on when the test runs.
#[tokio::test]
async fn presigned_urls_expire_and_bound_their_lifetime() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "shared.txt", b"presigned body").await;
    let presign = |config: PresigningConfig| {
        c.get_object()
            .bucket(PRESET)
            .key("shared.txt")
            .presigned(config)
    };
    let http = reqwest::Client::new();
    let valid = presign(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap();
    let response = http.get(valid.uri()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"presigned body");

    let expired = presign(
        PresigningConfig::builder()
            .start_time(SystemTime::now() - Duration::from_secs(120))
            .expires_in(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let response = http.get(expired.uri()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );

    if stock() {
        return;
    }
    for expires in ["0", "604801"] {
        let uri = valid
            .uri()
            .replace("X-Amz-Expires=600", &format!("X-Amz-Expires={expires}"));
        assert_ne!(uri, valid.uri());
        let response = http.get(&uri).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 403, "X-Amz-Expires={expires}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("<Code>AccessDenied</Code>")
        );
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let mut inner = sha2::Sha256::new();
    inner.update(pad(0x36));
    inner.update(data);
    let mut outer = sha2::Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// The `Authorization` header of SigV4 by hand: `headers` are the signed headers
/// (lowercase names, sorted), `time` is `x-amz-date`'s or `Date`'s instant.
pub(crate) fn sign_v4(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    payload_hash: &str,
    time: time::OffsetDateTime,
) -> String {
    let amz_date = time
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    let day = &amz_date[..8];
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    let signed = signed.join(";");
    let canonical = format!("{method}\n{path}\n\n{canonical_headers}\n{signed}\n{payload_hash}");
    let scope = format!("{day}/us-east-1/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac_sha256(format!("AWS4{SECRET_KEY}").as_bytes(), day.as_bytes());
    for part in ["us-east-1", "s3", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac_sha256(&key, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
}

pub(crate) fn amz_date(time: time::OffsetDateTime) -> String {
    time.format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .unwrap()
}

/// SigV4 by hand with the time in the `Date` header and no `x-amz-date`, as some clients do.
#[tokio::test]
async fn a_request_signed_with_the_date_header_validates() {
    let s3 = Endpoint::start().await;
    put(&s3.client(), PRESET, "dated", b"signed with Date").await;
    let now = time::OffsetDateTime::now_utc();
    let http_date = now
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap();
    let host = s3.addr.to_string();
    let payload = sha256_hex(b"");
    let authorization = sign_v4(
        "GET",
        "/preset/dated",
        &[
            ("date", &http_date),
            ("host", &host),
            ("x-amz-content-sha256", &payload),
        ],
        &payload,
        now,
    );
    let response = reqwest::Client::new()
        .get(format!("{}/preset/dated", s3.url()))
        .header("date", &http_date)
        .header("x-amz-content-sha256", &payload)
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!((status, body.as_str()), (200, "signed with Date"));
}

#[tokio::test]
async fn bad_content_md5_is_invalid_digest_and_errors_carry_the_request_id() {
    let s3 = Endpoint::start().await;
    let c = s3.client();
    put(&c, PRESET, "md5", b"original").await;
    let url = c
        .put_object()
        .bucket(PRESET)
        .key("md5")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for bad in ["", "not base64!", "c2hvcnQ="] {
        let response = http
            .put(url.uri())
            .header("content-md5", bad)
            .body("replacement")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let header_id = response
            .headers()
            .get("x-amz-request-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        assert_eq!(status, 400, "Content-MD5 {bad:?}: {body}");
        assert!(
            body.contains("<Code>InvalidDigest</Code>"),
            "{bad:?}: {body}"
        );
        if !stock() {
            let header_id = header_id.expect("x-amz-request-id header");
            assert!(
                body.contains(&format!("<RequestId>{header_id}</RequestId>")),
                "{body} vs {header_id}"
            );
        }
    }
    assert_eq!(get(&c, PRESET, "md5").await, b"original");
    if stock() {
        return;
    }
    // An error s3s answers before any S3 call (authentication) carries it too, and the SDK
    // reads the same id from body and header.
    let response = http
        .get(format!("{}/preset/md5", s3.url()))
        .send()
        .await
        .unwrap();
    let header_id = response.headers()["x-amz-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.text().await.unwrap();
    assert!(
        body.contains(&format!("<RequestId>{header_id}</RequestId>")),
        "{body}"
    );
    let error = c
        .get_object()
        .bucket(PRESET)
        .key("missing")
        .send()
        .await
        .unwrap_err();
    let raw_id = error
        .raw_response()
        .unwrap()
        .headers()
        .get("x-amz-request-id")
        .unwrap()
        .to_owned();
    use aws_sdk_s3::operation::RequestId as _;
    assert_eq!(
        error.into_service_error().request_id(),
        Some(raw_id.as_str())
    );
}

#[tokio::test]
async fn acl_stubs_answer_like_minio() {
    let s3 = Endpoint::start().await;
    if stock() {
        return;
    }
    let c = s3.client();
    put(&c, PRESET, "acl", b"v").await;
    let bucket_acl = c.get_bucket_acl().bucket(PRESET).send().await.unwrap();
    let object_acl = c
        .get_object_acl()
        .bucket(PRESET)
        .key("acl")
        .send()
        .await
        .unwrap();
    for (what, owner, grants) in [
        ("bucket", bucket_acl.owner(), bucket_acl.grants()),
        ("object", object_acl.owner(), object_acl.grants()),
    ] {
        let owner_id = owner.and_then(|o| o.id()).expect("an owner id");
        assert_eq!(grants.len(), 1, "{what}");
        assert_eq!(
            grants[0].permission().map(|p| p.as_str()),
            Some("FULL_CONTROL"),
            "{what}"
        );
        assert_eq!(grants[0].grantee().and_then(|g| g.id()), Some(owner_id));
    }
    c.put_bucket_acl()
        .bucket(PRESET)
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap();
    c.put_object_acl()
        .bucket(PRESET)
        .key("acl")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap();
    c.put_object()
        .bucket(PRESET)
        .key("acl-put")
        .acl(ObjectCannedAcl::Private)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            c.put_bucket_acl()
                .bucket(PRESET)
                .acl(BucketCannedAcl::PublicRead)
                .send()
                .await
        ),
        ("NotImplemented".into(), 501)
    );
    assert_eq!(
        code(
            c.put_object_acl()
                .bucket(PRESET)
                .key("acl")
                .grant_read("id=another-account")
                .send()
                .await
        ),
        ("NotImplemented".into(), 501)
    );
    assert_eq!(
        code(
            c.get_object_acl()
                .bucket(PRESET)
                .key("missing")
                .send()
                .await
        ),
        ("NoSuchKey".into(), 404)
    );
}
