//! The web console on :9001 (the port of the compose file's MinIO console): sign-in with the S3
//! root credentials, and pages for the stack's services, served by the opsbox process itself.

mod assets;
mod auth;
mod connect;
mod layout;
mod nats;
mod overview;
mod postgres;
mod routes;
mod s3;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::output::env_format::EnvVars;

/// What the console shows and how it reaches each service.
#[derive(Clone)]
pub struct ConsoleConfig {
    /// The S3 root credentials: the console's sign-in, as with MinIO's console.
    pub access_key: String,
    pub secret_key: String,
    /// `run.json`: the services' state, pids and logs.
    pub run_file: PathBuf,
    /// The lines `opsbox env` prints, for the Connect page.
    pub env: EnvVars,
    /// The S3 endpoint's own storage, when S3 runs in this stack.
    pub storage: Option<Arc<dyn s3s::S3>>,
    /// `nats://host:port`, when NATS runs in this stack.
    pub nats_url: Option<String>,
    /// Connection to PostgreSQL, when it runs in this stack.
    pub postgres: Option<tokio_postgres::Config>,
}

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot start the console: port {port} on {host} is already in use{owner}")]
    PortInUse {
        host: IpAddr,
        port: u16,
        /// " (by pid N: command)" when the OS lets us see the owner.
        owner: String,
    },
    #[error("cannot listen on {address} for the console")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl ConsoleError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ConsoleError::PortInUse { port, .. } => Some(format!(
                "stop whatever listens on {port} (`ss -ltnp 'sport = {port}'`), run `opsbox up --console-port <free port>`, or leave the console out with --services"
            )),
            ConsoleError::Listen { .. } => {
                Some("check --host: it must be an address of this machine".into())
            }
        }
    }
}

/// Bind the console's port up front, so a taken port fails `up` before anything starts.
pub fn bind(host: IpAddr, port: u16) -> Result<std::net::TcpListener, ConsoleError> {
    let address = SocketAddr::new(host, port);
    let listener = std::net::TcpListener::bind(address).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ConsoleError::PortInUse {
                host,
                port,
                owner: crate::supervisor::process::port_owner(port)
                    .map(|(pid, command)| format!(" (by pid {pid}: {command})"))
                    .unwrap_or_default(),
            }
        } else {
            ConsoleError::Listen { address, source }
        }
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ConsoleError::Listen { address, source })?;
    Ok(listener)
}

/// A running console.
pub struct ConsoleServer {
    pub local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ConsoleServer {
    /// Serve on `listener` (from [`bind`]) until [`ConsoleServer::shutdown`].
    pub fn start(
        config: ConsoleConfig,
        listener: std::net::TcpListener,
    ) -> Result<ConsoleServer, ConsoleError> {
        let address = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listen_error = |source| ConsoleError::Listen { address, source };
        let listener = tokio::net::TcpListener::from_std(listener).map_err(listen_error)?;
        let local_addr = listener.local_addr().map_err(listen_error)?;
        let router = routes::router(config, local_addr);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                crate::output::warn(&format!("console: the server stopped: {e}"));
            }
        });
        Ok(ConsoleServer {
            local_addr,
            stop,
            task,
        })
    }

    /// Stop accepting; let in-flight requests finish for up to `grace`.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            // Long-lived connections (a page polling for updates) must not hold up `down`.
            task.abort();
        }
    }
}
