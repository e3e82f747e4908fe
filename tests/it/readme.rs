//! The README, checked: every command it shows is run by a test (the table below names which),
//! its "Everyday use" block runs as written in bash, and each feature it describes — `--host`,
//! the `OPSBOX_*` environment forms, the default directories, `--postgres-dir`, `OPSBOX_MIRROR`,
//! an installed nats-server, `OPSBOX_POSTGRES_USER`, `initdb.d/*.sh`, a second Ctrl-C — has a
//! test here that runs the real binary.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::artifacts::{self, Damage, NATS_VERSION, POSTGRES_VERSION};
use crate::support::mirror::Mirror;
use crate::support::processes::alive;
use crate::support::stack::{Foreground, Opsbox};
use crate::support::{project_copy, shared_cache, temp_dir};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// Every line of the README's `sh` code blocks, without its trailing comment, per section.
fn readme_commands() -> Vec<(String, String)> {
    let mut commands = Vec::new();
    let mut section = String::new();
    let mut in_block = false;
    for line in readme().lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.to_string();
        } else if line.starts_with("```") {
            in_block = line == "```sh" && !in_block;
        } else if in_block {
            let command = line.split(" # ").next().unwrap().trim().to_string();
            if !command.is_empty() {
                commands.push((section.clone(), command));
            }
        }
    }
    commands
}

/// Each command the README shows, and the test that runs it.
const COVERED: &[(&str, &str)] = &[
    (
        "opsbox snapshot save s1",
        "snapshots::restore_brings_back_exactly_the_saved_state",
    ),
    (
        "opsbox snapshot restore s1",
        "snapshots::restore_brings_back_exactly_the_saved_state and snapshots::killed_restore_leaves_the_old_or_the_new_state",
    ),
    (
        "opsbox snapshot ls --json",
        "snapshots::restore_brings_back_exactly_the_saved_state",
    ),
    (
        "opsbox snapshot rm s1",
        "snapshots::restore_brings_back_exactly_the_saved_state (rm of s2, then restore of it refused)",
    ),
    ("opsbox reset", "snapshots::reset_equals_a_fresh_stack"),
    (
        "opsbox snapshot export s1 s1.tar.zst",
        "snapshots::export_and_import_into_a_fresh_instance_offline (to a temp file)",
    ),
    (
        "opsbox snapshot import s1.tar.zst",
        "snapshots::export_and_import_into_a_fresh_instance_offline (from a temp file)",
    ),
    (
        "cargo run --release -- up",
        "readme::a_second_ctrl_c_forces_the_stop (the same foreground `up`; release is only the profile)",
    ),
    (
        "bash tests/run-all.sh",
        ".ci/run, which runs exactly this after proving the set-up from scratch",
    ),
    ("opsbox up -d", "readme::the_everyday_block_runs_as_written"),
    (
        "opsbox up -d -s nats,postgres",
        "readme::the_everyday_block_runs_as_written",
    ),
    (
        "opsbox status",
        "readme::the_everyday_block_runs_as_written",
    ),
    (
        "opsbox logs -f nats",
        "readme::the_everyday_block_runs_as_written",
    ),
    (
        "eval \"$(opsbox env)\"",
        "readme::the_everyday_block_runs_as_written",
    ),
    (
        "opsbox down",
        "readme::the_everyday_block_runs_as_written (and `down -v` from its comment)",
    ),
    (
        "opsbox up -d --ports auto -p ci-3",
        "instances::eight_instances_started_at_once_are_ready_on_distinct_ports_and_isolated",
    ),
    (
        "opsbox -p ci-3 status --json",
        "instances::eight_instances_started_at_once_are_ready_on_distinct_ports_and_isolated",
    ),
    ("opsbox ls --json", "every test in instances.rs"),
    (
        "opsbox -p ci-3 down -v",
        "instances::eight_instances_started_at_once_are_ready_on_distinct_ports_and_isolated",
    ),
    (
        "opsbox down --all",
        "instances::eight_instances_started_at_once_are_ready_on_distinct_ports_and_isolated",
    ),
];

#[test]
fn every_command_the_readme_shows_is_run_by_a_test() {
    let commands = readme_commands();
    assert!(
        commands.len() >= COVERED.len(),
        "the README's sh blocks were not found: {commands:?}"
    );
    let untested: Vec<_> = commands
        .iter()
        .filter(|(_, command)| !COVERED.iter().any(|(covered, _)| covered == command))
        .collect();
    assert!(
        untested.is_empty(),
        "the README shows commands no test runs (add a test and a row to COVERED, or remove them): {untested:?}"
    );
    let stale: Vec<_> = COVERED
        .iter()
        .filter(|(covered, _)| !commands.iter().any(|(_, command)| command == covered))
        .collect();
    assert!(
        stale.is_empty(),
        "COVERED names commands the README no longer shows: {stale:?}"
    );
}

/// A bin dir holding `opsbox` (the binary under test), for scripts that call it by name.
fn bin_dir_with_opsbox(home: &Path) -> PathBuf {
    let bin = home.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_opsbox"), bin.join("opsbox")).unwrap();
    bin
}

/// `bash -c script` with opsbox on PATH and this stack's settings in `OPSBOX_*` variables only
/// (no flags), so the environment forms are what the script exercises.
fn bash_with_env(opsbox: &Opsbox, script: &str) -> std::process::Output {
    let bin = bin_dir_with_opsbox(opsbox.home.path());
    let mut command = Command::new("bash");
    for (key, _) in std::env::vars() {
        if key.starts_with("OPSBOX_") || key.starts_with("AWS_") || key.starts_with("PG") {
            command.env_remove(key);
        }
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    command
        .current_dir(opsbox.home.path())
        .env("PATH", path)
        .env("HOME", opsbox.home.path())
        .env("NO_COLOR", "1")
        .env("OPSBOX_PROJECT_DIR", &opsbox.project)
        .env("OPSBOX_DATA_DIR", &opsbox.data_dir)
        .env("OPSBOX_CACHE_DIR", &opsbox.cache_dir)
        .env("OPSBOX_NATS_PORT", opsbox.nats_port.to_string())
        .env(
            "OPSBOX_NATS_MONITOR_PORT",
            opsbox.nats_monitor_port.to_string(),
        )
        .env("OPSBOX_POSTGRES_PORT", opsbox.postgres_port.to_string())
        .env("OPSBOX_S3_PORT", opsbox.s3_port.to_string())
        .env("OPSBOX_CONSOLE_PORT", opsbox.console_port.to_string())
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The "Everyday use" block, verbatim, as a bash script: `logs -f` (which never ends by
/// itself) runs under `timeout` and must still be following when it is stopped; after the
/// `eval` line, the variables are used by real clients; the `down -v` of the last comment runs
/// too.
#[test]
fn the_everyday_block_runs_as_written() {
    let opsbox = Opsbox::new();
    let block: Vec<String> = readme_commands()
        .into_iter()
        .filter(|(section, _)| section.starts_with("Everyday use"))
        .map(|(_, command)| command)
        .collect();
    assert!(
        block.len() >= 6,
        "the README's Everyday use block is gone: {block:?}"
    );
    let mut script = String::from("set -euo pipefail\n");
    for command in &block {
        if command.contains("logs -f") {
            script.push_str(&format!(
                "status=0; timeout 5 {command} >logs-follow.txt || status=$?\n\
                 [ \"$status\" -eq 124 ] || {{ echo \"'{command}' ended by itself (status $status)\" >&2; exit 1; }}\n"
            ));
        } else {
            script.push_str(command);
            script.push('\n');
        }
        if command.starts_with("eval") {
            script.push_str(&format!(
                "[ \"$NATS_URL\" = nats://127.0.0.1:{nats} ] || {{ echo \"NATS_URL=$NATS_URL\" >&2; exit 1; }}\n\
                 psql -tAc 'SELECT current_database()' >psql.txt\n\
                 aws s3 ls >aws.txt\n",
                nats = opsbox.nats_port
            ));
        }
    }
    script.push_str("opsbox down -v\n");
    let output = bash_with_env(&opsbox, &script);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the README's Everyday use block failed:\n{script}\n--- stderr\n{stderr}"
    );
    let home = opsbox.home.path();
    let follow = std::fs::read_to_string(home.join("logs-follow.txt")).unwrap();
    assert!(
        follow.contains("nats") && follow.contains("Server is ready"),
        "`logs -f nats` showed no nats-server log: {follow}"
    );
    assert_eq!(
        std::fs::read_to_string(home.join("psql.txt"))
            .unwrap()
            .trim(),
        "historian",
        "psql with the PG* variables from `opsbox env` did not reach historian"
    );
    let buckets = std::fs::read_to_string(home.join("aws.txt")).unwrap();
    assert!(
        buckets.contains("historian"),
        "`aws s3 ls` with the AWS_* variables from `opsbox env` does not list the historian bucket: {buckets}"
    );
    assert!(
        !opsbox.data_dir.exists(),
        "`opsbox down -v` left the data dir {}",
        opsbox.data_dir.display()
    );
}

/// The CI line of the README and `env --format github`.
#[test]
fn the_ci_line_and_github_env_work() {
    let opsbox = Opsbox::new();
    let text = readme();
    let ci_line = text
        .lines()
        .find(|line| line.contains("<your tests>"))
        .expect("the README's CI line");
    let ci_command = ci_line
        .split('`')
        .find(|part| part.contains("<your tests>"))
        .expect("the CI command in backquotes")
        .replace(
            "<your tests>",
            "psql -tAc 'SELECT 1' >ci.txt && opsbox env --format github",
        );
    let script = format!("set -euo pipefail\nexport GITHUB_ENV=$PWD/github.env\n{ci_command}\n");
    let output = bash_with_env(&opsbox, &script);
    assert!(
        output.status.success(),
        "the README's CI line failed: {script}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let home = opsbox.home.path();
    assert_eq!(
        std::fs::read_to_string(home.join("ci.txt")).unwrap().trim(),
        "1"
    );
    let github = std::fs::read_to_string(home.join("github.env")).unwrap();
    assert!(
        github.contains(&format!("NATS_URL=nats://127.0.0.1:{}", opsbox.nats_port)),
        "`env --format github` did not append NATS_URL to $GITHUB_ENV: {github}"
    );
    assert!(
        opsbox.run_file().is_none(),
        "the CI line's `opsbox down` left a run file"
    );
}

fn accepts(ip: IpAddr, port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2)).is_ok()
}

/// `OPSBOX_HOST` (the env form of `--host`): every service listens there and nowhere else, and
/// `env` names that address.
#[test]
fn host_setting_moves_every_listener() {
    let opsbox = Opsbox::new();
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let output = opsbox
        .command()
        .env("OPSBOX_HOST", other.to_string())
        .args(["up", "-d"])
        .args(opsbox.port_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "up -d with OPSBOX_HOST=127.0.0.2 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for (service, port) in [
        ("nats", opsbox.nats_port),
        ("nats monitoring", opsbox.nats_monitor_port),
        ("postgres", opsbox.postgres_port),
        ("s3", opsbox.s3_port),
    ] {
        assert!(
            accepts(other, port),
            "{service} does not listen on {other}:{port}"
        );
        assert!(
            !accepts(loopback, port),
            "{service} also listens on 127.0.0.1:{port} although the host is {other}"
        );
    }
    let env = opsbox.run(&["env"]);
    let env = env.stdout.as_str();
    assert!(
        env.contains(&format!("nats://127.0.0.2:{}", opsbox.nats_port)),
        "`env` does not name the host: {env}"
    );
}

/// The pids `run.json` records for the services.
fn service_pids(opsbox: &Opsbox) -> Vec<i32> {
    let run = opsbox.run_file().expect("run.json");
    run["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["process"]["pid"].as_i64())
        .map(|pid| pid as i32)
        .collect()
}

/// The README's foreground `up` and its "twice to force": a nats-server whose process ignores
/// SIGTERM after the server ends (a wrapper that then sleeps with SIGTERM ignored) makes the
/// graceful stop wait for the 15 s grace; a second Ctrl-C must end it at once.
#[test]
fn a_second_ctrl_c_forces_the_stop() {
    let opsbox = Opsbox::new();
    let wrapper = opsbox.home.path().join("stubborn-nats-server");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nserver='{}'\ncase \"$*\" in *--version*) exec \"$server\" \"$@\";; esac\n\
             trap '' TERM INT\n\"$server\" \"$@\"\nsleep 60\n",
            artifacts::nats_server_binary().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = opsbox.command();
    command
        .args(["up", "-s", "nats"])
        .arg("--nats-server")
        .arg(&wrapper)
        .args(opsbox.port_args());
    let mut up = Foreground::spawn(&mut command, opsbox.home.path().join("up.log"));
    opsbox.wait_ready(&mut up, Duration::from_secs(60));
    let pids = service_pids(&opsbox);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.pid()), Signal::SIGINT).unwrap();
    // The first Ctrl-C has been acted on once the run file says the service is stopping.
    let began = Instant::now();
    while opsbox
        .run_file()
        .is_some_and(|run| run["services"][0]["state"] == "ready")
    {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the first Ctrl-C did not start the stop:\n{}",
            up.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let forced = Instant::now();
    let status = up.stop(Signal::SIGINT, Duration::from_secs(8));
    let took = forced.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the second Ctrl-C did not force the stop ({took:?})"
    );
    assert!(
        !status.success() || up.stderr().contains("stopped"),
        "{}",
        up.stderr()
    );
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the forced stop");
    }
}

/// `OPSBOX_POSTGRES_USER` picks the account PostgreSQL runs as when opsbox is root; without
/// root, PostgreSQL runs as the invoking user.
#[test]
fn postgres_runs_as_the_chosen_account() {
    let opsbox = Opsbox::new();
    let root = nix::unistd::Uid::effective().is_root();
    let mut command = opsbox.command();
    if root {
        command.env("OPSBOX_POSTGRES_USER", "daemon");
    }
    let output = command
        .args(["up", "-d", "-s", "postgres"])
        .args(opsbox.port_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "up -d -s postgres failed: {stderr}"
    );
    let pid = service_pids(&opsbox)[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid: u32 = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .unwrap();
    let expected = if root {
        nix::unistd::User::from_name("daemon")
            .unwrap()
            .expect("the daemon account")
            .uid
            .as_raw()
    } else {
        nix::unistd::Uid::effective().as_raw()
    };
    assert_eq!(uid, expected, "the postmaster runs as uid {uid}");
    if root {
        assert!(
            stderr.contains("'daemon'"),
            "up does not say which account PostgreSQL runs as: {stderr}"
        );
    }
}

/// An `initdb.d/*.sh` script runs once, with `psql` and the official image's variables, as in
/// compose's /docker-entrypoint-initdb.d.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initdb_shell_scripts_run_like_the_official_image() {
    let project = project_copy();
    let script = project
        .path()
        .join("ops/postgres/initdb.d/050_from_shell.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\npsql -v ON_ERROR_STOP=1 --username \"$POSTGRES_USER\" --dbname \"$POSTGRES_DB\" \
         -c \"CREATE TABLE from_shell (db text); INSERT INTO from_shell VALUES (current_database());\"\n",
    )
    .unwrap();
    let opsbox = Opsbox::with_project(project.path().to_path_buf());
    opsbox.up_detached("postgres");
    let client = opsbox.postgres().await;
    let rows = client
        .query("SELECT db FROM from_shell", &[])
        .await
        .unwrap_or_else(|e| panic!("the .sh init script did not create its table: {e}"));
    assert_eq!(
        rows.len(),
        1,
        "the .sh init script ran {} times",
        rows.len()
    );
    assert_eq!(rows[0].get::<_, String>(0), "historian");
    drop(client);
    let down = opsbox.run(&["down"]);
    assert!(down.status.success());
    opsbox.up_detached("postgres");
    let client = opsbox.postgres().await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM from_shell", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "the .sh init script ran again on the second up");
}

/// Without `--data-dir`, data goes per project under `/var/lib/opsbox/projects` for root and
/// under `$HOME/.local/share/opsbox/projects` for a user; the cache likewise.
#[test]
fn default_directories_follow_the_account() {
    let project = project_copy();
    let as_root = Command::new(env!("CARGO_BIN_EXE_opsbox"))
        .env_remove("OPSBOX_DATA_DIR")
        .env_remove("OPSBOX_CACHE_DIR")
        .env("HOME", project.path())
        .args(["--project-dir"])
        .arg(project.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&as_root.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}",
            String::from_utf8_lossy(&as_root.stderr)
        )
    });
    let data_dir = status["data_dir"].as_str().expect("data_dir");
    if nix::unistd::Uid::effective().is_root() {
        assert!(
            data_dir.starts_with("/var/lib/opsbox/projects/"),
            "root's default data dir is {data_dir}"
        );
        // And a normal user (nobody, with its own HOME) gets the XDG location.
        let home = temp_dir();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let output = Command::new("runuser")
            .args(["-u", "nobody", "--", "env", "-u", "OPSBOX_DATA_DIR", "-u"])
            .arg("OPSBOX_CACHE_DIR")
            .arg(format!("HOME={}", home.path().display()))
            .arg(env!("CARGO_BIN_EXE_opsbox"))
            .arg("--project-dir")
            .arg(project.path())
            .args(["status", "--json"])
            .output()
            .unwrap();
        let status: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                panic!(
                    "status --json as nobody: {e}: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        let user_dir = status["data_dir"].as_str().expect("data_dir");
        let expected = home.path().join(".local/share/opsbox/projects");
        assert!(
            Path::new(user_dir).starts_with(&expected),
            "a user's default data dir is {user_dir}, expected under {}",
            expected.display()
        );
    } else {
        assert!(
            Path::new(data_dir).starts_with(project.path().join(".local/share/opsbox/projects")),
            "a user's default data dir is {data_dir}"
        );
    }
}

/// The cached PostgreSQL directory of the shared test cache (filled through the real fetch
/// path by a first `up`).
fn cached_postgres_dir() -> PathBuf {
    let root = shared_cache().join("postgresql");
    let find = || -> Option<PathBuf> {
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).ok()?.flatten() {
                let path = entry.path();
                if path.join("bin/postgres").is_file() {
                    return Some(path);
                }
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        None
    };
    if let Some(dir) = find() {
        return dir;
    }
    let opsbox = Opsbox::new();
    let fetch = opsbox.run(&["fetch"]);
    assert!(
        fetch.status.success(),
        "opsbox fetch failed: {}",
        fetch.stderr.as_str()
    );
    find().unwrap_or_else(|| {
        panic!(
            "no bin/postgres under {} after `opsbox fetch`",
            root.display()
        )
    })
}

/// `--offline` with an empty cache, `--postgres-dir` naming a PostgreSQL 16 directory and
/// nats-server found on PATH: the stack starts and `up` says where each binary came from.
#[test]
fn explicit_postgres_dir_and_an_installed_nats_server_work_offline() {
    let postgres_dir = cached_postgres_dir();
    let mut opsbox = Opsbox::new();
    opsbox.cache_dir = opsbox.home.path().join("empty-cache");
    let nats = artifacts::nats_server_binary();
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        nats.parent().unwrap().display()
    );
    let output = opsbox
        .command()
        .env("PATH", path)
        .args(["--offline", "up", "-d", "-s", "nats,postgres"])
        .arg("--postgres-dir")
        .arg(&postgres_dir)
        .args(opsbox.port_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "offline up with --postgres-dir and nats-server on PATH failed: {stderr}"
    );
    assert!(
        stderr.contains(&nats.display().to_string()),
        "up does not say nats-server came from PATH ({}): {stderr}",
        nats.display()
    );
    assert!(
        stderr.contains(&postgres_dir.display().to_string()),
        "up does not say PostgreSQL came from --postgres-dir: {stderr}"
    );
}

/// `OPSBOX_MIRROR` through the binary: `opsbox fetch` with an empty cache downloads both
/// binaries from a loopback mirror in the upstream layout, and a second fetch asks it nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_variable_reaches_the_binary() {
    let root = tempfile::tempdir().unwrap();
    let nats_path = artifacts::write_nats_release(root.path(), NATS_VERSION, Damage::None);
    let postgres_path =
        artifacts::write_postgres_release(root.path(), POSTGRES_VERSION, Damage::None);
    let mirror = Mirror::start(root.path().to_path_buf()).await;
    let mut opsbox = Opsbox::new();
    opsbox.cache_dir = opsbox.home.path().join("empty-cache");
    let fetch = |opsbox: &Opsbox| {
        opsbox
            .command()
            .env("OPSBOX_MIRROR", &mirror.base)
            .arg("fetch")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let first = tokio::task::block_in_place(|| fetch(&opsbox));
    assert!(
        first.status.success(),
        "opsbox fetch with OPSBOX_MIRROR failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        mirror.requests_for(&nats_path),
        1,
        "nats-server was not downloaded once from the mirror"
    );
    assert_eq!(
        mirror.requests_for(&postgres_path),
        1,
        "PostgreSQL was not downloaded once from the mirror"
    );
    let second = tokio::task::block_in_place(|| fetch(&opsbox));
    assert!(second.status.success());
    assert_eq!(
        (
            mirror.requests_for(&nats_path),
            mirror.requests_for(&postgres_path)
        ),
        (1, 1),
        "a second fetch downloaded again instead of using the verified cache"
    );
}

/// A password with URL-special characters (set in the compose file, as a user would): the `up`
/// summary and `env` print the same, correctly encoded DATABASE_URL, and a real client connects
/// with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_password_gives_one_working_url_everywhere() {
    let project = project_copy();
    let compose = project.path().join("ops/docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    let password = "p@ss:w/rd?#% é";
    let changed = text.replace(
        "POSTGRES_PASSWORD: postgres",
        &format!("POSTGRES_PASSWORD: \"{password}\""),
    );
    assert_ne!(
        changed, text,
        "the compose file has no POSTGRES_PASSWORD line"
    );
    std::fs::write(&compose, changed).unwrap();
    let opsbox = Opsbox::with_project(project.path().to_path_buf());
    let up = opsbox.up_detached("postgres");
    let summary = up.stderr.as_str();
    let expected = format!(
        "postgresql://postgres:p%40ss%3Aw%2Frd%3F%23%25%20%C3%A9@127.0.0.1:{}/historian",
        opsbox.postgres_port
    );
    assert!(
        summary.contains(&expected),
        "the up summary does not show the encoded URL {expected}:\n{summary}"
    );
    let env = opsbox.run(&["env", "--format", "dotenv"]);
    let env = env.stdout.as_str();
    assert!(
        env.contains(&expected),
        "`env` does not print the encoded URL {expected}:\n{env}"
    );
    let (client, connection) = tokio_postgres::connect(&expected, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("a client cannot connect with the printed URL: {e}"));
    tokio::spawn(connection);
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(database, "historian");
}
