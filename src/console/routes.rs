//! The console's routes and the state every handler shares.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post, put};

use super::{ConsoleConfig, assets, auth, connect, nats, overview, postgres, s3};

/// What every handler can reach.
pub struct App {
    pub config: ConsoleConfig,
    pub local_addr: SocketAddr,
    pub sessions: auth::Sessions,
    pub nats: nats::Connection,
    pub disk: overview::DiskUse,
}

pub type Shared = Arc<App>;

impl App {
    /// The Host header must name this console: a page on another site that resolves its own
    /// name to 127.0.0.1 (DNS rebinding) must not reach it.
    pub fn host_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| self.host_name_allowed(host))
    }

    pub fn host_name_allowed(&self, host: &str) -> bool {
        let port = self.local_addr.port();
        let Some(name) = host.strip_suffix(&format!(":{port}")) else {
            return false;
        };
        let ip = self.local_addr.ip();
        if !ip.is_loopback() && !ip.is_unspecified() {
            return name == ip.to_string() || name == format!("[{ip}]");
        }
        if ip.is_unspecified() {
            // Listening on every address was asked for: any name of this machine may be used.
            return true;
        }
        name == "localhost"
            || name == "[::1]"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|address| address.is_loopback())
    }
}

pub fn router(config: ConsoleConfig, local_addr: SocketAddr) -> Router {
    let app: Shared = Arc::new(App {
        nats: nats::Connection::new(config.nats_url.clone()),
        config,
        local_addr,
        sessions: auth::Sessions::default(),
        disk: overview::DiskUse::default(),
    });
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/static/{name}", get(assets::serve))
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route("/", get(overview::page))
        .route("/overview/live", get(overview::live))
        .route("/connect", get(connect::page))
        .route("/s3", get(s3::buckets))
        .route("/s3/buckets", post(s3::create_bucket))
        .route("/s3/b/{bucket}", get(s3::objects))
        .route("/s3/b/{bucket}/delete", post(s3::delete_bucket))
        .route("/s3/b/{bucket}/object", get(s3::object))
        .route("/s3/b/{bucket}/download", get(s3::download))
        .route("/s3/b/{bucket}/delete-object", post(s3::delete_object))
        .route(
            "/s3/b/{bucket}/upload",
            put(s3::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/nats", get(nats::streams))
        .route("/nats/s/{stream}", get(nats::stream))
        .route("/nats/publish", post(nats::publish))
        .route("/postgres", get(postgres::databases))
        .route("/postgres/{database}", get(postgres::tables))
        .route("/postgres/{database}/{schema}/{table}", get(postgres::rows))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::guard,
        ))
        .with_state(app)
}

async fn not_found() -> axum::response::Response {
    auth::refuse(axum::http::StatusCode::NOT_FOUND, "no such page")
}
