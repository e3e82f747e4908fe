//! `opsbox down`: stop the project's supervisor (and whatever it left behind) through verified
//! signals, then with `-v` delete the project's data directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cli::{DownArgs, GlobalArgs};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use crate::state::{self, Presence, RunFile, StateDir, StateLock};
use crate::supervisor::process::{KILL_WAIT, StopOutcome};

/// How often to look whether the supervisor let go of the lock.
const POLL: Duration = Duration::from_millis(10);
/// How long to wait for a supervisor that holds the lock but has not written its run file.
const STARTING_WAIT: Duration = Duration::from_secs(5);

pub async fn run(global: &GlobalArgs, args: &DownArgs) -> Result<ExitCode> {
    let settings = Settings::for_project(global)?;
    let state = &settings.state;
    // Check before stopping anything, so a refused delete has no side effects.
    if args.volumes {
        check_deletable(&settings)?;
    }
    let timeout = Duration::from_secs(args.timeout);

    match wait_for_run_file(state).await? {
        Presence::NotRunning { stale } => {
            output::info(&format!(
                "opsbox is not running for this project (data dir {})",
                state.root.display()
            ));
            if let Some(stale) = stale {
                kill_children(&stale).await;
            }
            remove_run_file(state)?;
        }
        Presence::Starting => {
            return Err(Error::UnknownSupervisor {
                data_dir: state.root.clone(),
                reason: format!(
                    "a process holds {} but {} names no live supervisor",
                    state.lock_file().display(),
                    state.run_file().display()
                ),
            });
        }
        Presence::Running(run) => {
            stop_supervisor(state, &run, timeout).await?;
            kill_children(&run).await;
            remove_run_file(state)?;
        }
    }

    if args.volumes {
        delete_data(&settings.state.root)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The presence of a supervisor; a starting one gets a moment to write its run file.
async fn wait_for_run_file(state: &StateDir) -> Result<Presence> {
    let deadline = Instant::now() + STARTING_WAIT;
    loop {
        let presence = state::presence(state)?;
        if !matches!(presence, Presence::Starting) || Instant::now() >= deadline {
            return Ok(presence);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SIGTERM the supervisor (it stops its services and releases the lock), SIGKILL it when it
/// does not within `timeout`.
async fn stop_supervisor(state: &StateDir, run: &RunFile, timeout: Duration) -> Result<()> {
    let supervisor = run.supervisor;
    let started = Instant::now();
    let outcome = supervisor.stop(Signal::SIGTERM, timeout).await;
    // It gave the lock up when it exited; a lock still held means another process has it.
    let released = wait_until(STARTING_WAIT, || !StateLock::is_held(state)).await;
    match outcome {
        StopOutcome::NotRunning if released => {
            output::info(&format!(
                "opsbox supervisor (pid {}): stopped",
                supervisor.pid
            ));
            Ok(())
        }
        StopOutcome::NotRunning => Err(Error::UnknownSupervisor {
            data_dir: state.root.clone(),
            reason: format!(
                "the supervisor named in {} (pid {}) is gone but the lock is still held",
                state.run_file().display(),
                supervisor.pid
            ),
        }),
        StopOutcome::Stopped if released => {
            for service in &run.services {
                output::info(&format!("{}: stopped", service.name));
            }
            output::info(&format!(
                "opsbox supervisor (pid {}): stopped in {} ms",
                supervisor.pid,
                started.elapsed().as_millis()
            ));
            Ok(())
        }
        StopOutcome::Killed if released => {
            output::warn(&format!(
                "opsbox supervisor (pid {}) did not stop within {} s; killed it",
                supervisor.pid,
                timeout.as_secs()
            ));
            Ok(())
        }
        _ => Err(Error::StillRunning {
            pid: supervisor.pid.to_string(),
            data_dir: state.root.clone(),
            waited_ms: started.elapsed().as_millis() as u64,
        }),
    }
}

/// SIGKILL the process group of every recorded child that is still alive (the supervisor
/// normally stops them; this covers a supervisor that was killed).
async fn kill_children(run: &RunFile) {
    for service in &run.services {
        let Some(child) = service.process else {
            continue;
        };
        match child.stop(Signal::SIGKILL, KILL_WAIT).await {
            StopOutcome::NotRunning => {}
            StopOutcome::Stopped | StopOutcome::Killed => {
                output::info(&format!("{} (pid {}): killed", service.name, child.pid));
            }
            StopOutcome::Survived => output::warn(&format!(
                "{} (pid {}) is still alive after SIGKILL",
                service.name, child.pid
            )),
        }
    }
}

/// Poll `done` every 10 ms until it holds or `timeout` passes; whether it held.
async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn remove_run_file(state: &StateDir) -> Result<()> {
    let path = state.run_file();
    match std::fs::remove_file(&path) {
        Ok(()) => {
            output::info(&format!("removed the stale run file {}", path.display()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("cannot remove the run file {}", path.display()),
            e,
        )),
    }
}

/// Refuse to delete a data directory that is obviously not only opsbox data.
fn check_deletable(settings: &Settings) -> Result<()> {
    let data = canonical(&settings.state.root);
    let refuse = |reason: String| {
        Err(Error::DeleteRefused {
            path: settings.state.root.clone(),
            reason,
        })
    };
    if data.parent().is_none() {
        return refuse("the root directory".into());
    }
    if let Some(home) = directories::BaseDirs::new().map(|d| canonical(d.home_dir())) {
        if data == home {
            return refuse("your home directory".into());
        }
        if home.starts_with(&data) {
            return refuse(format!(
                "an ancestor of your home directory {}",
                home.display()
            ));
        }
    }
    let cache = canonical(&settings.cache_dir);
    if data == cache {
        return refuse("the binary cache directory".into());
    }
    if cache.starts_with(&data) {
        return refuse(format!(
            "an ancestor of the binary cache directory {}",
            cache.display()
        ));
    }
    if let Some(project) = settings.project_dir.as_deref().map(canonical)
        && project.starts_with(&data)
    {
        return refuse(format!(
            "the project directory {} or above it",
            project.display()
        ));
    }
    Ok(())
}

/// The path with symlinks resolved where it exists, so `..` and links cannot sneak past the
/// checks.
fn canonical(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

fn delete_data(root: &Path) -> Result<()> {
    match std::fs::symlink_metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            output::info(&format!(
                "no data to delete ({} does not exist)",
                root.display()
            ));
            return Ok(());
        }
        Err(source) => {
            return Err(Error::Delete {
                path: root.to_path_buf(),
                source,
            });
        }
        Ok(_) => {}
    }
    std::fs::remove_dir_all(root).map_err(|source| Error::Delete {
        path: root.to_path_buf(),
        source,
    })?;
    output::info(&format!("deleted the data directory {}", root.display()));
    Ok(())
}
