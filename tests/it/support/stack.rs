//! Running the real `opsbox` binary as a subprocess with its own ports, data dir and project,
//! sharing one binary cache between tests (filled through the same fetch path users get).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opsbox::state::StateDir;
use serde_json::Value;

use super::{Outcome, free_port, repo, shared_cache, temp_dir};

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
    /// A project using the repository's own ops/ files and the shared binary cache.
    pub fn new() -> Self {
        Self::with_project(repo())
    }

    /// A project in `project` using the shared binary cache.
    pub fn with_project(project: PathBuf) -> Self {
        Self::at(project, None)
    }

    /// A project using the repository's own ops/ files and a cache of its own, for tests that
    /// start no service and must not touch the shared cache.
    pub fn with_own_cache() -> Self {
        Self::at(repo(), Some("cache"))
    }

    fn at(project: PathBuf, own_cache: Option<&str>) -> Self {
        let home = temp_dir();
        let data_dir = home.path().join("data");
        let cache_dir = match own_cache {
            Some(name) => home.path().join(name),
            None => shared_cache(),
        };
        Self {
            project,
            data_dir,
            cache_dir,
            nats_port: free_port(),
            nats_monitor_port: free_port(),
            postgres_port: free_port(),
            s3_port: free_port(),
            console_port: free_port(),
            home,
        }
    }

    pub fn state(&self) -> StateDir {
        StateDir::new(self.data_dir.clone())
    }

    /// `opsbox` with this project's global flags, no stdin, and nothing from the caller's
    /// environment that would change its settings.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_opsbox"));
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("OPSBOX_") || name == "GITHUB_ENV" {
                command.env_remove(&key);
            }
        }
        command
            .env("OPSBOX_CACHE_DIR", &self.cache_dir)
            .env("NO_COLOR", "1")
            .arg("--project-dir")
            .arg(&self.project)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null());
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

    /// Run `opsbox args` to completion.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_env(args, &[])
    }

    /// Run `opsbox args` to completion with these variables set.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Outcome {
        let mut command = self.command();
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run opsbox {args:?}: {e}"));
        output.into()
    }

    /// `opsbox up` with these services, in the foreground, as a child process.
    pub fn up_foreground(&self, services: &str) -> Foreground {
        let log = self
            .home
            .path()
            .join(format!("up-{}.log", Instant::now().elapsed().as_nanos()));
        let mut command = self.command();
        command
            .arg("up")
            .arg("--services")
            .arg(services)
            .args(self.port_args());
        Foreground::spawn(&mut command, log)
    }

    /// `opsbox up` with these services in the foreground, once every service is ready.
    pub fn start(&self, services: &str, within: Duration) -> Foreground {
        let mut up = self.up_foreground(services);
        self.wait_ready(&mut up, within);
        up
    }

    /// `opsbox up` with this project's ports and `args`, run to completion (`-d`, or a start
    /// that is expected to fail).
    pub fn up(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        let ports = self.port_args();
        all.extend(ports.iter().map(String::as_str));
        self.run(&all)
    }

    /// `opsbox up` in the foreground for a start that is expected to fail: its outcome.
    pub fn up_expecting_failure(&self, services: &str) -> Outcome {
        self.up(&["--services", services])
    }

    /// `opsbox up -d` with these services; asserts it succeeded.
    pub fn up_detached(&self, services: &str) -> Outcome {
        let outcome = self.up(&["-d", "--services", services]);
        outcome.expect_code(0, &format!("opsbox up -d --services {services}"));
        outcome
    }

    /// `opsbox status --json`: its exit code and the parsed report.
    pub fn status_json(&self) -> (Option<i32>, Value) {
        let outcome = self.run(&["status", "--json"]);
        let value = serde_json::from_str(&outcome.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json did not print JSON ({e}):\n{}\n{}",
                outcome.stdout, outcome.stderr
            )
        });
        (outcome.status.code(), value)
    }

    /// Write `text` as the log of `name` (a service or `opsbox`).
    pub fn write_log(&self, name: &str, text: &str) -> PathBuf {
        let path = self.state().logs().join(format!("{name}.log"));
        std::fs::create_dir_all(self.state().logs()).expect("create the logs dir");
        std::fs::write(&path, text).expect("write a log");
        path
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
    /// Spawn `command` (an `opsbox up` in the foreground) with its stderr in `log`.
    pub fn spawn(command: &mut Command, log: PathBuf) -> Self {
        let stderr =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {command:?}: {e}"));
        Self { child, log }
    }

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
