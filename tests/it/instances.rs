//! Many stacks on one host: named instances (`-p`), `--ports auto`, `opsbox ls`, `down --all`,
//! git worktrees as instances, and eight first-time fetches sharing one cache. Real processes
//! throughout; each test has its own data root (OPSBOX_DATA_ROOT), so `ls` sees only its own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::artifacts::{self, Damage, NATS_VERSION, POSTGRES_VERSION};
use crate::support::mirror::Mirror;
use crate::support::s3;
use crate::support::{project_copy, shared_cache, temp_dir as open_temp_dir};

/// How long `up -d` may wait for readiness: eight stacks on two shared cores are slow
/// (measured about a minute for all eight; this is far above 3x that).
const WAIT_TIMEOUT: &str = "600";

/// One host's worth of instances: a data root and the shared binary cache.
struct Host {
    root: tempfile::TempDir,
    project: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        Host {
            root: open_temp_dir(),
            project: project_copy(),
        }
    }

    /// `opsbox` with this host's data root, run from `cwd`, with a clean opsbox environment.
    fn command_in(&self, cwd: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_opsbox"));
        for (key, _) in std::env::vars() {
            if key.starts_with("OPSBOX_") {
                command.env_remove(key);
            }
        }
        command
            .current_dir(cwd)
            .env("OPSBOX_CACHE_DIR", shared_cache())
            .env("OPSBOX_DATA_ROOT", self.root.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    fn command(&self) -> Command {
        self.command_in(self.project.path())
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// `opsbox ls --json`.
    fn ls(&self) -> Vec<Value> {
        let output = self.run(&["ls", "--json"]);
        assert!(
            output.status.success(),
            "ls failed: {}",
            text(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn instance(&self, name: &str) -> Value {
        self.ls()
            .into_iter()
            .find(|row| row["name"] == name)
            .unwrap_or_else(|| panic!("`opsbox ls` does not list `{name}`: {:?}", self.ls()))
    }

    /// `-p other up -d` of NATS alone on `port`, which must be refused; its stderr.
    fn refused_nats_port(&self, port: &str) -> String {
        let output = self.run(&[
            "-p",
            "other",
            "up",
            "-d",
            "--services",
            "nats",
            "--nats-port",
            port,
        ]);
        assert!(!output.status.success(), "port {port} was not refused");
        text(&output.stderr)
    }

    /// Start `up -d` for every argument list at the same moment; assert every one succeeded.
    fn up_all_at_once(&self, runs: Vec<(Command, Vec<String>)>) -> Duration {
        let began = Instant::now();
        let children: Vec<(Child, PathBuf)> = runs
            .into_iter()
            .enumerate()
            .map(|(index, (mut command, args))| {
                let log = self.root.path().join(format!(".up-{index}.log"));
                let child = command
                    .args(["up", "-d", "--wait-timeout", WAIT_TIMEOUT])
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap();
                (child, log)
            })
            .collect();
        for (mut child, log) in children {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "opsbox up -d failed ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        began.elapsed()
    }

    fn up_named(&self, names: &[String], extra: &[&str]) -> Duration {
        let runs = names
            .iter()
            .map(|name| {
                let mut args = vec!["--ports".into(), "auto".into(), "-p".into(), name.clone()];
                args.extend(extra.iter().map(|a| a.to_string()));
                (self.command(), args)
            })
            .collect();
        self.up_all_at_once(runs)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Never leave a stack running after a test, whatever happened.
        let _ = self
            .command()
            .args(["down", "--all", "--timeout", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The ports of an `ls` row, by slot.
fn ports(row: &Value) -> Vec<(String, u16)> {
    row["ports"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(slot, port)| (slot.clone(), port.as_u64().unwrap() as u16))
        .collect()
}

fn port(row: &Value, slot: &str) -> u16 {
    row["ports"][slot]
        .as_u64()
        .unwrap_or_else(|| panic!("no {slot} port in {row}")) as u16
}

/// Every port of every row, asserting none appears twice.
fn assert_all_distinct(rows: &[Value], per_instance: usize) {
    let mut seen = HashSet::new();
    for row in rows {
        let ports = ports(row);
        assert_eq!(ports.len(), per_instance, "{row}");
        for (slot, port) in ports {
            assert!(
                seen.insert(port),
                "port {port} ({slot} of `{}`) was handed out twice: {rows:?}",
                row["name"]
            );
        }
    }
}

async fn postgres(port: u16) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password("postgres")
        .dbname("historian")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to postgres on {port}: {e}"));
    tokio::spawn(connection);
    client
}

async fn events_messages(port: u16) -> u64 {
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream("EVENTS").await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_instances_started_at_once_are_ready_on_distinct_ports_and_isolated() {
    let host = Host::new();
    let names: Vec<String> = (1..=8).map(|i| format!("ci-{i}")).collect();
    let took = host.up_named(&names, &[]);
    eprintln!("eight `up -d --ports auto -p ci-N` started at once: all ready after {took:?}");

    let rows = host.ls();
    assert_eq!(rows.len(), 8, "{rows:?}");
    for row in &rows {
        assert_eq!(row["state"], "running", "{row}");
        assert!(row["disk_bytes"].as_u64().unwrap() > 0, "{row}");
    }
    // nats, nats-monitor, postgres, s3 and the console: 8 x 5 ports, none twice.
    assert_all_distinct(&rows, 5);

    // A row, a message and an object written to instance 1 ...
    let first = host.instance("ci-1");
    let pg = postgres(port(&first, "postgres")).await;
    pg.batch_execute(
        "CREATE TABLE isolation_probe (id int); INSERT INTO isolation_probe VALUES (1)",
    )
    .await
    .unwrap();
    let nats = async_nats::connect(format!("nats://127.0.0.1:{}", port(&first, "nats")))
        .await
        .unwrap();
    async_nats::jetstream::new(nats)
        .publish("enterprise.isolation", "probe".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let s3_first = s3::client(port(&first, "s3"), true);
    s3_first
        .create_bucket()
        .bucket("isolation")
        .send()
        .await
        .unwrap();
    s3_first
        .put_object()
        .bucket("isolation")
        .key("probe")
        .body(b"probe".to_vec().into())
        .send()
        .await
        .unwrap();
    let count: i64 = pg
        .query_one("SELECT count(*) FROM isolation_probe", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
    assert_eq!(events_messages(port(&first, "nats")).await, 1);

    // ... are absent from the other seven.
    for name in &names[1..] {
        let row = host.instance(name);
        let absent: bool = postgres(port(&row, "postgres"))
            .await
            .query_one("SELECT to_regclass('isolation_probe') IS NULL", &[])
            .await
            .unwrap()
            .get(0);
        assert!(absent, "`{name}` has instance 1's table");
        assert_eq!(
            events_messages(port(&row, "nats")).await,
            0,
            "`{name}` has instance 1's message"
        );
        let head = s3::client(port(&row, "s3"), false)
            .head_object()
            .bucket("isolation")
            .key("probe")
            .send()
            .await;
        assert!(head.is_err(), "`{name}` has instance 1's object");
    }

    // `down -v` of one leaves the other seven ready.
    let down = host.run(&["-p", "ci-2", "down", "-v"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(!host.root.path().join("ci-2").exists());
    for name in names.iter().filter(|n| *n != "ci-2") {
        let status = host.run(&["-p", name, "status", "--json"]);
        assert!(
            status.status.success(),
            "`{name}`: {}",
            text(&status.stderr)
        );
        let report: Value = serde_json::from_slice(&status.stdout).unwrap();
        for service in report["services"].as_array().unwrap() {
            assert_eq!(service["state"], "ready", "`{name}`: {report}");
        }
    }
    let rows = host.ls();
    assert_eq!(rows.len(), 7, "{rows:?}");

    // `down --all` stops the rest; their data stays, listed as stopped.
    let down = host.run(&["down", "--all"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let rows = host.ls();
    assert_eq!(rows.len(), 7, "{rows:?}");
    for row in &rows {
        assert_eq!(row["state"], "stopped", "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_last_used_the_same_ports_start_at_once_on_distinct_ports() {
    let host = Host::new();
    // Eight instances whose instance.json all name the same (free) ports: each start tries
    // them first, at the same moment.
    let free: Vec<u16> = (0..4)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        })
        .collect();
    let names: Vec<String> = (1..=8).map(|i| format!("same-{i}")).collect();
    for name in &names {
        let dir = host.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let record = serde_json::json!({
            "name": name,
            "project_dir": host.project.path(),
            "auto_ports": true,
            "ports": {"nats": free[0], "nats-monitor": free[1], "s3": free[2], "console": free[3]},
            "started_at": 0,
        });
        std::fs::write(dir.join("instance.json"), record.to_string()).unwrap();
    }
    let took = host.up_named(&names, &["--services", "nats,s3,console"]);
    eprintln!("eight nats+s3 instances with the same last ports: all ready after {took:?}");
    let rows = host.ls();
    assert_eq!(rows.len(), 8);
    for row in &rows {
        assert_eq!(row["state"], "running", "{row}");
    }
    assert_all_distinct(&rows, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worktrees_of_one_repository_are_two_instances_without_flags() {
    let host = Host::new();
    let repo = host.project.path();
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .current_dir(repo)
            .args(["-c", "user.email=t@example.invalid", "-c", "user.name=t"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            text(&output.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "ops"]);
    git(&["commit", "-qm", "ops"]);
    let second = open_temp_dir();
    let worktree = second.path().join("feature");
    git(&["worktree", "add", "-q", worktree.to_str().unwrap()]);

    let took = host.up_all_at_once(vec![
        (host.command_in(repo), vec!["--ports".into(), "auto".into()]),
        (
            host.command_in(&worktree),
            vec!["--ports".into(), "auto".into()],
        ),
    ]);
    eprintln!("two worktrees: both ready after {took:?}");
    let rows = host.ls();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let projects: HashSet<PathBuf> = rows
        .iter()
        .map(|row| PathBuf::from(row["project_dir"].as_str().unwrap()))
        .collect();
    let expected: HashSet<PathBuf> = [
        repo.canonicalize().unwrap(),
        worktree.canonicalize().unwrap(),
    ]
    .into_iter()
    .collect();
    let found: HashSet<PathBuf> = projects.iter().map(|p| p.canonicalize().unwrap()).collect();
    assert_eq!(found, expected);
    for row in &rows {
        assert_eq!(row["state"], "running", "{row}");
    }
    assert_all_distinct(&rows, 5);
    // Each worktree's commands find its own instance with no flag.
    for dir in [repo.to_path_buf(), worktree.clone()] {
        let env = host
            .command_in(&dir)
            .args(["env", "--format", "json"])
            .output()
            .unwrap();
        assert!(env.status.success(), "{}", text(&env.stderr));
        let vars: Value = serde_json::from_slice(&env.stdout).unwrap();
        let nats_url = vars["NATS_URL"].as_str().unwrap();
        let own = rows
            .iter()
            .find(|r| {
                PathBuf::from(r["project_dir"].as_str().unwrap())
                    .canonicalize()
                    .unwrap()
                    == dir.canonicalize().unwrap()
            })
            .unwrap();
        assert_eq!(nats_url, format!("nats://127.0.0.1:{}", port(own, "nats")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_gets_its_ports_back_after_down_when_they_are_free() {
    let host = Host::new();
    let name = vec!["stable".to_string()];
    let services = ["--services", "nats,s3,console"];
    host.up_named(&name, &services);
    let before = ports(&host.instance("stable"));
    assert_eq!(before.len(), 4);
    let env = host.run(&["-p", "stable", "env", "--format", "json"]);
    let vars: Value = serde_json::from_slice(&env.stdout).unwrap();
    assert_eq!(
        vars["AWS_ENDPOINT_URL"],
        format!("http://127.0.0.1:{}", port(&host.instance("stable"), "s3"))
    );

    assert!(host.run(&["-p", "stable", "down"]).status.success());
    assert_eq!(host.instance("stable")["state"], "stopped");
    host.up_named(&name, &services);
    assert_eq!(
        ports(&host.instance("stable")),
        before,
        "same ports after down + up"
    );

    // A port taken by someone else meanwhile is replaced; the others stay.
    assert!(host.run(&["-p", "stable", "down"]).status.success());
    let s3_port = port(&host.instance("stable"), "s3");
    let squatter = std::net::TcpListener::bind(("127.0.0.1", s3_port)).unwrap();
    host.up_named(&name, &services);
    let after = ports(&host.instance("stable"));
    for (slot, port) in &after {
        if slot == "s3" {
            assert_ne!(*port, s3_port, "s3 kept a port someone else holds");
        } else {
            assert!(
                before.contains(&(slot.clone(), *port)),
                "{slot} moved: {after:?}"
            );
        }
    }
    drop(squatter);
}

#[test]
fn a_compose_port_held_by_another_instance_names_it() {
    let host = Host::new();
    host.up_named(&["holder".to_string()], &["--services", "nats"]);
    let nats_port = port(&host.instance("holder"), "nats").to_string();
    let stderr = host.refused_nats_port(&nats_port);
    assert!(
        stderr.contains(&format!(
            "port {nats_port} on 127.0.0.1 is already in use: it is held by opsbox instance `holder` (dir {})",
            host.root.path().join("holder").display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("`opsbox -p holder down`"), "{stderr}");
    assert!(stderr.contains("--ports auto"), "{stderr}");
}

#[test]
fn an_instance_whose_data_dir_is_elsewhere_is_listed_named_and_stopped_with_the_rest() {
    let host = Host::new();
    let elsewhere = open_temp_dir();
    let dir = elsewhere.path().join("side");
    let dir_arg = dir.to_str().unwrap();
    let output = host
        .command()
        .args(["--data-dir", dir_arg, "up", "-d", "--ports", "auto"])
        .args(["--services", "nats", "--wait-timeout", WAIT_TIMEOUT])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let row = |rows: Vec<Value>| rows.into_iter().find(|row| row["data_dir"] == dir_arg);
    let listed =
        row(host.ls()).unwrap_or_else(|| panic!("`ls` does not list {dir_arg}: {:?}", host.ls()));
    assert_eq!(listed["name"], "side");
    assert_eq!(listed["state"], "running");

    // Its port is named with the way to reach it.
    let nats_port = port(&listed, "nats").to_string();
    let stderr = host.refused_nats_port(&nats_port);
    assert!(
        stderr.contains("held by opsbox instance `side`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("`opsbox --data-dir {dir_arg} down`")),
        "{stderr}"
    );

    assert!(host.run(&["down", "--all"]).status.success());
    assert_eq!(
        row(host.ls()).expect("still listed when stopped")["state"],
        "stopped"
    );
    let output = host
        .command()
        .args(["--data-dir", dir_arg, "down", "-v"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        row(host.ls()).is_none(),
        "listed after down -v: {:?}",
        host.ls()
    );
}

#[test]
fn an_invalid_instance_name_is_refused_with_the_rule() {
    let host = Host::new();
    let output = host.run(&["-p", "Bad Name", "status"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("invalid instance name `Bad Name`"),
        "{stderr}"
    );
    assert!(stderr.contains("lowercase letters, digits"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_first_fetches_into_an_empty_cache_download_each_binary_once() {
    let root = tempfile::tempdir().unwrap();
    let nats_path = artifacts::write_nats_release(root.path(), NATS_VERSION, Damage::None);
    let postgres_path =
        artifacts::write_postgres_release(root.path(), POSTGRES_VERSION, Damage::None);
    let mirror = Mirror::start(root.path().to_path_buf()).await;
    let cache = open_temp_dir();
    let base = mirror.base.clone();
    let cache_dir = cache.path().to_path_buf();
    let outputs = tokio::task::spawn_blocking(move || {
        let children: Vec<Child> = (0..8)
            .map(|_| {
                let mut command = Command::new(env!("CARGO_BIN_EXE_opsbox"));
                for (key, _) in std::env::vars() {
                    if key.starts_with("OPSBOX_") {
                        command.env_remove(key);
                    }
                }
                command
                    .env("NO_COLOR", "1")
                    .arg("--cache-dir")
                    .arg(&cache_dir)
                    .args(["fetch", "--mirror", &base])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|child| child.wait_with_output().unwrap())
            .collect::<Vec<Output>>()
    })
    .await
    .unwrap();
    for output in &outputs {
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    assert_eq!(mirror.requests_for(&nats_path), 1, "nats-server downloads");
    assert_eq!(
        mirror.requests_for(&postgres_path),
        1,
        "PostgreSQL downloads"
    );
    // Every entry carries its verification record and runs.
    let nats = cache.path().join("nats-server").join(NATS_VERSION);
    let postgres = cache.path().join("postgresql").join(POSTGRES_VERSION);
    for entry in [&nats, &postgres] {
        assert!(
            entry.join(".opsbox-verified").is_file(),
            "{}",
            entry.display()
        );
    }
    let version = Command::new(nats.join("nats-server"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(text(&version.stdout).contains(NATS_VERSION));
    let version = Command::new(postgres.join("bin/postgres"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(text(&version.stdout).contains("16."), "{version:?}");
}
