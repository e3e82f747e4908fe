//! S3 against a running `opsbox up`: an aws-sdk-s3 client with the compose credentials,
//! command-line clients run with a clean environment, digests and random bodies.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use aws_sdk_s3::Client;
use sha2::Digest as _;

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
    // reqwest and the SDK's rustls need a process-wide provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let credentials =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "opsbox-test");
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint(port))
        .credentials_provider(credentials)
        .force_path_style(true);
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

/// Run `command` to success and return its stdout; a missing program fails with the package
/// to install.
pub fn run_tool(command: &mut Command, install_hint: &str) -> Vec<u8> {
    let program = command.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` is not installed: {install_hint} (tests/run-all.sh does this)")
        }
        Err(e) => panic!("cannot run `{program}`: {e}"),
    };
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
