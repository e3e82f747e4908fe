//! `opsbox ls`: every instance of this user on this host (the directories under the data root
//! and the data dirs elsewhere registered there),
//! running or stopped with data: name, state, project, ports, data dir, disk use, start time.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{GlobalArgs, LsArgs};
use crate::error::{Error, Result};
use crate::output;
use crate::settings;
use crate::state::instances::{self, Instance, PortSet};
use crate::state::{Presence, ServiceState};

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    /// running (every service ready), starting, degraded (a service not ready), or stopped.
    state: &'static str,
    project_dir: Option<PathBuf>,
    /// Running: the ports it listens on; stopped: the ports of its last start.
    ports: PortSet,
    data_dir: PathBuf,
    disk_bytes: u64,
    /// Unix seconds of the (last) start.
    started_at: Option<u64>,
    supervisor_pid: Option<i32>,
}

pub fn run(global: &GlobalArgs, args: &LsArgs) -> Result<ExitCode> {
    let root = settings::data_root(global);
    let rows: Vec<Row> = instances::list(&root).iter().map(row).collect();
    if args.json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::Message(format!("cannot render the instances as JSON: {e}")))?;
        output::data(&format!("{text}\n"));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        output::info(&format!("no opsbox instances under {}", root.display()));
        return Ok(ExitCode::SUCCESS);
    }
    output::data(&table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// The state word of an instance.
pub fn state_of(instance: &Instance) -> &'static str {
    match &instance.presence {
        Presence::NotRunning { .. } => "stopped",
        Presence::Starting => "starting",
        Presence::Running(run) => {
            if run.services.iter().all(|s| s.state == ServiceState::Ready) {
                "running"
            } else if run
                .services
                .iter()
                .any(|s| s.state == ServiceState::Starting)
            {
                "starting"
            } else {
                "degraded"
            }
        }
    }
}

fn row(instance: &Instance) -> Row {
    let run = instance.run_file();
    Row {
        name: instance.name.clone(),
        state: state_of(instance),
        project_dir: instance.project_dir(),
        ports: instance.ports(),
        data_dir: instance.state.root.clone(),
        disk_bytes: instances::disk_usage(&instance.state.root),
        started_at: run
            .map(|r| r.started_at)
            .or_else(|| instance.record.as_ref().map(|r| r.started_at)),
        supervisor_pid: run.map(|r| r.supervisor.pid),
    }
}

fn table(rows: &[Row]) -> String {
    let now = crate::types::unix_now();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.name.clone(),
                row.state.to_string(),
                row.project_dir
                    .as_ref()
                    .map_or("-".into(), |d| d.display().to_string()),
                if row.ports.is_empty() {
                    "-".into()
                } else {
                    row.ports
                        .iter()
                        .map(|(slot, port)| format!("{}={port}", slot.as_str()))
                        .collect::<Vec<_>>()
                        .join(",")
                },
                human_bytes(row.disk_bytes),
                row.started_at.filter(|&t| t > 0).map_or("-".into(), |t| {
                    format!("{} ago", output::human_duration(now.saturating_sub(t)))
                }),
                row.data_dir.display().to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME", "STATE", "PROJECT", "PORTS", "DISK", "STARTED", "DATA",
        ],
        &cells,
    )
}

/// `912 KiB`, `41.3 MiB`, `1.2 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_like_du() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(43_300_000), "41 MiB");
        assert_eq!(human_bytes(1_300_000_000), "1.2 GiB");
    }
}
