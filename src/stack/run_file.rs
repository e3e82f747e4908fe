//! The run file of a running stack: written at start, updated on every change of a service, so
//! `status`, `logs`, `env`, `down` and the console see what runs.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::output;
use crate::settings::Settings;
use crate::state::{RunFile, ServiceRecord, ServiceState};
use crate::supervisor::RunningChild;
use crate::types::{ProcessIdentity, ServiceName};

pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn unix_now() -> u64 {
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

    pub fn update(&self, name: ServiceName, change: impl FnOnce(&mut ServiceRecord)) {
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
        record.next_start_at_ms = None;
    });
}

/// The run file of a stack that is starting: every selected service `starting`.
pub fn initial(settings: &Settings, detached: bool) -> RunFile {
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
