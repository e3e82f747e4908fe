//! The HTTP side: the accept loop (TCP_NODELAY, graceful shutdown), the host-style
//! configuration and the request wrapper that routes health checks, writes the access log and
//! fixes what s3s 0.14.1 itself gets wrong (request_fixes.rs).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::host::{DomainError, MultiDomain, S3Host, VirtualHost};
use s3s::service::S3Service;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::access_log::{AccessLog, LoggedBody, RequestRecord};
use super::gate::Gate;
use super::health;
use super::request_fixes;

/// Virtual-hosted-style for `<bucket>.<known host>`, path-style for every other host
/// (so that requests to an IP address or an unknown name never treat the host as a bucket).
pub struct Hosts {
    domains: MultiDomain,
    bases: Vec<String>,
}

impl Hosts {
    pub fn new(local_addr: SocketAddr) -> Result<Hosts, DomainError> {
        let port = local_addr.port();
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let bind = local_addr.ip();
        if bind.is_ipv4() && !bind.is_unspecified() && !names.contains(&bind.to_string()) {
            names.push(bind.to_string());
        }
        let mut bases = Vec::new();
        for name in names {
            bases.push(format!("{name}:{port}"));
            bases.push(name);
        }
        let domains = MultiDomain::new(&bases)?;
        Ok(Hosts { domains, bases })
    }
}

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<VirtualHost<'a>> {
        let known = self.bases.iter().any(|base| {
            host == base
                || host
                    .strip_suffix(base.as_str())
                    .is_some_and(|h| h.ends_with('.'))
        });
        if known {
            self.domains.parse_host_header(host)
        } else {
            Ok(VirtualHost::new(host))
        }
    }
}

/// Health routes, then s3s; every response body is wrapped to write the access-log line.
#[derive(Clone)]
struct Handler {
    s3: S3Service,
    log: AccessLog,
    /// Where bodies sent without a length are spooled (request_fixes.rs).
    temp_dir: Arc<PathBuf>,
    /// Held closed while a snapshot of the running stack is saved or restored (gate.rs).
    gate: Gate,
}

impl Handler {
    async fn handle(self, req: Request<Incoming>) -> Result<Response<LoggedBody>, Infallible> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let request_id = request_fixes::request_id();
        let response = match health::respond(&req) {
            Some(response) => response,
            None => {
                let _pass = self.gate.enter(&method).await;
                let mut req = req.map(s3s::Body::from);
                let checked =
                    match request_fixes::spool_unsized_body(&mut req, &self.temp_dir).await {
                        Ok(()) => request_fixes::before_s3s(&mut req),
                        Err(e) => {
                            self.log.error(&format!("{method} {path}: {e}"));
                            Err(request_fixes::Refused::incomplete_body())
                        }
                    };
                match checked {
                    Err(refused) => refused.response(),
                    Ok(()) => match self.s3.call(req).await {
                        Ok(response) => response,
                        Err(e) => {
                            self.log.error(&format!("{method} {path}: {e:?}"));
                            let mut response = Response::new(s3s::Body::empty());
                            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            response
                        }
                    },
                }
            }
        };
        let response = request_fixes::after_s3s(response, &request_id);
        let status = response.status().as_u16();
        let record = RequestRecord {
            method,
            path,
            status,
            started,
        };
        let log = self.log.clone();
        Ok(response.map(|body| LoggedBody::new(body, record, log)))
    }
}

/// Accept connections until `stop` fires, then drain in-flight requests for up to the grace period it carries.
pub async fn serve(
    listener: TcpListener,
    s3: S3Service,
    log: AccessLog,
    temp_dir: PathBuf,
    gate: Gate,
    stop: oneshot::Receiver<Duration>,
) {
    let handler = Handler {
        s3,
        log: log.clone(),
        temp_dir: Arc::new(temp_dir),
        gate,
    };
    let service = hyper::service::service_fn(move |req| handler.clone().handle(req));
    let builder = Arc::new(ConnectionBuilder::new(TokioExecutor::new()));
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    let grace = loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    log.error(&format!("cannot accept a connection: {e}"));
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            grace = &mut stop => break grace.unwrap_or_default(),
        };
        // Without TCP_NODELAY small responses on a kept-alive connection wait for delayed ACKs
        // (Nagle), which limits one client to about 40 requests per second.
        if let Err(e) = socket.set_nodelay(true) {
            log.error(&format!("cannot set TCP_NODELAY: {e}"));
        }
        let connection = builder
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Client resets and malformed requests end the connection; nothing to do about them.
            let _ = connection.await;
        });
    };
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        log.line(&format!(
            "shutdown: in-flight requests still running after {grace:?}, closing them"
        ));
    }
}
