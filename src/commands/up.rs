//! `opsbox up`: foreground, detached (`-d`), and the hidden `supervise` that a detached run
//! starts in the background.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{GlobalArgs, UpArgs};
use crate::console::{self, ConsoleConfig, ConsoleServer};
use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::output;
use crate::services::ServiceName;
use crate::services::nats::NatsService;
use crate::services::postgres::PostgresService;
use crate::services::s3::{S3Config, S3Server};
use crate::settings::Settings;
use crate::snapshot::{self, Snapshots};
use crate::state::{RunFile, ServiceRecord, ServiceState, StateLock};
use crate::supervisor::stack::{self, ChildService, READY_TIMEOUT, RunFileHandle};
use crate::supervisor::{ChildSpec, ProcessIdentity, log_tail, process, signals};

pub async fn run(global: &GlobalArgs, args: &UpArgs, background: bool) -> Result<ExitCode> {
    let settings = Settings::resolve(
        global,
        Some(args.host),
        &args.ports,
        &args.binaries,
        &args.services,
    )?;
    settings.state.create()?;
    if args.detach && !background {
        return detach(&settings, args).await;
    }
    supervise(&settings, background).await
}

/// Run the stack in this process until SIGINT/SIGTERM.
async fn supervise(settings: &Settings, detached: bool) -> Result<ExitCode> {
    let began = Instant::now();
    let _lock = StateLock::acquire(&settings.state)?;
    // A restore that a killed opsbox left half done is finished (or discarded) before any
    // service reads its data.
    let snapshots = Snapshots::new(&settings.state);
    super::snapshot::report_recovery(snapshot::restore::recover(&snapshots)?);
    let fresh = is_fresh(settings, &snapshots);
    let mut stop =
        signals::install().map_err(|e| Error::io("cannot install signal handlers", e))?;
    if let Some(port) = settings.console_port {
        let ports = [
            (ServiceName::Nats, settings.nats.port),
            (ServiceName::Nats, settings.nats.monitor_port),
            (ServiceName::Postgres, settings.postgres.port),
            (ServiceName::S3, settings.s3.port),
        ];
        if let Some((service, _)) = ports.iter().find(|(s, p)| settings.runs(*s) && *p == port) {
            return Err(Error::Usage {
                message: format!(
                    "the console and {service} are both configured to use port {port}"
                ),
                hint: Some("give the console its own port with --console-port".into()),
            });
        }
    }
    let s3_listener = check_ports(settings)?;
    let console_listener = settings
        .console_port
        .map(|port| console::bind(settings.host, port))
        .transpose()?;

    let fetcher = Fetcher {
        cache_dir: settings.cache_dir.clone(),
        offline: settings.offline,
        mirror: settings.mirror.clone(),
        reporter: Arc::new(output::ProgressReporter::with_log(settings.state.log(None))),
    };
    let (nats_binary, postgres_install) = tokio::join!(
        async {
            if settings.runs(ServiceName::Nats) {
                fetcher
                    .nats_server(settings.nats.binary.clone(), &settings.nats.version)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            if settings.runs(ServiceName::Postgres) {
                fetcher
                    .postgres(&settings.postgres.fetch_request())
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        }
    );
    let mut children = Vec::new();
    if let Some(binary) = nats_binary? {
        children.push(ChildService::Nats(NatsService::prepare(settings, binary)?));
    }
    if let Some(install) = postgres_install? {
        children.push(ChildService::Postgres(PostgresService::prepare(
            settings, install,
        )?));
    }

    let run_file = RunFileHandle::new(
        initial_run_file(settings, detached),
        settings.state.run_file(),
    );
    run_file.write()?;

    let s3_config = S3Config {
        root: settings.state.s3(),
        access_key: settings.s3.access_key.clone(),
        secret_key: settings.s3.secret_key.clone(),
        buckets: settings.s3.buckets.clone(),
        log: settings.state.log(Some(ServiceName::S3)),
    };
    let starting = async {
        let s3 = async {
            match s3_listener {
                Some(listener) => {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .map_err(|e| Error::io("cannot use the S3 listener", e))?;
                    let began = Instant::now();
                    let server = S3Server::start(s3_config, listener).await?;
                    output::info(&format!("s3: ready in {} ms", began.elapsed().as_millis()));
                    Ok::<_, Error>(Some(server))
                }
                None => Ok(None),
            }
        };
        let (s3, running) = tokio::join!(s3, stack::start_all(&children, READY_TIMEOUT));
        match (s3, running) {
            (Ok(s3), Ok(running)) => Ok((s3, running)),
            (Ok(Some(server)), Err(e)) => {
                server.shutdown(Duration::from_secs(5)).await;
                Err(e)
            }
            (Err(e), Ok(running)) => {
                for (service, child) in running {
                    let _ = service;
                    child.stop(Duration::from_secs(15)).await;
                }
                Err(e)
            }
            (_, Err(e)) => Err(e),
        }
    };
    let started = tokio::select! {
        result = starting => Some(result),
        _ = stop.changed() => None,
    };
    let (s3, running) = match started {
        Some(Ok((s3, running))) if fresh => {
            match keep_initial_snapshot(settings, &snapshots, &children, running).await {
                Ok(running) => (s3, running),
                Err(e) => {
                    if let Some(server) = s3 {
                        server.shutdown(Duration::from_secs(5)).await;
                    }
                    run_file.remove();
                    return Err(e);
                }
            }
        }
        Some(Ok(parts)) => parts,
        Some(Err(e)) => {
            run_file.remove();
            return Err(e);
        }
        None => {
            // Dropping the start future kills any child it had spawned (kill-on-drop).
            run_file.remove();
            output::info("stopped before the stack was ready");
            return Ok(ExitCode::from(130));
        }
    };

    let console = console_listener
        .map(|listener| {
            let storage = s3.as_ref().map(S3Server::storage);
            let env = super::env::variables(settings, None);
            ConsoleServer::start(ConsoleConfig::new(settings, env, storage), listener)
        })
        .transpose()?;
    for (service, child) in &running {
        stack::mark_ready(&run_file, service.name(), child);
    }
    if s3.is_some() {
        run_file.update(ServiceName::S3, |record| {
            record.state = ServiceState::Ready;
            record.started_at = Some(unix_now());
        });
    }
    output::info(&format!(
        "opsbox: all services ready in {} ms",
        began.elapsed().as_millis()
    ));
    if !settings.quiet && !detached {
        output::info(&summary(&run_file.snapshot(), settings));
        output::info("press Ctrl-C to stop (twice to force)");
    }

    let watchers: Vec<_> = running
        .into_iter()
        .map(|(service, child)| {
            tokio::spawn(stack::watch_child(
                service,
                child,
                run_file.clone(),
                stop.clone(),
            ))
        })
        .collect();
    while *stop.borrow() == signals::StopRequest::None {
        if stop.changed().await.is_err() {
            break;
        }
    }
    output::info("opsbox: stopping");
    let s3_stop = async {
        if let Some(console) = console {
            console.shutdown(Duration::from_secs(2)).await;
        }
        if let Some(server) = s3 {
            stack::stop_s3(server, &run_file).await;
        }
    };
    let (_, _) = tokio::join!(s3_stop, futures::future::join_all(watchers));
    run_file.remove();
    output::info("opsbox: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Whether this `up` creates the data of every service: then the state it reaches is kept
/// as the "initial" snapshot, which `opsbox reset` goes back to.
fn is_fresh(settings: &Settings, snapshots: &Snapshots) -> bool {
    ServiceName::ALL.iter().all(|&service| {
        settings.runs(service)
            && !settings
                .state
                .root
                .join(snapshot::part_path(service))
                .exists()
    }) && !snapshots.dir(snapshot::INITIAL).exists()
}

/// Stop nats-server and PostgreSQL cleanly, save the "initial" snapshot, start them again.
/// Runs before the run file says ready, so no client writes meanwhile (S3 objects are only
/// hard-linked, which takes milliseconds).
async fn keep_initial_snapshot(
    settings: &Settings,
    snapshots: &Snapshots,
    children: &[ChildService],
    running: Vec<(ChildService, crate::supervisor::RunningChild)>,
) -> Result<Vec<(ChildService, crate::supervisor::RunningChild)>> {
    let began = Instant::now();
    futures::future::join_all(
        running
            .into_iter()
            .map(|(service, child)| async move { child.stop(service.grace()).await }),
    )
    .await;
    let versions = super::snapshot::versions(settings);
    tokio::task::block_in_place(|| {
        snapshot::save::save(
            snapshots,
            snapshot::INITIAL,
            &versions,
            &snapshot::NoProgress,
        )
    })?;
    let running = stack::start_all(children, READY_TIMEOUT).await?;
    output::info(&format!(
        "opsbox: kept this first state as snapshot '{}' for `opsbox reset` ({} ms)",
        snapshot::INITIAL,
        began.elapsed().as_millis()
    ));
    Ok(running)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn initial_run_file(settings: &Settings, detached: bool) -> RunFile {
    let host = settings.client_host();
    let services = settings
        .services
        .iter()
        .map(|&name| {
            let (url, port) = match name {
                ServiceName::Nats => (
                    format!("nats://{host}:{}", settings.nats.port),
                    settings.nats.port,
                ),
                ServiceName::Postgres => (
                    output::url::postgres(
                        &settings.postgres.user,
                        None,
                        &host,
                        settings.postgres.port,
                        &settings.postgres.database,
                    ),
                    settings.postgres.port,
                ),
                ServiceName::S3 => (
                    format!("http://{host}:{}", settings.s3.port),
                    settings.s3.port,
                ),
            };
            ServiceRecord {
                name,
                state: ServiceState::Starting,
                process: None,
                url,
                port,
                started_at: None,
                data_dir: settings.state.service_data(name),
                log: settings.state.log(Some(name)),
                restarts: 0,
                last_error: None,
                last_exit: None,
                next_start_at_ms: None,
                restart_reason: None,
            }
        })
        .collect();
    RunFile {
        opsbox_version: env!("CARGO_PKG_VERSION").to_string(),
        supervisor: ProcessIdentity::current().unwrap_or(ProcessIdentity {
            pid: std::process::id() as i32,
            start_ticks: 0,
        }),
        started_at: unix_now(),
        detached,
        project_dir: settings.project_dir.clone(),
        data_dir: settings.state.root.clone(),
        host: settings.host.to_string(),
        services,
        console_url: settings
            .console_port
            .map(|port| format!("http://{host}:{port}")),
    }
}

/// The connection summary, like `supabase start` prints.
pub fn summary(run_file: &RunFile, settings: &Settings) -> String {
    let mut rows = Vec::new();
    for record in &run_file.services {
        let (url, credentials) = match record.name {
            ServiceName::Nats => (record.url.clone(), "-".to_string()),
            ServiceName::Postgres => (
                output::url::postgres(
                    &settings.postgres.user,
                    Some(&settings.postgres.password),
                    &settings.client_host(),
                    record.port,
                    &settings.postgres.database,
                ),
                format!(
                    "{} / {}",
                    settings.postgres.user, settings.postgres.password
                ),
            ),
            ServiceName::S3 => (
                record.url.clone(),
                format!("{} / {}", settings.s3.access_key, settings.s3.secret_key),
            ),
        };
        rows.push(vec![
            record.name.to_string(),
            url,
            credentials,
            record.data_dir.display().to_string(),
        ]);
    }
    if let Some(url) = &run_file.console_url {
        rows.push(vec![
            "console".into(),
            url.clone(),
            format!("{} / {}", settings.s3.access_key, settings.s3.secret_key),
            "-".into(),
        ]);
    }
    let mut text = output::table(&["SERVICE", "URL", "CREDENTIALS", "DATA"], &rows);
    if run_file
        .services
        .iter()
        .any(|s| s.name == ServiceName::Nats)
    {
        text.push_str(&format!(
            "NATS stream {} on {:?}; monitoring http://{}:{}\n",
            settings.ops.stream.name,
            settings.ops.stream.subjects,
            settings.client_host(),
            settings.nats.monitor_port
        ));
    }
    text.push_str(&format!("logs: {}\n", settings.state.logs().display()));
    text
}

/// Bind-test every port before starting anything. The S3 listener is kept and handed to the
/// S3 server; the others are released for the child processes to bind.
fn check_ports(settings: &Settings) -> Result<Option<TcpListener>> {
    let previous: Vec<i32> = RunFile::read(&settings.state.run_file())
        .ok()
        .flatten()
        .map(|run| {
            std::iter::once(run.supervisor.pid)
                .chain(run.services.iter().filter_map(|s| s.process.map(|p| p.pid)))
                .collect()
        })
        .unwrap_or_default();
    let mut wanted: Vec<(ServiceName, &'static str, u16, &'static str)> = Vec::new();
    if settings.runs(ServiceName::Nats) {
        wanted.push((
            ServiceName::Nats,
            "client",
            settings.nats.port,
            "--nats-port",
        ));
        wanted.push((
            ServiceName::Nats,
            "monitoring",
            settings.nats.monitor_port,
            "--nats-monitor-port",
        ));
    }
    if settings.runs(ServiceName::Postgres) {
        wanted.push((
            ServiceName::Postgres,
            "server",
            settings.postgres.port,
            "--postgres-port",
        ));
    }
    if settings.runs(ServiceName::S3) {
        wanted.push((ServiceName::S3, "API", settings.s3.port, "--s3-port"));
    }
    for (i, (service, _, port, _)) in wanted.iter().enumerate() {
        if let Some((other, _, _, _)) = wanted[..i].iter().find(|(_, _, p, _)| p == port) {
            return Err(Error::Usage {
                message: format!("{service} and {other} are both configured to use port {port}"),
                hint: Some("give each service its own port (--nats-port, --nats-monitor-port, --postgres-port, --s3-port)".into()),
            });
        }
    }
    let mut s3 = None;
    for (service, what, port, flag) in wanted {
        let addr = SocketAddr::new(settings.host, port);
        match TcpListener::bind(addr) {
            Ok(listener) => {
                if service == ServiceName::S3 {
                    listener
                        .set_nonblocking(true)
                        .map_err(|e| Error::io("cannot configure the S3 listener", e))?;
                    s3 = Some(listener);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let owner = process::port_owner(port);
                let ours = owner
                    .as_ref()
                    .is_some_and(|(pid, _)| previous.contains(pid));
                return Err(Error::PortInUse {
                    service,
                    what,
                    host: settings.host.to_string(),
                    port,
                    owner: owner
                        .map(|(pid, command)| format!(" (by pid {pid}: {command})"))
                        .unwrap_or_default(),
                    flag,
                    ours,
                });
            }
            Err(e) => {
                return Err(Error::Service {
                    service,
                    message: format!("cannot listen on {addr} for the {what} port: {e}"),
                    hint: Some("check --host: it must be an address of this machine".into()),
                });
            }
        }
    }
    Ok(s3)
}

/// `up -d`: start `opsbox supervise` in the background and wait until every service is ready.
async fn detach(settings: &Settings, args: &UpArgs) -> Result<ExitCode> {
    if StateLock::is_held(&settings.state) {
        output::info(&format!(
            "opsbox is already running for this project (data dir {})",
            settings.state.root.display()
        ));
        if let Ok(Some(run_file)) = RunFile::read(&settings.state.run_file())
            && !settings.quiet
        {
            output::info(&summary(&run_file, settings));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let log = settings.state.log(None);
    let mut progress = LogFollower::at_end(log.clone());
    let exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find the opsbox executable", e))?;
    let mut spec = ChildSpec::new("opsbox supervisor", exe, log.clone());
    spec.args = supervise_args(settings, args);
    let mut child = crate::supervisor::spawn_detached(&spec)?;
    let identity = ProcessIdentity::of(child.id() as i32);
    let began = Instant::now();
    let timeout = Duration::from_secs(args.wait_timeout);
    loop {
        // Show the background supervisor's progress lines as they come.
        // Detail lines (full error chains) stay in the log.
        for line in progress.new_lines() {
            output::info_unless_detail(&line);
        }
        if let Ok(Some(status)) = child.try_wait() {
            for line in progress.new_lines() {
                output::info_unless_detail(&line);
            }
            return Err(Error::Message(format!(
                "the opsbox supervisor exited ({status}) before the stack was ready; its log is {}",
                log.display()
            )));
        }
        if let Ok(Some(run_file)) = RunFile::read(&settings.state.run_file())
            && identity.is_some_and(|i| i == run_file.supervisor)
            && run_file
                .services
                .iter()
                .all(|s| s.state == ServiceState::Ready)
        {
            output::info(&format!(
                "opsbox: running in the background after {} ms (supervisor pid {})",
                began.elapsed().as_millis(),
                run_file.supervisor.pid
            ));
            if !settings.quiet {
                output::info(&summary(&run_file, settings));
            }
            return Ok(ExitCode::SUCCESS);
        }
        if began.elapsed() >= timeout {
            let run_file = RunFile::read(&settings.state.run_file()).ok().flatten();
            let waiting: Vec<&ServiceRecord> = run_file
                .as_ref()
                .map(|r| {
                    r.services
                        .iter()
                        .filter(|s| s.state != ServiceState::Ready)
                        .collect()
                })
                .unwrap_or_default();
            let names: Vec<String> = waiting.iter().map(|s| s.name.to_string()).collect();
            let tail = waiting
                .first()
                .map(|s| log_tail(&s.log, 10))
                .unwrap_or_else(|| log_tail(&log, 10));
            if let Some(identity) = identity {
                identity.signal(nix::sys::signal::Signal::SIGTERM);
            }
            let _ = child.wait();
            return Err(Error::NotReady {
                service: waiting.first().map_or(ServiceName::Nats, |s| s.name),
                waited_secs: args.wait_timeout,
                reason: format!(
                    "not ready: {}; the background supervisor was stopped",
                    if names.is_empty() {
                        "the supervisor".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
                log: waiting.first().map(|s| s.log.clone()).or(Some(log)),
                log_tail: tail,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Complete new lines appended to a log since the last look.
struct LogFollower {
    path: std::path::PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogFollower {
    fn at_end(path: std::path::PathBuf) -> Self {
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        Self {
            path,
            offset,
            partial: Vec::new(),
        }
    }

    fn new_lines(&mut self) -> Vec<String> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if file.metadata().map_or(0, |m| m.len()) <= self.offset {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return Vec::new();
        }
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The command line of the background supervisor: everything resolved, so it runs exactly the
/// stack this command resolved.
fn supervise_args(settings: &Settings, args: &UpArgs) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    let mut push = |flag: &str, value: OsString| {
        out.push(flag.into());
        out.push(value);
    };
    if let Some(dir) = &settings.project_dir {
        push("--project-dir", dir.clone().into_os_string());
    }
    push("--data-dir", settings.state.root.clone().into_os_string());
    push("--cache-dir", settings.cache_dir.clone().into_os_string());
    if settings.offline {
        out.push("--offline".into());
    }
    if settings.quiet {
        out.push("--quiet".into());
    }
    out.push("supervise".into());
    let mut push = |flag: &str, value: String| {
        out.push(flag.into());
        out.push(value.into());
    };
    push("--host", settings.host.to_string());
    push("--nats-port", settings.nats.port.to_string());
    push(
        "--nats-monitor-port",
        settings.nats.monitor_port.to_string(),
    );
    push("--postgres-port", settings.postgres.port.to_string());
    push("--s3-port", settings.s3.port.to_string());
    let mut services: Vec<&str> = settings.services.iter().map(|s| s.as_str()).collect();
    if let Some(port) = settings.console_port {
        push("--console-port", port.to_string());
        services.push("console");
    }
    push("--services", services.join(","));
    push("--nats-version", settings.nats.version.clone());
    push("--postgres-version", settings.postgres.version.clone());
    if let Some(path) = &args.binaries.nats_server {
        push("--nats-server", path.display().to_string());
    }
    if let Some(dir) = &args.binaries.postgres_dir {
        push("--postgres-dir", dir.display().to_string());
    }
    if let Some(mirror) = &settings.mirror {
        push("--mirror", mirror.clone());
    }
    if let Some(major) = settings.postgres.allow_major {
        push("--allow-postgres-major", major.to_string());
    }
    out
}
