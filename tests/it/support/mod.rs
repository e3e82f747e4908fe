//! Test fixtures, one copy each: free ports, temp and project directories, the shared binary
//! cache, the outcome of a command, polling with a deadline; and in the submodules the real
//! `opsbox` binary (`stack`), stand-in processes (`stand_ins`), S3 clients and an in-process S3
//! endpoint (`s3`, `endpoint`), a loopback mirror, real upstream-layout artifacts, a recording
//! reporter.

pub mod artifacts;
pub mod endpoint;
pub mod mirror;
pub mod processes;
pub mod recorder;
pub mod s3;
pub mod stack;
pub mod stand_ins;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The repository, whose ops/ is the project most tests run against.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port nothing listens on, never handed out twice in this test process.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        if taken.insert(port) {
            return port;
        }
    }
}

/// A temp dir with mode 0755 (tempfile makes 0700, which the unprivileged PostgreSQL account
/// could not traverse when the tests run as root).
pub fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("opsbox-it-")
        .tempdir()
        .expect("create a temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755 the temp dir");
    dir
}

/// `target/<name>`, created: where the tests keep what outlives one run.
pub fn target_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The binary cache shared by every test run (under target/, reachable by the unprivileged
/// PostgreSQL account when the tests run as root); `OPSBOX_IT_CACHE_DIR` names another one.
pub fn shared_cache() -> PathBuf {
    let dir = match std::env::var_os("OPSBOX_IT_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir("test-cache"),
    };
    std::fs::create_dir_all(&dir).expect("create the shared test cache");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755 the shared test cache");
    dir
}

/// A copy of the repository's ops/ directory in a temp project, to change per test.
pub fn project_copy() -> tempfile::TempDir {
    let project = temp_dir();
    copy_dir(&repo().join("ops"), &project.path().join("ops"));
    project
}

/// Copy the tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// Every file under `dir`, recursively and sorted (none when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// sha256 of every file under `dir`, by relative path: to prove a directory was not touched.
pub fn tree_digest(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = files_under(dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
            let relative = path.strip_prefix(dir).expect("under dir").to_path_buf();
            (relative, s3::sha256_hex(&bytes))
        })
        .collect();
    out.sort();
    out
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

/// Run `command` to success and return its stdout; a missing program fails with the package
/// to install.
pub fn run_tool(command: &mut Command, install_hint: &str) -> Vec<u8> {
    let program = command.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` is not installed: {install_hint} (tests/run-all.sh does this)")
        }
        Err(e) => panic!("cannot run `{program}`: {e}"),
    };
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// What a finished command said, as text.
#[derive(Debug)]
pub struct Outcome {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(output: Output) -> Self {
        Self {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Outcome {
    /// Assert the exit code, showing everything the command said when it differs.
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what}: expected exit code {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}
