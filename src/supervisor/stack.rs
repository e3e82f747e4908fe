//! The running stack: start every selected service in parallel, keep the run file current,
//! restart crashed children with backoff, and stop everything in order when asked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::signals::StopRequest;
use super::{Backoff, RunningChild};
use crate::error::{Error, Result};
use crate::services::ServiceName;
use crate::services::nats::NatsService;
use crate::services::postgres::PostgresService;
use crate::services::s3::S3Server;
use crate::state::{RunFile, ServiceState};

/// How long a (re)started child may take to become ready before the attempt counts as failed.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A service that runs as a child process.
#[derive(Debug, Clone)]
pub enum ChildService {
    Nats(NatsService),
    Postgres(PostgresService),
}

impl ChildService {
    pub fn name(&self) -> ServiceName {
        match self {
            ChildService::Nats(_) => ServiceName::Nats,
            ChildService::Postgres(_) => ServiceName::Postgres,
        }
    }

    fn grace(&self) -> Duration {
        match self {
            ChildService::Nats(_) => Duration::from_secs(15),
            ChildService::Postgres(_) => Duration::from_secs(30),
        }
    }

    /// Spawn, wait for readiness, and ensure what the service must hold (EVENTS, the
    /// database). On failure the child is stopped before the error is returned.
    pub async fn start(&self, timeout: Duration) -> Result<RunningChild> {
        match self {
            ChildService::Nats(nats) => {
                let mut child = super::spawn(&nats.child_spec()).await?;
                let ready = async {
                    nats.wait_ready(&mut child, timeout).await?;
                    nats.ensure_stream().await
                }
                .await;
                match ready {
                    Ok(()) => Ok(child),
                    Err(e) => {
                        child.stop(Duration::from_secs(5)).await;
                        Err(e)
                    }
                }
            }
            ChildService::Postgres(postgres) => {
                if let Some(message) = postgres.recover_stale_pid_file().await? {
                    crate::output::warn(&message);
                }
                if !postgres.is_initialised() {
                    if let Some(account) = &postgres.account {
                        crate::output::info(&format!(
                            "postgres: opsbox runs as root, so PostgreSQL runs as the unprivileged account '{}' (uid {}), which owns {}",
                            account.name,
                            account.uid,
                            postgres.data_dir.display()
                        ));
                    }
                    crate::output::info("postgres: initialising a new database cluster");
                    postgres.initialise(timeout).await?;
                }
                let mut child = super::spawn(&postgres.child_spec()).await?;
                let ready = async {
                    postgres.wait_ready(&mut child, timeout).await?;
                    postgres.ensure_database().await
                }
                .await;
                match ready {
                    Ok(()) => Ok(child),
                    Err(e) => {
                        child.stop(Duration::from_secs(10)).await;
                        Err(e)
                    }
                }
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The run file, shared by the tasks that watch each service, rewritten on every change.
#[derive(Clone)]
pub struct RunFileHandle {
    inner: Arc<Mutex<RunFile>>,
    path: std::path::PathBuf,
}

impl RunFileHandle {
    pub fn new(run_file: RunFile, path: std::path::PathBuf) -> Self {
        Self {
            inner: Arc::new(Mutex::new(run_file)),
            path,
        }
    }

    pub fn update(&self, name: ServiceName, change: impl FnOnce(&mut crate::state::ServiceRecord)) {
        let mut run_file = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(record) = run_file.service_mut(name) {
            change(record);
        }
        if let Err(e) = run_file.write(&self.path) {
            crate::output::warn(&e.to_string());
        }
    }

    pub fn snapshot(&self) -> RunFile {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn write(&self) -> Result<()> {
        let run_file = self.snapshot();
        run_file.write(&self.path)?;
        Ok(())
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Record a child as ready in the run file.
pub fn mark_ready(run_file: &RunFileHandle, name: ServiceName, child: &RunningChild) {
    let identity = child.identity;
    run_file.update(name, |record| {
        record.state = ServiceState::Ready;
        record.process = Some(identity);
        record.started_at = Some(unix_now());
        record.last_error = None;
    });
}

/// Watch one child until a stop is requested: restart it with backoff whenever it dies.
pub async fn watch_child(
    service: ChildService,
    mut child: RunningChild,
    run_file: RunFileHandle,
    mut stop: watch::Receiver<StopRequest>,
) {
    let name = service.name();
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            status = child.wait() => {
                // Children the dead process leaves (PostgreSQL backends) still hold its
                // shared memory and would block the restart: end the rest of its group.
                child.kill_orphaned_group();
                crate::output::warn(&format!("{name} exited unexpectedly ({status}); restarting"));
                let mut started = child.started;
                loop {
                    let delay = backoff.next_delay(started);
                    let state = if backoff.crash_looping() { ServiceState::CrashLooping } else { ServiceState::Restarting };
                    run_file.update(name, |record| {
                        record.state = state;
                        record.process = None;
                        record.restarts += 1;
                        record.last_error = Some(format!("exited ({status})"));
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                    let attempt = Instant::now();
                    let restarted = tokio::select! {
                        result = service.start(READY_TIMEOUT) => result,
                        _ = stop.changed() => return,
                    };
                    match restarted {
                        Ok(new_child) => {
                            crate::output::info(&format!("{name}: back and ready in {} ms (restart {})", attempt.elapsed().as_millis(), backoff.restarts));
                            mark_ready(&run_file, name, &new_child);
                            child = new_child;
                            break;
                        }
                        Err(e) => {
                            crate::output::warn(&format!("{name}: restart failed: {e}"));
                            run_file.update(name, |record| record.last_error = Some(e.to_string()));
                            started = Instant::now();
                        }
                    }
                }
            }
            _ = stop.changed() => {
                let request = *stop.borrow();
                run_file.update(name, |record| record.state = ServiceState::Stopping);
                let status = if request == StopRequest::Force {
                    child.kill_group();
                    child.wait().await
                } else {
                    // A second Ctrl-C during the grace period kills the group at once.
                    let mut force = stop.clone();
                    let forced = async move {
                        while *force.borrow_and_update() != StopRequest::Force {
                            if force.changed().await.is_err() {
                                return;
                            }
                        }
                    };
                    child.stop_or_force(service.grace(), forced).await
                };
                run_file.update(name, |record| {
                    record.state = ServiceState::Stopped;
                    record.process = None;
                });
                crate::output::info(&format!("{name}: stopped ({status})"));
                return;
            }
        }
    }
}

/// Stop the S3 endpoint: stop accepting, drain in-flight requests.
pub async fn stop_s3(server: S3Server, run_file: &RunFileHandle) {
    run_file.update(ServiceName::S3, |record| {
        record.state = ServiceState::Stopping
    });
    server.shutdown(Duration::from_secs(10)).await;
    run_file.update(ServiceName::S3, |record| {
        record.state = ServiceState::Stopped
    });
    crate::output::info("s3: stopped");
}

/// Start every child service in parallel; on any failure stop those that started.
pub async fn start_all(
    services: &[ChildService],
    timeout: Duration,
) -> Result<Vec<(ChildService, RunningChild)>> {
    let results = futures::future::join_all(services.iter().map(|service| async move {
        let started = Instant::now();
        let result = service.start(timeout).await;
        (service.clone(), result, started.elapsed())
    }))
    .await;
    let mut running = Vec::new();
    let mut first_error: Option<Error> = None;
    for (service, result, took) in results {
        match result {
            Ok(child) => {
                crate::output::info(&format!(
                    "{}: ready in {} ms (pid {})",
                    service.name(),
                    took.as_millis(),
                    child.pid()
                ));
                running.push((service, child));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(error) = first_error {
        for (service, child) in running {
            child.stop(service.grace()).await;
        }
        return Err(error);
    }
    Ok(running)
}
