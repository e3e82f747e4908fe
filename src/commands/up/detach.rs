//! `opsbox up -d`: start the background supervisor (`opsbox supervise`), show its progress
//! lines, and return once every service is ready.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cli::UpArgs;
use crate::error::{Error, Result};
use crate::output;
use crate::services::ServiceError;
use crate::settings::Settings;
use crate::stack;
use crate::state::{LogFollower, RunFile, ServiceRecord, ServiceState, StateLock};
use crate::supervisor::{ChildSpec, log_tail};
use crate::types::{ProcessIdentity, ServiceName};

/// How long a background supervisor that did not get ready may take to stop.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// `up -d`: start `opsbox supervise` in the background and wait until every service is ready.
pub async fn run(settings: &Settings, args: &UpArgs) -> Result<ExitCode> {
    if StateLock::is_held(&settings.state) {
        output::info(&format!(
            "opsbox is already running for this project (data dir {})",
            settings.state.root.display()
        ));
        if let Ok(Some(run_file)) = RunFile::read(&settings.state.run_file())
            && !settings.quiet
        {
            output::info(&stack::summary(&run_file, settings));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let log = settings.state.log(None);
    let mut progress = LogFollower::at_end(log.clone());
    let exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find the opsbox executable", e))?;
    let mut spec = ChildSpec::new("opsbox supervisor", exe, log.clone());
    spec.args = settings.supervise_args();
    let mut child = crate::supervisor::spawn_detached(&spec)?;
    let identity = ProcessIdentity::of(child.id() as i32);
    let began = Instant::now();
    let timeout = Duration::from_secs(args.wait_timeout);
    loop {
        // Show the background supervisor's progress lines as they come.
        // Detail lines (full error chains) stay in the log.
        show_new_lines(&mut progress);
        if let Ok(Some(status)) = child.try_wait() {
            show_new_lines(&mut progress);
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
                output::info(&stack::summary(&run_file, settings));
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
                identity.stop(Signal::SIGTERM, STOP_GRACE).await;
            }
            let _ = child.wait();
            return Err(ServiceError::NotReady {
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
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The supervisor's new log lines, except detail lines (full error chains stay in the log).
fn show_new_lines(log: &mut LogFollower) {
    for line in String::from_utf8_lossy(&log.poll()).lines() {
        output::info_unless_detail(line);
    }
}
