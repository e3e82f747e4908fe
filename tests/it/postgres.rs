//! PostgreSQL 16 under `opsbox up`: the compose credentials and database, durable settings,
//! scram authentication, data kept across restarts, init scripts run once, and a data dir of
//! another major version refused untouched.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::stack::Opsbox;
use crate::support::{project_copy, tree_digest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_survive_a_restart_and_init_scripts_run_once() {
    let project = project_copy();
    let initdb = project.path().join("ops/postgres/initdb.d");
    std::fs::write(
        initdb.join("010_init.sql"),
        "CREATE TABLE init_runs (at timestamptz DEFAULT now()); INSERT INTO init_runs DEFAULT VALUES;",
    )
    .unwrap();
    let opsbox = Opsbox::with_project(project.path().to_path_buf());
    let mut up = opsbox.up_foreground("postgres");
    opsbox.wait_ready(&mut up, Duration::from_secs(180));

    let client = opsbox.postgres().await;
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with("16."), "server is PostgreSQL {version}");
    // Durability as the running server reports it.
    for (setting, want) in [
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
        ("wal_sync_method", "fdatasync"),
        ("recovery_init_sync_method", "syncfs"),
    ] {
        let value: String = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(value, want, "SHOW {setting}");
    }
    let hba: Vec<String> = client
        .query(
            "SELECT type || ' ' || auth_method FROM pg_hba_file_rules WHERE error IS NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!hba.is_empty());
    for rule in &hba {
        assert!(
            rule.ends_with("scram-sha-256"),
            "pg_hba.conf has a rule that is not scram-sha-256: {rule} (all: {hba:?})"
        );
    }
    client
        .batch_execute("CREATE TABLE events (id int PRIMARY KEY, body text); INSERT INTO events VALUES (1, 'kept'), (2, 'also kept');")
        .await
        .unwrap();
    drop(client);

    let wrong = opsbox
        .postgres_config("not-the-password")
        .connect(tokio_postgres::NoTls)
        .await;
    let error = format!("{:?}", wrong.err().expect("a wrong password is refused"));
    assert!(error.contains("password authentication failed"), "{error}");

    let status = up.stop(Signal::SIGTERM, Duration::from_secs(60));
    assert!(
        status.success(),
        "opsbox up exited with {status}:\n{}",
        up.stderr()
    );

    let mut up = opsbox.up_foreground("postgres");
    opsbox.wait_ready(&mut up, Duration::from_secs(60));
    let client = opsbox.postgres().await;
    let rows: Vec<(i32, String)> = client
        .query("SELECT id, body FROM events ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![(1, "kept".into()), (2, "also kept".into())]);
    let runs: i64 = client
        .query_one("SELECT count(*) FROM init_runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 1, "the init script ran {runs} times");
    drop(client);
    up.stop(Signal::SIGTERM, Duration::from_secs(60));

    let log = std::fs::read_to_string(opsbox.data_dir.join("logs/postgres.log")).unwrap();
    let last_start = log.rfind("starting PostgreSQL").unwrap();
    assert!(
        !log[last_start..].contains("database system was not properly shut down"),
        "the second start needed crash recovery:\n{}",
        &log[last_start..]
    );
}

#[test]
fn a_data_dir_of_another_major_version_is_refused_and_left_untouched() {
    let opsbox = Opsbox::new();
    let pgdata = opsbox.data_dir.join("postgres/data");
    std::fs::create_dir_all(pgdata.join("base")).unwrap();
    std::fs::write(pgdata.join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(pgdata.join("base/precious"), "rows from PostgreSQL 15").unwrap();
    let before = tree_digest(&pgdata);

    let output = opsbox.up_expecting_failure("postgres");
    let stderr = output.stderr.as_str();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was created by PostgreSQL 15") && stderr.contains("PG_VERSION"),
        "the error names the version found:\n{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    assert_eq!(tree_digest(&pgdata), before, "the data dir was changed");
}

/// The non-root path: as root in CI, run opsbox itself as `nobody` (PostgreSQL then runs as the
/// invoking user, with no account switch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_as_a_normal_user_too() {
    let opsbox = Opsbox::new();
    let as_root = nix::unistd::Uid::effective().is_root();
    if as_root {
        std::fs::create_dir_all(&opsbox.data_dir).unwrap();
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("a nobody account");
        nix::unistd::chown(&opsbox.data_dir, Some(nobody.uid), Some(nobody.gid)).unwrap();
        // Warm the shared cache as root first, so the test does not depend on nobody's npm/pip.
        let fetched = opsbox.command().arg("fetch").output().unwrap();
        assert!(
            fetched.status.success(),
            "{}",
            String::from_utf8_lossy(&fetched.stderr)
        );
    }
    let mut command = if as_root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "nobody", "--"])
            .arg(env!("CARGO_BIN_EXE_opsbox"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_opsbox"))
    };
    let output = command
        .env("HOME", opsbox.home.path())
        .env("OPSBOX_CACHE_DIR", &opsbox.cache_dir)
        .arg("--offline")
        .arg("--data-dir")
        .arg(&opsbox.data_dir)
        .args(["up", "-d", "--services", "postgres"])
        .args(opsbox.port_args())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "up -d as a normal user failed:\n{stderr}"
    );
    assert!(
        !stderr.contains("unprivileged account"),
        "no account switch for a normal user:\n{stderr}"
    );
    let client = opsbox.postgres().await;
    let fsync: String = client.query_one("SHOW fsync", &[]).await.unwrap().get(0);
    assert_eq!(fsync, "on");
    let pid: i64 = opsbox.run_file().unwrap()["services"][0]["process"]["pid"]
        .as_i64()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(
        !uid_line.split_whitespace().any(|f| f == "0"),
        "the postmaster runs as root: {uid_line}"
    );
    drop(client);
    let mut down = if as_root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "nobody", "--"])
            .arg(env!("CARGO_BIN_EXE_opsbox"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_opsbox"))
    };
    let stopped = down
        .arg("--data-dir")
        .arg(&opsbox.data_dir)
        .arg("down")
        .output()
        .unwrap();
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
}
