//! S3 against a running `opsbox up`: an aws-sdk-s3 client with the compose credentials,
//! command-line clients run with a clean environment, digests and random bodies.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use md5::Digest as _;

use super::run_tool;

/// The MinIO root credentials of ops/docker-compose.yml, which opsbox serves.
pub const ACCESS_KEY: &str = "minioadmin";
pub const SECRET_KEY: &str = "minioadmin";
/// The bucket `minio-setup` creates in ops/docker-compose.yml.
pub const BUCKET: &str = "historian";

pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// An aws-sdk-s3 client for `opsbox up` on `port`; `retries: false` so that a request that
/// failed is never silently repeated (against a restarted server, in the fault tests).
pub fn client(port: u16, retries: bool) -> Client {
    client_for(&endpoint(port), SECRET_KEY, true, retries)
}

/// An aws-sdk-s3 client for `endpoint` signing with `secret`, path-style or virtual-hosted.
pub fn client_for(endpoint: &str, secret: &str, path_style: bool, retries: bool) -> Client {
    // reqwest and the SDK's rustls need a process-wide provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let credentials =
        aws_credential_types::Credentials::new(ACCESS_KEY, secret, None, None, "opsbox-test");
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .force_path_style(path_style);
    if !retries {
        config = config.retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled());
    }
    Client::from_conf(config.build())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(md5::Md5::digest(bytes))
}

/// `s` in double quotes, as S3 writes an ETag.
pub fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// The ETag S3 gives an object uploaded in these parts: `"md5(md5s)-count"`.
pub fn multipart_e_tag(parts: &[&[u8]]) -> String {
    let mut all = md5::Md5::new();
    for part in parts {
        all.update(md5::Md5::digest(part));
    }
    quoted(&format!("{}-{}", hex::encode(all.finalize()), parts.len()))
}

/// `len` bytes from the kernel's random source.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
}

/// A random number in `range`.
pub fn random_in(range: std::ops::RangeInclusive<usize>) -> usize {
    let raw = u64::from_le_bytes(random_bytes(8).try_into().unwrap()) as usize;
    range.start() + raw % (range.end() - range.start() + 1)
}

/// `program` with no AWS_*, RCLONE_* or S3CMD settings from the caller's environment (a CA
/// bundle or profile there would change what the tool does) and `home` as its HOME, so no
/// user configuration is read and nothing is written to the real home directory.
pub fn tool(program: &str, home: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("RCLONE_") || key.starts_with("S3CMD") {
            command.env_remove(key);
        }
    }
    command.env("HOME", home);
    command
}

/// `aws --endpoint-url endpoint args…` with the compose credentials and no user configuration,
/// run to success: its stdout.
pub fn aws(home: &Path, endpoint: &str, args: &[&str]) -> String {
    let mut command = tool("aws", home);
    command
        .envs([
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ])
        .args(["--endpoint-url", endpoint])
        .args(args);
    let stdout = run_tool(
        &mut command,
        "install the AWS CLI with `pip install awscli`",
    );
    String::from_utf8(stdout).expect("aws printed UTF-8")
}

/// `python3 -c script args…` (a boto3 script) with a clean environment and no proxy, run to
/// success: its stdout.
pub fn python(home: &Path, script: &str, args: &[&str]) -> String {
    let mut command = tool("python3", home);
    // urllib must reach 127.0.0.1 directly, whatever proxy the caller has.
    command
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .args(["-c", script])
        .args(args);
    let stdout = run_tool(&mut command, "install boto3 with `pip install boto3`");
    String::from_utf8_lossy(&stdout).into_owned()
}

/// PUT `body` as `bucket/key`; panics with the S3 error.
pub async fn put(client: &Client, bucket: &str, key: &str, body: &[u8]) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {bucket}/{key} failed: {:?}", e.into_service_error()));
}

/// GET `bucket/key`: its bytes; panics with the S3 error.
pub async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {bucket}/{key} failed: {:?}", e.into_service_error()));
    out.body
        .collect()
        .await
        .expect("read the body")
        .into_bytes()
        .to_vec()
}

/// HEAD `bucket/key`; panics with the S3 error.
pub async fn head_object(client: &Client, bucket: &str, key: &str) -> HeadObjectOutput {
    client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HEAD {bucket}/{key} failed: {:?}", e.into_service_error()))
}

/// The keys ListObjectsV2 gives for `prefix` ("" for all; one page).
pub async fn list_keys(client: &Client, bucket: &str, prefix: &str) -> Vec<String> {
    client
        .list_objects_v2()
        .bucket(bucket)
        .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "LIST {bucket}/{prefix} failed: {:?}",
                e.into_service_error()
            )
        })
        .contents()
        .iter()
        .map(|o| o.key().expect("a listed key").to_owned())
        .collect()
}

/// A multipart upload in progress.
pub struct Upload<'a> {
    pub client: &'a Client,
    pub bucket: &'a str,
    pub key: &'a str,
    pub id: String,
}

impl<'a> Upload<'a> {
    /// CreateMultipartUpload for `bucket/key`; panics with the S3 error.
    pub async fn start(client: &'a Client, bucket: &'a str, key: &'a str) -> Upload<'a> {
        let id = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateMultipartUpload {key}: {:?}", e.into_service_error()))
            .upload_id()
            .expect("an upload id")
            .to_owned();
        Upload {
            client,
            bucket,
            key,
            id,
        }
    }

    /// UploadPart `number` with `body`: the part's ETag; panics with the S3 error.
    pub async fn part(&self, number: i32, body: Vec<u8>) -> String {
        self.client
            .upload_part()
            .bucket(self.bucket)
            .key(self.key)
            .upload_id(&self.id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "UploadPart {} {number}: {:?}",
                    self.key,
                    e.into_service_error()
                )
            })
            .e_tag()
            .expect("a part ETag")
            .to_owned()
    }

    /// CompleteMultipartUpload with these (part number, ETag) pairs; panics with the S3 error.
    pub async fn complete(&self, parts: &[(i32, &str)]) -> CompleteMultipartUploadOutput {
        self.client
            .complete_multipart_upload()
            .bucket(self.bucket)
            .key(self.key)
            .upload_id(&self.id)
            .multipart_upload(completed(parts))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CompleteMultipartUpload {}: {:?}",
                    self.key,
                    e.into_service_error()
                )
            })
    }
}

/// The CompleteMultipartUpload body naming these (part number, ETag) pairs.
pub fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

/// The S3 error code and HTTP status of a call that must fail.
pub fn code<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> (String, u16)
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    match result {
        Ok(_) => panic!("expected the call to fail, it succeeded"),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            let code = e
                .as_service_error()
                .and_then(|s| s.code())
                .unwrap_or("")
                .to_owned();
            (code, status)
        }
    }
}

/// The S3 error code and status of a call, or `("ok", 200)`.
pub fn outcome<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> (String, u16)
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    match result {
        Ok(_) => ("ok".into(), 200),
        Err(_) => code(result),
    }
}
