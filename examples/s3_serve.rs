//! Run opsbox's S3 endpoint standalone (for bench/s3.sh):
//! `cargo run --example s3_serve -- <port> <root> [log]`, credentials from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`. Stops on SIGINT or SIGTERM.
// Tests and tools print their own progress; the print bans are for the opsbox library.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use std::path::PathBuf;
use std::time::Duration;

use opsbox::services::s3::{S3Config, S3Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: s3_serve <port> <root> [log]";
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let root = PathBuf::from(args.next().ok_or(usage)?);
    let log = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.with_extension("log"));
    let config = S3Config {
        root,
        access_key: std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "opsbox".into()),
        secret_key: std::env::var("AWS_SECRET_ACCESS_KEY")
            .unwrap_or_else(|_| "opsbox-secret".into()),
        buckets: vec!["bench".into()],
        log,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let server = S3Server::start(config, listener).await?;
    println!("listening on http://{}", server.local_addr);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
