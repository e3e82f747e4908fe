//! `opsbox down` against stand-in processes: verified signals only, leftovers killed, data
//! deleted only where it is safe.

use std::time::{Duration, Instant};

use opsbox::state::{ServiceState, StateLock};
use opsbox::types::ProcessIdentity;
use opsbox::types::ServiceName;

use crate::support::{FakeChild, FakeSupervisor, Project, run_file, wait_for};

#[test]
fn not_running_exits_0_and_removes_a_stale_run_file() {
    let project = Project::new();
    let leftover = FakeChild::start();
    project.state().create().expect("create the data dir");
    let stale = run_file(
        &project,
        ProcessIdentity {
            pid: leftover.identity.pid,
            start_ticks: leftover.identity.start_ticks + 1,
        },
        vec![(ServiceName::Nats, ServiceState::Ready, None)],
    );
    stale
        .write(&project.state().run_file())
        .expect("write the run file");

    let outcome = project.run(&["down"]);
    outcome.expect_code(0, "down when nothing runs");
    assert!(
        outcome
            .stderr
            .contains("opsbox is not running for this project (data dir"),
        "{}",
        outcome.stderr
    );
    assert!(
        !project.state().run_file().exists(),
        "the stale run file is still there"
    );
    assert!(project.data_dir.exists(), "down without -v deleted data");
}

#[test]
fn stops_the_supervisor_and_kills_children_it_left_behind() {
    let project = Project::new();
    let mut supervisor = FakeSupervisor::start(&project);
    let mut nats = FakeChild::start();
    run_file(
        &project,
        supervisor.identity,
        vec![
            (ServiceName::Nats, ServiceState::Ready, Some(nats.identity)),
            (ServiceName::S3, ServiceState::Ready, None),
        ],
    )
    .write(&project.state().run_file())
    .expect("write the run file");

    let started = Instant::now();
    let outcome = project.run(&["down"]);
    let took = started.elapsed();
    outcome.expect_code(0, "down with a running supervisor");
    wait_for(
        Duration::from_secs(2),
        "the supervisor did not exit",
        || supervisor.exited(),
    );
    wait_for(Duration::from_secs(2), "the nats child did not die", || {
        nats.exited()
    });
    assert!(
        !StateLock::is_held(&project.state()),
        "the lock is still held"
    );
    assert!(
        !project.state().run_file().exists(),
        "the run file is left behind"
    );
    assert!(
        outcome
            .stderr
            .contains(&format!("nats (pid {}): killed", nats.identity.pid))
            && outcome.stderr.contains("opsbox supervisor"),
        "down did not say what it stopped: {}",
        outcome.stderr
    );
    assert!(took < Duration::from_secs(2), "down took {took:?}");
}

#[test]
fn never_signals_a_pid_whose_start_time_does_not_match() {
    let project = Project::new();
    let mut supervisor = FakeSupervisor::start(&project);
    let impostor = ProcessIdentity {
        pid: supervisor.identity.pid,
        start_ticks: supervisor.identity.start_ticks + 1,
    };
    run_file(&project, impostor, vec![])
        .write(&project.state().run_file())
        .expect("write the run file");

    let outcome = project.run(&["down", "--timeout", "1"]);
    outcome.expect_code(1, "down with a run file naming another process");
    assert!(
        outcome
            .stderr
            .contains("cannot tell which process runs opsbox")
            && outcome.stderr.contains("hint:"),
        "{}",
        outcome.stderr
    );
    assert!(
        !supervisor.exited(),
        "down signalled a process it could not verify"
    );
    assert!(StateLock::is_held(&project.state()));
}

#[test]
fn down_v_deletes_the_data_dir_but_not_the_cache() {
    let project = Project::new();
    project.write_log("nats", "x\n");
    std::fs::create_dir_all(project.data_dir.join("postgres/data")).expect("create data");
    std::fs::create_dir_all(project.cache_dir.join("nats-server/2.0")).expect("create cache");

    let outcome = project.run(&["down", "-v"]);
    outcome.expect_code(0, "down -v when nothing runs");
    assert!(
        !project.data_dir.exists(),
        "down -v left the data dir behind"
    );
    assert!(
        project.cache_dir.join("nats-server/2.0").is_dir(),
        "down -v touched the cache"
    );
    assert!(
        outcome.stderr.contains("deleted the data directory"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn down_v_refuses_a_data_dir_that_holds_the_cache() {
    let project = Project::new();
    let cache_inside = project.data_dir.join("cache");
    std::fs::create_dir_all(&cache_inside).expect("create the cache inside the data dir");
    let outcome = project.run_with_env(&["down", "-v"], &[("OPSBOX_CACHE_DIR", &cache_inside)]);
    outcome.expect_code(1, "down -v with the cache inside the data dir");
    assert!(
        outcome.stderr.contains("refusing to delete") && outcome.stderr.contains("hint:"),
        "{}",
        outcome.stderr
    );
    assert!(
        cache_inside.is_dir(),
        "the refused delete deleted something"
    );
}
