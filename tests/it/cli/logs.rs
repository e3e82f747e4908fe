//! `opsbox logs`: tails, prefixes, unknown names, and following across truncation and
//! rotation.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::stack::Opsbox;

#[test]
fn unknown_service_is_a_usage_error_listing_the_valid_names() {
    let project = Opsbox::with_own_cache();
    let outcome = project.run(&["logs", "redis"]);
    outcome.expect_code(2, "opsbox logs redis");
    assert!(
        outcome.stderr.contains("redis") && outcome.stderr.contains("nats, postgres, s3, opsbox"),
        "the error does not name the bad service and the valid ones: {}",
        outcome.stderr
    );
}

#[test]
fn tail_of_one_log_is_unprefixed_and_several_are_prefixed_like_compose() {
    let project = Opsbox::with_own_cache();
    project.write_log("nats", "one\ntwo\nthree\n");
    project.write_log("opsbox", "started\nready\n");

    let one = project.run(&["logs", "-n", "2", "nats"]);
    one.expect_code(0, "opsbox logs -n 2 nats");
    assert_eq!(one.stdout, "two\nthree\n");

    let two = project.run(&["logs", "--tail", "1", "opsbox", "nats"]);
    two.expect_code(0, "opsbox logs --tail 1 opsbox nats");
    assert_eq!(two.stdout, "nats   | three\nopsbox | ready\n");

    let all = project.run(&["logs"]);
    all.expect_code(0, "opsbox logs");
    assert_eq!(
        all.stdout,
        "nats     | one\nnats     | two\nnats     | three\nopsbox   | started\nopsbox   | ready\n"
    );
    assert!(
        all.stderr.contains("postgres.log") && all.stderr.contains("s3.log"),
        "missing logs were not noted on stderr: {}",
        all.stderr
    );
}

#[test]
fn follow_prints_new_lines_across_truncation_and_rotation_until_sigterm() {
    let project = Opsbox::with_own_cache();
    let path = project.write_log("nats", "old\n");
    let mut child = project
        .command()
        .args(["logs", "-f", "nats"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn opsbox logs -f");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("logs -f did not print {what} within 5 s"))
    };
    assert_eq!(next("the existing line"), "old");

    let append = |text: &str| {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open the log");
        file.write_all(text.as_bytes()).expect("append");
    };
    append("par");
    append("tial\n");
    assert_eq!(next("a line written in two pieces"), "partial");

    // Truncation is seen as the file getting shorter than what was read (as `tail -F` does).
    std::fs::write(&path, "cut\n").expect("truncate the log");
    assert_eq!(next("the line after truncation"), "cut");

    std::fs::rename(&path, path.with_extension("log.1")).expect("rotate the log");
    std::fs::write(&path, "after rotation\n").expect("write the new log");
    assert_eq!(next("the first line of the rotated log"), "after rotation");

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for logs -f") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "logs -f did not exit within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "logs -f did not exit 0 on SIGTERM");
}
