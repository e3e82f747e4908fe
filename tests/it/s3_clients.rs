//! S3 through the real `opsbox up` with the clients that use it: boto3's managed `copy()` and
//! `aws s3 cp` between keys (multipart copies through UploadPartCopy), and a syscall trace of
//! a PUT showing the data, its metadata and their directories fsynced before the 200.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;

use crate::support::s3::{self, ACCESS_KEY, BUCKET, SECRET_KEY, random_bytes, sha256_hex};
use crate::support::stack::{Foreground, Opsbox};

const MIB: usize = 1024 * 1024;

fn start_s3(opsbox: &Opsbox) -> Foreground {
    opsbox.start("s3", Duration::from_secs(60))
}

/// boto3's managed `copy()` splits objects over 8 MiB into UploadPartCopy requests: a
/// 20 MiB object becomes a 3-part copy, whose bytes and multipart ETag are checked.
#[test]
fn boto3_managed_copy_of_20_mib_uses_multipart_copy() {
    let opsbox = Opsbox::new();
    let _up = start_s3(&opsbox);
    let script = r#"
import sys, os, boto3
endpoint, key_id, secret, bucket = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
                  aws_secret_access_key=secret, region_name="us-east-1")
body = os.urandom(20 * 1024 * 1024)
s3.put_object(Bucket=bucket, Key="copy/source", Body=body, ContentType="application/x-test")
s3.copy({"Bucket": bucket, "Key": "copy/source"}, bucket, "copy/target")
got = s3.get_object(Bucket=bucket, Key="copy/target")["Body"].read()
assert got == body, "the copy has other bytes (%d of %d)" % (len(got), len(body))
head = s3.head_object(Bucket=bucket, Key="copy/target")
assert head["ETag"].endswith('-3"'), "not a 3-part multipart copy: " + head["ETag"]
assert head["ContentType"] == "application/x-test", head["ContentType"]
print("ok")
"#;
    let url = s3::endpoint(opsbox.s3_port);
    let out = s3::python(
        opsbox.home.path(),
        script,
        &[&url, ACCESS_KEY, SECRET_KEY, BUCKET],
    );
    assert_eq!(out.trim(), "ok");
}

/// What HTTP caches, sync tools and cleanup scripts call, through boto3: conditional GET
/// (304 / 412), conditional PUT, ListMultipartUploads with markers, the ACL stubs, and a
/// retried CompleteMultipartUpload.
#[test]
fn boto3_conditions_upload_listing_and_acls() {
    let opsbox = Opsbox::new();
    let _up = start_s3(&opsbox);
    let script = r#"
import sys, boto3, botocore
endpoint, key_id, secret, bucket = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
                  aws_secret_access_key=secret, region_name="us-east-1")
def status(call, **kw):
    try:
        call(**kw)
        return 200
    except botocore.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
etag = s3.put_object(Bucket=bucket, Key="cond", Body=b"v1")["ETag"]
assert status(s3.get_object, Bucket=bucket, Key="cond", IfNoneMatch=etag) == 304
assert status(s3.get_object, Bucket=bucket, Key="cond", IfMatch='"0"') == 412
assert status(s3.head_object, Bucket=bucket, Key="cond", IfNoneMatch=etag) == 304
assert status(s3.put_object, Bucket=bucket, Key="cond", Body=b"v2", IfNoneMatch="*") == 412
ids = [s3.create_multipart_upload(Bucket=bucket, Key="up/%d" % (i % 2))["UploadId"] for i in range(5)]
seen, kw = [], {}
while True:
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2, **kw)
    seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
    if not page["IsTruncated"]:
        break
    kw = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
assert sorted(seen) == sorted(("up/%d" % (i % 2), u) for i, u in enumerate(ids)), seen
assert seen == sorted(seen, key=lambda s: s[0]), seen
for key, upload in seen:
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
upload = s3.create_multipart_upload(Bucket=bucket, Key="done")["UploadId"]
part = s3.upload_part(Bucket=bucket, Key="done", UploadId=upload, PartNumber=1, Body=b"p")
parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
first = s3.complete_multipart_upload(Bucket=bucket, Key="done", UploadId=upload, MultipartUpload=parts)
again = s3.complete_multipart_upload(Bucket=bucket, Key="done", UploadId=upload, MultipartUpload=parts)
assert first["ETag"] == again["ETag"], (first["ETag"], again["ETag"])
acl = s3.get_bucket_acl(Bucket=bucket)
assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"], acl["Grants"]
s3.put_bucket_acl(Bucket=bucket, ACL="private")
s3.put_object_acl(Bucket=bucket, Key="cond", ACL="private")
assert status(s3.put_bucket_acl, Bucket=bucket, ACL="public-read") == 501
print("ok")
"#;
    let url = s3::endpoint(opsbox.s3_port);
    let out = s3::python(
        opsbox.home.path(),
        script,
        &[&url, ACCESS_KEY, SECRET_KEY, BUCKET],
    );
    assert_eq!(out.trim(), "ok");
}

/// `aws s3 cp s3://b/big s3://b/big2` of an object over the CLI's 8 MiB threshold is a
/// multipart copy (CreateMultipartUpload, UploadPartCopy with ranges, Complete).
#[test]
fn aws_cli_copies_a_large_object_between_keys() {
    let opsbox = Opsbox::new();
    let _up = start_s3(&opsbox);
    let body = random_bytes(20 * MIB + 7);
    let file = opsbox.home.path().join("big.bin");
    std::fs::write(&file, &body).unwrap();
    let back = opsbox.home.path().join("big2.bin");
    let url = s3::endpoint(opsbox.s3_port);
    let aws = |args: &[&str]| s3::aws(opsbox.home.path(), &url, args);
    let big = format!("s3://{BUCKET}/big");
    let big2 = format!("s3://{BUCKET}/big2");
    aws(&["s3", "cp", file.to_str().unwrap(), &big]);
    aws(&["s3", "cp", &big, &big2]);
    aws(&["s3", "cp", &big2, back.to_str().unwrap()]);
    let got = std::fs::read(&back).unwrap();
    assert!(
        got == body,
        "`aws s3 cp` between keys: downloaded {} bytes (sha256 {}), uploaded {} (sha256 {})",
        got.len(),
        sha256_hex(&got),
        body.len(),
        sha256_hex(&body)
    );
    let head = aws(&["s3api", "head-object", "--bucket", BUCKET, "--key", "big2"]);
    let head: serde_json::Value = serde_json::from_str(&head).unwrap();
    let e_tag = head["ETag"].as_str().unwrap_or_default();
    assert!(
        e_tag.ends_with("-3\""),
        "big2 is not a multipart copy (3 parts of 8 MiB): ETag {e_tag}"
    );
}

/// One completed syscall of a trace: its line (after joining `<unfinished ...>` with its
/// `resumed>` line) and its position in the order the calls returned.
#[derive(Debug)]
struct Call {
    order: usize,
    text: String,
}

/// Parse `strace -f -y` output into completed calls.
fn completed_calls(trace: &str) -> Vec<Call> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut calls = Vec::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(start) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid.to_owned(), start.to_owned());
        } else if rest.starts_with("<...") {
            let start = pending.remove(pid).unwrap_or_default();
            let end = rest.split_once("resumed>").map_or(rest, |(_, end)| end);
            calls.push(Call {
                order: calls.len(),
                text: format!("{start}{end}"),
            });
        } else {
            calls.push(Call {
                order: calls.len(),
                text: rest.to_owned(),
            });
        }
    }
    calls
}

fn is_fsync_of(call: &Call, path: &str) -> bool {
    (call.text.starts_with("fsync(") || call.text.starts_with("fdatasync("))
        && call
            .text
            .contains(&format!("</{}>", path.trim_start_matches('/')))
        && call.text.trim_end().ends_with("= 0")
}

/// The rename that made `dest`, and the temp file it came from.
fn rename_to<'a>(calls: &'a [Call], dest: &str) -> (&'a Call, String) {
    let call = calls
        .iter()
        .find(|c| c.text.starts_with("rename") && c.text.contains(&format!("\"{dest}\"")))
        .unwrap_or_else(|| panic!("no rename to {dest} in the trace"));
    let source = call
        .text
        .split('"')
        .nth(1)
        .expect("a rename names its source")
        .to_owned();
    (call, source)
}

/// A PUT answers 200 only after its bytes and metadata are on disk: the trace of a real
/// `opsbox up` shows, before the response is written to the socket, an fsync of the data's
/// temp file, its rename into place and an fsync of the object's directory, and the same for
/// the metadata file. (A SIGKILL keeps the page cache, so no kill test can see a missing fsync.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_fsyncs_data_metadata_and_directories_before_answering() {
    let opsbox = Opsbox::new();
    let trace_file = opsbox.home.path().join("strace.out");
    let opsbox_command = opsbox.command();
    let mut command = Command::new("strace");
    for (key, value) in opsbox_command.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
        .args(["-f", "-y", "-qq", "-s", "512", "-o"])
        .arg(&trace_file)
        .args([
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,write,writev,sendto,sendmsg",
        ])
        .arg(opsbox_command.get_program())
        .args(opsbox_command.get_args())
        .args(["up", "--services", "s3"])
        .args(opsbox.port_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut strace = match command.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot run strace ({e}): install it with `apt-get install strace`"),
    };
    // Also installs the process-wide rustls provider reqwest needs.
    let client = s3::client(opsbox.s3_port, false);
    let health = format!("{}/minio/health/ready", s3::endpoint(opsbox.s3_port));
    let began = Instant::now();
    loop {
        if reqwest::get(&health)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        if let Ok(Some(status)) = strace.try_wait() {
            panic!("opsbox up under strace exited ({status}) before S3 was ready");
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "opsbox up under strace did not answer {health} within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = random_bytes(64 * 1024);
    let md5 = s3::md5_hex(&body);
    client
        .put_object()
        .bucket(BUCKET)
        .key("traced/object")
        .body(ByteStream::from(body))
        .send()
        .await
        .expect("PUT under strace");
    // Stop the stack so strace has written every line.
    let down = opsbox.run(&["down", "--timeout", "20"]);
    assert!(down.status.success(), "opsbox down failed");
    let exited = tokio::task::spawn_blocking(move || strace.wait())
        .await
        .unwrap();
    assert!(exited.is_ok(), "strace did not exit");

    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let calls = completed_calls(&trace);
    let root = std::fs::canonicalize(opsbox.data_dir.join("s3")).unwrap();
    let data = root.join(BUCKET).join("traced%").join("object");
    let meta = root
        .join(".opsbox-s3/meta")
        .join(BUCKET)
        .join("traced%")
        .join("object");
    // The PUT's response is the socket write that carries its ETag.
    let answer = calls
        .iter()
        .find(|c| c.text.contains("HTTP/1.1 200") && c.text.contains(&md5))
        .unwrap_or_else(|| {
            panic!(
                "no 200 response with ETag {md5} in the trace ({})",
                trace_file.display()
            )
        });
    let mut failures = Vec::new();
    for (what, dest) in [("data", &data), ("metadata", &meta)] {
        let dest = dest.to_str().unwrap();
        let (rename, temp) = rename_to(&calls, dest);
        let dir = Path::new(dest).parent().unwrap().to_str().unwrap();
        let file_sync = calls
            .iter()
            .find(|c| c.order < rename.order && is_fsync_of(c, &temp));
        let dir_sync = calls
            .iter()
            .find(|c| c.order > rename.order && is_fsync_of(c, dir));
        match (file_sync, dir_sync) {
            (None, _) => failures.push(format!("{what}: no fsync of {temp} before its rename")),
            (_, None) => failures.push(format!("{what}: no fsync of {dir} after the rename")),
            (Some(_), Some(dir_sync)) => {
                if rename.order > answer.order || dir_sync.order > answer.order {
                    failures.push(format!(
                        "{what}: the 200 was written before the rename or the fsync of {dir}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\n(trace in {})",
        trace_file.display()
    );
}
