//! `opsbox status` (alias `ps`): each service's state, pid, address, uptime and data dir, from
//! the run file checked against the live processes; exit 0 only when every service is ready.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{GlobalArgs, StatusArgs};
use crate::error::Result;
use crate::output;
use crate::settings::Settings;
use crate::state::{self, ExitRecord, Presence, RunFile, ServiceRecord, ServiceState};
use crate::supervisor::log_tail;
use crate::types::ServiceName;
use crate::types::{unix_now as now, unix_now_ms as now_ms};

/// Log lines shown under the table for a failing service.
const TAIL_LINES: usize = 5;

#[derive(Debug, Serialize)]
struct Report {
    running: bool,
    data_dir: PathBuf,
    supervisor_pid: Option<i32>,
    services: Vec<ServiceStatus>,
    /// The web console's URL, when it runs.
    console_url: Option<String>,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    name: ServiceName,
    state: String,
    pid: Option<i32>,
    url: Option<String>,
    port: Option<u16>,
    uptime_seconds: Option<u64>,
    data_dir: PathBuf,
    /// PostgreSQL: the major version its data directory was created by.
    #[serde(skip_serializing_if = "Option::is_none")]
    major_version: Option<u32>,
    log: PathBuf,
    restarts: u32,
    last_error: Option<String>,
    /// How the last process ended: exit code or signal, when, and whether it had been ready.
    last_exit: Option<ExitRecord>,
    /// While a restart waits: when it is due (Unix milliseconds) and how long until then.
    next_start_at_ms: Option<u64>,
    next_start_in_ms: Option<u64>,
    /// Why the pending (or last) restart waited as long as it did.
    restart_reason: Option<String>,
}

impl ServiceStatus {
    fn ready(&self) -> bool {
        self.state == ServiceState::Ready.as_str()
    }
}

pub async fn run(global: &GlobalArgs, args: &StatusArgs) -> Result<ExitCode> {
    let settings = Settings::for_project(global)?;
    let state_dir = &settings.state;
    let presence = state::presence(state_dir)?;
    let report = match &presence {
        Presence::Running(run) => Report {
            running: true,
            data_dir: state_dir.root.clone(),
            supervisor_pid: Some(run.supervisor.pid),
            services: settings
                .services
                .iter()
                .map(|&name| from_record(&settings, run, name))
                .collect(),
            console_url: run.console_url.clone(),
        },
        Presence::Starting | Presence::NotRunning { .. } => {
            let label = if matches!(presence, Presence::Starting) {
                ServiceState::Starting
            } else {
                ServiceState::Stopped
            };
            Report {
                running: matches!(presence, Presence::Starting),
                data_dir: state_dir.root.clone(),
                supervisor_pid: None,
                services: settings
                    .services
                    .iter()
                    .map(|&name| not_running(&settings, name, label))
                    .collect(),
                console_url: None,
            }
        }
    };

    match &presence {
        Presence::NotRunning { .. } => output::info(&format!(
            "opsbox is not running for this project (data dir {})",
            state_dir.root.display()
        )),
        Presence::Starting => output::info(&format!(
            "opsbox is starting for this project (data dir {})",
            state_dir.root.display()
        )),
        Presence::Running(_) => {}
    }

    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| {
            crate::error::Error::Message(format!("cannot render the status as JSON: {e}"))
        })?;
        output::data(&text);
    } else {
        output::data(&table(&report));
        if let Some(url) = &report.console_url {
            output::data(&format!("console: {url}\n"));
        }
    }
    show_failures(&report);

    Ok(if report.services.iter().all(ServiceStatus::ready) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A service as the run file records it, corrected by what /proc says now.
fn from_record(settings: &Settings, run: &RunFile, name: ServiceName) -> ServiceStatus {
    let Some(record) = run.service(name) else {
        return not_running(settings, name, ServiceState::Stopped);
    };
    let state = effective_state(record);
    let alive = matches!(state, ServiceState::Ready | ServiceState::Starting);
    let pid = record
        .process
        .filter(|process| process.is_alive())
        .map(|process| process.pid);
    let uptime = record
        .started_at
        .filter(|_| alive)
        .map(|started| now().saturating_sub(started));
    ServiceStatus {
        name,
        state: state.as_str().to_string(),
        pid,
        url: Some(record.url.clone()),
        port: Some(record.port),
        uptime_seconds: uptime,
        major_version: major_version(name, &record.data_dir),
        data_dir: record.data_dir.clone(),
        log: record.log.clone(),
        restarts: record.restarts,
        last_error: record.last_error.clone(),
        last_exit: record.last_exit.clone(),
        next_start_at_ms: record.next_start_at_ms,
        next_start_in_ms: record
            .next_start_at_ms
            .map(|due| due.saturating_sub(now_ms())),
        restart_reason: record.restart_reason.clone(),
    }
}

/// The recorded state, unless the recorded process is dead: the supervisor restarts a child
/// that died, but may not have rewritten the run file yet.
fn effective_state(record: &ServiceRecord) -> ServiceState {
    match (record.state, record.process) {
        (ServiceState::Ready | ServiceState::Starting, Some(process)) if !process.is_alive() => {
            ServiceState::Restarting
        }
        (state, _) => state,
    }
}

fn not_running(settings: &Settings, name: ServiceName, state: ServiceState) -> ServiceStatus {
    ServiceStatus {
        name,
        state: state.as_str().to_string(),
        pid: None,
        url: None,
        port: None,
        uptime_seconds: None,
        major_version: major_version(name, &settings.state.service_data(name)),
        data_dir: settings.state.service_data(name),
        log: settings.state.log(Some(name)),
        restarts: 0,
        last_error: None,
        last_exit: None,
        next_start_at_ms: None,
        next_start_in_ms: None,
        restart_reason: None,
    }
}

fn major_version(name: ServiceName, data_dir: &std::path::Path) -> Option<u32> {
    (name == ServiceName::Postgres)
        .then(|| crate::services::postgres::data_directory_major(data_dir))
        .flatten()
}

fn table(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .services
        .iter()
        .map(|service| {
            vec![
                service.name.to_string(),
                service.state.clone(),
                service.pid.map_or("-".into(), |pid| pid.to_string()),
                service.url.clone().unwrap_or_else(|| "-".into()),
                service
                    .uptime_seconds
                    .map_or("-".into(), output::human_duration),
                match service.major_version {
                    Some(major) => format!("{} (PostgreSQL {major})", service.data_dir.display()),
                    None => service.data_dir.display().to_string(),
                },
            ]
        })
        .collect();
    output::table(
        &["NAME", "STATE", "PID", "ADDRESS", "UPTIME", "DATA"],
        &rows,
    )
}

/// For each service that keeps failing: its last error and the end of its log, on stderr.
fn show_failures(report: &Report) {
    let failing = [
        ServiceState::CrashLooping.as_str(),
        ServiceState::Failed.as_str(),
        ServiceState::Restarting.as_str(),
    ];
    for service in &report.services {
        let Some(error) = &service.last_error else {
            continue;
        };
        if !failing.contains(&service.state.as_str()) {
            continue;
        }
        output::warn(&format!(
            "{} is {} ({} restarts): {error}",
            service.name, service.state, service.restarts
        ));
        if let Some(reason) = &service.restart_reason {
            let due = service
                .next_start_in_ms
                .map(|ms| format!(" (next start in {:.1} s)", ms as f64 / 1000.0))
                .unwrap_or_default();
            output::info(&format!("  restart: {reason}{due}"));
        }
        let tail = log_tail(&service.log, TAIL_LINES);
        if tail.is_empty() {
            continue;
        }
        let mut text = format!("last lines of {}:\n", service.log.display());
        for line in tail {
            text.push_str(&format!("  | {line}\n"));
        }
        output::info(text.trim_end());
    }
}
