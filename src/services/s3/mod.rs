//! The S3 endpoint: s3s + s3s-fs served in-process, with the fixes that make it behave like S3.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the S3 endpoint needs to run.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Directory holding one sub-directory per bucket.
    pub root: PathBuf,
    pub access_key: String,
    pub secret_key: String,
    /// Buckets to create at start (like `mc mb --ignore-existing`).
    pub buckets: Vec<String>,
    /// Access and error log (appended).
    pub log: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("{0}")]
    Other(String),
}

/// A running S3 endpoint.
pub struct S3Server {
    pub local_addr: SocketAddr,
}

impl S3Server {
    /// Serve on `listener` (already bound by the caller, so port errors surface up front).
    pub async fn start(
        config: S3Config,
        listener: tokio::net::TcpListener,
    ) -> Result<S3Server, S3Error> {
        let _ = (config, listener);
        todo!("s3 helper")
    }

    /// Stop accepting, let in-flight requests finish (up to `grace`), then return.
    pub async fn shutdown(self, grace: Duration) {
        let _ = grace;
        todo!("s3 helper")
    }
}
