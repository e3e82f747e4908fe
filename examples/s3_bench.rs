//! Load driver for bench/s3.sh.
//!
//! `s3_bench s3 <endpoint> <bucket>`: aws-sdk-s3 against an S3 endpoint (payload signing and
//! request checksums off, so the client spends as little CPU as possible).
//! `s3_bench raw <get-url-base> <put-url-base>`: plain HTTP GET/PUT (static file / WebDAV server).
//! Prints one `name value unit` line per measurement.
// Tests and tools print their own progress; the print bans are for the opsbox library.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

const BIG: usize = 256 * 1024 * 1024;
const SMALL: usize = 4 * 1024;
const WINDOW: Duration = Duration::from_secs(5);

#[derive(Clone)]
enum Target {
    S3 {
        client: Client,
        bucket: String,
    },
    Raw {
        http: reqwest::Client,
        get_base: String,
        put_base: String,
    },
}

impl Target {
    async fn put(&self, key: &str, body: Bytes) {
        match self {
            Target::S3 { client, bucket } => {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(body))
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("PUT {key}: {:?}", e.into_service_error()));
            }
            Target::Raw { http, put_base, .. } => {
                let r = http
                    .put(format!("{put_base}/{key}"))
                    .body(body)
                    .send()
                    .await
                    .expect("raw PUT");
                assert!(r.status().is_success(), "raw PUT {key}: {}", r.status());
            }
        }
    }

    async fn get(&self, key: &str) -> u64 {
        match self {
            Target::S3 { client, bucket } => {
                let mut out = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .expect("GET");
                let mut n = 0;
                while let Some(chunk) = out.body.try_next().await.expect("GET body") {
                    n += chunk.len() as u64;
                }
                n
            }
            Target::Raw { http, get_base, .. } => {
                let mut r = http
                    .get(format!("{get_base}/{key}"))
                    .send()
                    .await
                    .expect("raw GET");
                assert!(r.status().is_success(), "raw GET {key}: {}", r.status());
                let mut n = 0;
                while let Some(chunk) = r.chunk().await.expect("raw GET body") {
                    n += chunk.len() as u64;
                }
                n
            }
        }
    }
}

async fn ops_per_second(target: &Target, clients: usize, put: bool) -> f64 {
    let body = Bytes::from(vec![b'x'; SMALL]);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let target = target.clone();
        let body = body.clone();
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < WINDOW {
                if put {
                    target
                        .put(&format!("small/{c}-{}", i % 100), body.clone())
                        .await;
                } else {
                    target.get(&format!("small/{}-{}", c % 8, i % 100)).await;
                }
                i += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn s3_client(endpoint: &str) -> Client {
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "opsbox".into());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "opsbox-secret".into());
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            key, secret, None, None, "bench",
        ))
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
    Client::from_conf(config.build())
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let (target, single) = match mode {
        "s3" => (
            // The second client has its own pool; used by one task it keeps one connection alive.
            Target::S3 {
                client: s3_client(&args[1]),
                bucket: args[2].clone(),
            },
            Target::S3 {
                client: s3_client(&args[1]),
                bucket: args[2].clone(),
            },
        ),
        "raw" => {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(16)
                .build()
                .unwrap();
            let single = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            (
                Target::Raw {
                    http,
                    get_base: args[1].clone(),
                    put_base: args[2].clone(),
                },
                Target::Raw {
                    http: single,
                    get_base: args[1].clone(),
                    put_base: args[2].clone(),
                },
            )
        }
        _ => panic!("usage: s3_bench s3 <endpoint> <bucket> | s3_bench raw <get-base> <put-base>"),
    };
    let skip_put = std::env::var("BENCH_SKIP_PUT").is_ok();
    let big = Bytes::from(vec![b'b'; BIG]);
    if !skip_put {
        let t = Instant::now();
        target.put("big.bin", big.clone()).await;
        println!(
            "put_256MiB {:.0} MB/s",
            BIG as f64 / 1e6 / t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let n = target.get("big.bin").await;
    assert_eq!(n as usize, BIG, "GET big.bin returned {n} bytes");
    println!(
        "get_256MiB {:.0} MB/s",
        BIG as f64 / 1e6 / t.elapsed().as_secs_f64()
    );
    if !skip_put {
        println!(
            "put_4KiB_8_clients {:.0} ops/s",
            ops_per_second(&target, 8, true).await
        );
        println!(
            "put_4KiB_1_connection {:.0} ops/s",
            ops_per_second(&single, 1, true).await
        );
    }
    println!(
        "get_4KiB_8_clients {:.0} ops/s",
        ops_per_second(&target, 8, false).await
    );
    println!(
        "get_4KiB_1_connection {:.0} ops/s",
        ops_per_second(&single, 1, false).await
    );
}
