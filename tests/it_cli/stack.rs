//! The whole life of a real stack: `up -d`, `status`, `env`, `logs`, a second `up -d`, `down`,
//! `down -v`. These need `opsbox up` and the binaries (set OPSBOX_IT_CACHE_DIR to reuse a
//! cache between runs).

use std::process::Command;
use std::time::{Duration, Instant};

use opsbox::state::StateLock;
use opsbox::types::ProcessIdentity;

use crate::support::Stack;

/// Every pid `status --json` reports, as identities (recorded now, while they are alive).
fn live_processes(status: &serde_json::Value) -> Vec<ProcessIdentity> {
    let mut pids: Vec<i32> = status["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["pid"].as_i64())
        .map(|pid| pid as i32)
        .collect();
    pids.extend(status["supervisor_pid"].as_i64().map(|pid| pid as i32));
    let mut identities: Vec<ProcessIdentity> = pids
        .into_iter()
        .map(|pid| ProcessIdentity::of(pid).unwrap_or_else(|| panic!("pid {pid} is not alive")))
        .collect();
    // Every descendant too: PostgreSQL's backends and background workers, anything a child
    // started.
    let roots: Vec<i32> = identities.iter().map(|p| p.pid).collect();
    identities.extend(descendants(&roots));
    identities
}

/// The parent pid of every live process.
fn parents() -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            out.push((pid, ppid));
        }
    }
    out
}

/// Live descendants of `roots` (not the roots themselves), as identities.
fn descendants(roots: &[i32]) -> Vec<ProcessIdentity> {
    let parents = parents();
    let mut found: Vec<i32> = Vec::new();
    let mut frontier: Vec<i32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) && !roots.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found.into_iter().filter_map(ProcessIdentity::of).collect()
}

#[test]
fn up_status_env_logs_down_leave_nothing_behind() {
    let stack = Stack::up();
    let (code, status) = stack.status();
    assert_eq!(
        code,
        Some(0),
        "status after up -d is not all ready: {status:#}"
    );
    assert_eq!(status["running"], true);
    for service in status["services"].as_array().expect("services") {
        assert_eq!(service["state"], "ready", "{service:#}");
    }
    assert_eq!(status["services"][0]["port"], stack.nats_port);
    assert_eq!(status["services"][1]["port"], stack.postgres_port);
    assert_eq!(status["services"][2]["port"], stack.s3_port);
    let processes = live_processes(&status);
    assert!(
        processes.len() > 3,
        "no descendants besides supervisor, nats and postgres: {processes:?}"
    );

    // env from the running stack, evaluated by bash.
    let env = stack.project.run(&["env"]);
    env.expect_code(0, "opsbox env");
    let script = "eval \"$1\"; printf '%s\\n' \"$NATS_URL\" \"$DATABASE_URL\" \"$AWS_ENDPOINT_URL\"; \
         exec 3<>/dev/tcp/127.0.0.1/\"$PGPORT\" && echo reachable";
    let output = Command::new("bash")
        .args(["-c", script, "bash", &env.stdout])
        .output()
        .expect("run bash");
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("nats://127.0.0.1:{}", stack.nats_port).as_str(),
            format!(
                "postgresql://postgres:postgres@127.0.0.1:{}/historian",
                stack.postgres_port
            )
            .as_str(),
            format!("http://127.0.0.1:{}", stack.s3_port).as_str(),
            "reachable",
        ],
        "env did not describe the running stack"
    );

    let logs = stack.project.run(&["logs", "-n", "5", "nats"]);
    logs.expect_code(0, "opsbox logs -n 5 nats");
    let file = std::fs::read_to_string(
        stack
            .project
            .state()
            .log(Some(opsbox::types::ServiceName::Nats)),
    )
    .expect("the nats log");
    let lines: Vec<&str> = file.lines().collect();
    assert!(
        lines.len() > 5,
        "the nats log has only {} lines",
        lines.len()
    );
    let last_five: String = lines[lines.len() - 5..]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        logs.stdout, last_five,
        "-n 5 is not the file's last 5 lines"
    );
    let all = stack.project.run(&["logs", "nats"]);
    assert!(
        all.stdout.contains("Starting nats-server"),
        "the nats log has no nats-server banner:\n{}",
        all.stdout
    );

    // A second up -d is a no-op.
    stack
        .up_again()
        .expect_code(0, "a second up -d while running");
    let (_, again) = stack.status();
    assert_eq!(
        again["supervisor_pid"], status["supervisor_pid"],
        "up -d restarted the stack"
    );

    let started = Instant::now();
    stack.project.run(&["down"]).expect_code(0, "opsbox down");
    let took = started.elapsed();
    for process in &processes {
        assert!(!process.is_alive(), "pid {} survived down", process.pid);
    }
    assert!(
        !StateLock::is_held(&stack.project.state()),
        "the lock is still held after down"
    );
    for port in [
        stack.nats_port,
        stack.nats_monitor_port,
        stack.postgres_port,
        stack.s3_port,
    ] {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            panic!("port {port} is still taken after down: {e}");
        }
    }
    assert!(took < Duration::from_secs(5), "down took {took:?}");
    let (code, after) = stack.status();
    assert_eq!(code, Some(1));
    assert_eq!(after["running"], false);
}

#[test]
fn down_v_leaves_no_data() {
    let stack = Stack::up();
    let processes = live_processes(&stack.status().1);
    stack
        .project
        .run(&["down", "-v"])
        .expect_code(0, "opsbox down -v");
    for process in &processes {
        assert!(!process.is_alive(), "pid {} survived down -v", process.pid);
    }
    assert!(
        !stack.project.data_dir.exists(),
        "down -v left {} behind",
        stack.project.data_dir.display()
    );
    assert!(
        stack.project.cache_dir.exists(),
        "down -v deleted the cache"
    );
}
