//! The PostgreSQL cluster template: a new data directory is a verified copy of one initialised
//! cluster per recipe, with its own compose database and init scripts; credentials never share
//! a template; a corrupted template is rebuilt; eight instances at once build it once.
//!
//! Each test has its own cache directory (so the template cache starts empty) whose
//! `postgresql/` is the shared binary cache.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::stack::Opsbox;
use crate::support::{project_copy, shared_cache, temp_dir as open_temp_dir};

/// A cache directory with no templates, sharing the test binaries.
pub(crate) fn cache_without_templates() -> tempfile::TempDir {
    let cache = open_temp_dir();
    let binaries = shared_cache().join("postgresql");
    std::fs::create_dir_all(&binaries).unwrap();
    std::os::unix::fs::symlink(&binaries, cache.path().join("postgresql")).unwrap();
    cache
}

/// A project whose compose file sets this PostgreSQL password and whose initdb.d counts its
/// runs in a table.
pub(crate) fn project_with_password(password: &str) -> tempfile::TempDir {
    let project = project_copy();
    let compose = project.path().join("ops/docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    assert!(text.contains("POSTGRES_PASSWORD: postgres\n"));
    std::fs::write(
        &compose,
        text.replace(
            "POSTGRES_PASSWORD: postgres\n",
            &format!("POSTGRES_PASSWORD: {password}\n"),
        ),
    )
    .unwrap();
    std::fs::write(
        project.path().join("ops/postgres/initdb.d/010_count.sql"),
        "CREATE TABLE init_runs (at timestamptz DEFAULT now()); INSERT INTO init_runs DEFAULT VALUES;",
    )
    .unwrap();
    project
}

pub(crate) fn instance(project: &Path, cache: &Path) -> Opsbox {
    let mut opsbox = Opsbox::with_project(project.to_path_buf());
    opsbox.cache_dir = cache.to_path_buf();
    opsbox
}

/// `opsbox up -d --services postgres`; its progress lines.
fn up(opsbox: &Opsbox) -> String {
    opsbox.up_detached("postgres").stderr
}

fn built(progress: &str) -> bool {
    progress.contains("postgres: built the cluster template")
}

fn copied(progress: &str) -> bool {
    progress.contains("postgres: cluster copied from the template")
}

pub(crate) async fn connect(opsbox: &Opsbox, password: &str) -> tokio_postgres::Client {
    let (client, connection) = opsbox
        .postgres_config(password)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to port {}: {e}", opsbox.postgres_port));
    tokio::spawn(connection);
    client
}

/// The cluster's identifier, chosen at random by initdb: equal only for copies of one cluster.
pub(crate) async fn system_identifier(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT system_identifier FROM pg_control_system()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn init_runs(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM init_runs", &[])
        .await
        .unwrap()
        .get(0)
}

fn templates(cache: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache.join("postgres-templates"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    dirs.sort();
    dirs
}

async fn assert_refused(opsbox: &Opsbox, password: &str) {
    let refused = opsbox
        .postgres_config(password)
        .connect(tokio_postgres::NoTls)
        .await;
    let error = format!(
        "{:?}",
        refused
            .err()
            .unwrap_or_else(|| panic!("the password {password:?} was accepted"))
    );
    assert!(error.contains("password authentication failed"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_is_a_copy_of_the_template_with_its_own_database_and_init_run() {
    let cache = cache_without_templates();
    let project = project_with_password("postgres");
    let first = instance(project.path(), cache.path());
    let second = instance(project.path(), cache.path());

    let progress = up(&first);
    assert!(
        built(&progress),
        "the first instance builds the template:\n{progress}"
    );
    let progress = up(&second);
    assert!(
        copied(&progress) && !built(&progress),
        "the second instance copies the template:\n{progress}"
    );
    assert_eq!(templates(cache.path()).len(), 1);

    let one = connect(&first, "postgres").await;
    let two = connect(&second, "postgres").await;
    assert_eq!(
        system_identifier(&one).await,
        system_identifier(&two).await,
        "the second cluster is not a copy of the first one's template"
    );
    let superuser: bool = two
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user AND current_user = 'postgres'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(superuser);
    assert_eq!(init_runs(&two).await, 1, "the init scripts of the copy");
    assert_refused(&second, "not-the-password").await;
    // Instances stay apart: a table of one is not in the other.
    two.batch_execute("CREATE TABLE only_in_second (id int)")
        .await
        .unwrap();
    let in_first: Option<String> = one
        .query_one("SELECT to_regclass('only_in_second')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_first, None);
    drop((one, two));

    // PGDATA as PostgreSQL requires it: 0700, owned by the account the server runs as.
    let pgdata = second.data_dir.join("postgres/data");
    let meta = std::fs::metadata(&pgdata).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mode() & 0o777, 0o700, "{}", pgdata.display());
    let pid = second.run_file().unwrap()["services"][0]["process"]["pid"]
        .as_i64()
        .unwrap();
    let postmaster_uid = std::fs::metadata(format!("/proc/{pid}")).unwrap().uid();
    assert_eq!(meta.uid(), postmaster_uid, "PGDATA's owner runs the server");

    // The init scripts ran once: a restart does not run them again.
    let down = second.run(&["down"]);
    assert!(down.status.success(), "{}", down.stderr);
    let progress = up(&second);
    assert!(!copied(&progress), "a restart copies nothing:\n{progress}");
    let two = connect(&second, "postgres").await;
    assert_eq!(init_runs(&two).await, 1, "the init scripts ran again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_passwords_never_share_a_template() {
    let cache = cache_without_templates();
    let project_one = project_with_password("first-secret");
    let project_two = project_with_password("second-secret");
    let one = instance(project_one.path(), cache.path());
    let two = instance(project_two.path(), cache.path());

    let progress = up(&one);
    assert!(built(&progress), "{progress}");
    let progress = up(&two);
    assert!(
        built(&progress) && !copied(&progress),
        "another password gets its own template:\n{progress}"
    );
    let dirs = templates(cache.path());
    assert_eq!(dirs.len(), 2, "{dirs:?}");

    let client_one = connect(&one, "first-secret").await;
    let client_two = connect(&two, "second-secret").await;
    assert_ne!(
        system_identifier(&client_one).await,
        system_identifier(&client_two).await
    );
    assert_refused(&two, "first-secret").await;
    assert_refused(&one, "second-secret").await;

    // The password is nowhere in the template's own records (only in the cluster, as
    // PostgreSQL's SCRAM verifier).
    for dir in dirs {
        for name in ["recipe", "manifest", ".opsbox-verified"] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            assert!(
                !text.contains("secret"),
                "{}: {text}",
                dir.join(name).display()
            );
        }
        assert!(!dir.to_string_lossy().contains("secret"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_keeps_the_four_most_recently_used_templates() {
    let cache = cache_without_templates();
    let passwords = ["first", "second", "third", "fourth", "fifth"];
    let projects: Vec<_> = passwords.iter().map(|p| project_with_password(p)).collect();
    let instances: Vec<Opsbox> = projects
        .iter()
        .map(|project| instance(project.path(), cache.path()))
        .collect();
    let mut before_fifth = Vec::new();
    for (index, opsbox) in instances.iter().enumerate() {
        let progress = up(opsbox);
        assert!(built(&progress), "{progress}");
        if index == 3 {
            before_fifth = templates(cache.path());
        }
    }
    assert_eq!(before_fifth.len(), 4, "{before_fifth:?}");
    let left = templates(cache.path());
    assert_eq!(left.len(), 4, "{left:?}");
    let gone: Vec<_> = before_fifth.iter().filter(|d| !left.contains(d)).collect();
    assert_eq!(
        gone.len(),
        1,
        "one template removed: {before_fifth:?} -> {left:?}"
    );

    // The removed one was the least recently used, the first password's: its instance keeps
    // its own copy and runs on, and its next new instance builds the template again.
    let client = connect(&instances[0], "first").await;
    assert_eq!(init_runs(&client).await, 1);
    let mut again = instance(projects[0].path(), cache.path());
    let data = open_temp_dir();
    again.data_dir = data.path().join("again");
    let progress = up(&again);
    assert!(
        built(&progress),
        "the first password's template was kept: {progress}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_template_is_detected_rebuilt_and_reported_in_one_line() {
    let cache = cache_without_templates();
    let project = project_with_password("postgres");
    let first = instance(project.path(), cache.path());
    let progress = up(&first);
    assert!(built(&progress), "{progress}");

    // Flip one byte in the middle of a catalog file of the template.
    let template = templates(cache.path()).pop().unwrap();
    let victim = template.join("cluster/global/pg_control");
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();

    let second = instance(project.path(), cache.path());
    let progress = up(&second);
    let reports: Vec<&str> = progress
        .lines()
        .filter(|line| line.contains("cluster template"))
        .collect();
    assert_eq!(reports.len(), 1, "one line about the template:\n{progress}");
    assert!(
        reports[0].contains("was corrupt")
            && reports[0].contains("checksum mismatch")
            && reports[0].contains("global/pg_control")
            && reports[0].contains("rebuilt it"),
        "the line names the corruption and the rebuild: {}",
        reports[0]
    );
    let client = connect(&second, "postgres").await;
    assert_eq!(init_runs(&client).await, 1);
    assert_ne!(
        std::fs::read(&victim).unwrap(),
        bytes,
        "the corrupted file is still in the template"
    );

    // The rebuilt template is good: the next instance copies it.
    let third = instance(project.path(), cache.path());
    let progress = up(&third);
    assert!(
        copied(&progress) && !progress.contains("corrupt"),
        "{progress}"
    );
    let client_three = connect(&third, "postgres").await;
    assert_eq!(
        system_identifier(&client).await,
        system_identifier(&client_three).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_instances_at_once_on_an_empty_cache_build_the_template_once() {
    let cache = cache_without_templates();
    let project = project_with_password("postgres");
    let instances: Vec<Opsbox> = (0..8)
        .map(|_| instance(project.path(), cache.path()))
        .collect();
    let children: Vec<_> = instances
        .iter()
        .map(|opsbox| {
            opsbox
                .command()
                .args(["up", "-d", "--services", "postgres"])
                .args(opsbox.port_args())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let mut builds = 0;
    let mut copies = 0;
    for output in &outputs {
        let progress = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "an up -d failed:\n{progress}");
        builds += usize::from(built(&progress));
        copies += usize::from(copied(&progress));
    }
    assert_eq!(
        (builds, copies),
        (1, 7),
        "one build, seven copies; progress:\n{}",
        outputs
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    assert_eq!(templates(cache.path()).len(), 1);
    let mut identifiers = Vec::new();
    for opsbox in &instances {
        let client = connect(opsbox, "postgres").await;
        assert_eq!(init_runs(&client).await, 1);
        identifiers.push(system_identifier(&client).await);
    }
    identifiers.dedup();
    assert_eq!(identifiers.len(), 1, "{identifiers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_initialisation_is_started_again_from_the_template() {
    let cache = cache_without_templates();
    let project = project_with_password("postgres");
    let broken = project.path().join("ops/postgres/initdb.d/020_broken.sql");
    std::fs::write(&broken, "INSERT INTO no_such_table VALUES (1);").unwrap();
    let opsbox = instance(project.path(), cache.path());

    let failed = opsbox
        .command()
        .args(["up", "-d", "--services", "postgres"])
        .args(opsbox.port_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        !failed.status.success(),
        "a failing init script fails up:\n{stderr}"
    );
    assert!(stderr.contains("020_broken.sql"), "{stderr}");
    let marker = opsbox.data_dir.join("postgres/data.initialising");
    assert!(marker.exists(), "the half-initialised cluster is marked");

    std::fs::remove_file(&broken).unwrap();
    let progress = up(&opsbox);
    assert!(copied(&progress), "{progress}");
    assert!(
        !marker.exists(),
        "the marker stays after a good initialisation"
    );
    let client = connect(&opsbox, "postgres").await;
    assert_eq!(
        init_runs(&client).await,
        1,
        "the first attempt's rows are gone"
    );
}
