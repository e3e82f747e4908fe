//! Helpers for running the real `opsbox` binary against temp data and cache directories, free
//! ports, and stand-in processes for a supervisor and its children.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opsbox::state::{RunFile, ServiceRecord, ServiceState, StateDir, StateLock};
use opsbox::types::ProcessIdentity;
use opsbox::types::ServiceName;

/// The repository, whose ops/ is the project every test runs against.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A temp dir; 0755 when root, so the unprivileged PostgreSQL account can traverse it.
pub fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("opsbox-it-")
        .tempdir()
        .expect("create a temp dir");
    if is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 0755 the temp dir");
    }
    dir
}

/// A TCP port nobody listens on, never handed out twice in this test process.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        if taken.insert(port) {
            return port;
        }
    }
}

/// The result of one `opsbox` run.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Assert the exit code, showing everything the command said when it differs.
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: expected exit code {code}, got {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// One project: the repository's ops/ with its own data and cache directories.
pub struct Project {
    pub temp: tempfile::TempDir,
    pub project_dir: PathBuf,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
}

impl Project {
    pub fn new() -> Self {
        Self::with_project_dir(repo())
    }

    pub fn with_project_dir(project_dir: PathBuf) -> Self {
        let temp = temp_dir();
        let data_dir = temp.path().join("data");
        // A shared cache saves downloads across runs of the tests that start a stack.
        let cache_dir = std::env::var_os("OPSBOX_IT_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| temp.path().join("cache"));
        Self {
            temp,
            project_dir,
            data_dir,
            cache_dir,
        }
    }

    pub fn state(&self) -> StateDir {
        StateDir::new(self.data_dir.clone())
    }

    /// `opsbox` with this project's directories and nothing from the caller's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_opsbox"));
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("OPSBOX_") || key_text == "GITHUB_ENV" {
                command.env_remove(&key);
            }
        }
        command
            .arg("--project-dir")
            .arg(&self.project_dir)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("OPSBOX_CACHE_DIR", &self.cache_dir)
            .env("NO_COLOR", "1")
            .args(args)
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Outcome {
        let output = self
            .command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run opsbox {args:?}: {e}"));
        Outcome::from(output)
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Outcome {
        let mut command = self.command(args);
        for (key, value) in env {
            command.env(key, value);
        }
        Outcome::from(command.output().expect("run opsbox"))
    }

    pub fn write_log(&self, name: &str, text: &str) -> PathBuf {
        let path = self.state().logs().join(format!("{name}.log"));
        std::fs::create_dir_all(self.state().logs()).expect("create the logs dir");
        std::fs::write(&path, text).expect("write a log");
        path
    }
}

/// Poll `done` every 10 ms up to `timeout`; panic with `what` (a sentence saying what did not
/// happen) when it never holds.
pub fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process that holds the project's lock like a supervisor (a shell that takes the flock
/// and becomes `sleep`), and dies on SIGTERM.
pub struct FakeSupervisor {
    pub child: Child,
    pub identity: ProcessIdentity,
}

impl FakeSupervisor {
    pub fn start(project: &Project) -> Self {
        let state = project.state();
        state.create().expect("create the data dir");
        let script = format!(
            "exec 9>>'{}' && flock -n 9 && exec sleep 300",
            state.lock_file().display()
        );
        let child = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn bash holding the lock");
        let pid = child.id() as i32;
        wait_for(
            Duration::from_secs(5),
            "the stand-in supervisor did not take the lock",
            || StateLock::is_held(&state),
        );
        let identity = ProcessIdentity::of(pid).expect("the stand-in supervisor is alive");
        Self { child, identity }
    }

    /// Whether it exited (reaping it, so a dead one is not a zombie).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for FakeSupervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in service process leading its own process group, like the children opsbox spawns.
pub struct FakeChild {
    pub child: Child,
    pub identity: ProcessIdentity,
}

impl FakeChild {
    pub fn start() -> Self {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sleep")
            .arg("300")
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let identity = ProcessIdentity::of(child.id() as i32).expect("sleep is alive");
        Self { child, identity }
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for FakeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A run file for `project` naming `supervisor` and the given services.
pub fn run_file(
    project: &Project,
    supervisor: ProcessIdentity,
    services: Vec<(ServiceName, ServiceState, Option<ProcessIdentity>)>,
) -> RunFile {
    let state = project.state();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    RunFile {
        opsbox_version: env!("CARGO_PKG_VERSION").into(),
        supervisor,
        started_at: now - 200,
        detached: true,
        project_dir: Some(project.project_dir.clone()),
        data_dir: project.data_dir.clone(),
        host: "127.0.0.1".into(),
        console_url: None,
        services: services
            .into_iter()
            .enumerate()
            .map(|(index, (name, state_now, process))| ServiceRecord {
                name,
                state: state_now,
                process,
                url: format!("http://127.0.0.1:{}", 41000 + index),
                port: 41000 + index as u16,
                started_at: Some(now - 192),
                data_dir: state.service_data(name),
                log: state.log(Some(name)),
                restarts: 0,
                last_error: None,
                last_exit: None,
                next_start_at_ms: None,
                restart_reason: None,
            })
            .collect(),
    }
}

/// A stack started with `opsbox up -d` on free ports; stopped (with its data) when dropped.
pub struct Stack {
    pub project: Project,
    pub nats_port: u16,
    pub nats_monitor_port: u16,
    pub postgres_port: u16,
    pub s3_port: u16,
    pub console_port: u16,
}

impl Stack {
    pub fn up() -> Self {
        let mut project = Project::new();
        if std::env::var_os("OPSBOX_IT_CACHE_DIR").is_none() {
            // The cache the other test binary fills through the real fetch path.
            let shared = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .expect("target dir")
                .join("test-cache");
            std::fs::create_dir_all(&shared).expect("create the shared test cache");
            project.cache_dir = shared;
        }
        let stack = Self {
            project,
            nats_port: free_port(),
            nats_monitor_port: free_port(),
            postgres_port: free_port(),
            s3_port: free_port(),
            console_port: free_port(),
        };
        stack
            .up_again()
            .expect_code(0, "opsbox up -d did not start the stack");
        stack
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

    /// `opsbox up -d` with this stack's ports.
    pub fn up_again(&self) -> Outcome {
        let mut args = vec!["up".to_string(), "-d".into()];
        args.extend(self.port_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.project.run(&args)
    }

    /// `opsbox status --json`, parsed.
    pub fn status(&self) -> (Option<i32>, serde_json::Value) {
        let outcome = self.project.run(&["status", "--json"]);
        let value = serde_json::from_str(&outcome.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json did not print JSON ({e}):\n{}\n{}",
                outcome.stdout, outcome.stderr
            )
        });
        (outcome.code, value)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.project.run(&["down", "--timeout", "10"]);
    }
}
