//! The services that run as child processes: start one until ready, start all in parallel,
//! and watch one, restarting it as the restart policy says.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::run_file::{RunFileHandle, mark_ready};
use crate::error::{Error, Result};
use crate::ports;
use crate::services::nats::NatsService;
use crate::services::postgres::PostgresService;
use crate::services::postgres_template::Provided;
use crate::state::StateDir;
use crate::state::instances::PortSlot;
use crate::state::{ExitRecord, ServiceState};
use crate::supervisor::signals::StopRequest;
use crate::supervisor::{RestartPolicy, RunningChild};
use crate::types::ServiceName;
use crate::types::unix_now_ms;

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

    /// Returns when the running service has a problem only a new start cures (JetStream
    /// disabled by nats-server); never for a healthy one.
    async fn problem(&self) -> String {
        match self {
            ChildService::Nats(nats) => nats.jetstream_failed().await,
            ChildService::Postgres(_) => std::future::pending().await,
        }
    }

    /// After a problem-stop: returns once the service has the room it needs to start usefully
    /// (nats-server sizes JetStream's storage limit from the free space at start).
    async fn wait_for_room(&self, run_file: &RunFileHandle) {
        const ROOM: u64 = 64 * 1024 * 1024;
        let ChildService::Nats(nats) = self else {
            return;
        };
        let mut told = false;
        while nats.free_store_bytes().is_some_and(|free| free < ROOM) {
            if !told {
                let reason = format!(
                    "waiting for {} MiB free on {} before starting nats-server again",
                    ROOM / 1024 / 1024,
                    nats.store_dir.display()
                );
                crate::output::warn(&format!("nats: {reason}"));
                run_file.update(ServiceName::Nats, |record| {
                    record.restart_reason = Some(reason);
                    record.state = ServiceState::Restarting;
                    record.process = None;
                });
                told = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub fn grace(&self) -> Duration {
        match self {
            ChildService::Nats(_) => Duration::from_secs(15),
            ChildService::Postgres(_) => Duration::from_secs(30),
        }
    }

    /// Spawn, wait for readiness, and ensure what the service must hold (EVENTS, the
    /// database). On failure the child is stopped before the error is returned.
    pub async fn start(
        &self,
        timeout: Duration,
    ) -> std::result::Result<RunningChild, StartFailure> {
        match self {
            ChildService::Nats(nats) => {
                let log_offset = fs_err::metadata(&nats.log).map_or(0, |m| m.len());
                let mut child = crate::supervisor::spawn(&nats.child_spec())
                    .await
                    .map_err(|e| StartFailure::before_spawn(e.into()))?;
                let ready = async {
                    nats.wait_ready(&mut child, timeout).await?;
                    nats.ensure_stream().await
                }
                .await;
                match ready {
                    Ok(()) => Ok(child),
                    Err(error) => Err(StartFailure {
                        error: error.into(),
                        exit: Some(child.stop(Duration::from_secs(5)).await),
                        transient: false,
                        port_taken: ports::log_says_address_in_use(&nats.log, log_offset),
                    }),
                }
            }
            ChildService::Postgres(postgres) => {
                let prepared = async {
                    if let Some(message) = postgres.recover_stale_pid_file(timeout).await? {
                        crate::output::warn(&message);
                    }
                    let mut kept = None;
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
                        let template = postgres.template().dir;
                        let (provided, server) = postgres.initialise(timeout).await?;
                        kept = server;
                        match provided {
                            Provided::Copied => crate::output::info(&format!(
                                "postgres: cluster copied from the template {}",
                                template.display()
                            )),
                            Provided::Built => crate::output::info(&format!(
                                "postgres: built the cluster template {} (initdb) and copied it",
                                template.display()
                            )),
                            Provided::WithoutTemplate { reason } => crate::output::warn(&format!(
                                "postgres: cannot use the cluster template ({reason}); ran initdb for this data directory alone"
                            )),
                            Provided::Rebuilt { reason } => crate::output::warn(&format!(
                                "postgres: the cluster template {} was corrupt ({reason}); rebuilt it",
                                template.display()
                            )),
                        }
                    }
                    Ok::<_, Error>(kept)
                };
                // Initialising runs a server of its own on the port: it can find it taken too.
                let prepare_offset = postgres.log_length();
                let kept = prepared.await.map_err(|error| StartFailure {
                    port_taken: ports::log_says_address_in_use(&postgres.log, prepare_offset),
                    ..StartFailure::before_spawn(error)
                })?;
                let log_offset = postgres.log_length();
                // The server that initialised a new cluster keeps running as the service.
                let mut child = match kept {
                    Some(child) => child,
                    None => crate::supervisor::spawn(&postgres.child_spec())
                        .await
                        .map_err(|e| StartFailure::before_spawn(e.into()))?,
                };
                let ready = async {
                    postgres.wait_ready(&mut child, timeout).await?;
                    postgres.ensure_database().await
                }
                .await;
                match ready {
                    Ok(()) => Ok(child),
                    Err(error) => Err(StartFailure {
                        error: error.into(),
                        exit: Some(child.stop(Duration::from_secs(10)).await),
                        transient: postgres.refused_for_leftovers_since(log_offset),
                        port_taken: ports::log_says_address_in_use(&postgres.log, log_offset),
                    }),
                }
            }
        }
    }
}

/// A start that did not reach ready.
#[derive(Debug)]
pub struct StartFailure {
    pub error: Error,
    /// How the process ended, when one was spawned.
    pub exit: Option<ExitStatus>,
    /// The server refused to start because of what a hard crash of its predecessor left
    /// behind (a lock or shared memory of processes still exiting): that clears by itself, so
    /// even a first start retries it.
    pub transient: bool,
    /// The server could not bind its port (another program took it after the port was
    /// chosen): with `--ports auto`, the start is retried on a new port.
    pub port_taken: bool,
}

impl StartFailure {
    fn before_spawn(error: Error) -> Self {
        Self {
            error,
            exit: None,
            transient: false,
            port_taken: false,
        }
    }
}

impl ChildService {
    /// The port slots of this service that `--ports auto` may move.
    fn port_slots(&self) -> &'static [PortSlot] {
        match self {
            ChildService::Nats(_) => &[PortSlot::Nats, PortSlot::NatsMonitor],
            ChildService::Postgres(_) => &[PortSlot::Postgres],
        }
    }

    pub fn port(&self, slot: PortSlot) -> Option<u16> {
        match (self, slot) {
            (ChildService::Nats(nats), PortSlot::Nats) => Some(nats.port),
            (ChildService::Nats(nats), PortSlot::NatsMonitor) => Some(nats.monitor_port),
            (ChildService::Postgres(postgres), PortSlot::Postgres) => Some(postgres.port),
            _ => None,
        }
    }

    fn set_port(&mut self, slot: PortSlot, port: u16) {
        match (self, slot) {
            (ChildService::Nats(nats), PortSlot::Nats) => nats.port = port,
            (ChildService::Nats(nats), PortSlot::NatsMonitor) => nats.monitor_port = port,
            (ChildService::Postgres(postgres), PortSlot::Postgres) => postgres.port = port,
            _ => {}
        }
    }

    /// Every (slot, port) of this service.
    pub fn ports(&self) -> Vec<(PortSlot, u16)> {
        self.port_slots()
            .iter()
            .filter_map(|&slot| self.port(slot).map(|port| (slot, port)))
            .collect()
    }
}

/// How a process ended, for the run file.
fn exit_record(status: Option<ExitStatus>, was_ready: bool) -> ExitRecord {
    use std::os::unix::process::ExitStatusExt;
    ExitRecord {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()).map(|number| {
            match nix::sys::signal::Signal::try_from(number) {
                Ok(signal) => signal.as_str().to_string(),
                Err(_) => format!("signal {number}"),
            }
        }),
        at_ms: unix_now_ms(),
        was_ready,
    }
}

/// How long a freeze may take to stop every process of a service.
pub const FREEZE_WITHIN: Duration = Duration::from_secs(10);
/// The longest a service stays frozen, whatever the client does (a save that takes longer
/// fails; the service is not left stopped).
pub const MAX_FREEZE: Duration = Duration::from_secs(600);

/// What the control channel (control.rs) asks of a watched child.
pub enum ChildControl {
    /// Freeze it; say whether that took; thaw when `thaw` completes (or its sender is gone).
    Freeze {
        frozen: oneshot::Sender<std::result::Result<(), String>>,
        thaw: oneshot::Receiver<()>,
    },
    /// Stop it cleanly; say so; start it again when `release` brings a channel for the
    /// outcome (or its sender is gone).
    Hold {
        stopped: oneshot::Sender<()>,
        release: oneshot::Receiver<oneshot::Sender<std::result::Result<(), String>>>,
    },
}

/// Watch one child until a stop is requested: restart it whenever it dies, as the restart
/// policy says (at once after a ready run, with backoff after failed starts, within the rate
/// limit), record each exit and delay in the run file and the log, and freeze or hold it
/// when the control channel asks.
pub async fn watch_child(
    service: ChildService,
    mut child: RunningChild,
    run_file: RunFileHandle,
    mut stop: watch::Receiver<StopRequest>,
    mut control: mpsc::Receiver<ChildControl>,
) {
    let name = service.name();
    let mut policy = RestartPolicy::default();
    loop {
        // Whether it died after a ready run (restart at once) or was stopped for being
        // unhealthy (restart with backoff: the cause may persist).
        let (status, mut what, was_ready) = tokio::select! {
            status = child.wait() => {
                // Children the dead process leaves (PostgreSQL backends) still hold its
                // shared memory and would block the restart: end the rest of its group.
                child.kill_orphaned_group();
                let what = format!(
                    "{name} exited ({status}) after {:.1} s ready",
                    child.started.elapsed().as_secs_f64()
                );
                (Some(status), what, true)
            }
            problem = service.problem() => {
                crate::output::warn(&format!("{name}: {problem}; stopping it to start it again"));
                let status = child.stop(service.grace()).await;
                tokio::select! {
                    _ = service.wait_for_room(&run_file) => {}
                    _ = stop.changed() => return,
                }
                (Some(status), format!("{name} was stopped ({status}): {problem}"), false)
            }
            Some(request) = control.recv() => match request {
                ChildControl::Freeze { frozen, thaw } => {
                    match child.freeze(FREEZE_WITHIN).await {
                        Ok(ice) => {
                            let _ = frozen.send(Ok(()));
                            let stopping = tokio::select! {
                                _ = thaw => false,
                                _ = tokio::time::sleep(MAX_FREEZE) => {
                                    crate::output::warn(&format!(
                                        "{name}: frozen for {} s, the longest allowed; running it again",
                                        MAX_FREEZE.as_secs()
                                    ));
                                    false
                                }
                                _ = stop.changed() => true,
                            };
                            ice.thaw();
                            if stopping {
                                stop_on_request(&service, child, &run_file, &stop).await;
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = frozen.send(Err(e.to_string()));
                        }
                    }
                    continue;
                }
                ChildControl::Hold { stopped, release } => {
                    run_file.update(name, |record| record.state = ServiceState::Stopping);
                    let status = child.stop(service.grace()).await;
                    crate::output::info(&format!(
                        "{name}: stopped ({status}) while a snapshot is restored"
                    ));
                    run_file.update(name, |record| {
                        record.state = ServiceState::Stopped;
                        record.process = None;
                        record.restart_reason = Some("held: a snapshot is being restored".into());
                    });
                    let _ = stopped.send(());
                    let outcome = tokio::select! {
                        outcome = release => outcome.ok(),
                        _ = stop.changed() => return,
                    };
                    run_file.update(name, |record| {
                        record.state = ServiceState::Starting;
                        record.restart_reason = None;
                    });
                    let attempt = Instant::now();
                    let Some(started) = start_unless_stopped(&service, &mut stop).await else {
                        return;
                    };
                    match started {
                        Ok(new_child) => {
                            crate::output::info(&format!(
                                "{name}: ready again in {} ms after the restore",
                                attempt.elapsed().as_millis()
                            ));
                            mark_ready(&run_file, name, &new_child);
                            child = new_child;
                            if let Some(outcome) = outcome {
                                let _ = outcome.send(Ok(()));
                            }
                            continue;
                        }
                        Err(failure) => {
                            let what = format!(
                                "{name}: start after the restore failed before ready: {}",
                                failure.error
                            );
                            if let Some(outcome) = outcome {
                                let _ = outcome.send(Err(what.clone()));
                            }
                            (failure.exit, what, false)
                        }
                    }
                }
            },
            _ = stop.changed() => {
                stop_on_request(&service, child, &run_file, &stop).await;
                return;
            }
        };
        let mut exit = exit_record(status, was_ready);
        loop {
            let decision = policy.after_exit(exit.was_ready, Instant::now());
            let state = if decision.crash_looping() {
                ServiceState::CrashLooping
            } else {
                ServiceState::Restarting
            };
            let due = unix_now_ms() + decision.delay.as_millis() as u64;
            let reason = decision.explain();
            crate::output::warn(&format!("{what}; {reason}"));
            run_file.update(name, |record| {
                record.state = state;
                record.process = None;
                record.restarts += 1;
                record.last_error = Some(what.clone());
                record.last_exit = Some(exit.clone());
                record.next_start_at_ms = Some(due);
                record.restart_reason = Some(reason.clone());
            });
            tokio::select! {
                _ = tokio::time::sleep(decision.delay) => {}
                _ = stop.changed() => return,
            }
            run_file.update(name, |record| record.next_start_at_ms = None);
            let attempt = Instant::now();
            let Some(restarted) = start_unless_stopped(&service, &mut stop).await else {
                return;
            };
            match restarted {
                Ok(new_child) => {
                    crate::output::info(&format!(
                        "{name}: back and ready in {} ms",
                        attempt.elapsed().as_millis()
                    ));
                    mark_ready(&run_file, name, &new_child);
                    child = new_child;
                    break;
                }
                Err(failure) => {
                    exit = exit_record(failure.exit, false);
                    what = format!("{name}: restart failed before ready: {}", failure.error);
                }
            }
        }
    }
}

/// Start `service` again, unless a stop is asked for first (`None`).
async fn start_unless_stopped(
    service: &ChildService,
    stop: &mut watch::Receiver<StopRequest>,
) -> Option<std::result::Result<RunningChild, StartFailure>> {
    tokio::select! {
        result = service.start(READY_TIMEOUT) => Some(result),
        _ = stop.changed() => None,
    }
}

/// The stop `opsbox down` or Ctrl-C asked for: the grace period, cut short by a second
/// Ctrl-C (or SIGKILL at once when the first request was already a forced one).
async fn stop_on_request(
    service: &ChildService,
    mut child: RunningChild,
    run_file: &RunFileHandle,
    stop: &watch::Receiver<StopRequest>,
) {
    let name = service.name();
    let request = *stop.borrow();
    run_file.update(name, |record| record.state = ServiceState::Stopping);
    let status = if request == StopRequest::Force {
        child.kill_group();
        child.wait().await
    } else {
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
}

/// How often a server may find its freshly chosen port taken before the start fails.
const PORT_RETRIES: usize = 5;

/// Start one service; a start refused only because of a hard crash's leftovers is retried,
/// with backoff, until `timeout` has passed; with `--ports auto`, a server that found its port
/// taken is started again on a new one (the returned service carries its ports).
async fn start_until_ready(
    mut service: ChildService,
    timeout: Duration,
    auto_ports: Option<&AutoPorts>,
) -> (ChildService, Result<RunningChild>) {
    let deadline = Instant::now() + timeout;
    let mut policy = RestartPolicy::default();
    let mut port_retries = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let failure = match service.start(left).await {
            Ok(child) => return (service, Ok(child)),
            Err(failure) => failure,
        };
        if failure.port_taken
            && let Some(auto) = auto_ports
            && port_retries < PORT_RETRIES
        {
            port_retries += 1;
            match repick(&mut service, auto) {
                Ok(moved) => {
                    crate::output::warn(&format!(
                        "{}: {moved}: another program took the port after opsbox chose it; starting it again there",
                        service.name()
                    ));
                    continue;
                }
                Err(error) => return (service, Err(error)),
            }
        }
        let decision = policy.after_exit(false, Instant::now());
        if !failure.transient || Instant::now() + decision.delay >= deadline {
            return (service, Err(failure.error));
        }
        crate::output::warn(&format!(
            "{}: start refused because of what the previous, crashed server left behind ({}); {}",
            service.name(),
            failure.error,
            decision.explain()
        ));
        tokio::time::sleep(decision.delay).await;
    }
}

/// Start every child service in parallel; on any failure stop those that started.
pub async fn start_all(
    services: &[ChildService],
    timeout: Duration,
    auto_ports: Option<&AutoPorts>,
) -> Result<Vec<(ChildService, RunningChild)>> {
    let results = futures::future::join_all(services.iter().map(|service| async move {
        let started = Instant::now();
        let (service, result) = start_until_ready(service.clone(), timeout, auto_ports).await;
        (service, result, started.elapsed())
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

/// What a stack started with `--ports auto` needs to move a server to a new port.
#[derive(Debug, Clone)]
pub struct AutoPorts {
    pub root: PathBuf,
    pub state: StateDir,
    pub host: IpAddr,
    /// The slots a port flag fixed: never moved.
    pub fixed: Vec<PortSlot>,
}

/// Give every movable port of `service` a new free port; says what moved.
fn repick(service: &mut ChildService, auto: &AutoPorts) -> Result<String> {
    let mut moved = Vec::new();
    let old: Vec<u16> = service.ports().into_iter().map(|(_, port)| port).collect();
    for (slot, port) in service.ports() {
        if auto.fixed.contains(&slot) {
            continue;
        }
        let new = ports::repick(&auto.root, &auto.state, auto.host, slot, &old)?;
        service.set_port(slot, new);
        moved.push(format!("{} port {port} -> {new}", slot.as_str()));
    }
    Ok(moved.join(", "))
}
