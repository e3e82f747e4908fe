//! `opsbox status`: not running, and a running stand-in supervisor whose run file is checked
//! against the live processes.

use opsbox::state::ServiceState;
use opsbox::types::ProcessIdentity;
use opsbox::types::ServiceName;

use crate::support::{FakeChild, FakeSupervisor, Project, run_file};

#[test]
fn not_running_shows_every_service_stopped_and_exits_1() {
    let project = Project::new();
    let table = project.run(&["status"]);
    table.expect_code(1, "opsbox status when nothing runs");
    for service in ["nats", "postgres", "s3"] {
        assert!(
            table
                .stdout
                .lines()
                .any(|l| l.starts_with(service) && l.contains("stopped")),
            "{service} is not shown as stopped:\n{}",
            table.stdout
        );
    }
    assert!(table.stderr.contains("not running"), "{}", table.stderr);

    let json = project.run(&["ps", "--json"]);
    json.expect_code(1, "opsbox ps --json when nothing runs");
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON on stdout");
    assert_eq!(value["running"], false);
    assert!(value["supervisor_pid"].is_null());
    let states: Vec<&str> = value["services"]
        .as_array()
        .expect("a services array")
        .iter()
        .map(|s| s["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, ["stopped", "stopped", "stopped"]);
}

#[test]
fn running_stack_is_checked_against_live_processes() {
    let project = Project::new();
    let supervisor = FakeSupervisor::start(&project);
    let nats = FakeChild::start();
    // A recorded postgres process that no longer exists (same pid, other start time).
    let dead = ProcessIdentity {
        pid: nats.identity.pid,
        start_ticks: nats.identity.start_ticks + 1,
    };
    let mut run = run_file(
        &project,
        supervisor.identity,
        vec![
            (ServiceName::Nats, ServiceState::Ready, Some(nats.identity)),
            (ServiceName::Postgres, ServiceState::Ready, Some(dead)),
            (ServiceName::S3, ServiceState::Ready, None),
        ],
    );
    let postgres = run
        .service_mut(ServiceName::Postgres)
        .expect("postgres record");
    postgres.last_error = Some("exited with status 1".into());
    postgres.restarts = 3;
    project.write_log("postgres", "l1\nl2\nl3\nl4\nl5\nFATAL: boom\n");
    run.write(&project.state().run_file())
        .expect("write the run file");

    let json = project.run(&["status", "--json"]);
    json.expect_code(1, "status with a dead postgres");
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON on stdout");
    assert_eq!(value["running"], true);
    assert_eq!(value["supervisor_pid"], supervisor.identity.pid);
    let services = value["services"].as_array().expect("services");
    assert_eq!(services[0]["name"], "nats");
    assert_eq!(services[0]["state"], "ready");
    assert_eq!(services[0]["pid"], nats.identity.pid);
    assert!(
        services[0]["uptime_seconds"]
            .as_u64()
            .is_some_and(|s| s >= 192)
    );
    assert_eq!(
        services[1]["state"], "restarting",
        "a dead ready process is shown honestly"
    );
    assert!(services[1]["pid"].is_null());
    assert_eq!(services[1]["restarts"], 3);
    assert_eq!(services[2]["state"], "ready");
    assert!(
        json.stderr.contains("FATAL: boom") && !json.stderr.contains("l1"),
        "the last 5 log lines of the failing service are not shown: {}",
        json.stderr
    );

    let table = project.run(&["status"]);
    table.expect_code(1, "status table with a dead postgres");
    let nats_line = table
        .stdout
        .lines()
        .find(|l| l.starts_with("nats"))
        .expect("a nats row");
    assert!(
        nats_line.contains(&nats.identity.pid.to_string())
            && nats_line.contains("3m")
            && nats_line.contains("http://127.0.0.1:41000"),
        "the nats row lacks pid, uptime or address: {nats_line}"
    );
    drop(supervisor);
}
