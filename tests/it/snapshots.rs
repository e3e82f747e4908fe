//! `opsbox snapshot` and `opsbox reset` against the real stack: rows written with
//! tokio-postgres, messages in EVENTS with a durable consumer that acked some of them
//! (async-nats), objects with metadata (aws-sdk-s3); saved, changed, restored, exported,
//! imported, and a restore killed with SIGKILL at each step of its swap.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;

use crate::support::Outcome;
use crate::support::s3::{self, BUCKET, random_bytes, sha256_hex};
use crate::support::stack::Opsbox;

const SERVICES: &str = "nats,postgres,s3";

/// Everything a client can see of the three services.
#[derive(Debug, Clone, PartialEq)]
struct State {
    tables: Vec<String>,
    rows: Vec<(i32, String)>,
    last_sequence: u64,
    messages: u64,
    /// The durable consumer's (ack floor, delivered) stream sequences.
    consumer: Option<(u64, u64)>,
    buckets: Vec<String>,
    objects: BTreeMap<String, Object>,
}

/// What a GET shows of an object: (sha256, ETag, content type, user metadata).
type Object = (String, String, Option<String>, BTreeMap<String, String>);

fn succeeded(output: &Outcome, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        output.stdout,
        output.stderr
    );
    output.stdout.clone()
}

fn up(opsbox: &Opsbox) {
    opsbox.up_detached(SERVICES);
}

fn down(opsbox: &Opsbox) {
    succeeded(&opsbox.run(&["down"]), "opsbox down");
}

async fn observe(opsbox: &Opsbox) -> State {
    let postgres = opsbox.postgres().await;
    let tables: Vec<String> = postgres
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let rows = if tables.iter().any(|t| t == "items") {
        postgres
            .query("SELECT id, body FROM items ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    } else {
        Vec::new()
    };

    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("EVENTS").await.unwrap();
    let info = stream.info().await.unwrap().clone();
    let consumer = stream.consumer_info("worker").await.ok().map(|info| {
        (
            info.ack_floor.stream_sequence,
            info.delivered.stream_sequence,
        )
    });

    let s3 = s3::client(opsbox.s3_port, true);
    let mut buckets: Vec<String> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    buckets.sort();
    let mut objects = BTreeMap::new();
    for bucket in &buckets {
        let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        for object in listed.contents() {
            let key = object.key().unwrap().to_string();
            let got = s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap();
            let e_tag = got.e_tag().unwrap_or_default().to_string();
            let content_type = got.content_type().map(str::to_string);
            let metadata: BTreeMap<String, String> = got
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let bytes = got.body.collect().await.unwrap().into_bytes();
            objects.insert(
                format!("{bucket}/{key}"),
                (sha256_hex(&bytes), e_tag, content_type, metadata),
            );
        }
    }
    State {
        tables,
        rows,
        last_sequence: info.state.last_sequence,
        messages: info.state.messages,
        consumer,
        buckets,
        objects,
    }
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, bytes: Vec<u8>, tag: &str) {
    s3.put_object()
        .bucket(BUCKET)
        .key(key)
        .content_type("application/x-opsbox-test")
        .metadata("tag", tag)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .unwrap();
}

async fn publish_and_ack(opsbox: &Opsbox, publish: usize, ack: usize) {
    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for i in 0..publish {
        js.publish(
            format!("enterprise.snapshot.{i}"),
            format!("event {i}").into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let stream = js.get_stream("EVENTS").await.unwrap();
    let consumer = stream
        .get_or_create_consumer(
            "worker",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("worker".into()),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut messages = consumer.fetch().max_messages(ack).messages().await.unwrap();
    let mut acked = 0;
    while let Some(message) = messages.next().await {
        message.unwrap().double_ack().await.unwrap();
        acked += 1;
    }
    assert_eq!(acked, ack, "the consumer did not get {ack} messages to ack");
}

/// State s1: 500 rows, a second table, 20 events of which the consumer acked 10, 5 objects.
async fn write_first(opsbox: &Opsbox) {
    let postgres = opsbox.postgres().await;
    postgres
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, body text NOT NULL);
             INSERT INTO items SELECT i, 'row ' || i FROM generate_series(1, 500) AS i;
             CREATE TABLE dropme (x int); INSERT INTO dropme VALUES (1), (2), (3);",
        )
        .await
        .unwrap();
    publish_and_ack(opsbox, 20, 10).await;
    let s3 = s3::client(opsbox.s3_port, true);
    for i in 0..5 {
        put(
            &s3,
            &format!("obj/{i}"),
            random_bytes(1000 + i * 7919),
            &format!("v1-{i}"),
        )
        .await;
    }
}

/// State s2: more and changed rows, a dropped table, more events and acks, objects deleted,
/// overwritten and added.
async fn write_second(opsbox: &Opsbox) {
    let postgres = opsbox.postgres().await;
    postgres
        .batch_execute(
            "INSERT INTO items SELECT i, 'row ' || i FROM generate_series(501, 700) AS i;
             UPDATE items SET body = 'changed' WHERE id <= 10;
             DROP TABLE dropme;",
        )
        .await
        .unwrap();
    publish_and_ack(opsbox, 15, 5).await;
    let s3 = s3::client(opsbox.s3_port, true);
    s3.delete_object()
        .bucket(BUCKET)
        .key("obj/0")
        .send()
        .await
        .unwrap();
    put(&s3, "obj/1", random_bytes(4321), "v2-1").await;
    put(&s3, "obj/9", random_bytes(99), "v2-9").await;
}

/// Every part of `a` differs from `b` (so a mix of the two would be seen).
fn differ_everywhere(a: &State, b: &State) {
    assert_ne!(a.rows, b.rows);
    assert_ne!(a.tables, b.tables);
    assert_ne!(a.last_sequence, b.last_sequence);
    assert_ne!(a.consumer, b.consumer);
    assert_ne!(a.objects, b.objects);
}

/// A stack in state s1 saved as snapshot s1, then changed to s2 (also saved as s2), stopped.
async fn stack_with_two_states() -> (Opsbox, State, State) {
    let opsbox = Opsbox::new();
    up(&opsbox);
    write_first(&opsbox).await;
    let first = observe(&opsbox).await;
    assert_eq!(first.rows.len(), 500);
    assert_eq!(first.last_sequence, 20);
    assert_eq!(first.consumer, Some((10, 10)));
    down(&opsbox);
    let saved = succeeded(
        &opsbox.run(&["snapshot", "save", "s1", "--json"]),
        "snapshot save s1",
    );
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["name"], "s1");
    assert_eq!(saved["postgres_major"], 16);
    assert_eq!(saved["services"].as_array().unwrap().len(), 3, "{saved}");
    up(&opsbox);
    write_second(&opsbox).await;
    let second = observe(&opsbox).await;
    differ_everywhere(&first, &second);
    down(&opsbox);
    succeeded(&opsbox.run(&["snapshot", "save", "s2"]), "snapshot save s2");
    (opsbox, first, second)
}

fn pgdata(opsbox: &Opsbox) -> PathBuf {
    opsbox.data_dir.join("postgres/data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_brings_back_exactly_the_saved_state() {
    let (opsbox, first, _second) = stack_with_two_states().await;
    let owner = std::fs::metadata(pgdata(&opsbox)).unwrap().uid();

    let listed = succeeded(&opsbox.run(&["snapshot", "ls", "--json"]), "snapshot ls");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["initial", "s1", "s2"], "{listed}");

    succeeded(
        &opsbox.run(&["snapshot", "restore", "s1"]),
        "snapshot restore s1",
    );
    // PGDATA is still PostgreSQL's: 0700, owned by the account it runs as.
    let meta = std::fs::metadata(pgdata(&opsbox)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(meta.uid(), owner);
    up(&opsbox);
    assert_eq!(observe(&opsbox).await, first);
    down(&opsbox);

    succeeded(&opsbox.run(&["snapshot", "rm", "s2"]), "snapshot rm s2");
    assert!(!opsbox.data_dir.join("snapshots/s2").exists());
    let missing = opsbox.run(&["snapshot", "restore", "s2"]);
    let text = missing.stderr.clone();
    assert!(
        text.contains("no snapshot named s2") && text.contains("snapshot ls"),
        "{text}"
    );
}

/// SIGKILL of `snapshot restore s1` paused at each step (stack in state s2); the next `up`
/// shows s2 when the kill came before the swap was promised in the journal, s1 after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_restore_leaves_the_old_or_the_new_state() {
    let (opsbox, first, second) = stack_with_two_states().await;
    let steps = [
        ("built", false),
        ("journal", true),
        ("moved-old:nats/jetstream", true),
        ("moved-old:postgres/data", true),
        ("moved-new:postgres/data", true),
        ("moved-old:s3", true),
        ("committed", true),
    ];
    for (step, finished) in steps {
        succeeded(
            &opsbox.run(&["snapshot", "restore", "s2"]),
            "snapshot restore s2",
        );
        kill_restore_at(&opsbox, step);
        up(&opsbox);
        assert_old_or_new(&observe(&opsbox).await, step, finished, &first, &second);
        down(&opsbox);
        assert_no_restore_left(&opsbox);
    }
}

/// After a SIGKILL of `snapshot restore s1` at `step`: the restored state (s1) once the swap
/// was promised (`finished`), the previous one (s2) before.
fn assert_old_or_new(state: &State, step: &str, finished: bool, first: &State, second: &State) {
    let expected = if finished { first } else { second };
    assert_eq!(
        state,
        expected,
        "after a SIGKILL at step {step} the stack is not in the {} state",
        if finished { "restored" } else { "previous" }
    );
}

/// No restore's journal, build or replaced state is left in the snapshots directory.
fn assert_no_restore_left(opsbox: &Opsbox) {
    let root = opsbox.data_dir.join("snapshots");
    assert!(!root.join("restore.journal").exists());
    let left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".restore") || name == ".previous")
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        root.display()
    );
}

/// Run `snapshot restore s1` with the test hook pausing it at `step`, and SIGKILL it there.
fn kill_restore_at(opsbox: &Opsbox, step: &str) {
    let marker = opsbox
        .home
        .path()
        .join(format!("paused-{}", step.replace(['/', ':'], "-")));
    let _ = std::fs::remove_file(&marker);
    let mut restore = opsbox
        .command()
        .args(["snapshot", "restore", "s1"])
        .env("OPSBOX_TEST_RESTORE_PAUSE", step)
        .env("OPSBOX_TEST_RESTORE_PAUSED", &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let began = Instant::now();
    while !marker.exists() {
        if let Some(status) = restore.try_wait().unwrap() {
            panic!("the restore ended ({status}) before reaching step {step}");
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the restore did not reach step {step} within 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    restore.kill().unwrap(); // SIGKILL
    restore.wait().unwrap();
}

/// Wait until `status --json` says every service is ready again.
fn wait_all_ready(opsbox: &Opsbox, within: Duration) {
    let began = Instant::now();
    loop {
        let (_, status) = opsbox.status_json();
        let ready = status["services"]
            .as_array()
            .is_some_and(|services| services.iter().all(|s| s["state"] == "ready"));
        if ready {
            return;
        }
        assert!(
            began.elapsed() < within,
            "the stack is not ready again after {within:?}: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL of `snapshot restore s1` on a running stack in state s2: before the supervisor
/// holds the stack (`built`) nothing changes and the stack runs on; once held, the supervisor
/// sees its client gone, finishes the swap the journal promised, and starts the services on
/// the restored state. Never a mix, never a stack left stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_restore_of_a_running_stack_leaves_it_running_old_or_new() {
    let (opsbox, first, second) = stack_with_two_states().await;
    up(&opsbox);
    for (step, finished) in [
        ("built", false),
        ("journal", true),
        ("moved-old:postgres/data", true),
        ("committed", true),
    ] {
        on_running_stack(
            &opsbox.run(&["snapshot", "restore", "s2", "--json"]),
            "snapshot restore s2 (running)",
        );
        kill_restore_at(&opsbox, step);
        wait_all_ready(&opsbox, Duration::from_secs(60));
        assert_old_or_new(&observe(&opsbox).await, step, finished, &first, &second);
        if finished {
            // The supervisor finished the swap: nothing of it is left. (What a restore killed
            // before the hold built is removed by the next restore or `up`.)
            assert_no_restore_left(&opsbox);
        }
    }
    down(&opsbox);
}

/// Rewrite the zstd tar `from` into `to`, changing members with `change`.
fn rewrite_archive(from: &Path, to: &Path, change: &dyn Fn(&str, &mut Vec<u8>)) {
    let decoder = zstd::stream::read::Decoder::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut archive = tar::Archive::new(decoder);
    let encoder = zstd::stream::write::Encoder::new(std::fs::File::create(to).unwrap(), 1).unwrap();
    let mut builder = tar::Builder::new(encoder);
    for member in archive.entries().unwrap() {
        let mut member = member.unwrap();
        let path = member.path().unwrap().to_string_lossy().into_owned();
        let mut header = member.header().clone();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut member, &mut bytes).unwrap();
        change(&path, &mut bytes);
        header.set_size(bytes.len() as u64);
        header.set_cksum();
        builder.append(&header, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_into_a_fresh_instance_offline() {
    let source = Opsbox::new();
    up(&source);
    write_first(&source).await;
    let first = observe(&source).await;
    down(&source);
    succeeded(&source.run(&["snapshot", "save", "s1"]), "snapshot save s1");
    let archive = source.home.path().join("s1.tar.zst");
    let archive_text = archive.display().to_string();
    succeeded(
        &source.run(&["snapshot", "export", "s1", &archive_text]),
        "snapshot export",
    );

    let target = Opsbox::new();
    // A flipped byte in a member: refused before anything is kept, naming file and member.
    let damaged = target.home.path().join("damaged.tar.zst");
    rewrite_archive(&archive, &damaged, &|path, bytes| {
        if path == "data/postgres/data/PG_VERSION" {
            bytes[0] ^= 1;
        }
    });
    let refused = target.run(&["snapshot", "import", &damaged.display().to_string()]);
    let text = refused.stderr.clone();
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains(&damaged.display().to_string())
            && text.contains("data/postgres/data/PG_VERSION")
            && text.contains("sha256")
            && text.contains("hint:"),
        "{text}"
    );
    // Another PostgreSQL major: refused.
    let other_major = target.home.path().join("pg15.tar.zst");
    rewrite_archive(&archive, &other_major, &|path, bytes| {
        if path == "manifest.json" {
            let mut manifest: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            manifest["postgres_major"] = 15.into();
            *bytes = serde_json::to_vec(&manifest).unwrap();
        }
    });
    let refused = target.run(&["snapshot", "import", &other_major.display().to_string()]);
    let text = refused.stderr.clone();
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("PostgreSQL 15") && text.contains("PostgreSQL 16"),
        "{text}"
    );
    let listed = succeeded(&target.run(&["snapshot", "ls", "--json"]), "snapshot ls");
    assert_eq!(listed.trim(), "[]", "a refused import left a snapshot");

    succeeded(
        &target.run(&["snapshot", "import", &archive_text, "fixture"]),
        "snapshot import",
    );
    succeeded(
        &target.run(&["snapshot", "restore", "fixture"]),
        "snapshot restore",
    );
    let output = target
        .command()
        .args(["--offline", "up", "-d", "--services", SERVICES])
        .args(target.port_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    succeeded(&output.into(), "opsbox --offline up -d");
    assert_eq!(observe(&target).await, first);
    down(&target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_equals_a_fresh_stack() {
    let opsbox = Opsbox::new();
    up(&opsbox);
    let fresh = observe(&opsbox).await;
    assert_eq!(fresh.buckets, [BUCKET]);
    assert_eq!(fresh.last_sequence, 0);
    write_first(&opsbox).await;
    let changed = observe(&opsbox).await;
    down(&opsbox);

    // Only S3: the rows and events stay.
    succeeded(&opsbox.run(&["reset", "s3"]), "opsbox reset s3");
    up(&opsbox);
    let state = observe(&opsbox).await;
    assert_eq!(state.objects, fresh.objects);
    assert_eq!(state.rows, changed.rows);
    assert_eq!(state.last_sequence, changed.last_sequence);
    down(&opsbox);

    succeeded(&opsbox.run(&["reset"]), "opsbox reset");
    up(&opsbox);
    assert_eq!(observe(&opsbox).await, fresh);
    down(&opsbox);
}

/// The JSON of a snapshot command that must have run on a running stack.
fn on_running_stack(output: &Outcome, what: &str) -> serde_json::Value {
    let text = succeeded(output, what);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value["running"], true,
        "{what} did not see the running stack: {value}"
    );
    assert!(value["paused_ms"].as_u64().is_some(), "{value}");
    value
}

/// save, restore and reset on a running stack: no `down`, the clients reconnect, and each
/// sees exactly the state it should (s1 after restore, the fresh stack after reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_restore_and_reset_work_on_a_running_stack() {
    let opsbox = Opsbox::new();
    up(&opsbox);
    let fresh = observe(&opsbox).await;
    write_first(&opsbox).await;
    let first = observe(&opsbox).await;
    let saved = on_running_stack(
        &opsbox.run(&["snapshot", "save", "s1", "--json"]),
        "snapshot save s1 (running)",
    );
    assert_eq!(saved["services"].as_array().unwrap().len(), 3, "{saved}");
    // The stack went on as it was.
    assert_eq!(observe(&opsbox).await, first);
    write_second(&opsbox).await;
    let second = observe(&opsbox).await;
    differ_everywhere(&first, &second);

    on_running_stack(
        &opsbox.run(&["snapshot", "restore", "s1", "--json"]),
        "snapshot restore s1 (running)",
    );
    let (_, status) = opsbox.status_json();
    let states: Vec<(&str, &str)> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("nats", "ready"), ("postgres", "ready"), ("s3", "ready")],
        "{status}"
    );
    assert_eq!(observe(&opsbox).await, first);

    on_running_stack(&opsbox.run(&["reset", "--json"]), "reset (running)");
    assert_eq!(observe(&opsbox).await, fresh);
    down(&opsbox);
}

/// What the writers of `save_while_writing_is_consistent` did.
#[derive(Debug, Default)]
struct Written {
    /// Rounds of the first writer (rows then messages).
    rounds: u64,
    errors: Vec<String>,
    slowest: Duration,
}

/// Two writers, each a causal chain across two services, each step waited for before the
/// next: round `i` of the first writes row `i` into `rounds`, then publishes message `i`;
/// round `j` of the second PUTs object `j`, then writes row `j` into `puts`.
async fn write_in_rounds(opsbox: &Opsbox, stop: tokio::sync::watch::Receiver<bool>) -> Written {
    let setup = opsbox.postgres().await;
    setup
        .batch_execute(
            "CREATE TABLE rounds (i bigint PRIMARY KEY, pad text NOT NULL);
             CREATE TABLE puts (j bigint PRIMARY KEY)",
        )
        .await
        .unwrap();
    let rows_then_messages = async {
        let postgres = opsbox.postgres().await;
        let js = async_nats::jetstream::new(async_nats::connect(opsbox.nats_url()).await.unwrap());
        let mut written = Written::default();
        let mut i: u64 = 0;
        while !*stop.borrow() {
            i += 1;
            let began = Instant::now();
            if let Err(e) = postgres
                .execute(
                    "INSERT INTO rounds VALUES ($1, repeat('x', 2000))",
                    &[&(i as i64)],
                )
                .await
            {
                written.errors.push(format!("row {i}: {e}"));
            }
            let published = async {
                js.publish(format!("enterprise.rounds.{i}"), i.to_string().into())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = published.await {
                written.errors.push(format!("message {i}: {e}"));
            }
            written.slowest = written.slowest.max(began.elapsed());
            written.rounds = i;
        }
        written
    };
    let objects_then_rows = async {
        let postgres = opsbox.postgres().await;
        let s3 = s3::client(opsbox.s3_port, true);
        let mut written = Written::default();
        let mut j: u64 = 0;
        while !*stop.borrow() {
            j += 1;
            let began = Instant::now();
            if let Err(e) = s3
                .put_object()
                .bucket(BUCKET)
                .key(format!("rounds/{j:08}"))
                .body(ByteStream::from(j.to_string().into_bytes()))
                .send()
                .await
            {
                written.errors.push(format!("object {j}: {e}"));
            }
            if let Err(e) = postgres
                .execute("INSERT INTO puts VALUES ($1)", &[&(j as i64)])
                .await
            {
                written.errors.push(format!("put row {j}: {e}"));
            }
            written.slowest = written.slowest.max(began.elapsed());
            written.rounds = j;
        }
        written
    };
    let (mut first, second) = tokio::join!(rows_then_messages, objects_then_rows);
    first.errors.extend(second.errors);
    first.slowest = first.slowest.max(second.slowest);
    first
}

/// A snapshot saved while writers run holds one moment of all three services: what it holds
/// of each is 1..n without a gap, and as each writer waits for one step before the next,
/// one moment means rows >= messages >= rows - 1 for the first writer and objects >= its
/// rows >= objects - 1 for the second. The writers see no error, only a pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_while_writing_is_consistent_and_only_pauses_the_writer() {
    let opsbox = Opsbox::new();
    up(&opsbox);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let writer = {
        let opsbox = &opsbox;
        async move { write_in_rounds(opsbox, stopping).await }
    };
    let saving = async {
        // Let the writers get going, save in the middle of it, let them go on.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let command = opsbox.command();
        let saved = tokio::task::spawn_blocking(move || {
            let mut command = command;
            Outcome::from(
                command
                    .args(["snapshot", "save", "busy", "--json"])
                    .output()
                    .unwrap(),
            )
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.send(true).unwrap();
        saved
    };
    let (written, saved) = tokio::join!(writer, saving);
    let saved = on_running_stack(&saved, "snapshot save busy (while writing)");
    assert!(
        written.errors.is_empty(),
        "the writers saw errors, not just a pause: {:?}",
        written.errors
    );
    eprintln!(
        "writers: {} rounds, slowest round {} ms; save held clients {} ms",
        written.rounds,
        written.slowest.as_millis(),
        saved["paused_ms"]
    );

    on_running_stack(
        &opsbox.run(&["snapshot", "restore", "busy", "--json"]),
        "snapshot restore busy",
    );
    let postgres = opsbox.postgres().await;
    let column = |rows: Vec<tokio_postgres::Row>| -> Vec<i64> {
        rows.iter().map(|row| row.get(0)).collect()
    };
    let rows = column(
        postgres
            .query("SELECT i FROM rounds ORDER BY i", &[])
            .await
            .unwrap(),
    );
    let put_rows = column(
        postgres
            .query("SELECT j FROM puts ORDER BY j", &[])
            .await
            .unwrap(),
    );
    let js = async_nats::jetstream::new(async_nats::connect(opsbox.nats_url()).await.unwrap());
    let mut events = js.get_stream("EVENTS").await.unwrap();
    let info = events.info().await.unwrap().clone();
    let mut messages = Vec::new();
    if info.state.messages > 0 {
        for sequence in info.state.first_sequence..=info.state.last_sequence {
            let message = events.get_raw_message(sequence).await.unwrap();
            messages.push(
                String::from_utf8(message.payload.to_vec())
                    .unwrap()
                    .parse::<i64>()
                    .unwrap(),
            );
        }
    }
    let s3 = s3::client(opsbox.s3_port, true);
    let mut objects = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("rounds/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page.unwrap().contents() {
            let key = object.key().unwrap();
            objects.push(key.trim_start_matches("rounds/").parse::<i64>().unwrap());
        }
    }
    let counted = |what: &str, seen: &[i64]| {
        let expected: Vec<i64> = (1..=seen.len() as i64).collect();
        assert_eq!(
            seen, expected,
            "the snapshot's {what} are not 1..n without a gap"
        );
        seen.len() as i64
    };
    let (rows, messages, objects, put_rows) = (
        counted("rows", &rows),
        counted("messages", &messages),
        counted("objects", &objects),
        counted("rows of PUTs", &put_rows),
    );
    eprintln!(
        "snapshot holds {rows} rows and {messages} messages; {objects} objects and {put_rows} rows of PUTs"
    );
    assert!(
        rows > 0 && objects > 0,
        "the save came before the writers' first round"
    );
    assert!(
        rows >= messages && messages >= rows - 1,
        "not one moment: {rows} rows but {messages} messages"
    );
    assert!(
        objects >= put_rows && put_rows >= objects - 1,
        "not one moment: {objects} objects but {put_rows} rows of PUTs"
    );
    assert!(
        (rows as u64) < written.rounds,
        "the snapshot holds every round ({rows} of {}): it was not taken while writing",
        written.rounds
    );
    down(&opsbox);
}
