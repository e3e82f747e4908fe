//! The web console against the real `opsbox up`: its security (sign-in, session cookie, CSRF,
//! Host and Origin checks, path traversal, escaping of stored text) over plain HTTP, and a
//! walk through every page in a real headless Chromium driven over WebDriver.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::s3;
use crate::support::stack::{Foreground, Opsbox};
use crate::support::{files_under, free_port, target_dir};

const STARTUP: Duration = Duration::from_secs(180);
/// The delay the console puts on a wrong password (src/console/auth.rs).
const FAILED_SIGN_IN_DELAY: Duration = Duration::from_secs(1);

/// A running stack with the console.
fn stack() -> (Opsbox, Foreground) {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("nats,postgres,s3,console");
    opsbox.wait_ready(&mut up, STARTUP);
    (opsbox, up)
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }
}

/// An HTTP client that keeps cookies by hand (to see and assert every Set-Cookie) and never
/// follows redirects.
struct Visitor {
    base: String,
    port: u16,
    client: reqwest::blocking::Client,
    cookies: HashMap<String, String>,
}

impl Visitor {
    fn new(port: u16) -> Self {
        // reqwest needs a process-wide TLS provider even for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Visitor {
            base: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn send(&mut self, request: reqwest::blocking::RequestBuilder) -> Reply {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie.join("; "))
        };
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().unwrap_or_default();
        let reply = Reply {
            status,
            headers,
            body,
        };
        for set in reply.set_cookies() {
            let pair = set.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || set.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        reply
    }

    fn get(&mut self, path: &str) -> Reply {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request)
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap());
        self.send(request)
    }

    fn put(&mut self, path: &str, csrf: Option<&str>, body: Vec<u8>) -> Reply {
        let mut request = self.client.put(format!("{}{path}", self.base)).body(body);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        self.send(request)
    }

    /// The hidden `csrf` field of the form on the page at `path`.
    fn form_token(&mut self, path: &str) -> String {
        let page = self.get(path);
        assert_eq!(page.status, 200, "GET {path}: {}", page.body);
        hidden_value(&page.body, "csrf")
            .unwrap_or_else(|| panic!("no csrf field on {path}:\n{}", page.body))
    }

    fn sign_in(&mut self, password: &str) -> Reply {
        let token = self.form_token("/login");
        self.post(
            "/login",
            &[
                ("username", s3::ACCESS_KEY),
                ("password", password),
                ("csrf", &token),
                ("next", "/"),
            ],
        )
    }

    fn session_cookie(&self) -> String {
        format!("opsbox_console_{}", self.port)
    }
}

fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

/// Every route of the console (src/console/routes.rs), with a method that exists on it.
const ROUTES: [(&str, &str); 17] = [
    ("GET", "/"),
    ("GET", "/overview/live"),
    ("GET", "/connect"),
    ("GET", "/s3"),
    ("POST", "/s3/buckets"),
    ("GET", "/s3/b/historian"),
    ("POST", "/s3/b/historian/delete"),
    ("GET", "/s3/b/historian/object?key=a"),
    ("GET", "/s3/b/historian/download?key=a"),
    ("POST", "/s3/b/historian/delete-object"),
    ("PUT", "/s3/b/historian/upload?key=a"),
    ("GET", "/nats"),
    ("GET", "/nats/s/EVENTS"),
    ("POST", "/nats/publish"),
    ("GET", "/postgres"),
    ("GET", "/postgres/historian"),
    ("GET", "/postgres/historian/public/t"),
];

#[test]
fn console_refuses_the_signed_out_the_cross_site_and_shows_stored_text_as_text() {
    let (opsbox, _up) = stack();
    let mut visitor = Visitor::new(opsbox.console_port);

    // Signed out: pages redirect to the sign-in, everything else is 401, nothing runs.
    for (method, path) in ROUTES.iter().chain([("GET", "/no/such/page")].iter()) {
        let reply = match *method {
            "GET" => visitor.get(path),
            "POST" => visitor.post(path, &[("name", "signed-out-bucket"), ("csrf", "x")]),
            _ => visitor.put(path, Some("x"), b"x".to_vec()),
        };
        if *method == "GET" {
            assert_eq!(
                reply.status, 303,
                "{method} {path} signed out: {}",
                reply.body
            );
            assert!(
                reply.header("location").starts_with("/login?next="),
                "{method} {path} redirects to the sign-in: {}",
                reply.header("location")
            );
        } else {
            assert_eq!(
                reply.status, 401,
                "{method} {path} signed out: {}",
                reply.body
            );
        }
    }
    // The static files are public, and only the files that exist in the binary.
    assert_eq!(visitor.get("/static/console.css").status, 200);
    assert_eq!(visitor.get("/static/console.js").status, 200);
    for path in [
        "/static/..%2f..%2fCargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/../Cargo.toml",
        "/static/console.css%00.js",
        "/static/",
    ] {
        let reply = visitor.get(path);
        assert!(
            reply.status == 404 || (reply.status == 303 && !path.starts_with("/static/console")),
            "{path}: {} {}",
            reply.status,
            reply.body
        );
        assert!(
            !reply.body.contains("[package]"),
            "{path} served a file from disk"
        );
    }

    // A wrong password is refused, after the delay.
    let began = Instant::now();
    let refused = visitor.sign_in("wrong-password");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        began.elapsed() >= FAILED_SIGN_IN_DELAY,
        "no delay: {:?}",
        began.elapsed()
    );
    assert!(!visitor.cookies.contains_key(&visitor.session_cookie()));
    // A sign-in form posted without the token of its own form is refused.
    let forged = visitor.post(
        "/login",
        &[
            ("username", s3::ACCESS_KEY),
            ("password", s3::SECRET_KEY),
            ("csrf", "forged"),
        ],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);

    // The right credentials: a session cookie that scripts cannot read and other sites cannot send.
    let signed_in = visitor.sign_in(s3::SECRET_KEY);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let cookie = signed_in
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{}=", visitor.session_cookie())))
        .expect("a session cookie");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    let overview = visitor.get("/");
    assert_eq!(overview.status, 200);
    assert!(
        overview
            .header("content-security-policy")
            .contains("script-src 'self'")
    );
    assert_eq!(overview.header("x-frame-options"), "DENY");
    let csrf = hidden_value(&overview.body, "csrf").expect("the sign-out form's token");

    // State-changing requests without the token, or from another site, change nothing.
    let no_token = visitor.post("/s3/buckets", &[("name", "made-without-token")]);
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let wrong_token = visitor.post(
        "/s3/buckets",
        &[("name", "made-with-wrong-token"), ("csrf", "0000")],
    );
    assert_eq!(wrong_token.status, 403, "{}", wrong_token.body);
    let request = visitor
        .client
        .post(format!("{}/s3/buckets", visitor.base))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(query(&[
            ("name", "made-cross-site"),
            ("csrf", csrf.as_str()),
        ]));
    assert_eq!(visitor.send(request).status, 403);
    let request = visitor
        .client
        .get(format!("{}/", visitor.base))
        .header("host", format!("rebound.example:{}", opsbox.console_port));
    assert_eq!(
        visitor.send(request).status,
        421,
        "a foreign Host name is refused"
    );
    let upload = visitor.put("/s3/b/historian/upload?key=no-token", None, b"x".to_vec());
    assert_eq!(upload.status, 403, "{}", upload.body);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = s3::client(opsbox.s3_port, true);
    let buckets: Vec<String> = runtime
        .block_on(client.list_buckets().send())
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert_eq!(
        buckets,
        vec![s3::BUCKET.to_string()],
        "no refused request created a bucket"
    );
    let none = runtime.block_on(
        client
            .head_object()
            .bucket(s3::BUCKET)
            .key("no-token")
            .send(),
    );
    assert!(none.is_err(), "the refused upload stored nothing");

    // With the token: a bucket is created, through the S3 endpoint's own storage.
    let created = visitor.post("/s3/buckets", &[("name", "console-made"), ("csrf", &csrf)]);
    assert_eq!(created.status, 303, "{}", created.body);
    runtime
        .block_on(client.head_bucket().bucket("console-made").send())
        .expect("the bucket the console created exists for S3 clients");

    // Path traversal in a key stays a key inside its bucket.
    let escape = b"escaped bytes".to_vec();
    let key = "../../../../outside-the-bucket.txt";
    let stored = visitor.put(
        &format!("/s3/b/historian/upload?{}", query(&[("key", key)])),
        Some(&csrf),
        escape.clone(),
    );
    assert_eq!(stored.status, 201, "{}", stored.body);
    let found = find_files(&opsbox.data_dir, "outside-the-bucket.txt");
    let bucket_dirs = [
        opsbox.data_dir.join("s3").join(s3::BUCKET),
        opsbox.data_dir.join("s3/.opsbox-s3/meta").join(s3::BUCKET),
    ];
    assert!(!found.is_empty(), "the object was stored");
    for path in &found {
        let real = path.canonicalize().unwrap();
        assert!(
            bucket_dirs
                .iter()
                .any(|dir| real.starts_with(dir.canonicalize().unwrap())),
            "a key became a file outside its bucket: {}",
            real.display()
        );
    }
    let fetched = runtime
        .block_on(client.get_object().bucket(s3::BUCKET).key(key).send())
        .expect("the key is an object of the bucket");
    let bytes = runtime
        .block_on(fetched.body.collect())
        .unwrap()
        .into_bytes();
    assert_eq!(bytes.as_ref(), escape.as_slice());
    let download = visitor.get(&format!(
        "/s3/b/historian/download?{}",
        query(&[("key", key)])
    ));
    assert_eq!(download.status, 200);
    assert_eq!(download.body.as_bytes(), escape.as_slice());
    assert_eq!(download.header("content-type"), "application/octet-stream");
    assert!(
        download
            .header("content-disposition")
            .starts_with("attachment;")
    );

    // Stored text that looks like HTML is shown as text: object key, metadata, NATS payload,
    // table value.
    let xss_key = "<img src=x onerror=alert('key')>.html";
    let stored = visitor.put(
        &format!("/s3/b/historian/upload?{}", query(&[("key", xss_key)])),
        Some(&csrf),
        b"<script>alert('body')</script>".to_vec(),
    );
    assert_eq!(stored.status, 201, "{}", stored.body);
    let listing = visitor.get("/s3/b/historian");
    assert_eq!(listing.status, 200);
    assert_escaped(
        &listing.body,
        "<img src=x onerror=alert('key')>",
        "object key in the listing",
    );
    runtime
        .block_on(
            client
                .put_object()
                .bucket(s3::BUCKET)
                .key("with-metadata")
                .metadata("note", "<img src=x onerror=alert('meta')>")
                .body(b"m".to_vec().into())
                .send(),
        )
        .unwrap();
    let details = visitor.get(&format!(
        "/s3/b/historian/object?{}",
        query(&[("key", "with-metadata")])
    ));
    assert_eq!(details.status, 200, "{}", details.body);
    assert_escaped(
        &details.body,
        "<img src=x onerror=alert('meta')>",
        "metadata value",
    );

    let published = visitor.post(
        "/nats/publish",
        &[
            ("subject", "enterprise.xss"),
            ("payload", "<script>alert('nats')</script>"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(published.status, 303, "{}", published.body);
    assert_eq!(published.header("location"), "/nats/s/EVENTS");
    let stream = visitor.get("/nats/s/EVENTS");
    assert_escaped(
        &stream.body,
        "<script>alert('nats')</script>",
        "NATS payload",
    );
    assert!(stream.body.contains("enterprise.xss"));

    runtime.block_on(async {
        let postgres = opsbox.postgres().await;
        postgres
            .batch_execute(
                "CREATE TABLE console_xss (id int, note text); \
                 INSERT INTO console_xss VALUES (1, '<script>alert(''pg'')</script>')",
            )
            .await
            .unwrap();
    });
    let rows = visitor.get("/postgres/historian/public/console_xss");
    assert_eq!(rows.status, 200, "{}", rows.body);
    assert_escaped(&rows.body, "<script>alert('pg')</script>", "table value");
    let missing = visitor.get("/postgres/historian/public/no%22table");
    assert_eq!(missing.status, 404, "{}", missing.body);

    // Signing out ends the session on the server, not only in the browser.
    let old = visitor
        .cookies
        .get(&visitor.session_cookie())
        .cloned()
        .unwrap();
    let out = visitor.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    visitor.cookies.insert(visitor.session_cookie(), old);
    assert_eq!(
        visitor.get("/").status,
        303,
        "the old session cookie no longer works"
    );
}

fn assert_escaped(html: &str, raw: &str, what: &str) {
    assert!(
        !html.contains(raw),
        "the {what} is in the page as markup:\n{html}"
    );
    let escaped = raw
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let escaped_quotes = escaped.replace('\'', "&#39;");
    assert!(
        html.contains(&escaped) || html.contains(&escaped_quotes),
        "the {what} is not shown as text ({escaped}):\n{html}"
    );
}

fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| {
            path.file_name()
                .is_some_and(|file| file.to_string_lossy().contains(name))
        })
        .collect()
}

/// Where the browser test leaves its screenshots (docs/ has copies of two).
fn screenshot_dir() -> PathBuf {
    target_dir("console-screenshots")
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn json_reply(request: reqwest::blocking::RequestBuilder) -> Value {
    let text = request.send().unwrap().text().unwrap();
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("WebDriver answered with no JSON ({e}): {text}"))
}

/// Headless Chromium through chromedriver's WebDriver HTTP API.
struct Browser {
    driver: Child,
    client: reqwest::blocking::Client,
    base: String,
    session: String,
}

impl Browser {
    fn start(profile: &Path, log: &Path) -> Browser {
        let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect(
                "chromedriver is not installed: run tests/prereqs.sh (Debian's chromium-driver)",
            );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let began = Instant::now();
        loop {
            let ready = client
                .get(format!("{base}/status"))
                .send()
                .ok()
                .and_then(|r| r.text().ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "chromedriver did not answer on {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let binary = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chromium is not installed: run tests/prereqs.sh");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }
        }}});
        let created: Value = json_reply(
            client
                .post(format!("{base}/session"))
                .header("content-type", "application/json")
                .body(capabilities.to_string()),
        );
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver did not start a session: {created}"))
            .to_string();
        Browser {
            driver,
            client,
            base,
            session,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        };
        let reply = json_reply(request);
        if reply["value"]["error"].is_string() {
            panic!(
                "WebDriver {method} {path} failed: {}",
                reply["value"]["message"]
            );
        }
        reply["value"].clone()
    }

    fn cdp(&self, command: &str, params: Value) {
        self.call(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": command, "params": params}),
        );
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", Value::Null)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
        .collect()
    }

    /// The first element matching `css`, waiting for it to appear.
    fn find(&self, css: &str) -> String {
        self.wait_for(&format!("an element {css}"), || {
            !self.find_all(css).is_empty()
        });
        self.find_all(css).remove(0)
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": text}),
        );
    }

    fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.call("GET", &format!("/element/{element}/text"), Value::Null)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or(""))
            .unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let began = Instant::now();
        while !done() {
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "the browser did not show {what} within 30 s; at {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .client
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn console_in_a_real_browser_signs_in_uses_every_service_and_signs_out() {
    let (opsbox, _up) = stack();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let postgres = opsbox.postgres().await;
        postgres
            .batch_execute(
                "CREATE TABLE browser_readings (id int PRIMARY KEY, sensor text, value float8); \
                 INSERT INTO browser_readings VALUES (1, 'boiler-7', 81.5), (2, 'boiler-8', 79.25)",
            )
            .await
            .unwrap();
    });
    let home = crate::support::temp_dir();
    let downloads = home.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(
        &home.path().join("profile"),
        &home.path().join("chromedriver.log"),
    );
    browser.cdp(
        "Browser.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": downloads.display().to_string()}),
    );
    browser.resize(1280, 800);
    let console = format!("http://127.0.0.1:{}", opsbox.console_port);

    // Sign in.
    browser.goto(&console);
    browser.wait_for("the sign-in page", || browser.url().contains("/login"));
    browser.screenshot("01-sign-in");
    browser.type_into("#username", s3::ACCESS_KEY);
    browser.type_into("#password", s3::SECRET_KEY);
    browser.click("form.login button[type=submit]");

    // Three ready services on the overview.
    browser.wait_for("three ready services", || {
        browser.find_all("[data-state=ready]").len() == 3
    });
    for service in ["nats", "postgres", "s3"] {
        assert!(
            !browser
                .find_all(&format!("[data-service={service}] [data-state=ready]"))
                .is_empty()
        );
    }
    browser.screenshot("02-overview");
    browser.wait_for("the overview refreshing itself", || {
        !browser
            .find_all("#services[data-updated] [data-state=ready]")
            .is_empty()
    });

    // Create a bucket.
    browser.goto(&format!("{console}/s3"));
    browser.type_into("#bucket-name", "browser-bucket");
    browser.click("#create-title + form button[type=submit]");
    browser.wait_for("the new bucket's page", || {
        browser.url().ends_with("/s3/b/browser-bucket")
    });

    // Upload a file, see it listed, download it and compare the bytes.
    let upload = home.path().join("readings.bin");
    let bytes = s3::random_bytes(3 * 1024 * 1024 + 17);
    std::fs::write(&upload, &bytes).unwrap();
    browser.type_into("#files", &upload.display().to_string());
    browser.click("form[data-upload] button[type=submit]");
    browser.wait_for("the uploaded file in the listing", || {
        !browser.find_all("tr[data-key='readings.bin']").is_empty()
    });
    browser.screenshot("03-s3-bucket");
    browser.click("tr[data-key='readings.bin'] a[download]");
    let downloaded = downloads.join("readings.bin");
    browser.wait_for("the downloaded file", || {
        std::fs::metadata(&downloaded).is_ok_and(|m| m.len() == bytes.len() as u64)
    });
    assert!(
        std::fs::read(&downloaded).unwrap() == bytes,
        "the downloaded bytes differ from the uploaded ones"
    );

    // Delete it.
    browser.click("tr[data-key='readings.bin'] button.danger");
    browser.wait_for("the listing without the file", || {
        browser.url().contains("/s3/b/browser-bucket")
            && browser.find_all("tr[data-key='readings.bin']").is_empty()
    });
    assert!(browser.text("p.flash").contains("Deleted readings.bin"));
    let client = s3::client(opsbox.s3_port, true);
    let left = runtime
        .block_on(client.list_objects_v2().bucket("browser-bucket").send())
        .unwrap();
    assert_eq!(
        left.key_count(),
        Some(0),
        "the object is gone for S3 clients too"
    );

    // Publish to enterprise.test and see it in EVENTS.
    browser.goto(&format!("{console}/nats"));
    browser.type_into("#subject", "enterprise.test");
    browser.type_into("#payload", "{\"from\": \"the browser test\"}");
    browser.click("#publish-title + form button[type=submit]");
    browser.wait_for("the EVENTS stream page", || {
        browser.url().ends_with("/nats/s/EVENTS")
    });
    let payloads: Vec<String> = browser
        .find_all("pre.payload")
        .iter()
        .map(|e| {
            browser
                .call("GET", &format!("/element/{e}/text"), Value::Null)
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        payloads
            .iter()
            .any(|p| p == "{\"from\": \"the browser test\"}"),
        "{payloads:?}"
    );
    assert!(browser.text("p.flash").contains("stored in EVENTS"));
    browser.screenshot("04-nats-events");

    // Open a table.
    browser.goto(&format!("{console}/postgres"));
    browser.click("a[href='/postgres/historian']");
    browser.click("a[href='/postgres/historian/public/browser_readings']");
    browser.wait_for("the table's rows", || browser.source().contains("boiler-8"));
    browser.screenshot("05-postgres-table");

    // Connect page, a narrow window, dark mode.
    browser.goto(&format!("{console}/connect"));
    assert!(browser.source().contains("OPSBOX_CONSOLE_URL"));
    browser.screenshot("06-connect");
    browser.resize(420, 900);
    browser.goto(&console);
    browser.find("[data-state=ready]");
    browser.screenshot("07-overview-narrow");
    browser.resize(1280, 800);
    browser.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    browser.goto(&format!("{console}/nats/s/EVENTS"));
    browser.find("pre.payload");
    browser.screenshot("08-nats-dark");

    // Sign out.
    browser.click("form.signout button");
    browser.wait_for("the sign-in page after signing out", || {
        browser.url().contains("/login")
    });
    browser.goto(&console);
    browser.wait_for("the sign-in page for a signed-out visit", || {
        browser.url().contains("/login")
    });
}

#[test]
fn a_taken_console_port_is_named_with_the_flag_to_change_it() {
    let opsbox = Opsbox::new();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", opsbox.console_port)).unwrap();
    let output = opsbox.up_expecting_failure("s3,console");
    let text = output.stderr.as_str();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "cannot start the console: port {} on 127.0.0.1 is already in use",
            opsbox.console_port
        )),
        "{text}"
    );
    assert!(text.contains("--console-port"), "{text}");
    assert!(opsbox.run_file().is_none(), "nothing was started:\n{text}");
}

#[test]
fn a_console_port_shared_with_a_service_is_a_usage_error() {
    let mut opsbox = Opsbox::new();
    opsbox.console_port = opsbox.nats_port;
    let output = opsbox.up_expecting_failure("nats,console");
    let text = output.stderr.as_str();
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "the console and nats are both configured to use port {}",
            opsbox.nats_port
        )),
        "{text}"
    );
}

#[test]
fn services_without_console_leave_the_console_out() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("s3");
    opsbox.wait_ready(&mut up, STARTUP);
    let run = opsbox.run_file().unwrap();
    assert!(run.get("console_url").is_none(), "{run}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", opsbox.console_port)).is_err(),
        "nothing listens on the console port"
    );
    let env = opsbox.run(&["env"]);
    assert!(!env.stdout.contains("OPSBOX_CONSOLE_URL"));
}

/// Peak resident memory of a process, in bytes (VmHWM).
fn peak_memory(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_large_upload_is_streamed_not_buffered() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("s3,console");
    opsbox.wait_ready(&mut up, STARTUP);
    let mut visitor = Visitor::new(opsbox.console_port);
    assert_eq!(visitor.sign_in(s3::SECRET_KEY).status, 303);
    let csrf = hidden_value(&visitor.get("/").body, "csrf").unwrap();
    let file = opsbox.home.path().join("large.bin");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let block = s3::random_bytes(1024 * 1024);
        for _ in 0..SIZE / (1024 * 1024) {
            out.write_all(&block).unwrap();
        }
    }
    let before = peak_memory(up.pid());
    let request = visitor
        .client
        .put(format!(
            "{}/s3/b/historian/upload?key=large.bin",
            visitor.base
        ))
        .header("x-csrf-token", &csrf)
        .timeout(Duration::from_secs(600))
        .body(reqwest::blocking::Body::from(
            std::fs::File::open(&file).unwrap(),
        ));
    let stored = visitor.send(request);
    assert_eq!(stored.status, 201, "{}", stored.body);
    let grown = peak_memory(up.pid()).saturating_sub(before);
    assert!(
        grown < SIZE / 4,
        "opsbox's peak memory grew by {} MiB for a {} MiB upload",
        grown >> 20,
        SIZE >> 20
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let head = runtime
        .block_on(
            s3::client(opsbox.s3_port, true)
                .head_object()
                .bucket(s3::BUCKET)
                .key("large.bin")
                .send(),
        )
        .unwrap();
    assert_eq!(head.content_length(), Some(SIZE as i64));
}
