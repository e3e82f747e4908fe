//! The run file of a running stack: written at start, updated on every change of a service, so
//! `status`, `logs`, `env`, `down` and the console see what runs.

use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::output;
use crate::settings::Settings;
use crate::state::{RunFile, ServiceRecord, ServiceState};
use crate::supervisor::RunningChild;
use crate::types::{ProcessIdentity, ServiceName};

use crate::types::unix_now;

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
        let _ = fs_err::remove_file(&self.path);
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

/// The URL and port of a service, as the run file records them.
fn address(settings: &Settings, name: ServiceName) -> (String, u16) {
    let host = settings.client_host();
    match name {
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
    }
}

impl RunFileHandle {
    /// Record the ports of `settings` (after `--ports auto` moved a server to a new port).
    pub fn set_ports(&self, settings: &Settings) {
        let mut run_file = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for record in &mut run_file.services {
            (record.url, record.port) = address(settings, record.name);
        }
        run_file.ports = Some(settings.ports());
        if let Err(e) = run_file.write(&self.path) {
            crate::output::warn(&e.to_string());
        }
    }
}

/// The run file of a stack that is starting: every selected service `starting`.
pub fn initial(settings: &Settings, detached: bool) -> RunFile {
    let host = settings.client_host();
    let services = settings
        .services
        .iter()
        .map(|&name| {
            let (url, port) = address(settings, name);
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
        instance: Some(settings.instance.to_string()),
        ports: Some(settings.ports()),
    }
}
