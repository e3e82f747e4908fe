//! Sign-in, sessions and CSRF: the session cookie is HttpOnly and SameSite=Strict, every
//! state-changing request must carry the session's CSRF token, a wrong password costs a delay,
//! and nothing but `/login` and the static assets answers without a session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use sha2::{Digest, Sha256};

use super::layout;
use super::routes::Shared;

/// A session ends after this long without a request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// How long a wrong password waits before the answer; failed attempts wait one after another,
/// so guessing is limited to one try per delay whatever the number of connections.
pub const FAILED_SIGN_IN_DELAY: Duration = Duration::from_secs(1);
/// Largest form body read to find a CSRF token.
const FORM_LIMIT: usize = 1024 * 1024;
/// The header JavaScript requests carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The signed-in session a request belongs to (an extension set by [`guard`]).
#[derive(Clone)]
pub struct Session {
    key: [u8; 32],
    pub csrf: String,
}

struct SessionData {
    csrf: String,
    last_seen: Instant,
    flash: Option<String>,
}

/// Sessions in memory, keyed by the SHA-256 of their cookie value (a lookup never compares
/// secrets byte by byte), plus the lock that serialises failed sign-ins.
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], SessionData>>,
    failures: tokio::sync::Mutex<()>,
}

impl Sessions {
    fn create(&self) -> (String, Session) {
        let token = random_token();
        let csrf = random_token();
        let key = digest(&token);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.last_seen.elapsed() < IDLE_TIMEOUT);
        sessions.insert(
            key,
            SessionData {
                csrf: csrf.clone(),
                last_seen: Instant::now(),
                flash: None,
            },
        );
        (token, Session { key, csrf })
    }

    fn find(&self, token: &str) -> Option<Session> {
        let key = digest(token);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let data = sessions.get_mut(&key)?;
        if data.last_seen.elapsed() >= IDLE_TIMEOUT {
            sessions.remove(&key);
            return None;
        }
        data.last_seen = Instant::now();
        Some(Session {
            key,
            csrf: data.csrf.clone(),
        })
    }

    fn remove(&self, session: &Session) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(&session.key);
    }

    /// A message shown once, on the next page the session opens (after a redirect).
    pub fn set_flash(&self, session: &Session, message: String) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(data) = sessions.get_mut(&session.key) {
            data.flash = Some(message);
        }
    }

    pub fn take_flash(&self, session: &Session) -> Option<String> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get_mut(&session.key).and_then(|d| d.flash.take())
    }
}

fn random_token() -> String {
    // Two version-4 UUIDs: 244 bits from the operating system's random source.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Equal without an early exit: compares digests, so time does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (digest(a), digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The cookie names carry the port: cookies do not tell ports apart, and two stacks on one
/// machine must not sign each other out.
pub fn session_cookie(port: u16) -> String {
    format!("opsbox_console_{port}")
}

fn login_cookie(port: u16) -> String {
    format!("opsbox_console_login_{port}")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map_or(String::new(), |age| format!("; Max-Age={age}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path={path}{age}"
    ))
    .expect("cookie text is ASCII")
}

/// Every request passes here first: the Host check, the cross-site check, the session, and the
/// CSRF token of state-changing requests. Security headers go on every response.
pub async fn guard(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = check(app, request, next).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: with it, browsers send `Origin: null` on form posts, which the
        // cross-site check must refuse.
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn check(app: Shared, mut request: Request, next: Next) -> Response {
    if !app.host_allowed(request.headers()) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to its own address (the Host header names another)",
        );
    }
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes_state && from_another_site(&app, request.headers()) {
        return refuse(StatusCode::FORBIDDEN, "cross-site request refused");
    }
    let path = request.uri().path();
    if path == "/login" || path.starts_with("/static/") || path == "/favicon.ico" {
        return next.run(request).await;
    }
    let session = cookie(request.headers(), &session_cookie(app.local_addr.port()))
        .and_then(|token| app.sessions.find(token));
    let Some(session) = session else {
        let wants_page =
            *request.method() == Method::GET && request.headers().get("x-requested-with").is_none();
        if wants_page {
            let target = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let query = serde_urlencoded::to_string([("next", target)]).unwrap_or_default();
            return Redirect::to(&format!("/login?{query}")).into_response();
        }
        return refuse(StatusCode::UNAUTHORIZED, "sign in first");
    };
    if changes_state {
        let (token, rebuilt) = csrf_token(request).await;
        let Some(rebuilt) = rebuilt else {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
        };
        if !token.is_some_and(|token| same_secret(&token, &session.csrf)) {
            return refuse(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: reload the page and try again",
            );
        }
        request = rebuilt;
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// The browser says the request comes from another site (Sec-Fetch-Site, or an Origin that is
/// not this console).
fn from_another_site(app: &Shared, headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site == "cross-site" || site == "same-site")
    {
        return true;
    }
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => false,
        Some(origin) => {
            let host = origin
                .strip_prefix("http://")
                .unwrap_or("not http")
                .to_string();
            !app.host_name_allowed(&host)
        }
    }
}

/// The CSRF token from the header, or from the `csrf` field of a URL-encoded form (whose body
/// is read and put back). `None` for the request when the form is too large.
async fn csrf_token(request: Request) -> (Option<String>, Option<Request>) {
    if let Some(token) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return (Some(token.to_string()), Some(request));
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (None, Some(request));
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return (None, None);
    };
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(k, _)| k == "csrf"))
        .map(|(_, v)| v);
    (token, Some(Request::from_parts(parts, Body::from(bytes))))
}

pub fn refuse(status: StatusCode, message: &str) -> Response {
    (status, layout::bare(status.as_str(), message)).into_response()
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

/// Only paths of this console: never `//host` or a full URL (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") =>
        {
            next.to_string()
        }
        _ => "/".to_string(),
    }
}

pub async fn login_page(
    State(app): State<Shared>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<LoginQuery>,
) -> Response {
    let port = app.local_addr.port();
    if cookie(&headers, &session_cookie(port)).is_some_and(|t| app.sessions.find(t).is_some()) {
        return Redirect::to(&safe_next(query.next.as_deref())).into_response();
    }
    login_form(&app, &headers, query.next.as_deref(), None, StatusCode::OK)
}

/// The form, with a fresh token in a cookie limited to /login (a double-submit token: another
/// site can neither read it nor make the browser send it).
fn login_form(
    app: &Shared,
    headers: &HeaderMap,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    // Keep the token the browser already holds: a second tab, or a request the browser makes on
    // its own (a favicon) that lands here, must not invalidate the form already shown.
    let token = cookie(headers, &login_cookie(app.local_addr.port()))
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(random_token, str::to_string);
    let next = safe_next(next);
    let body = html! {
        form.login method="post" action="/login" {
            h1 { "Sign in to the opsbox console" }
            p.muted { "Use the S3 root credentials (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD)." }
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            input type="hidden" name="csrf" value=(token);
            input type="hidden" name="next" value=(next);
            label for="username" { "Access key" }
            input #username type="text" name="username" autocomplete="username" required autofocus;
            label for="password" { "Secret key" }
            input #password type="password" name="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    };
    let mut response = (status, layout::bare_page("Sign in", body)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &login_cookie(app.local_addr.port()),
            &token,
            "/login",
            Some(3600),
        ),
    );
    response
}

pub async fn login(
    State(app): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let port = app.local_addr.port();
    let expected = cookie(&headers, &login_cookie(port)).unwrap_or("");
    if expected.is_empty() || !same_secret(expected, &form.csrf) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the sign-in form expired or came from another site: open /login and try again",
        );
    }
    let user_ok = same_secret(&form.username, &app.config.access_key);
    let password_ok = same_secret(&form.password, &app.config.secret_key);
    if !(user_ok && password_ok) {
        let _one_at_a_time = app.sessions.failures.lock().await;
        tokio::time::sleep(FAILED_SIGN_IN_DELAY).await;
        return login_form(
            &app,
            &headers,
            form.next.as_deref(),
            Some("Wrong access key or secret key."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let (token, _) = app.sessions.create();
    let mut response = Redirect::to(&safe_next(form.next.as_deref())).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(&session_cookie(port), &token, "/", None),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&login_cookie(port), "", "/login", Some(0)),
    );
    response
}

pub async fn logout(
    State(app): State<Shared>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response {
    app.sessions.remove(&session);
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&session_cookie(app.local_addr.port()), "", "/", Some(0)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_console() {
        assert_eq!(safe_next(Some("/s3?x=1")), "/s3?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("http://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("opsbox_console_19001=a; opsbox_console_9001=b"),
        );
        assert_eq!(cookie(&headers, "opsbox_console_9001"), Some("b"));
        assert_eq!(cookie(&headers, "opsbox_console_1"), None);
    }
}
