//! The S3 endpoint: s3s + s3s-fs served in-process, with the fixes that make it behave like S3.

mod access_log;
mod acl;
mod backend;
mod checksum;
mod conditions;
pub mod gate;
mod health;
mod in_process;
mod keys;
mod listing;
mod multipart;
mod request_fixes;
mod server;
mod storage;

pub use in_process::request as in_process_request;
pub use storage::adopt_copied_inodes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::sync::oneshot;

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

/// Why the S3 endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("cannot prepare the S3 data directory {path}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the S3 log {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{bucket}` is not a valid S3 bucket name (3-63 lowercase letters, digits, `-` and `.`)"
    )]
    BucketName { bucket: String },
    #[error("cannot create bucket `{bucket}` at {path}")]
    CreateBucket {
        bucket: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the address of the S3 listener")]
    ListenerAddress(#[source] std::io::Error),
    #[error("cannot configure virtual-hosted-style host names for {address}")]
    Hosts {
        address: SocketAddr,
        #[source]
        source: s3s::host::DomainError,
    },
}

/// The gate of a running endpoint's requests, and its data directory.
#[derive(Debug, Clone)]
pub struct S3Control {
    pub gate: gate::Gate,
    layout: Arc<storage::Layout>,
}

impl S3Control {
    /// After a restore replaced the data directory underneath: make the internal directories
    /// the new tree lacks (a snapshot never holds temp files).
    pub fn reopen(&self) -> Result<(), S3Error> {
        self.layout.ensure_dirs().map_err(|source| S3Error::Root {
            path: self.layout.root().to_path_buf(),
            source,
        })
    }
}

/// A running S3 endpoint.
pub struct S3Server {
    pub local_addr: SocketAddr,
    backend: backend::Backend,
    layout: Arc<storage::Layout>,
    gate: gate::Gate,
    stop: oneshot::Sender<Duration>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    /// Serve on `listener` (already bound by the caller, so port errors surface up front).
    pub async fn start(
        config: S3Config,
        listener: tokio::net::TcpListener,
    ) -> Result<S3Server, S3Error> {
        let local_addr = listener.local_addr().map_err(S3Error::ListenerAddress)?;
        let root_error = |source| S3Error::Root {
            path: config.root.clone(),
            source,
        };
        fs_err::create_dir_all(&config.root).map_err(root_error)?;
        let root = fs_err::canonicalize(&config.root).map_err(root_error)?;
        let layout = Arc::new(storage::Layout::open(&root).map_err(root_error)?);
        let log = access_log::AccessLog::open(&config.log).map_err(|source| S3Error::Log {
            path: config.log.clone(),
            source,
        })?;

        for bucket in &config.buckets {
            if !s3s::path::check_bucket_name(bucket) {
                return Err(S3Error::BucketName {
                    bucket: bucket.clone(),
                });
            }
            let path = layout.bucket_dir(bucket);
            storage::create_dirs_durably(&path, &root).map_err(|source| S3Error::CreateBucket {
                bucket: bucket.clone(),
                path: path.clone(),
                source,
            })?;
        }

        let backend =
            backend::Backend::new(Arc::clone(&layout), log.clone()).map_err(root_error)?;
        let hosts = server::Hosts::new(local_addr).map_err(|source| S3Error::Hosts {
            address: local_addr,
            source,
        })?;
        let mut builder = S3ServiceBuilder::new(backend.clone());
        builder.set_auth(SimpleAuth::from_single(
            config.access_key.clone(),
            config.secret_key.clone(),
        ));
        builder.set_host(hosts);
        let service = builder.build();

        let gate = gate::Gate::default();
        let (stop, stopped) = oneshot::channel();
        log.line(&format!(
            "listening on {local_addr}, data in {}",
            root.display()
        ));
        let task = tokio::spawn(server::serve(
            listener,
            service,
            log,
            layout.temp_dir(),
            gate.clone(),
            stopped,
        ));
        Ok(S3Server {
            local_addr,
            backend,
            layout,
            gate,
            stop,
            task,
        })
    }

    /// The storage this endpoint serves, for in-process callers (the console): behind the
    /// same gate as the endpoint's requests (in_process.rs).
    pub fn storage(&self) -> Arc<dyn s3s::S3> {
        Arc::new(in_process::Gated {
            backend: self.backend.clone(),
            gate: self.gate.clone(),
        })
    }

    /// What a snapshot of the running stack needs of this endpoint.
    pub fn control(&self) -> S3Control {
        S3Control {
            gate: self.gate.clone(),
            layout: Arc::clone(&self.layout),
        }
    }

    /// Stop accepting, let in-flight requests finish (up to `grace`), then return.
    pub async fn shutdown(self, grace: Duration) {
        // If the accept loop is gone already there is nothing left to stop.
        let _ = self.stop.send(grace);
        let _ = self.task.await;
    }
}
