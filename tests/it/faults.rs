//! The fault suite: real processes killed with real signals while clients write. Each scenario
//! records what clients got acknowledged before the fault and checks it afterwards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::support::stack::{Foreground, Opsbox, open_temp_dir, tree_digest};

/// The pid of a service's current process from the run file, once it is ready.
fn ready_pid(opsbox: &Opsbox, service: &str) -> Option<i32> {
    let run = opsbox.run_file()?;
    let record = run["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == service)?
        .clone();
    (record["state"] == "ready")
        .then(|| record["process"]["pid"].as_i64())
        .flatten()
        .map(|p| p as i32)
}

/// Wait for `service` to be ready with a pid other than `old`; returns the new pid and how
/// long it took.
fn wait_new_pid(
    opsbox: &Opsbox,
    up: &Foreground,
    service: &str,
    old: i32,
    within: Duration,
) -> (i32, Duration) {
    let began = Instant::now();
    loop {
        if let Some(pid) = ready_pid(opsbox, service)
            && pid != old
        {
            return (pid, began.elapsed());
        }
        assert!(
            began.elapsed() < within,
            "{service} was not back within {within:?} after pid {old} was killed:\n{}",
            up.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `kill -9` a service's process 10 times, each time waiting until it is back (at most
/// `within`); returns the slowest return.
async fn kill_ten_times(
    opsbox: &Opsbox,
    up: &Foreground,
    service: &str,
    within: Duration,
) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        // Past the healthy period, so each kill is a fresh crash, not a crash loop.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let pid = ready_pid(opsbox, service).unwrap_or_else(|| panic!("{service} is not ready"));
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        let (_, took) = wait_new_pid(opsbox, up, service, pid, within);
        worst = worst.max(took);
    }
    worst
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Processes whose command line mentions `needle` (e.g. the data dir).
fn processes_mentioning(needle: &str, name: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) && cmd.contains(name) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Publish numbered messages until told to stop; return the acknowledged ones (seq -> body).
async fn publish_loop(url: String, mut stop: watch::Receiver<bool>) -> BTreeMap<u64, String> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut acked = BTreeMap::new();
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let body = format!("event {n}");
        let attempt = async {
            js.publish("enterprise.test", body.clone().into())
                .await
                .ok()?
                .await
                .ok()
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Some(ack)) => {
                acked.insert(ack.sequence, body);
            }
            _ => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    acked
}

async fn assert_all_in_events(url: &str, acked: &BTreeMap<u64, String>) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("EVENTS").await.unwrap();
    let mut missing = Vec::new();
    for (seq, body) in acked {
        match stream.get_raw_message(*seq).await {
            Ok(message) if message.payload == body.as_bytes() => {}
            other => missing.push((seq, other.map(|m| m.payload).ok())),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages are missing or changed: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Insert single-row commits until told to stop; return the committed ids.
async fn insert_loop(
    opsbox_config: tokio_postgres::Config,
    mut stop: watch::Receiver<bool>,
) -> Vec<i64> {
    let mut committed = Vec::new();
    let mut n = 0i64;
    let mut client: Option<tokio_postgres::Client> = None;
    while !*stop.borrow() {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match opsbox_config.connect(tokio_postgres::NoTls).await {
                Ok((c, connection)) => {
                    tokio::spawn(connection);
                    Some(c)
                }
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
        }
        n += 1;
        let c = client.as_ref().unwrap();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&n];
        let insert = c.execute("INSERT INTO fault_rows (id) VALUES ($1)", &params);
        if let Ok(Ok(1)) = tokio::time::timeout(Duration::from_secs(2), insert).await {
            committed.push(n);
        }
    }
    committed
}

async fn assert_rows_present(opsbox: &Opsbox, committed: &[i64]) {
    let client = opsbox.postgres().await;
    let rows: Vec<i64> = client
        .query("SELECT id FROM fault_rows ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let present: std::collections::HashSet<i64> = rows.into_iter().collect();
    let missing: Vec<&i64> = committed
        .iter()
        .filter(|id| !present.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} committed rows are missing: {:?}",
        missing.len(),
        committed.len(),
        &missing[..missing.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_ten_times_comes_back_and_loses_no_acked_message() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("nats");
    opsbox.wait_ready(&mut up, Duration::from_secs(120));
    let (stop, stopped) = watch::channel(false);
    let publisher = tokio::spawn(publish_loop(opsbox.nats_url(), stopped));
    let worst = kill_ten_times(&opsbox, &up, "nats", Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(true).unwrap();
    let acked = publisher.await.unwrap();
    assert!(
        acked.len() > 10,
        "only {} messages were acknowledged",
        acked.len()
    );
    assert_all_in_events(&opsbox.nats_url(), &acked).await;
    eprintln!(
        "nats: 10 kills, {} acked, slowest return {worst:?}",
        acked.len()
    );
    let run = opsbox.run_file().unwrap();
    let restarts = run["services"][0]["restarts"].as_u64().unwrap();
    assert_eq!(restarts, 10, "the run file counts the restarts");
    up.stop(Signal::SIGTERM, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_killed_ten_times_comes_back_and_loses_no_committed_row() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("postgres");
    opsbox.wait_ready(&mut up, Duration::from_secs(180));
    opsbox
        .postgres()
        .await
        .batch_execute("CREATE TABLE fault_rows (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    let inserter = tokio::spawn(insert_loop(opsbox.postgres_config("postgres"), stopped));
    let worst = kill_ten_times(&opsbox, &up, "postgres", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    let committed = inserter.await.unwrap();
    assert!(
        committed.len() > 10,
        "only {} rows were committed",
        committed.len()
    );
    assert_rows_present(&opsbox, &committed).await;
    let data_dir = opsbox.data_dir.join("postgres/data");
    let postmasters = processes_mentioning(&data_dir.display().to_string(), "postgres");
    assert_eq!(
        postmasters.len(),
        1,
        "postmasters at the end: {postmasters:?}"
    );
    eprintln!(
        "postgres: 10 kills, {} committed, slowest return {worst:?}",
        committed.len()
    );
    up.stop(Signal::SIGTERM, Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsbox_killed_with_sigkill_leaves_no_orphans_and_the_next_up_recovers() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("nats,postgres");
    opsbox.wait_ready(&mut up, Duration::from_secs(180));
    opsbox
        .postgres()
        .await
        .batch_execute("CREATE TABLE fault_rows (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let nats_pid = ready_pid(&opsbox, "nats").unwrap();
    let postgres_pid = ready_pid(&opsbox, "postgres").unwrap();
    let (stop, stopped) = watch::channel(false);
    let publisher = tokio::spawn(publish_loop(opsbox.nats_url(), stopped.clone()));
    let inserter = tokio::spawn(insert_loop(opsbox.postgres_config("postgres"), stopped));
    tokio::time::sleep(Duration::from_millis(500)).await;

    up.stop(Signal::SIGKILL, Duration::from_secs(5));
    let began = Instant::now();
    while (alive(nats_pid) || alive(postgres_pid)) && began.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !alive(nats_pid),
        "nats-server {nats_pid} outlived the killed opsbox"
    );
    assert!(
        !alive(postgres_pid),
        "postmaster {postgres_pid} outlived the killed opsbox"
    );
    stop.send(true).unwrap();
    let acked = publisher.await.unwrap();
    let committed = inserter.await.unwrap();

    let began = Instant::now();
    let mut up = opsbox.up_foreground("nats,postgres");
    opsbox.wait_ready(&mut up, Duration::from_secs(10));
    eprintln!("recovered in {:?}", began.elapsed());
    let data = opsbox.data_dir.display().to_string();
    assert_eq!(processes_mentioning(&data, "nats-server").len(), 1);
    assert_eq!(
        processes_mentioning(&format!("{data}/postgres/data"), "postgres").len(),
        1
    );
    assert_all_in_events(&opsbox.nats_url(), &acked).await;
    assert_rows_present(&opsbox, &committed).await;
    up.stop(Signal::SIGTERM, Duration::from_secs(60));
}

#[test]
fn a_stale_postmaster_pid_naming_an_unrelated_process_is_moved_aside_untouched() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("postgres");
    opsbox.wait_ready(&mut up, Duration::from_secs(180));
    up.stop(Signal::SIGTERM, Duration::from_secs(60));

    let mut sleeper = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let pid_file = opsbox.data_dir.join("postgres/data/postmaster.pid");
    std::fs::write(
        &pid_file,
        format!(
            "{}\n/elsewhere\n1700000000\n5432\n\n127.0.0.1\n  1234567     0\nready   \n",
            sleeper.id()
        ),
    )
    .unwrap();
    let mut up = opsbox.up_foreground("postgres");
    opsbox.wait_ready(&mut up, Duration::from_secs(60));
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the unrelated process was signalled"
    );
    assert!(
        up.stderr()
            .contains("not a PostgreSQL server of this data directory"),
        "{}",
        up.stderr()
    );
    up.stop(Signal::SIGTERM, Duration::from_secs(60));
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
}

#[test]
fn a_crash_looping_nats_server_backs_off() {
    // A nats-server that works once, then exits at once on every later start.
    let real = crate::support::artifacts::nats_server_binary();
    let tools = open_temp_dir();
    let marker = tools.path().join("started-once");
    let starts = tools.path().join("starts");
    let script = tools.path().join("nats-server");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {real} --version; fi\necho start >> {starts}\nif [ -e {marker} ]; then echo 'crashing on purpose' >&2; exit 3; fi\ntouch {marker}\nexec {real} \"$@\"\n",
            starts = starts.display(),
            marker = marker.display(),
            real = real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut opsbox = Opsbox::new();
    opsbox.cache_dir = tools.path().join("unused-cache");
    let mut up = {
        let log = opsbox.home.path().join("up.log");
        let child = opsbox
            .command()
            .args(["up", "--services", "nats", "--nats-server"])
            .arg(&script)
            .args(opsbox.port_args())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Foreground { child, log }
    };
    opsbox.wait_ready(&mut up, Duration::from_secs(60));
    let pid = ready_pid(&opsbox, "nats").unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    let count = std::fs::read_to_string(&starts).unwrap().lines().count();
    // 0.5 + 1 + 2 + 4 + 8 s of backoff fit in 20 s: at most 5 restarts after the first start.
    assert!(count <= 6, "{count} starts within {:?}", began.elapsed());
    assert!(count >= 4, "only {count} starts: no restarts attempted");
    let status = opsbox.run(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["services"][0]["state"], "crash-looping", "{json}");
    assert_eq!(status.status.code(), Some(1));
    let before = tree_digest(&opsbox.data_dir.join("nats/jetstream"));
    up.stop(Signal::SIGTERM, Duration::from_secs(30));
    assert_eq!(tree_digest(&opsbox.data_dir.join("nats/jetstream")), before);
}
