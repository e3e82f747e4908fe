//! Bad input to `opsbox up`: one clear error naming the thing, a hint, a non-zero exit code,
//! and the data dir untouched.

use crate::support::stack::Opsbox;
use crate::support::{Outcome, project_copy, tree_digest};

#[test]
fn a_taken_port_is_named_with_its_owner_and_the_flag_to_change_it() {
    let opsbox = Opsbox::new();
    std::fs::create_dir_all(opsbox.data_dir.join("nats/jetstream")).unwrap();
    std::fs::write(opsbox.data_dir.join("nats/jetstream/keep"), "data").unwrap();
    let before = tree_digest(&opsbox.data_dir);
    let squatter = std::net::TcpListener::bind(("127.0.0.1", opsbox.nats_port)).unwrap();

    let output = opsbox.up_expecting_failure("nats");
    let text = output.stderr.clone();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "port {} on 127.0.0.1 is already in use",
            opsbox.nats_port
        )),
        "{text}"
    );
    // The owner is this test process; a process another test forks at that moment holds the
    // socket too until it execs (the fd is close-on-exec), and may be the one named: it runs
    // this same test binary.
    let this_binary = std::env::current_exe().unwrap();
    assert!(
        text.contains(&format!("pid {}", std::process::id()))
            || (text.contains("(by pid ")
                && text.contains(&format!(": {}", this_binary.display()))),
        "owner named: {text}"
    );
    assert!(text.contains("--nats-port"), "hint names the flag: {text}");
    drop(squatter);
    let mut after = tree_digest(&opsbox.data_dir);
    after.retain(|(path, _)| !path.starts_with("logs") && !path.ends_with("opsbox.lock"));
    let mut before = before;
    before.retain(|(path, _)| !path.starts_with("logs") && !path.ends_with("opsbox.lock"));
    assert_eq!(after, before, "a failed start changed the data dir");
}

#[test]
fn a_malformed_nats_conf_is_named() {
    let project = project_copy();
    let conf = project.path().join("ops/nats.conf");
    std::fs::write(&conf, "port: 4222\njetstream {\n  store_dir: \"/data\"\n").unwrap();
    let opsbox = Opsbox::with_project(project.path().to_path_buf());
    let output = opsbox.up_expecting_failure("nats");
    let text = output.stderr.clone();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("nats.conf"), "{text}");
    assert!(text.contains("malformed"), "{text}");
    assert!(
        !opsbox.data_dir.exists(),
        "nothing was created for a config error"
    );
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let opsbox = Opsbox::new();
    let output = opsbox.run(&["up", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stderr.contains("--no-such-flag"));
}

#[test]
fn offline_with_an_empty_cache_says_what_is_missing() {
    let mut opsbox = Opsbox::new();
    opsbox.cache_dir = opsbox.home.path().join("empty-cache");
    let output = opsbox
        .command()
        .env("PATH", "/usr/bin:/bin")
        .args(["--offline", "up", "--services", "nats"])
        .args(opsbox.port_args())
        .output()
        .map(Outcome::from)
        .unwrap();
    let text = output.stderr.clone();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("nats-server"), "{text}");
    assert!(text.contains("offline"), "{text}");
    assert!(
        text.contains("opsbox fetch"),
        "hint says how to get it: {text}"
    );
}

#[test]
fn up_detached_with_a_taken_port_fails_fast_and_names_the_service() {
    let opsbox = Opsbox::new();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", opsbox.postgres_port)).unwrap();
    let began = std::time::Instant::now();
    let output = opsbox
        .command()
        .args(["up", "-d", "--wait-timeout", "1"])
        .args(opsbox.port_args())
        .output()
        .map(Outcome::from)
        .unwrap();
    let text = output.stderr.clone();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "cannot start postgres: port {}",
            opsbox.postgres_port
        )),
        "the error names the service and port:\n{text}"
    );
    assert!(text.contains("--postgres-port"), "{text}");
    assert!(
        began.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        began.elapsed()
    );
    drop(squatter);
    let status = opsbox.run(&["status"]);
    assert_eq!(status.status.code(), Some(1), "nothing is left running");
}

#[test]
fn an_unknown_key_in_nats_conf_is_reported_with_nats_servers_words_and_no_restarts() {
    let project = project_copy();
    let conf = project.path().join("ops/nats.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nno_such_setting: 1\n");
    std::fs::write(&conf, text).unwrap();
    let opsbox = Opsbox::with_project(project.path().to_path_buf());
    let output = opsbox.up_expecting_failure("nats");
    let text = output.stderr.clone();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("nats-server exited"), "{text}");
    assert!(
        text.contains("unknown field \"no_such_setting\""),
        "the log line from nats-server is shown:\n{text}"
    );
    let log = std::fs::read_to_string(opsbox.data_dir.join("logs/nats.log")).unwrap();
    assert_eq!(
        log.matches("unknown field").count(),
        1,
        "a bad config is not retried in a loop:\n{log}"
    );
}

#[test]
fn an_unusable_data_dir_is_named_with_a_hint() {
    let mut opsbox = Opsbox::new();
    // A regular file where a directory is needed: fails for root too.
    let blocker = opsbox.home.path().join("not-a-dir");
    std::fs::write(&blocker, "file").unwrap();
    opsbox.data_dir = blocker.join("data");
    let output = opsbox.up_expecting_failure("nats");
    let text = output.stderr.clone();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "cannot create the data directory {}",
            opsbox.data_dir.display()
        )),
        "{text}"
    );
    assert!(text.contains("--data-dir"), "hint: {text}");
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "file");
}
