//! Overview: each service's state, pid, uptime, restarts, address, data dir, disk use and the
//! last lines of its log, from the run file; the page refreshes the list every two seconds.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, http::header};
use maud::{Markup, html};

use super::auth::Session;
use super::layout::{self, Section};
use super::routes::Shared;
use crate::state::{RunFile, ServiceRecord, ServiceState};
use crate::types::unix_now as now;

const LOG_LINES: usize = 6;
/// Only the end of a log is read (access logs grow large).
const LOG_TAIL_BYTES: u64 = 16 * 1024;
/// Disk use is measured at most this often per directory (a walk of a large tree costs).
const DISK_USE_MAX_AGE: Duration = Duration::from_secs(10);

/// Measured sizes of data directories, with when they were measured.
#[derive(Default)]
pub struct DiskUse {
    sizes: Mutex<HashMap<PathBuf, (Instant, u64)>>,
}

impl DiskUse {
    async fn of(&self, dir: &Path) -> u64 {
        if let Some((measured, size)) = self.lookup(dir)
            && measured.elapsed() < DISK_USE_MAX_AGE
        {
            return size;
        }
        let owned = dir.to_path_buf();
        let size = tokio::task::spawn_blocking(move || tree_size(&owned))
            .await
            .unwrap_or(0);
        self.sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dir.to_path_buf(), (Instant::now(), size));
        size
    }

    fn lookup(&self, dir: &Path) -> Option<(Instant, u64)> {
        self.sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(dir)
            .copied()
    }
}

/// Bytes allocated under `dir` (symbolic links are not followed).
fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = fs_err::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total += metadata.blocks() * 512;
            }
        }
    }
    total
}

/// The last `lines` lines of a log, reading only its end.
fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let Ok(mut file) = fs_err::File::open(path) else {
        return Vec::new();
    };
    let length = file.metadata().map_or(0, |m| m.len());
    let start = length.saturating_sub(LOG_TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    if start > 0 && !all.is_empty() {
        // The first line was cut by the start of the window.
        all.remove(0);
    }
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| line.to_string())
        .collect()
}

/// The recorded state, unless the recorded process is gone (then it is being restarted).
fn effective_state(record: &ServiceRecord) -> ServiceState {
    match (record.state, record.process) {
        (ServiceState::Ready | ServiceState::Starting, Some(process)) if !process.is_alive() => {
            ServiceState::Restarting
        }
        (state, _) => state,
    }
}

pub async fn services(app: &Shared) -> Markup {
    let run = match RunFile::read(&app.config.run_file) {
        Ok(Some(run)) => run,
        Ok(None) => {
            return html! { p.error role="alert" { "The stack is not running (no run file)." } };
        }
        Err(e) => return html! { p.error role="alert" { (e.to_string()) } },
    };
    let mut cards = Vec::new();
    for record in &run.services {
        let state = effective_state(record);
        let alive = matches!(state, ServiceState::Ready | ServiceState::Starting);
        let pid = record
            .process
            .filter(|p| p.is_alive())
            .map(|p| p.pid.to_string());
        let uptime = record
            .started_at
            .filter(|_| alive)
            .map(|started| crate::output::human_duration(now().saturating_sub(started)));
        let disk = app.disk.of(&record.data_dir).await;
        let log = tokio::task::spawn_blocking({
            let path = record.log.clone();
            move || log_tail(&path, LOG_LINES)
        })
        .await
        .unwrap_or_default();
        cards.push(html! {
            section.card data-service=(record.name.as_str()) aria-labelledby={"service-" (record.name.as_str())} {
                h2 #{"service-" (record.name.as_str())} {
                    (record.name.as_str()) " "
                    span class={"state state-" (state.as_str())} data-state=(state.as_str()) { (state.as_str()) }
                }
                dl.facts {
                    dt { "Address" } dd.mono { (record.url) }
                    dt { "PID" } dd { (pid.as_deref().unwrap_or(if record.process.is_none() && alive { "in opsbox" } else { "-" })) }
                    dt { "Uptime" } dd { (uptime.as_deref().unwrap_or("-")) }
                    dt { "Restarts" } dd { (record.restarts) }
                    dt { "Data" } dd.mono { (record.data_dir.display().to_string()) }
                    dt { "Disk use" } dd { (layout::bytes(disk)) }
                    @if let Some(error) = &record.last_error {
                        dt { "Last error" } dd.error { (error) }
                    }
                }
                h3.log-title { "Last log lines · " span.mono { (record.log.display().to_string()) } }
                pre.log { @for line in &log { (line) "\n" } }
            }
        });
    }
    html! {
        p.muted {
            "opsbox " (run.opsbox_version) ", supervisor pid " (run.supervisor.pid)
            ", data " (run.data_dir.display().to_string())
        }
        div.cards { @for card in cards { (card) } }
    }
}

pub async fn page(State(app): State<Shared>, Extension(session): Extension<Session>) -> Response {
    let body = html! {
        h1 { "Overview" }
        div #services data-live="/overview/live" data-interval="2000" aria-live="polite" {
            (services(&app).await)
        }
    };
    let flash = app.sessions.take_flash(&session);
    layout::page("Overview", Section::Overview, &session, flash, body).into_response()
}

/// The service list alone, for the page's polling.
pub async fn live(State(app): State<Shared>) -> Response {
    let mut response = Html(services(&app).await.into_string()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_reads_the_last_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        fs_err::write(&path, text).unwrap();
        assert_eq!(log_tail(&path, 2), vec!["line 4998", "line 4999"]);
        assert!(log_tail(&dir.path().join("missing"), 3).is_empty());
    }
}
