//! The fault suite: real processes killed with real signals while clients write. Writers keep a
//! ledger of what was acknowledged (by an id the client chose, with the time of the
//! acknowledgement); every kill is proven to have hit running writes, and the checks at the end
//! read back everything the servers hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::support::processes::{self, alive};
use crate::support::stack::{Foreground, Opsbox};
use crate::support::{temp_dir, tree_digest};

/// How close before a kill a write must have been acknowledged for the kill to count as one
/// "during load".
const WRITES_BEFORE_KILL: Duration = Duration::from_millis(200);

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
async fn wait_new_pid(
    opsbox: &Opsbox,
    context: &dyn Fn() -> String,
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
            context()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A small random-number generator for kill intervals; its seed is printed so that a failing
/// schedule can be replayed (`OPSBOX_TEST_SEED`).
struct Schedule(u64);

impl Schedule {
    fn new(what: &str) -> Self {
        let seed = std::env::var("OPSBOX_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{what}: kill schedule seed {seed}");
        Self(seed)
    }

    /// A duration between `low` and `high`.
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = (high - low).as_millis() as u64;
        low + Duration::from_millis(self.0 % (span + 1))
    }
}

/// What a writer got acknowledged, in order, each with the instant of its acknowledgement.
struct Ledger<T> {
    acks: Mutex<Vec<(T, Instant)>>,
}

impl<T: Clone> Ledger<T> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            acks: Mutex::new(Vec::new()),
        })
    }

    fn record(&self, item: T) {
        self.acks.lock().unwrap().push((item, Instant::now()));
    }

    fn last_at(&self) -> Option<Instant> {
        self.acks.lock().unwrap().last().map(|(_, at)| *at)
    }

    fn items(&self) -> Vec<T> {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .map(|(item, _)| item.clone())
            .collect()
    }

    fn times(&self) -> Vec<Instant> {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| *at)
            .collect()
    }

    fn len(&self) -> usize {
        self.acks.lock().unwrap().len()
    }
}

/// The acknowledgement times of every writer that must be running at a kill.
type Writers<'a> = &'a [(&'a str, &'a dyn Fn() -> Option<Instant>)];

/// Wait until every writer has had a write acknowledged within the last
/// `WRITES_BEFORE_KILL`, so that the kill that follows hits running writes.
async fn wait_for_running_writes(writers: Writers<'_>, before: &str) {
    let began = Instant::now();
    loop {
        let idle: Vec<&str> = writers
            .iter()
            .filter(|(_, last)| last().is_none_or(|at| at.elapsed() > WRITES_BEFORE_KILL / 2))
            .map(|(name, _)| *name)
            .collect();
        if idle.is_empty() {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no {idle:?} write was acknowledged for 60 s {before}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every kill hit running writes: an acknowledgement in the `WRITES_BEFORE_KILL` before it,
/// and writes were acknowledged again after the last restart.
fn assert_writes_at_every_kill(what: &str, acks: &[Instant], kills: &[Instant], back: Instant) {
    for (i, kill) in kills.iter().enumerate() {
        assert!(
            acks.iter()
                .any(|at| at <= kill && *kill - *at <= WRITES_BEFORE_KILL),
            "{what}: no write was acknowledged in the {WRITES_BEFORE_KILL:?} before kill {}",
            i + 1
        );
    }
    assert!(
        acks.iter().any(|at| *at > back),
        "{what}: no write was acknowledged after the last restart"
    );
}

/// After the last restart: wait until every writer got a write acknowledged again.
async fn wait_for_writes_after(writers: Writers<'_>, back: Instant) {
    let began = Instant::now();
    while writers
        .iter()
        .any(|(_, last)| last().is_none_or(|at| at <= back))
    {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "writes did not resume within 60 s after the last restart"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `kill -9` a service's process 10 times, at random 0.3-2 s after it became ready, each time
/// while every writer is running, and require it back (ready with a new pid) within
/// `outage_limit`. Returns the kill instants, the instant it was last back, and the longest
/// outage.
async fn kill_ten_times(
    opsbox: &Opsbox,
    context: &dyn Fn() -> String,
    service: &str,
    writers: Writers<'_>,
    outage_limit: Duration,
) -> (Vec<Instant>, Instant, Duration) {
    let mut schedule = Schedule::new(service);
    let mut kills = Vec::new();
    let mut outages = Vec::new();
    let mut back = Instant::now();
    for i in 0..10 {
        tokio::time::sleep(
            schedule.between(Duration::from_millis(300), Duration::from_millis(2000)),
        )
        .await;
        wait_for_running_writes(writers, &format!("before kill {} of {service}", i + 1)).await;
        let pid = ready_pid(opsbox, service).unwrap_or_else(|| panic!("{service} is not ready"));
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        kills.push(Instant::now());
        let (_, took) = wait_new_pid(opsbox, context, service, pid, outage_limit).await;
        back = Instant::now();
        outages.push(took.as_millis());
    }
    eprintln!("{service}: back after (ms) {outages:?}");
    let worst = Duration::from_millis(outages.iter().copied().max().unwrap_or(0) as u64);
    (kills, back, worst)
}

/// One acknowledged JetStream publish: the id the client put in the body, and the sequence
/// the server said it stored it at.
#[derive(Debug, Clone)]
struct Published {
    id: String,
    sequence: u64,
}

/// Publish messages with unique ids (`<tag>-<n>`) until told to stop, recording each
/// acknowledged one in `ledger`.
async fn publish_loop(
    url: String,
    tag: String,
    ledger: Arc<Ledger<Published>>,
    mut stop: watch::Receiver<bool>,
) {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let id = format!("{tag}-{n}");
        let attempt = async {
            js.publish("enterprise.test", id.clone().into())
                .await
                .ok()?
                .await
                .ok()
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Some(ack)) => ledger.record(Published {
                id,
                sequence: ack.sequence,
            }),
            _ => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

/// Everything stored in EVENTS: body -> how many times it is there.
async fn read_whole_stream(url: &str) -> HashMap<String, u32> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("EVENTS").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let stream = &stream;
    let bodies: Vec<Option<String>> =
        futures::stream::iter(state.first_sequence..=state.last_sequence)
            .map(|sequence| async move {
                match stream.get_raw_message(sequence).await {
                    Ok(message) => Some(String::from_utf8_lossy(&message.payload).into_owned()),
                    // Deleted or lost: nothing at this sequence.
                    Err(_) => None,
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
    let mut counts = HashMap::new();
    for body in bodies.into_iter().flatten() {
        *counts.entry(body).or_insert(0) += 1;
    }
    counts
}

/// What is wrong with the stream against the acknowledged publishes: a sequence acknowledged
/// for two different messages (the server reused a number it had lost), and any acknowledged
/// message that is not in the stream exactly once.
async fn nats_durability_violations(url: &str, acked: &[Published]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut by_sequence: HashMap<u64, &str> = HashMap::new();
    for publish in acked {
        if let Some(earlier) = by_sequence.insert(publish.sequence, &publish.id) {
            violations.push(format!(
                "sequence {} was acknowledged for {earlier} and again for {}",
                publish.sequence, publish.id
            ));
        }
    }
    let stored = read_whole_stream(url).await;
    for publish in acked {
        let count = stored.get(&publish.id).copied().unwrap_or(0);
        if count != 1 {
            violations.push(format!(
                "{} (acknowledged at sequence {}) is in the stream {count} times",
                publish.id, publish.sequence
            ));
        }
    }
    violations
}

async fn assert_nats_durable(url: &str, acked: &[Published]) {
    let violations = nats_durability_violations(url, acked).await;
    assert!(
        violations.is_empty(),
        "{} problems with {} acknowledged messages, e.g. {:#?}",
        violations.len(),
        acked.len(),
        &violations[..violations.len().min(10)]
    );
}

/// Insert single-row commits with client-chosen ids until told to stop, recording each
/// committed id in `ledger`.
async fn insert_loop(
    config: tokio_postgres::Config,
    first_id: i64,
    ledger: Arc<Ledger<i64>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut n = first_id;
    let mut client: Option<tokio_postgres::Client> = None;
    while !*stop.borrow() {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match config.connect(tokio_postgres::NoTls).await {
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
            ledger.record(n);
        }
    }
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

/// The restart count and last exit the run file records for `service`.
fn restart_record(opsbox: &Opsbox, service: &str) -> serde_json::Value {
    let run = opsbox.run_file().unwrap();
    run["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .unwrap()
        .clone()
}

/// Fault scenario 1 (and the held-out style): nats-server killed 10 times at random 0.3-2 s
/// after each return, always under acknowledged publishes; back within 2 s each time, every
/// acknowledged message in EVENTS exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_ten_times_comes_back_and_loses_no_acked_message() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("nats");
    opsbox.wait_ready(&mut up, Duration::from_secs(120));
    let (stop, stopped) = watch::channel(false);
    let ledger = Ledger::new();
    let publisher = tokio::spawn(publish_loop(
        opsbox.nats_url(),
        "kill-nats".into(),
        ledger.clone(),
        stopped,
    ));
    let last = || ledger.last_at();
    let writers: Writers = &[("nats", &last)];
    let (kills, back, worst) = kill_ten_times(
        &opsbox,
        &|| up.stderr(),
        "nats",
        writers,
        Duration::from_secs(2),
    )
    .await;
    wait_for_writes_after(writers, back).await;
    stop.send(true).unwrap();
    publisher.await.unwrap();
    assert_writes_at_every_kill("nats", &ledger.times(), &kills, back);
    let acked = ledger.items();
    assert_nats_durable(&opsbox.nats_url(), &acked).await;
    eprintln!(
        "nats: 10 kills, {} acked, slowest return {worst:?}",
        acked.len()
    );
    let record = restart_record(&opsbox, "nats");
    assert_eq!(record["restarts"], 10, "the run file counts the restarts");
    assert_eq!(record["last_exit"]["signal"], "SIGKILL", "{record}");
    assert_eq!(record["last_exit"]["was_ready"], true, "{record}");
    up.stop(Signal::SIGTERM, Duration::from_secs(30));
    let stderr = up.stderr();
    assert_eq!(
        stderr
            .matches("it had been ready, so it restarts at once")
            .count(),
        10,
        "each restart says why it was (not) delayed:\n{stderr}"
    );
}

/// Fault scenario 2 (and the held-out style): the postmaster killed 10 times at random 0.3-2 s
/// after each return, always under single-row commits; back within 5 s each time, every
/// committed row present, exactly one postmaster at the end.
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
    let ledger = Ledger::new();
    let inserter = tokio::spawn(insert_loop(
        opsbox.postgres_config("postgres"),
        0,
        ledger.clone(),
        stopped,
    ));
    let last = || ledger.last_at();
    let writers: Writers = &[("postgres", &last)];
    let (kills, back, worst) = kill_ten_times(
        &opsbox,
        &|| up.stderr(),
        "postgres",
        writers,
        Duration::from_secs(5),
    )
    .await;
    wait_for_writes_after(writers, back).await;
    stop.send(true).unwrap();
    inserter.await.unwrap();
    assert_writes_at_every_kill("postgres", &ledger.times(), &kills, back);
    let committed = ledger.items();
    assert_rows_present(&opsbox, &committed).await;
    let data_dir = opsbox.data_dir.join("postgres/data");
    let postmasters = processes::mentioning(&data_dir.display().to_string(), "postgres");
    assert_eq!(
        postmasters.len(),
        1,
        "postmasters at the end: {postmasters:?}"
    );
    eprintln!(
        "postgres: 10 kills, {} committed, slowest return {worst:?}",
        committed.len()
    );
    let failed: Vec<String> = up
        .stderr()
        .lines()
        .filter(|l| l.contains("restart failed"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        restart_record(&opsbox, "postgres")["restarts"],
        10,
        "failed restarts: {failed:#?}"
    );
    up.stop(Signal::SIGTERM, Duration::from_secs(60));
}

/// Fault scenario 3: `kill -9` of opsbox alone under load. The kernel's parent-death signal
/// stops its children cleanly; the next `up` recovers with nothing acknowledged missing.
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
    let published = Ledger::new();
    let committed = Ledger::new();
    let publisher = tokio::spawn(publish_loop(
        opsbox.nats_url(),
        "kill-opsbox".into(),
        published.clone(),
        stopped.clone(),
    ));
    let inserter = tokio::spawn(insert_loop(
        opsbox.postgres_config("postgres"),
        0,
        committed.clone(),
        stopped,
    ));
    let (last_published, last_committed) = (|| published.last_at(), || committed.last_at());
    let writers: Writers = &[("nats", &last_published), ("postgres", &last_committed)];
    wait_for_running_writes(writers, "before opsbox was killed").await;

    // Every descendant of opsbox: the servers and PostgreSQL's backends and workers (one
    // serves the inserter's connection).
    let family: Vec<i32> = processes::descendants(&[up.pid()])
        .into_iter()
        .filter(|&pid| alive(pid))
        .collect();
    assert!(
        family.contains(&nats_pid) && family.contains(&postgres_pid) && family.len() > 3,
        "descendants of opsbox: {family:?}"
    );
    up.stop(Signal::SIGKILL, Duration::from_secs(5));
    let killed = Instant::now();
    let began = Instant::now();
    while family.iter().any(|&pid| alive(pid)) && began.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let orphans: Vec<(i32, String)> = family
        .iter()
        .filter(|&&pid| alive(pid))
        .map(|&pid| {
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&command).replace('\0', " "))
        })
        .collect();
    assert!(
        orphans.is_empty(),
        "processes outlived the killed opsbox (nats-server {nats_pid}, postmaster {postgres_pid}): {orphans:?}"
    );

    let began = Instant::now();
    let mut up = opsbox.up_foreground("nats,postgres");
    opsbox.wait_ready(&mut up, Duration::from_secs(30));
    let back = Instant::now();
    eprintln!("recovered in {:?}", began.elapsed());
    wait_for_writes_after(writers, back).await;
    stop.send(true).unwrap();
    publisher.await.unwrap();
    inserter.await.unwrap();
    assert_writes_at_every_kill("nats", &published.times(), &[killed], back);
    assert_writes_at_every_kill("postgres", &committed.times(), &[killed], back);
    let data = opsbox.data_dir.display().to_string();
    assert_eq!(processes::mentioning(&data, "nats-server").len(), 1);
    assert_eq!(
        processes::mentioning(&format!("{data}/postgres/data"), "postgres").len(),
        1
    );
    assert_nats_durable(&opsbox.nats_url(), &published.items()).await;
    assert_rows_present(&opsbox, &committed.items()).await;
    up.stop(Signal::SIGTERM, Duration::from_secs(60));
}

/// The pids of the supervisor and every child the run file names.
fn stack_pids(opsbox: &Opsbox) -> Vec<i32> {
    let run = opsbox.run_file().expect("a run file");
    std::iter::once(run["supervisor"]["pid"].as_i64())
        .chain(
            run["services"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["process"]["pid"].as_i64()),
        )
        .flatten()
        .map(|p| p as i32)
        .collect()
}

/// One acknowledged S3 PUT: the key and the sha256 of the body that got the 200.
#[derive(Debug, Clone)]
struct Put {
    key: String,
    sha256: String,
}

/// PUT small random objects under unique keys until told to stop, recording each 200.
async fn put_loop(port: u16, ledger: Arc<Ledger<Put>>, mut stop: watch::Receiver<bool>) {
    use crate::support::s3;
    let client = s3::client(port, false);
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let key = format!("hard-crash/{n}");
        let body = s3::random_bytes(s3::random_in(0..=256 * 1024));
        let sha256 = s3::sha256_hex(&body);
        let put = client
            .put_object()
            .bucket(s3::BUCKET)
            .key(&key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send();
        match tokio::time::timeout(Duration::from_secs(10), put).await {
            Ok(Ok(_)) => ledger.record(Put { key, sha256 }),
            _ => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

async fn assert_objects_present(port: u16, acked: &[Put]) {
    use crate::support::s3;
    let client = s3::client(port, true);
    let mut problems = Vec::new();
    for put in acked {
        match client
            .get_object()
            .bucket(s3::BUCKET)
            .key(&put.key)
            .send()
            .await
        {
            Ok(output) => {
                let bytes = output.body.collect().await.unwrap().into_bytes();
                if s3::sha256_hex(&bytes) != put.sha256 {
                    problems.push(format!("{} reads back other bytes", put.key));
                }
            }
            Err(e) => problems.push(format!("{}: {e:?}", put.key)),
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} acknowledged PUTs are not readable as sent, e.g. {:#?}",
        problems.len(),
        acked.len(),
        &problems[..problems.len().min(5)]
    );
}

/// Files under the S3 store's temp directory or with a `.part` name, anywhere under `root`.
fn s3_temp_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let tmp = root.join(".opsbox-s3").join("tmp");
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path.starts_with(&tmp) || path.extension().is_some_and(|e| e == "part") {
                out.push(path);
            }
        }
    }
    out
}

/// The hard crash (what the OOM killer or a container stop does): the supervisor, nats-server
/// and the postmaster SIGKILLed at the same instant under load (publishes, commits, S3 PUTs),
/// then `opsbox up -d` 0.5 s later, ten times. Every start must work and nothing acknowledged
/// may be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_sigkilled_at_once_ten_times_then_up_at_once_loses_nothing() {
    let opsbox = Opsbox::new();
    opsbox.up_detached("nats,postgres,s3");
    opsbox
        .postgres()
        .await
        .batch_execute("CREATE TABLE fault_rows (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    let (published, committed, stored) = (Ledger::new(), Ledger::new(), Ledger::new());
    let tasks = [
        tokio::spawn(publish_loop(
            opsbox.nats_url(),
            "hard-crash".into(),
            published.clone(),
            stopped.clone(),
        )),
        tokio::spawn(insert_loop(
            opsbox.postgres_config("postgres"),
            0,
            committed.clone(),
            stopped.clone(),
        )),
        tokio::spawn(put_loop(opsbox.s3_port, stored.clone(), stopped)),
    ];
    let last_published = || published.last_at();
    let last_committed = || committed.last_at();
    let last_stored = || stored.last_at();
    let writers: Writers = &[
        ("nats", &last_published),
        ("postgres", &last_committed),
        ("s3", &last_stored),
    ];
    let mut kills = Vec::new();
    let mut slowest = Duration::ZERO;
    for round in 1..=10 {
        wait_for_running_writes(writers, &format!("before hard crash {round}")).await;
        let pids = stack_pids(&opsbox);
        assert_eq!(
            pids.len(),
            3,
            "supervisor, nats-server, postmaster: {pids:?}"
        );
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        kills.push(Instant::now());
        // The scenario: a new start half a second after the crash, not a wait for anything.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let began = Instant::now();
        let output = opsbox
            .command()
            .args(["up", "-d", "--services", "nats,postgres,s3"])
            .args(opsbox.port_args())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "opsbox up -d after hard crash {round} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        slowest = slowest.max(began.elapsed());
    }
    let back = Instant::now();
    wait_for_writes_after(writers, back).await;
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    for (name, ledger) in [("nats", published.times()), ("postgres", committed.times())] {
        assert_writes_at_every_kill(name, &ledger, &kills, back);
    }
    assert_writes_at_every_kill("s3", &stored.times(), &kills, back);
    assert_nats_durable(&opsbox.nats_url(), &published.items()).await;
    assert_rows_present(&opsbox, &committed.items()).await;
    assert_objects_present(opsbox.s3_port, &stored.items()).await;
    let leftovers = s3_temp_files(&opsbox.data_dir.join("s3"));
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    eprintln!(
        "hard crash: 10 rounds, {} acked, {} committed, {} PUTs acknowledged, slowest up -d {slowest:?}",
        published.len(),
        committed.len(),
        stored.len()
    );
}

/// The durability check must be able to fail: a JetStream store that loses the tail of its
/// block file after a kill (what a missing fsync does on power loss) hands the lost sequence
/// numbers out again, and the check has to report both the lost messages and the reused
/// sequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_durability_check_detects_a_store_that_lost_its_tail() {
    let opsbox = Opsbox::new();
    opsbox.up_detached("nats");
    let ledger = Ledger::new();
    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for n in 0..100 {
        let id = format!("before-{n}");
        let ack = js
            .publish("enterprise.test", id.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        ledger.record(Published {
            id,
            sequence: ack.sequence,
        });
    }
    drop(js);
    assert_nats_durable(&opsbox.nats_url(), &ledger.items()).await;

    let pids = stack_pids(&opsbox);
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let began = Instant::now();
    while pids.iter().any(|&pid| alive(pid)) {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "{pids:?} did not die"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let msgs = crate::support::stack::halve_events_block(&opsbox);
    // The index would let the server notice; a store that lost its tail has none either.
    for entry in std::fs::read_dir(&msgs).unwrap().flatten() {
        if entry.path().extension().is_some_and(|x| x == "idx") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }

    opsbox.up_detached("nats");
    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for n in 0..20 {
        let id = format!("after-{n}");
        let ack = js
            .publish("enterprise.test", id.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        ledger.record(Published {
            id,
            sequence: ack.sequence,
        });
    }
    let items = ledger.items();
    let violations = nats_durability_violations(&opsbox.nats_url(), &items).await;
    let lost = violations
        .iter()
        .filter(|v| v.starts_with("before-") && v.ends_with("0 times"))
        .count();
    let reused = violations
        .iter()
        .filter(|v| v.contains("acknowledged for before-") && v.contains("again for after-"))
        .count();
    eprintln!(
        "truncated store: {lost} lost, {reused} sequences reused, e.g. {:?}",
        &violations[..violations.len().min(3)]
    );
    assert!(lost > 0, "the check missed the lost tail: {violations:#?}");
    // Whether nats-server hands the lost sequence numbers out again depends on whether its
    // stream state file was written before the kill; when it does (the case the old check,
    // keyed by sequence only, could not see), the check must say so.
    let highest_before = items
        .iter()
        .filter(|p| p.id.starts_with("before-"))
        .map(|p| p.sequence)
        .max()
        .expect("messages were acknowledged before the kill");
    let reuse_happened = items
        .iter()
        .any(|p| p.id.starts_with("after-") && p.sequence <= highest_before);
    if reuse_happened {
        assert!(
            reused > 0,
            "the server reused sequence numbers and the check missed it: {violations:#?}"
        );
    }
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

/// A postmaster.pid naming a zombie (a dead process nobody reaped yet, as after a hard crash)
/// does not stop the start: the zombie counts as gone.
#[test]
fn a_postmaster_pid_naming_a_zombie_does_not_stop_the_start() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("postgres");
    opsbox.wait_ready(&mut up, Duration::from_secs(180));
    up.stop(Signal::SIGTERM, Duration::from_secs(60));

    // A child of this test that exits and is not reaped until the end: a zombie.
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let pid = zombie.id();
    let began = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")) {
        assert!(began.elapsed() < Duration::from_secs(10), "no zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid_file = opsbox.data_dir.join("postgres/data/postmaster.pid");
    std::fs::write(
        &pid_file,
        format!("{pid}\n/elsewhere\n1700000000\n5432\n\n127.0.0.1\n  1234567     0\nready   \n"),
    )
    .unwrap();
    let output = opsbox
        .command()
        .args(["up", "-d", "--services", "postgres"])
        .args(opsbox.port_args())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let log = std::fs::read_to_string(opsbox.data_dir.join("logs/opsbox.log")).unwrap();
    assert!(
        log.contains(&format!(
            "named pid {pid}, a postmaster that died and was not reaped yet"
        )),
        "{log}"
    );
    zombie.wait().unwrap();
}

/// Gaps between the starts recorded in `starts` (one `date +%s.%N` per line).
fn start_gaps(starts: &std::path::Path) -> Vec<f64> {
    let times: Vec<f64> = std::fs::read_to_string(starts)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// A nats-server that works once, then exits at once on every later start: the restarts back
/// off (each gap longer than the one before), at most 8 starts in 60 s, `status` says
/// crash-looping with the last exit code and when the next start is due, and the log says why
/// each restart waited.
#[test]
fn a_crash_looping_nats_server_backs_off() {
    let real = crate::support::artifacts::nats_server_binary();
    let tools = temp_dir();
    let marker = tools.path().join("started-once");
    let starts = tools.path().join("starts");
    let script = tools.path().join("nats-server");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {real} --version; fi\ndate +%s.%N >> {starts}\nif [ -e {marker} ]; then echo 'crashing on purpose' >&2; exit 3; fi\ntouch {marker}\nexec {real} \"$@\"\n",
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
        let mut command = opsbox.command();
        command
            .args(["up", "--services", "nats", "--nats-server"])
            .arg(&script)
            .args(opsbox.port_args());
        Foreground::spawn(&mut command, opsbox.home.path().join("up.log"))
    };
    opsbox.wait_ready(&mut up, Duration::from_secs(60));
    let pid = ready_pid(&opsbox, "nats").unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let killed = Instant::now();

    // Watch the failing starts for 60 s (the window the issue names), checking status on the
    // way while a restart waits.
    let mut seen_waiting = None;
    while killed.elapsed() < Duration::from_secs(60) {
        if seen_waiting.is_none() && start_gaps(&starts).len() >= 3 {
            let status = opsbox.run(&["status", "--json"]);
            let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
            let nats = json["services"][0].clone();
            if nats["next_start_in_ms"].as_u64().is_some_and(|ms| ms > 0) {
                assert_eq!(status.status.code(), Some(1));
                seen_waiting = Some(nats);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let gaps = start_gaps(&starts);
    // The first start (ready) plus the restarts within 60 s of the kill.
    let count = gaps.len() + 1;
    assert!(count <= 8, "{count} starts within 60 s: gaps {gaps:?}");
    assert!(count >= 5, "only {count} starts: gaps {gaps:?}");
    // gaps[0] is the ready run until the kill (and the short restart after it); the failed
    // restarts follow, each waiting about twice as long as the one before.
    let backoff = &gaps[1..];
    for pair in backoff.windows(2) {
        assert!(
            pair[1] > pair[0] * 1.5,
            "the delays between failing starts do not grow: {gaps:?}"
        );
    }
    let nats = seen_waiting.expect("status never showed a pending restart");
    assert_eq!(nats["state"], "crash-looping", "{nats}");
    assert_eq!(nats["last_exit"]["code"], 3, "{nats}");
    assert_eq!(nats["last_exit"]["was_ready"], false, "{nats}");
    assert!(
        nats["restart_reason"]
            .as_str()
            .is_some_and(|r| r.contains("was not healthy (")),
        "{nats}"
    );
    assert!(nats["next_start_at_ms"].as_u64().is_some(), "{nats}");
    let stderr = up.stderr();
    assert!(
        stderr.contains("so the restart backs off: next start in"),
        "{stderr}"
    );
    let before = tree_digest(&opsbox.data_dir.join("nats/jetstream"));
    up.stop(Signal::SIGTERM, Duration::from_secs(30));
    assert_eq!(tree_digest(&opsbox.data_dir.join("nats/jetstream")), before);
}

/// A tmpfs of `size` mounted (as root) on a new temp dir; unmounted when dropped.
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount(size: &str) -> Self {
        let dir = temp_dir();
        let output = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the disk-full test needs root to mount a small tmpfs: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fill the filesystem of `path` with a file until writes fail with ENOSPC.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 256 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = file.sync_all();
}

/// Repeat `attempt` until it succeeds or `within` has passed; returns whether it succeeded.
async fn until_ok<F, Fut, T, E>(within: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let began = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if began.elapsed() >= within => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Disk full: the stack's data dir on a small filesystem that fills up. Writes fail with
/// errors the clients see (S3 a 5xx, never a 200), nothing acknowledged before is lost, and
/// once space is freed every service takes writes again without a restart by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_visibly_and_the_stack_recovers_when_space_is_freed() {
    use crate::support::s3;
    use aws_sdk_s3::primitives::ByteStream;
    let filesystem = SmallFilesystem::mount("192m");
    let mut opsbox = Opsbox::new();
    opsbox.data_dir = filesystem.path().join("data");
    opsbox.up_detached("nats,postgres,s3");
    let postgres = opsbox.postgres().await;
    postgres
        .batch_execute("CREATE TABLE fault_rows (id bigint PRIMARY KEY, body text)")
        .await
        .unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(opsbox.nats_url()).await.unwrap());
    let bucket = s3::client(opsbox.s3_port, false);

    // Acknowledged before the disk fills.
    let mut published = Vec::new();
    for n in 0..20 {
        let id = format!("before-full-{n}");
        let ack = js
            .publish("enterprise.test", id.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        published.push(Published {
            id,
            sequence: ack.sequence,
        });
    }
    for id in 0..20i64 {
        postgres
            .execute("INSERT INTO fault_rows (id) VALUES ($1)", &[&id])
            .await
            .unwrap();
    }
    let mut stored = Vec::new();
    for n in 0..5 {
        let key = format!("before-full/{n}");
        let body = s3::random_bytes(64 * 1024);
        let sha256 = s3::sha256_hex(&body);
        bucket
            .put_object()
            .bucket(s3::BUCKET)
            .key(&key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
        stored.push(Put { key, sha256 });
    }

    let filler = filesystem.path().join("filler");
    fill(&filler);

    // S3: a PUT that cannot be stored is refused with a server error, never a 200.
    let refused = bucket
        .put_object()
        .bucket(s3::BUCKET)
        .key("full/object")
        .body(ByteStream::from(s3::random_bytes(1024 * 1024)))
        .send()
        .await;
    let status = match &refused {
        Ok(_) => panic!("a PUT on a full disk got a 200"),
        Err(e) => e.raw_response().map(|r| r.status().as_u16()),
    };
    assert!(
        status.is_some_and(|s| (500..600).contains(&s)),
        "a PUT on a full disk got {status:?}: {refused:?}"
    );
    // PostgreSQL: a large insert fails and the client is told.
    let big = "x".repeat(4 * 1024 * 1024);
    let mut postgres_error = None;
    for id in 1000..1100i64 {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&id, &big];
        let insert = postgres.execute(
            "INSERT INTO fault_rows (id, body) VALUES ($1, $2 || random()::text)",
            &params,
        );
        match tokio::time::timeout(Duration::from_secs(30), insert).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                postgres_error = Some(
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_string()),
                );
                break;
            }
            Err(_) => {
                postgres_error = Some("no answer within 30 s".into());
                break;
            }
        }
    }
    let postgres_error = postgres_error.expect("100 inserts of 4 MiB succeeded on a full disk");
    // JetStream: publishes are refused (no acknowledgement for what it cannot store).
    let payload = bytes::Bytes::from(vec![b'x'; 512 * 1024]);
    let mut nats_error = None;
    for _ in 0..200 {
        let attempt = async {
            js.publish("enterprise.test", payload.clone())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                nats_error = Some(e);
                break;
            }
            Err(_) => {
                nats_error = Some("no acknowledgement within 10 s".into());
                break;
            }
        }
    }
    let nats_error = nats_error.expect("200 publishes of 512 KiB were acknowledged on a full disk");
    assert!(
        postgres_error.contains("No space left on device"),
        "{postgres_error}"
    );
    eprintln!("disk full: S3 {status:?}; postgres: {postgres_error}; nats: {nats_error}");

    std::fs::remove_file(&filler).unwrap();

    // Every service takes writes again, without a restart by hand.
    let within = Duration::from_secs(120);
    until_ok(within, || async {
        bucket
            .put_object()
            .bucket(s3::BUCKET)
            .key("after-full/object")
            .body(ByteStream::from_static(b"after"))
            .send()
            .await
            .map(|_| ())
    })
    .await
    .expect("S3 PUTs still fail after space was freed");
    until_ok(within, || async {
        let client = opsbox
            .postgres_config("postgres")
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(client.1);
        client
            .0
            .execute("INSERT INTO fault_rows (id) VALUES (5000)", &[])
            .await
            .map(|_| ())
    })
    .await
    .expect("PostgreSQL inserts still fail after space was freed");
    until_ok(within, || async {
        let js = async_nats::jetstream::new(
            async_nats::connect(opsbox.nats_url())
                .await
                .map_err(|e| e.to_string())?,
        );
        js.publish("enterprise.test", "after-full".into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .expect("JetStream publishes still fail after space was freed");

    assert_nats_durable(&opsbox.nats_url(), &published).await;
    assert_rows_present(&opsbox, &(0..20).collect::<Vec<i64>>()).await;
    assert_objects_present(opsbox.s3_port, &stored).await;
    let log = std::fs::read_to_string(opsbox.data_dir.join("logs/opsbox.log")).unwrap();
    let restarts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("unhealthy") || l.contains("waiting for") || l.contains("exited"))
        .collect();
    eprintln!("disk full: the supervisor's log: {restarts:#?}");
    let down = opsbox.run(&["down"]);
    assert!(down.status.success());
}
