//! Uploads whose length is not in Content-Length: `Transfer-Encoding: chunked` bodies and
//! `Content-Encoding: aws-chunked` bodies with trailing checksums. The stored bytes and the
//! stored Content-Encoding are what the client meant.

use base64::Engine as _;
use sha2::Digest as _;

use super::semantics::{amz_date, sign_v4};
use crate::support::endpoint::{Endpoint, PRESET, stock};
use crate::support::s3::{get, sha256_hex};

fn chunks(body: &[u8], size: usize) -> Vec<Result<Vec<u8>, std::io::Error>> {
    body.chunks(size).map(|c| Ok(c.to_vec())).collect()
}

/// A PUT signed over the body's SHA-256 and sent with `Transfer-Encoding: chunked` (no
/// Content-Length), as a client streaming from a pipe does.
#[tokio::test]
async fn a_chunked_upload_without_content_length_is_stored() {
    let s3 = Endpoint::start().await;
    let body: Vec<u8> = (0..3 * 1024 * 1024 + 11).map(|i| (i % 251) as u8).collect();
    let now = time::OffsetDateTime::now_utc();
    let date = amz_date(now);
    let host = s3.addr.to_string();
    let payload = sha256_hex(&body);
    let authorization = sign_v4(
        "PUT",
        "/preset/chunked",
        &[
            ("host", &host),
            ("x-amz-content-sha256", &payload),
            ("x-amz-date", &date),
        ],
        &payload,
        now,
    );
    let response = reqwest::Client::new()
        .put(format!("{}/preset/chunked", s3.url()))
        .header("x-amz-date", &date)
        .header("x-amz-content-sha256", &payload)
        .header("authorization", authorization)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks(
            &body,
            64 * 1024,
        ))))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(get(&s3.client(), PRESET, "chunked").await == body);
    if !stock() {
        assert!(s3.temp_files().is_empty(), "spooled body left behind");
    }
}

/// `Content-Encoding: gzip, aws-chunked` with an unsigned aws-chunked body and a SHA-256
/// trailer: the object is the decoded bytes, stored with Content-Encoding `gzip`, and its
/// checksum is the trailer's.
#[tokio::test]
async fn aws_chunked_upload_with_trailer_keeps_bytes_and_encoding() {
    let s3 = Endpoint::start().await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let sha = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&body));
    let mut wire = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(format!("0\r\nx-amz-checksum-sha256:{sha}\r\n\r\n").as_bytes());
    let now = time::OffsetDateTime::now_utc();
    let date = amz_date(now);
    let host = s3.addr.to_string();
    let payload = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
    let decoded = body.len().to_string();
    let signed = [
        ("content-encoding", "gzip, aws-chunked"),
        ("host", host.as_str()),
        ("x-amz-content-sha256", payload),
        ("x-amz-date", date.as_str()),
        ("x-amz-decoded-content-length", decoded.as_str()),
        ("x-amz-trailer", "x-amz-checksum-sha256"),
    ];
    let authorization = sign_v4("PUT", "/preset/encoded", &signed, payload, now);
    let mut request = reqwest::Client::new()
        .put(format!("{}/preset/encoded", s3.url()))
        .header("authorization", authorization)
        .body(wire);
    for (name, value) in signed.iter().filter(|(n, _)| *n != "host") {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let c = s3.client();
    assert!(
        get(&c, PRESET, "encoded").await == body,
        "stored bytes differ"
    );
    let head = c
        .head_object()
        .bucket(PRESET)
        .key("encoded")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));
    assert_eq!(head.content_encoding(), Some("gzip"));
    if !stock() {
        assert_eq!(head.checksum_sha256(), Some(sha.as_str()));
    }
}
