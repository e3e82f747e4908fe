//! S3 through the real `opsbox up`: a crash during writes (fault scenario 7), a clean restart,
//! real S3 clients (AWS CLI, boto3, rclone, s3cmd), loopback-only listeners and MinIO health.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use nix::sys::signal::Signal;

use crate::support::s3::{
    self, ACCESS_KEY, BUCKET, SECRET_KEY, md5_hex, random_bytes, random_in, sha256_hex, tool,
};
use crate::support::stack::{Foreground, Opsbox};
use crate::support::{files_under, processes, run_tool};

const MIB: usize = 1024 * 1024;

fn s3_root(opsbox: &Opsbox) -> PathBuf {
    opsbox.data_dir.join("s3")
}

fn start_s3(opsbox: &Opsbox) -> Foreground {
    opsbox.start("s3", Duration::from_secs(60))
}

/// Temp files of the S3 store (storage.rs: `<root>/.opsbox-s3/tmp/<pid>-<n>.part`), wherever
/// they are.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let tmp = root.join(".opsbox-s3").join("tmp");
    files_under(root)
        .into_iter()
        .filter(|p| p.starts_with(&tmp) || p.extension().is_some_and(|e| e == "part"))
        .collect()
}

/// One body sent for a key.
#[derive(Debug, Clone)]
struct Version {
    size: usize,
    sha256: String,
    md5: String,
}

impl Version {
    fn of(bytes: &[u8]) -> Version {
        Version {
            size: bytes.len(),
            sha256: sha256_hex(bytes),
            md5: md5_hex(bytes),
        }
    }
}

/// What a GET returned, or None for NoSuchKey.
async fn get_version(client: &aws_sdk_s3::Client, key: &str) -> Option<(Version, String)> {
    match client.get_object().bucket(BUCKET).key(key).send().await {
        Ok(output) => {
            let e_tag = output
                .e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned();
            let bytes = output.body.collect().await.unwrap().into_bytes();
            Some((Version::of(&bytes), e_tag))
        }
        Err(e) if e.code() == Some("NoSuchKey") => None,
        Err(e) => panic!("GET {key} failed after the restart: {e:?}"),
    }
}

/// Fault scenario 7: `opsbox up -s s3` is killed with SIGKILL while eight PUTs of up to
/// 64 MiB are in flight. After the next start every acknowledged object reads back exactly,
/// every other one is absent or one complete version that was sent, and no temp file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsbox_killed_during_s3_puts_keeps_acked_objects_and_never_partial_ones() {
    let opsbox = Opsbox::new();
    let mut up = start_s3(&opsbox);
    let client = s3::client(opsbox.s3_port, false);

    // Keys written twice: a small first version, acknowledged before the fault...
    let mut sent: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for i in 0..4 {
        let key = format!("fault/twice-{i}");
        let body = random_bytes(random_in(0..=64 * 1024));
        sent.entry(key.clone())
            .or_default()
            .push(Version::of(&body));
        client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap_or_else(|e| panic!("first PUT of {key} failed: {e:?}"));
    }
    let old: BTreeMap<String, Version> = sent
        .iter()
        .map(|(k, v)| (k.clone(), v[0].clone()))
        .collect();

    // ...then eight concurrent PUTs: large second versions of those keys and four new keys.
    let mut plan = Vec::new();
    for i in 0..4 {
        plan.push((format!("fault/twice-{i}"), random_in(16 * MIB..=64 * MIB)));
    }
    for i in 0..4 {
        plan.push((format!("fault/once-{i}"), random_in(0..=64 * MIB)));
    }
    // Every body is ready before the first PUT starts, so all eight run at the same time.
    let bodies: Vec<(String, Vec<u8>, Version)> = plan
        .iter()
        .map(|(key, size)| {
            let body = random_bytes(*size);
            let version = Version::of(&body);
            (key.clone(), body, version)
        })
        .collect();
    let began = Instant::now();
    let (done, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    for (key, body, version) in bodies {
        sent.entry(key.clone()).or_default().push(version.clone());
        let (client, done) = (client.clone(), done.clone());
        tokio::spawn(async move {
            let result = client
                .put_object()
                .bucket(BUCKET)
                .key(&key)
                .body(ByteStream::from(body))
                .send()
                .await;
            let _ = done.send((key, version, result.map_err(|e| format!("{e:?}"))));
        });
    }
    drop(done);
    eprintln!(
        "fault 7: sizes {:?}",
        plan.iter()
            .map(|(k, s)| format!("{k}={s}"))
            .collect::<Vec<_>>()
    );

    // Kill opsbox as soon as three PUTs got 200.
    let mut acked: BTreeMap<String, Version> = BTreeMap::new();
    let mut failed_before_kill = Vec::new();
    let mut finished = 0;
    while acked.len() < 3 {
        let (key, version, result) =
            tokio::time::timeout(Duration::from_secs(120), outcomes.recv())
                .await
                .expect("three of eight PUTs got no answer within 120 s")
                .expect("every PUT answered, but fewer than three with 200");
        finished += 1;
        match result {
            Ok(_) => {
                acked.insert(key, version);
            }
            Err(e) => failed_before_kill.push((key, e)),
        }
    }
    while let Ok((key, version, result)) = outcomes.try_recv() {
        finished += 1;
        if result.is_ok() {
            acked.insert(key, version);
        }
    }
    let in_flight = plan.len() - finished;
    up.stop(Signal::SIGKILL, Duration::from_secs(10));
    assert!(
        failed_before_kill.is_empty(),
        "PUTs failed while opsbox was running: {failed_before_kill:?}"
    );
    assert!(
        in_flight > 0,
        "all eight PUTs had finished before the kill ({:?}), so no write was interrupted",
        began.elapsed()
    );
    // The PUTs still running fail now (no retries: a retry must not reach the next server).
    while let Some((key, version, result)) =
        tokio::time::timeout(Duration::from_secs(60), outcomes.recv())
            .await
            .expect("a PUT was still waiting 60 s after opsbox was killed")
    {
        if result.is_ok() {
            acked.insert(key, version);
        }
    }
    let left_behind = temp_files(&s3_root(&opsbox)).len();
    eprintln!(
        "fault 7: killed after {:?} with {in_flight} PUTs in flight; {} acked; {left_behind} temp files left by the kill",
        began.elapsed(),
        acked.len()
    );

    let mut up = start_s3(&opsbox);
    let leftovers = temp_files(&s3_root(&opsbox));
    assert!(
        leftovers.is_empty(),
        "the next start did not remove the temp files of the killed writes: {leftovers:?}"
    );

    let mut found: BTreeMap<String, Version> = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, versions) in &sent {
        let got = get_version(&client, key).await;
        if let Some((version, e_tag)) = &got {
            if e_tag != &version.md5 {
                problems.push(format!(
                    "{key}: ETag {e_tag} is not the MD5 {} of the bytes served",
                    version.md5
                ));
            }
            found.insert(key.clone(), version.clone());
        }
        let got = got.map(|(v, _)| v);
        match (acked.get(key), &got) {
            (Some(want), Some(have)) if have.sha256 == want.sha256 => {}
            (Some(want), _) => problems.push(format!(
                "{key}: got 200 for {} bytes (sha256 {}), reads back {got:?}",
                want.size, want.sha256
            )),
            (None, None) if !old.contains_key(key) => {}
            (None, Some(have)) if versions.iter().any(|v| v.sha256 == have.sha256) => {}
            (None, _) => problems.push(format!(
                "{key}: not acknowledged; reads back {got:?}, which is none of the versions sent {versions:?}"
            )),
        }
    }
    // Keys written once before the fault were acknowledged: they must still be there.
    for (key, first) in &old {
        if !acked.contains_key(key) && !found.contains_key(key) {
            problems.push(format!(
                "{key}: its acknowledged first version ({} bytes) is gone",
                first.size
            ));
        }
    }
    let listed = client
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("fault/")
        .send()
        .await
        .unwrap();
    let listed: BTreeMap<String, i64> = listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap().to_owned(), o.size().unwrap_or(-1)))
        .collect();
    let readable: BTreeMap<String, i64> = found
        .iter()
        .map(|(k, v)| (k.clone(), v.size as i64))
        .collect();
    if listed != readable {
        problems.push(format!(
            "the listing {listed:?} does not match the objects that read back {readable:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "after a SIGKILL during PUTs and a restart:\n{}",
        problems.join("\n")
    );
    let new_versions = found
        .iter()
        .filter(|(k, v)| old.get(*k).is_none_or(|o| o.sha256 != v.sha256))
        .count();
    eprintln!(
        "fault 7: acked {:?} intact; {} of {} keys readable ({new_versions} with the version of the fault round), none partial",
        acked.keys().collect::<Vec<_>>(),
        found.len(),
        sent.len()
    );
    up.stop(Signal::SIGTERM, Duration::from_secs(30));
}

/// Objects keep bytes, ETag, content type and user metadata across SIGTERM and a new
/// `opsbox up`; the compose bucket exists from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_survive_a_clean_restart_with_etag_content_type_and_metadata() {
    let opsbox = Opsbox::new();
    let mut up = start_s3(&opsbox);
    let client = s3::client(opsbox.s3_port, true);
    let buckets = client.list_buckets().send().await.unwrap();
    let names: Vec<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert!(
        names.contains(&BUCKET),
        "the `{BUCKET}` bucket of ops/docker-compose.yml does not exist at start: {names:?}"
    );

    let objects = [
        (
            "restart/report.json",
            b"{\"ok\": true}\n".to_vec(),
            "application/json",
        ),
        (
            "restart/deep/blob.bin",
            random_bytes(5 * MIB + 17),
            "application/octet-stream",
        ),
    ];
    let mut before = Vec::new();
    for (key, body, content_type) in &objects {
        client
            .put_object()
            .bucket(BUCKET)
            .key(*key)
            .content_type(*content_type)
            .metadata("source", "opsbox-test")
            .metadata("run", key.len().to_string())
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {key} failed: {e:?}"));
        let head = client
            .head_object()
            .bucket(BUCKET)
            .key(*key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.e_tag().map(|e| e.trim_matches('"').to_owned()),
            Some(md5_hex(body)),
            "{key}: the ETag of a single PUT is not the MD5 of its bytes"
        );
        before.push(head);
    }

    let status = up.stop(Signal::SIGTERM, Duration::from_secs(30));
    assert!(
        status.success(),
        "opsbox up did not exit cleanly on SIGTERM: {status}"
    );
    let mut up = start_s3(&opsbox);
    let client = s3::client(opsbox.s3_port, true);

    for ((key, body, content_type), head_before) in objects.iter().zip(&before) {
        let head = client
            .head_object()
            .bucket(BUCKET)
            .key(*key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD {key} after the restart failed: {e:?}"));
        let got = client
            .get_object()
            .bucket(BUCKET)
            .key(*key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {key} after the restart failed: {e:?}"));
        let wanted_meta: HashMap<String, String> = [
            ("source".to_owned(), "opsbox-test".to_owned()),
            ("run".to_owned(), key.len().to_string()),
        ]
        .into();
        for (what, e_tag, ctype, meta, length) in [
            (
                "HEAD",
                head.e_tag(),
                head.content_type(),
                head.metadata(),
                head.content_length(),
            ),
            (
                "GET",
                got.e_tag(),
                got.content_type(),
                got.metadata(),
                got.content_length(),
            ),
        ] {
            assert_eq!(
                e_tag,
                head_before.e_tag(),
                "{what} {key}: the ETag changed across the restart"
            );
            assert_eq!(
                ctype,
                Some(*content_type),
                "{what} {key}: the content type was not kept"
            );
            assert_eq!(
                meta,
                Some(&wanted_meta),
                "{what} {key}: the user metadata was not kept"
            );
            assert_eq!(
                length,
                Some(body.len() as i64),
                "{what} {key}: the length changed"
            );
        }
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(
            bytes.as_ref() == body.as_slice(),
            "GET {key}: the bytes changed across the restart ({} bytes, sha256 {} instead of {})",
            bytes.len(),
            sha256_hex(&bytes),
            sha256_hex(body)
        );
    }
    up.stop(Signal::SIGTERM, Duration::from_secs(30));
}

/// A test file of `len` random bytes in the project's temp home.
fn test_file(opsbox: &Opsbox, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    let path = opsbox.home.path().join(name);
    let body = random_bytes(len);
    std::fs::write(&path, &body).unwrap();
    (path, body)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn assert_same_file(what: &str, got: &Path, want: &[u8]) {
    let got = read(got);
    assert!(
        got == want,
        "{what}: downloaded {} bytes (sha256 {}), uploaded {} bytes (sha256 {})",
        got.len(),
        sha256_hex(&got),
        want.len(),
        sha256_hex(want)
    );
}

#[test]
fn aws_cli_against_opsbox_up() {
    let opsbox = Opsbox::new();
    let _up = start_s3(&opsbox);
    // Over the CLI's 8 MiB multipart threshold: the upload is a multipart upload.
    let (file, body) = test_file(&opsbox, "upload.bin", 9 * MIB + 123);
    let back = opsbox.home.path().join("download.bin");
    let url = s3::endpoint(opsbox.s3_port);
    let aws = |args: &[&str]| s3::aws(opsbox.home.path(), &url, args);
    aws(&["s3", "mb", "s3://cli-bucket"]);
    aws(&[
        "s3",
        "cp",
        file.to_str().unwrap(),
        "s3://cli-bucket/dir/upload.bin",
    ]);
    let listing = aws(&["s3", "ls", "s3://cli-bucket/dir/"]);
    assert!(
        listing.contains(&format!("{} upload.bin", body.len())),
        "`aws s3 ls` does not list upload.bin with its size {}: {listing}",
        body.len()
    );
    aws(&[
        "s3",
        "cp",
        "s3://cli-bucket/dir/upload.bin",
        back.to_str().unwrap(),
    ]);
    assert_same_file("aws s3 cp", &back, &body);
    aws(&["s3", "rm", "s3://cli-bucket/dir/upload.bin"]);
    let listing = aws(&["s3", "ls", "--recursive", "s3://cli-bucket/"]);
    assert!(
        listing.trim().is_empty(),
        "`aws s3 rm` left objects: {listing}"
    );
    aws(&["s3", "rb", "s3://cli-bucket"]);
    let buckets = aws(&["s3", "ls"]);
    assert!(
        !buckets.contains("cli-bucket") && buckets.contains(BUCKET),
        "after `aws s3 rb` the buckets are: {buckets}"
    );
}

#[test]
fn boto3_against_opsbox_up() {
    let opsbox = Opsbox::new();
    let _up = start_s3(&opsbox);
    let (file, body) = test_file(&opsbox, "upload.bin", 9 * MIB + 5);
    let back = opsbox.home.path().join("download.bin");
    let script = r#"
import sys, urllib.request, boto3
endpoint, key_id, secret, upload, download = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
                  aws_secret_access_key=secret, region_name="us-east-1")
s3.create_bucket(Bucket="boto-bucket")
s3.put_object(Bucket="boto-bucket", Key="py/small.txt", Body=b"from boto3",
              ContentType="text/plain", Metadata={"origin": "boto3"})
o = s3.get_object(Bucket="boto-bucket", Key="py/small.txt")
assert o["Body"].read() == b"from boto3", "get_object returned other bytes"
assert o["ContentType"] == "text/plain", o["ContentType"]
assert o["Metadata"] == {"origin": "boto3"}, o["Metadata"]
s3.upload_file(upload, "boto-bucket", "py/big.bin")  # multipart above 8 MiB
s3.download_file("boto-bucket", "py/big.bin", download)
keys = [x["Key"] for x in s3.list_objects_v2(Bucket="boto-bucket", Prefix="py/")["Contents"]]
assert keys == ["py/big.bin", "py/small.txt"], keys
url = s3.generate_presigned_url("get_object", Params={"Bucket": "boto-bucket", "Key": "py/small.txt"}, ExpiresIn=60)
with urllib.request.urlopen(url) as response:
    assert response.read() == b"from boto3", "the presigned URL returned other bytes"
s3.delete_object(Bucket="boto-bucket", Key="py/small.txt")
s3.delete_object(Bucket="boto-bucket", Key="py/big.bin")
assert s3.list_objects_v2(Bucket="boto-bucket").get("KeyCount") == 0, "objects left after delete"
s3.delete_bucket(Bucket="boto-bucket")
print("ok")
"#;
    let url = s3::endpoint(opsbox.s3_port);
    let out = s3::python(
        opsbox.home.path(),
        script,
        &[
            &url,
            ACCESS_KEY,
            SECRET_KEY,
            file.to_str().unwrap(),
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(out.trim(), "ok");
    assert_same_file("boto3 download_file", &back, &body);
}

#[test]
fn rclone_against_opsbox_up() {
    let opsbox = Opsbox::new();
    let _up = start_s3(&opsbox);
    let (file, body) = test_file(&opsbox, "upload.bin", 3 * MIB + 7);
    let back = opsbox.home.path().join("download.bin");
    let url = s3::endpoint(opsbox.s3_port);
    let config = opsbox.home.path().join("rclone.conf");
    let rclone = |args: &[&str]| {
        let mut command = tool("rclone", opsbox.home.path());
        command
            .env("RCLONE_CONFIG", &config)
            .envs([
                ("RCLONE_CONFIG_OPSBOX_TYPE", "s3"),
                ("RCLONE_CONFIG_OPSBOX_PROVIDER", "Minio"),
                ("RCLONE_CONFIG_OPSBOX_ACCESS_KEY_ID", ACCESS_KEY),
                ("RCLONE_CONFIG_OPSBOX_SECRET_ACCESS_KEY", SECRET_KEY),
                ("RCLONE_CONFIG_OPSBOX_REGION", "us-east-1"),
                ("RCLONE_CONFIG_OPSBOX_ENDPOINT", url.as_str()),
            ])
            .args(args);
        String::from_utf8(run_tool(
            &mut command,
            "install rclone with `apt-get install -y rclone`",
        ))
        .unwrap()
    };
    rclone(&["mkdir", "opsbox:rclone-bucket"]);
    rclone(&[
        "copyto",
        file.to_str().unwrap(),
        "opsbox:rclone-bucket/dir/upload.bin",
    ]);
    let listing = rclone(&["lsl", "opsbox:rclone-bucket"]);
    assert!(
        listing.contains(&body.len().to_string()) && listing.contains("dir/upload.bin"),
        "`rclone lsl` does not list dir/upload.bin with its size {}: {listing}",
        body.len()
    );
    rclone(&[
        "copyto",
        "opsbox:rclone-bucket/dir/upload.bin",
        back.to_str().unwrap(),
    ]);
    assert_same_file("rclone copyto", &back, &body);
    rclone(&["deletefile", "opsbox:rclone-bucket/dir/upload.bin"]);
    let listing = rclone(&["lsf", "-R", "opsbox:rclone-bucket"]);
    assert!(
        listing.trim().is_empty(),
        "`rclone deletefile` left objects: {listing}"
    );
    rclone(&["rmdir", "opsbox:rclone-bucket"]);
    let buckets = rclone(&["lsd", "opsbox:"]);
    assert!(
        !buckets.contains("rclone-bucket") && buckets.contains(BUCKET),
        "after `rclone rmdir` the buckets are: {buckets}"
    );
}

#[test]
fn s3cmd_against_opsbox_up() {
    let opsbox = Opsbox::new();
    let _up = start_s3(&opsbox);
    // Over s3cmd's 15 MiB multipart chunk size: the upload is a multipart upload.
    let (file, body) = test_file(&opsbox, "upload.bin", 17 * MIB + 3);
    let back = opsbox.home.path().join("download.bin");
    let host = format!("127.0.0.1:{}", opsbox.s3_port);
    let config = opsbox.home.path().join("s3cfg");
    let s3cmd = |args: &[&str]| {
        let mut command = tool("s3cmd", opsbox.home.path());
        command
            .arg("--config")
            .arg(&config)
            .args([
                &format!("--access_key={ACCESS_KEY}"),
                &format!("--secret_key={SECRET_KEY}"),
                &format!("--host={host}"),
                &format!("--host-bucket={host}"),
                "--no-ssl",
                // s3cmd's default region is "US", which MinIO maps to us-east-1; s3s refuses it.
                "--region=us-east-1",
            ])
            .args(args);
        String::from_utf8(run_tool(
            &mut command,
            "install s3cmd with `apt-get install -y s3cmd`",
        ))
        .unwrap()
    };
    s3cmd(&["mb", "s3://s3cmd-bucket"]);
    s3cmd(&[
        "put",
        file.to_str().unwrap(),
        "s3://s3cmd-bucket/dir/upload.bin",
    ]);
    let listing = s3cmd(&["ls", "--recursive", "s3://s3cmd-bucket"]);
    assert!(
        listing.contains(&body.len().to_string())
            && listing.contains("s3://s3cmd-bucket/dir/upload.bin"),
        "`s3cmd ls` does not list dir/upload.bin with its size {}: {listing}",
        body.len()
    );
    s3cmd(&[
        "get",
        "--force",
        "s3://s3cmd-bucket/dir/upload.bin",
        back.to_str().unwrap(),
    ]);
    assert_same_file("s3cmd get", &back, &body);
    s3cmd(&["del", "s3://s3cmd-bucket/dir/upload.bin"]);
    let listing = s3cmd(&["ls", "--recursive", "s3://s3cmd-bucket"]);
    assert!(
        listing.trim().is_empty(),
        "`s3cmd del` left objects: {listing}"
    );
    s3cmd(&["rb", "s3://s3cmd-bucket"]);
    let buckets = s3cmd(&["ls"]);
    assert!(
        !buckets.contains("s3cmd-bucket") && buckets.contains(BUCKET),
        "after `s3cmd rb` the buckets are: {buckets}"
    );
}

/// Socket inodes of the LISTEN entries of /proc/net/tcp and /proc/net/tcp6, with their local
/// address.
fn listening_sockets() -> HashMap<u64, std::net::SocketAddr> {
    let mut out = HashMap::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            let (ip, port) = fields[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            // The kernel prints the address as 32-bit words in host (little-endian) order.
            let words: Vec<[u8; 4]> = (0..ip.len() / 8)
                .map(|w| {
                    u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16)
                        .unwrap()
                        .to_le_bytes()
                })
                .collect();
            let ip: std::net::IpAddr = if v6 {
                let bytes: [u8; 16] = words.concat().try_into().unwrap();
                std::net::Ipv6Addr::from(bytes).into()
            } else {
                std::net::Ipv4Addr::from(words[0]).into()
            };
            out.insert(fields[9].parse().unwrap(), (ip, port).into());
        }
    }
    out
}

/// Socket inodes a process holds open.
fn socket_inodes(pid: i32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_full_stack_listens_only_on_loopback_and_answers_minio_health() {
    let opsbox = Opsbox::new();
    // `up -d` returns once every service is ready; the supervisor is in the run file.
    opsbox.up_detached("nats,postgres,s3");
    let run = opsbox.run_file().expect("a run file while the stack runs");
    let supervisor = run["supervisor"]["pid"]
        .as_i64()
        .expect("the run file names the supervisor's pid") as i32;
    let mut pids = vec![supervisor];
    for service in run["services"].as_array().unwrap() {
        if let Some(pid) = service["process"]["pid"].as_i64() {
            pids.push(pid as i32);
        }
    }
    let mut owners: BTreeSet<i32> = processes::descendants(&pids).into_iter().collect();
    owners.extend(&pids);
    let listening = listening_sockets();
    let mut listeners: Vec<(i32, std::net::SocketAddr)> = Vec::new();
    for pid in &owners {
        for inode in socket_inodes(*pid) {
            if let Some(addr) = listening.get(&inode) {
                listeners.push((*pid, *addr));
            }
        }
    }
    listeners.sort();
    listeners.dedup();
    let described: Vec<String> = listeners
        .iter()
        .map(|(pid, a)| format!("pid {pid}: {a}"))
        .collect();
    let ports: BTreeSet<u16> = listeners.iter().map(|(_, a)| a.port()).collect();
    for (name, port) in [
        ("nats", opsbox.nats_port),
        ("nats monitoring", opsbox.nats_monitor_port),
        ("postgres", opsbox.postgres_port),
        ("s3", opsbox.s3_port),
    ] {
        assert!(
            ports.contains(&port),
            "no listening socket of {name} (port {port}) was found among the processes {owners:?}; found: {described:?}"
        );
    }
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let exposed: Vec<&String> = listeners
        .iter()
        .zip(&described)
        .filter(|((_, a), _)| a.ip() != loopback)
        .map(|(_, d)| d)
        .collect();
    assert!(
        exposed.is_empty(),
        "these listening sockets are not bound to 127.0.0.1: {exposed:?} (all: {described:?})"
    );
    eprintln!("listeners: {described:?}");

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for path in ["/minio/health/live", "/minio/health/ready"] {
        let url = format!("{}{path}", s3::endpoint(opsbox.s3_port));
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let response = http
                .request(method.clone(), &url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url} got no answer: {e}"));
            assert_eq!(
                response.status(),
                reqwest::StatusCode::OK,
                "{method} {url} without credentials did not answer 200"
            );
        }
    }
    let down = opsbox.run(&["down"]);
    assert!(
        down.status.success(),
        "opsbox down failed after the loopback checks:\n{}",
        down.stderr.as_str()
    );
}
