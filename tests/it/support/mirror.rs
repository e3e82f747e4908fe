//! A loopback HTTP server serving a directory tree in the upstream layout, counting requests
//! per path so tests can tell whether a fetch used the network.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

pub struct Mirror {
    pub base: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Mirror {
    pub async fn start(root: PathBuf) -> Mirror {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let task_counts = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let root = root.clone();
                let counts = task_counts.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: Request<hyper::body::Incoming>| {
                            let root = root.clone();
                            let counts = counts.clone();
                            async move {
                                let path = request.uri().path().to_string();
                                *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
                                let file = root.join(path.trim_start_matches('/'));
                                let response = match tokio::fs::read(&file).await {
                                    Ok(body) => Response::new(Full::new(Bytes::from(body))),
                                    Err(_) => {
                                        let mut response = Response::new(Full::new(
                                            Bytes::from_static(b"not found"),
                                        ));
                                        *response.status_mut() = StatusCode::NOT_FOUND;
                                        response
                                    }
                                };
                                Ok::<_, Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Mirror { base, counts, task }
    }

    /// All requests so far.
    pub fn requests(&self) -> usize {
        self.counts.lock().unwrap().values().sum()
    }

    /// Requests for one path.
    pub fn requests_for(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A mirror base URL nobody listens on.
pub fn closed_port_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}
