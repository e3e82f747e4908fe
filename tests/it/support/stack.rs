//! Running the real `opsbox` binary as a subprocess with its own ports, data dir and project,
//! sharing one binary cache between tests (filled through the same fetch path users get).

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port nothing listens on, never handed out twice in this test process.
pub fn free_port() -> u16 {
    let mut taken = PORTS.lock().unwrap();
    let taken = taken.get_or_insert_with(HashSet::new);
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if taken.insert(port) {
            return port;
        }
    }
}

/// The binary cache shared by every test run (under target/, reachable by the unprivileged
/// PostgreSQL account when the tests run as root).
pub fn shared_cache() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-cache");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A temp dir with mode 0755 (tempfile makes 0700, which the PostgreSQL account could not
/// traverse when tests run as root).
pub fn open_temp_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A copy of the repository's ops/ directory in a temp project, to change per test.
pub fn project_copy() -> tempfile::TempDir {
    let project = open_temp_dir();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops");
    copy_dir(&source, &project.path().join("ops"));
    project
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// One opsbox project under test.
pub struct Opsbox {
    pub home: tempfile::TempDir,
    pub project: PathBuf,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub nats_port: u16,
    pub nats_monitor_port: u16,
    pub postgres_port: u16,
    pub s3_port: u16,
    pub console_port: u16,
}

impl Opsbox {
    /// A project using the repository's own ops/ files.
    pub fn new() -> Self {
        Self::with_project(Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
    }

    pub fn with_project(project: PathBuf) -> Self {
        let home = open_temp_dir();
        let data_dir = home.path().join("data");
        Self {
            project,
            data_dir,
            cache_dir: shared_cache(),
            nats_port: free_port(),
            nats_monitor_port: free_port(),
            postgres_port: free_port(),
            s3_port: free_port(),
            console_port: free_port(),
            home,
        }
    }

    /// `opsbox` with this project's global flags and a clean environment for opsbox settings.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_opsbox"));
        for (key, _) in std::env::vars() {
            if key.starts_with("OPSBOX_") {
                command.env_remove(key);
            }
        }
        command
            .env("OPSBOX_CACHE_DIR", &self.cache_dir)
            .env("NO_COLOR", "1")
            .arg("--project-dir")
            .arg(&self.project)
            .arg("--data-dir")
            .arg(&self.data_dir);
        command
    }

    pub fn port_args(&self) -> Vec<String> {
        vec![
            "--nats-port".into(),
            self.nats_port.to_string(),
            "--nats-monitor-port".into(),
            self.nats_monitor_port.to_string(),
            "--postgres-port".into(),
            self.postgres_port.to_string(),
            "--s3-port".into(),
            self.s3_port.to_string(),
            "--console-port".into(),
            self.console_port.to_string(),
        ]
    }

    /// Run a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `opsbox up` with these services, in the foreground, as a child process.
    pub fn up_foreground(&self, services: &str) -> Foreground {
        let log = self
            .home
            .path()
            .join(format!("up-{}.log", Instant::now().elapsed().as_nanos()));
        let stderr = std::fs::File::create(&log).unwrap();
        let child = self
            .command()
            .arg("up")
            .arg("--services")
            .arg(services)
            .args(self.port_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Foreground { child, log }
    }

    /// `opsbox up` in the foreground for a start that is expected to fail: its output.
    pub fn up_expecting_failure(&self, services: &str) -> Output {
        self.command()
            .args(["up", "--services", services])
            .args(self.port_args())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `opsbox up -d` with these services; asserts it succeeded.
    pub fn up_detached(&self, services: &str) -> Output {
        let output = self
            .command()
            .args(["up", "-d", "--services", services])
            .args(self.port_args())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "opsbox up -d --services {services} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    pub fn run_file(&self) -> Option<Value> {
        let bytes = std::fs::read(self.data_dir.join("run.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Wait until the run file says every service is ready.
    pub fn wait_ready(&self, foreground: &mut Foreground, within: Duration) {
        let began = Instant::now();
        loop {
            if let Some(run) = self.run_file() {
                let services = run["services"].as_array().cloned().unwrap_or_default();
                let ours = run["supervisor"]["pid"].as_i64() == Some(foreground.pid() as i64);
                if ours && !services.is_empty() && services.iter().all(|s| s["state"] == "ready") {
                    return;
                }
            }
            if let Ok(Some(status)) = foreground.child.try_wait() {
                panic!(
                    "opsbox up exited ({status}) before every service was ready:\n{}",
                    foreground.stderr()
                );
            }
            assert!(
                began.elapsed() < within,
                "opsbox up did not report every service ready within {within:?}:\n{}",
                foreground.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.nats_port)
    }

    pub fn postgres_config(&self, password: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.postgres_port)
            .user("postgres")
            .password(password)
            .dbname("historian");
        config
    }

    pub async fn postgres(&self) -> tokio_postgres::Client {
        let (client, connection) = self
            .postgres_config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot connect to postgres on {}: {e}", self.postgres_port)
            });
        tokio::spawn(connection);
        client
    }
}

impl Drop for Opsbox {
    fn drop(&mut self) {
        // Never leave a stack running after a test, whatever happened.
        let _ = self
            .command()
            .args(["down", "--timeout", "10"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A foreground `opsbox up`.
pub struct Foreground {
    pub child: Child,
    pub log: PathBuf,
}

impl Foreground {
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `signal` and wait for the exit, at most `within`.
    pub fn stop(
        &mut self,
        signal: nix::sys::signal::Signal,
        within: Duration,
    ) -> std::process::ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                began.elapsed() < within,
                "opsbox up did not exit within {within:?} after {signal}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid()),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.child.wait();
        }
    }
}

/// sha256 of every file under `dir`, by relative path: to prove a directory was not touched.
pub fn tree_digest(dir: &Path) -> Vec<(PathBuf, String)> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    hex::encode(Sha256::digest(&bytes)),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Cut the EVENTS stream's message block file to half its length (a store that lost its tail);
/// returns the stream's `msgs` directory. The stack must be stopped.
pub fn halve_events_block(opsbox: &Opsbox) -> PathBuf {
    let msgs = opsbox
        .data_dir
        .join("nats/jetstream/jetstream/$G/streams/EVENTS/msgs");
    let block = std::fs::read_dir(&msgs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "blk"))
        .expect("a message block file");
    let length = std::fs::metadata(&block).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&block)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    msgs
}
