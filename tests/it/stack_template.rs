//! The stack template and spares: a new data dir of a recipe whose first state is in the
//! cache starts from it (init scripts not run again, `initial` hard-linked from the cache); a
//! damaged template is not used; a changed init script is another recipe; `reset` never takes
//! a spare built from another `initial`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::pg_template::{
    cache_without_templates, connect, instance, project_with_password, system_identifier,
};
use crate::support::stack::Opsbox;

const SERVICES: &str = "nats,postgres,s3";

/// The kept stack templates in `cache` (complete ones: with their record).
fn templates(cache: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache.join("stack-templates")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name().unwrap().to_string_lossy().starts_with('.')
                && p.join(".opsbox-verified").is_file()
        })
        .collect();
    dirs.sort();
    dirs
}

/// Wait until `check` holds (the background work after `up` is done).
fn eventually(what: &str, check: impl Fn() -> bool) {
    let began = Instant::now();
    while !check() {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "not within 60 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn init_run_times(opsbox: &Opsbox) -> Vec<String> {
    connect(opsbox, "postgres")
        .await
        .query("SELECT at::text FROM init_runs ORDER BY at", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Whether table `name` exists in the compose database of `opsbox`.
async fn table_exists(opsbox: &Opsbox, name: &str) -> bool {
    let found: Option<String> = connect(opsbox, "postgres")
        .await
        .query_one("SELECT to_regclass($1)::text", &[&name])
        .await
        .unwrap()
        .get(0);
    found.is_some()
}

fn down(opsbox: &Opsbox) {
    let down = opsbox.run(&["down"]);
    assert!(down.status.success(), "{}", down.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_starts_from_the_stack_template_without_running_init_again() {
    let cache = cache_without_templates();
    let project = project_with_password("postgres");
    let first = instance(project.path(), cache.path());
    let progress = first.up_detached(SERVICES).stderr;
    assert!(
        !progress.contains("from the stack template"),
        "an empty cache has no template:\n{progress}"
    );
    eventually(
        "the first instance keeps its first state as the template",
        || templates(cache.path()).len() == 1,
    );
    let template = templates(cache.path()).remove(0);
    let first_runs = init_run_times(&first).await;
    assert_eq!(first_runs.len(), 1);

    let second = instance(project.path(), cache.path());
    let progress = second.up_detached(SERVICES).stderr;
    assert!(
        progress.contains("first state from the stack template"),
        "the second instance starts from the template:\n{progress}"
    );
    // The init script did not run again: its one row, with the first run's time.
    assert_eq!(init_run_times(&second).await, first_runs);
    assert_eq!(
        system_identifier(&connect(&first, "postgres").await).await,
        system_identifier(&connect(&second, "postgres").await).await
    );
    // EVENTS and the bucket are there, empty.
    let js = async_nats::jetstream::new(async_nats::connect(second.nats_url()).await.unwrap());
    let mut events = js.get_stream("EVENTS").await.unwrap();
    assert_eq!(events.info().await.unwrap().state.messages, 0);
    let s3 = crate::support::s3::client(second.s3_port, true);
    let buckets = s3.list_buckets().send().await.unwrap();
    let names: Vec<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, [crate::support::s3::BUCKET]);
    // Its `initial` snapshot is the template itself, hard-linked: no byte copied.
    let file = "data/postgres/data/PG_VERSION";
    assert_eq!(
        std::fs::metadata(second.data_dir.join("snapshots/initial").join(file))
            .unwrap()
            .ino(),
        std::fs::metadata(template.join(file)).unwrap().ino(),
        "the initial snapshot is not linked from the template"
    );
    // Apart from the first: a table of the second is not in the first, and `reset` takes the
    // second back to the template's state.
    connect(&second, "postgres")
        .await
        .batch_execute(
            "CREATE TABLE only_in_second (id int); INSERT INTO only_in_second VALUES (1)",
        )
        .await
        .unwrap();
    assert!(!table_exists(&first, "only_in_second").await);
    let reset = second.run(&["reset"]);
    assert!(reset.status.success(), "{}", reset.stderr);
    assert!(!table_exists(&second, "only_in_second").await);
    assert_eq!(init_run_times(&second).await, first_runs);
    down(&first);
    down(&second);

    // A changed init script is another recipe: it runs, and gets a template of its own.
    let changed = project_with_password("postgres");
    std::fs::write(
        changed.path().join("ops/postgres/initdb.d/020_more.sql"),
        "CREATE TABLE more_init (x int);",
    )
    .unwrap();
    let third = instance(changed.path(), cache.path());
    let progress = third.up_detached(SERVICES).stderr;
    assert!(
        !progress.contains("from the stack template"),
        "a changed init script used the old template:\n{progress}"
    );
    assert!(table_exists(&third, "more_init").await);
    eventually("the changed recipe keeps a template of its own", || {
        templates(cache.path()).len() == 2
    });
    down(&third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_stack_template_is_not_used_and_is_replaced() {
    let cache = cache_without_templates();
    let project = project_with_password("postgres");
    let first = instance(project.path(), cache.path());
    first.up_detached(SERVICES);
    eventually("the template is kept", || {
        templates(cache.path()).len() == 1
    });
    let template = templates(cache.path()).remove(0);
    // Wait for the spare too, then damage the template's manifest.
    eventually("the template's spare is built", || {
        template.with_extension("spare").is_dir()
    });
    down(&first);
    let manifest = template.join("manifest.json");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push(' ');
    std::fs::write(&manifest, text).unwrap();

    let second = instance(project.path(), cache.path());
    let progress = second.up_detached(SERVICES).stderr;
    assert!(
        progress.contains("not using the stack template") && progress.contains("checksum mismatch"),
        "the damaged template is reported:\n{progress}"
    );
    assert_eq!(
        init_run_times(&second).await.len(),
        1,
        "init ran for the new dir"
    );
    eventually("the template is replaced by a good one", || {
        let record = std::fs::read_to_string(template.join(".opsbox-verified")).unwrap_or_default();
        let bytes = std::fs::read(template.join("manifest.json")).unwrap_or_default();
        use sha2::Digest;
        record.starts_with(&hex::encode(sha2::Sha256::digest(&bytes)))
    });
    down(&second);
}

/// A spare of `initial` is only ever the state it was built from: after `initial` is saved
/// anew, `reset` brings the new one, and the stale spare is thrown away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_never_uses_a_spare_of_another_initial_state() {
    let opsbox = Opsbox::new();
    opsbox.up_detached(SERVICES);
    let spare = opsbox.data_dir.join("snapshots/.spare-initial");
    eventually("the spare of initial is built", || spare.is_dir());
    let postgres = opsbox.postgres().await;
    postgres
        .batch_execute("CREATE TABLE marker (x int); INSERT INTO marker VALUES (42)")
        .await
        .unwrap();
    drop(postgres);
    down(&opsbox);
    for args in [
        &["snapshot", "rm", "initial"][..],
        &["snapshot", "save", "initial"],
    ] {
        let outcome = opsbox.run(args);
        assert!(outcome.status.success(), "{args:?}: {}", outcome.stderr);
    }
    assert!(
        spare.is_dir(),
        "the old spare is still there, waiting to be refused"
    );
    for round in 0..2 {
        let reset = opsbox.run(&["reset"]);
        assert!(reset.status.success(), "{}", reset.stderr);
        opsbox.up_detached(SERVICES);
        let marker: i32 = opsbox
            .postgres()
            .await
            .query_one("SELECT x FROM marker", &[])
            .await
            .unwrap_or_else(|e| panic!("reset {round} lost the new initial state: {e}"))
            .get(0);
        assert_eq!(marker, 42);
        down(&opsbox);
    }
}
