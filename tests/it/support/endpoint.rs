//! The S3 endpoint in process: `S3Server` on 127.0.0.1 with a temp root per test and a preset
//! bucket, or with `IT_S3_BACKEND=stock` upstream s3s-fs 0.14.1 behind the same auth and
//! accept loop (to see which S3 behaviours stock s3s-fs already gets right).

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::Client;
use opsbox::services::s3::{S3Config, S3Server};

use super::s3::{self, ACCESS_KEY, SECRET_KEY};

/// The bucket every endpoint starts with.
pub const PRESET: &str = "preset";

/// Whether the tests run against stock s3s-fs (`IT_S3_BACKEND=stock`).
pub fn stock() -> bool {
    std::env::var("IT_S3_BACKEND").is_ok_and(|v| v == "stock")
}

/// A running endpoint (ours or stock s3s-fs) on a temp root.
pub struct Endpoint {
    pub dir: tempfile::TempDir,
    pub addr: std::net::SocketAddr,
    pub server: Option<Running>,
}

pub enum Running {
    Ours(S3Server),
    Stock(tokio::task::JoinHandle<()>),
}

impl Endpoint {
    pub async fn start() -> Endpoint {
        // reqwest needs a process-wide rustls provider even for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("create a temp dir");
        let mut endpoint = Endpoint {
            dir,
            addr: "127.0.0.1:0".parse().expect("a socket address"),
            server: None,
        };
        endpoint.restart().await;
        endpoint
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The files in opsbox's temp directory under the root (which must exist).
    pub fn temp_files(&self) -> Vec<PathBuf> {
        let dir = self.root().join(".opsbox-s3/tmp");
        assert!(dir.is_dir(), "no temp directory {}", dir.display());
        super::files_under(&dir)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("s3.log")
    }

    /// Stop the server if it runs, and start it again on a new port over the same root.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        self.addr = listener.local_addr().expect("local address");
        let config = S3Config {
            root: self.root(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            buckets: vec![PRESET.into()],
            log: self.log(),
        };
        self.server = Some(if stock() {
            Running::Stock(start_stock(&config, listener))
        } else {
            Running::Ours(
                S3Server::start(config, listener)
                    .await
                    .expect("start the S3 server"),
            )
        });
    }

    pub async fn stop(&mut self) {
        match self.server.take() {
            Some(Running::Ours(server)) => server.shutdown(Duration::from_secs(5)).await,
            Some(Running::Stock(task)) => {
                task.abort();
                let _ = task.await;
            }
            None => {}
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An aws-sdk-s3 client with the right credentials, path style, the SDK's retries.
    pub fn client(&self) -> Client {
        s3::client_for(&self.url(), SECRET_KEY, true, true)
    }
}

/// Upstream s3s-fs behind the same auth, host and accept loop shape as ours.
fn start_stock(
    config: &S3Config,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    for bucket in &config.buckets {
        std::fs::create_dir_all(config.root.join(bucket)).expect("create a preset bucket");
    }
    let fs = s3s_fs::FileSystem::new(&config.root).expect("open s3s-fs root");
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        config.access_key.clone(),
        config.secret_key.clone(),
    ));
    let service = builder.build();
    tokio::spawn(async move {
        let http =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            let connection = http
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(connection);
        }
    })
}
