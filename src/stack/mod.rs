//! The running stack, between the commands and the services: fetch the binaries, prepare and
//! start every selected service in parallel, keep the run file current, restart crashed
//! children as the restart policy says, and stop everything in order when asked. Adding a
//! service means adding it here and in `services/`, never in the supervisor.

mod child;
mod connect;
mod control;
mod initial;
mod run_file;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use child::READY_TIMEOUT;
pub use connect::{connection_variables, summary};
pub use initial::versions;

use self::child::{AutoPorts, ChildService};
use self::run_file::RunFileHandle;
use crate::cli::PortMode;
use crate::console::ConsoleServer;
use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::output;
use crate::services::nats::NatsService;
use crate::services::postgres::PostgresService;
use crate::services::s3::S3Server;
use crate::settings::Settings;
use crate::snapshot::template::Provided;
use crate::snapshot::{self, Snapshots};
use crate::state::ServiceState;
use crate::state::instances::PortSlot;
use crate::supervisor::signals::StopRequest;
use crate::types::ServiceName;

/// The listeners opsbox serves itself, bound by the port pre-flight before anything starts
/// and handed over here, so no other process can take the port in between.
#[derive(Debug, Default)]
pub struct Listeners {
    pub s3: Option<TcpListener>,
    pub console: Option<TcpListener>,
}

/// Run the stack in this process until `stop` asks for a stop (SIGINT/SIGTERM); `began` is
/// when the command started, for the "ready in" line.
pub async fn run(
    settings: &Settings,
    listeners: Listeners,
    mut stop: watch::Receiver<StopRequest>,
    began: Instant,
    detached: bool,
) -> Result<ExitCode> {
    // A restore that a killed opsbox left half done is finished (or discarded) before any
    // service reads its data.
    let snapshots = Snapshots::new(&settings.state);
    if let Some(message) = snapshot::restore::recover(&snapshots)?.message() {
        output::warn(&message);
    }
    let mut fresh = initial::is_fresh(settings, &snapshots);
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
        children.push(ChildService::Nats(NatsService::prepare(
            settings.nats_config(),
            &settings.state,
            binary,
        )?));
    }
    if let Some(install) = postgres_install? {
        children.push(ChildService::Postgres(PostgresService::prepare(
            settings.postgres_config(),
            &settings.state,
            install,
        )?));
    }

    // A new data dir whose recipe has a stack template starts from it (no init scripts, no
    // copy of its first state); the first of a recipe keeps its first state as the template.
    let template = children.iter().find_map(|child| match child {
        ChildService::Postgres(postgres) if fresh => Some(initial::template(settings, postgres)),
        _ => None,
    });
    if let Some(template) = &template {
        let began_template = Instant::now();
        match template.provide(&snapshots).await {
            Ok(Provided::FromTemplate { created }) => {
                fresh = false;
                output::info(&format!(
                    "opsbox: first state from the stack template {} (made {created}; init scripts, EVENTS and buckets as then), kept as snapshot '{}' ({} ms)",
                    template.dir.display(),
                    snapshot::INITIAL,
                    began_template.elapsed().as_millis()
                ));
            }
            Ok(Provided::Missing) => {}
            Ok(Provided::Corrupt { reason }) => output::warn(&format!(
                "opsbox: not using the stack template {} ({reason}); building the first state, which replaces it",
                template.dir.display()
            )),
            Err(e) => {
                output::warn(&format!(
                    "opsbox: cannot start from the stack template {}: {e}; building the first state instead",
                    template.dir.display()
                ));
                let _ = snapshots.remove(snapshot::INITIAL);
            }
        }
    }

    let run_file = RunFileHandle::new(
        run_file::initial(settings, detached),
        settings.state.run_file(),
    );
    run_file.write()?;

    let s3_config = settings.s3_config();
    let auto_ports = (settings.port_mode == PortMode::Auto).then(|| AutoPorts {
        root: settings.data_root.clone(),
        state: settings.state.clone(),
        host: settings.host,
        fixed: PortSlot::ALL
            .into_iter()
            .filter(|&slot| settings.explicit_port(slot).is_some())
            .collect(),
    });
    let starting = async {
        let s3 = async {
            match listeners.s3 {
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
        let (s3, running) = tokio::join!(
            s3,
            child::start_all(&children, READY_TIMEOUT, auto_ports.as_ref())
        );
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
            let control = s3.as_ref().map(S3Server::control);
            match initial::keep(settings, &snapshots, &running, control.as_ref()).await {
                Ok(()) => (s3, running),
                Err(e) => {
                    if let Some(server) = s3 {
                        server.shutdown(Duration::from_secs(5)).await;
                    }
                    for (service, child) in running {
                        child.stop(service.grace()).await;
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

    // A server `--ports auto` moved to a new port: record where it listens now.
    let mut settings = settings.clone();
    let mut moved = false;
    for (service, _) in &running {
        for (slot, port) in service.ports() {
            if settings.port(slot) != Some(port) {
                settings.set_port(slot, port);
                moved = true;
            }
        }
    }
    if moved {
        run_file.set_ports(&settings);
    }
    let settings = &settings;

    let console = listeners
        .console
        .map(|listener| {
            let storage = s3.as_ref().map(S3Server::storage);
            let env = connect::connection_variables(settings, None);
            ConsoleServer::start(settings.console_config(env, storage), listener)
        })
        .transpose()?;
    for (service, child) in &running {
        run_file::mark_ready(&run_file, service.name(), child);
    }
    if s3.is_some() {
        run_file.update(ServiceName::S3, |record| {
            record.state = ServiceState::Ready;
            record.started_at = Some(crate::types::unix_now());
        });
    }
    output::info(&format!(
        "opsbox: all services ready in {} ms",
        began.elapsed().as_millis()
    ));
    // Spares, built while nobody waits: the stack template's first (kept first, when this is
    // the recipe's first data dir; the next new data dir is then a rename; a stop waits for
    // it), then the data dir's of `initial` (so `reset` is one).
    let template_work = template
        .clone()
        .map(|template| tokio::spawn(initial::tend_template(template, snapshots.clone(), fresh)));
    {
        let snapshots = snapshots.clone();
        tokio::task::spawn_blocking(move || {
            // What restores replaced, and what dead processes left half built.
            snapshots.clean_leftovers();
            if let Err(e) = snapshot::spare::replenish(&snapshots, snapshot::INITIAL) {
                output::warn(&format!(
                    "opsbox: cannot prepare the spare for `reset`: {e}"
                ));
            }
        });
    }
    if !settings.quiet && !detached {
        output::info(&connect::summary(&run_file.snapshot(), settings));
        output::info("press Ctrl-C to stop (twice to force)");
    }

    let mut controls = Vec::new();
    let mut nats = None;
    let mut postgres = None;
    let watchers: Vec<_> = running
        .into_iter()
        .map(|(service, child)| {
            match &service {
                ChildService::Nats(service) => nats = Some(service.clone()),
                ChildService::Postgres(service) => postgres = Some(service.clone()),
            }
            let (sender, receiver) = tokio::sync::mpsc::channel(4);
            controls.push((service.name(), sender));
            tokio::spawn(child::watch_child(
                service,
                child,
                run_file.clone(),
                stop.clone(),
                receiver,
            ))
        })
        .collect();
    // Snapshots and reset of the running stack go through the control channel.
    let control_task = control::listen(&settings.state).map(|listener| {
        tokio::spawn(control::serve(
            listener,
            Arc::new(control::Control {
                children: controls,
                nats,
                postgres,
                s3: s3.as_ref().map(S3Server::control),
                snapshots: snapshots.clone(),
                busy: tokio::sync::Mutex::new(()),
            }),
        ))
    });
    while *stop.borrow() == StopRequest::None {
        if stop.changed().await.is_err() {
            break;
        }
    }
    output::info("opsbox: stopping");
    if let Some(task) = template_work
        && !task.is_finished()
    {
        output::info("opsbox: finishing the stack template's spare first");
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    if let Some(task) = control_task {
        task.abort();
    }
    let s3_stop = async {
        if let Some(console) = console {
            console.shutdown(Duration::from_secs(2)).await;
        }
        if let Some(server) = s3 {
            stop_s3(server, &run_file).await;
        }
    };
    let (_, _) = tokio::join!(s3_stop, futures::future::join_all(watchers));
    run_file.remove();
    output::info("opsbox: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Stop the S3 endpoint: stop accepting, drain in-flight requests.
async fn stop_s3(server: S3Server, run_file: &RunFileHandle) {
    run_file.update(ServiceName::S3, |record| {
        record.state = ServiceState::Stopping
    });
    server.shutdown(Duration::from_secs(10)).await;
    run_file.update(ServiceName::S3, |record| {
        record.state = ServiceState::Stopped
    });
    output::info("s3: stopped");
}
