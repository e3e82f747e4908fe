//! Spawning and stopping one child process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;

use super::account::Account;
use super::process::StopOutcome;
use super::spawner::on_spawner_thread;
use super::{SupervisorError, log_tail};
use crate::types::ProcessIdentity;

/// Everything needed to start a child.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Shown in messages, e.g. "nats-server", "postgres", "initdb".
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    /// Run as this account (opsbox must be root to switch).
    pub run_as: Option<Account>,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
    /// The signal for a graceful stop (SIGTERM for nats-server, SIGINT = fast shutdown for the
    /// postmaster).
    pub stop_signal: Signal,
    /// Sent by the kernel to the child if opsbox dies without stopping it.
    pub parent_death_signal: Signal,
}

impl ChildSpec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, log: PathBuf) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            run_as: None,
            log,
            stop_signal: Signal::SIGTERM,
            parent_death_signal: Signal::SIGTERM,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running child. Dropping it kills the child (kill-on-drop), so no code path leaks one.
#[derive(Debug)]
pub struct RunningChild {
    pub name: String,
    pub identity: ProcessIdentity,
    pub started: Instant,
    pub started_at: SystemTime,
    pub log: PathBuf,
    stop_signal: Signal,
    child: tokio::process::Child,
}

/// The child's log, opened for appending, once for stdout and once for stderr.
fn open_log(spec: &ChildSpec) -> Result<(std::fs::File, std::fs::File), SupervisorError> {
    let log_error = |source| SupervisorError::Log {
        path: spec.log.clone(),
        source,
    };
    let log = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(&log_error)?
        .into_file();
    let stderr = log.try_clone().map_err(log_error)?;
    Ok((log, stderr))
}

/// Start `spec` in its own session (so terminal signals reach opsbox only, and the child's
/// process group can be killed as a whole), with the parent-death signal set.
pub async fn spawn(spec: &ChildSpec) -> Result<RunningChild, SupervisorError> {
    let (log, stderr) = open_log(spec)?;

    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        command.current_dir(dir);
    }
    if let Some(account) = &spec.run_as {
        // std drops supplementary groups when switching from root.
        command.uid(account.uid).gid(account.gid);
        command
            .env("USER", &account.name)
            .env("LOGNAME", &account.name);
    }
    let parent = nix::unistd::getpid();
    let death_signal = spec.parent_death_signal;
    // SAFETY: the closure only makes async-signal-safe system calls (setsid, prctl, getppid,
    // kill) between fork and exec. std applies uid/gid before running it, which matters: a
    // credential change clears the parent-death signal, so it must be set afterwards.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::prctl::set_pdeathsig(death_signal).map_err(std::io::Error::from)?;
            // If opsbox died between fork and prctl, no signal will ever come: leave now.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("opsbox exited during spawn"));
            }
            Ok(())
        });
    }

    let child = on_spawner_thread(move || command.spawn())
        .await
        .map_err(|source| SupervisorError::Spawn {
            name: spec.name.clone(),
            program: spec.program.clone(),
            source,
        })?;
    let pid = child.id().map(|p| p as i32).unwrap_or_default();
    let identity = ProcessIdentity::of(pid).unwrap_or(ProcessIdentity {
        pid,
        start_ticks: 0,
    });
    Ok(RunningChild {
        name: spec.name.clone(),
        identity,
        started: Instant::now(),
        started_at: SystemTime::now(),
        log: spec.log.clone(),
        stop_signal: spec.stop_signal,
        child,
    })
}

impl RunningChild {
    pub fn pid(&self) -> i32 {
        self.identity.pid
    }

    /// Wait for the child to exit. Cancel-safe.
    pub async fn wait(&mut self) -> ExitStatus {
        loop {
            match self.child.wait().await {
                Ok(status) => return status,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Whether it has exited (without waiting).
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Graceful stop: the stop signal, up to `grace` for the child to exit, then SIGKILL to its
    /// whole process group.
    pub async fn stop(self, grace: Duration) -> ExitStatus {
        self.stop_or_force(grace, std::future::pending()).await
    }

    /// `stop`, cut short when `force` completes first (a second Ctrl-C): the process group is
    /// SIGKILLed at once instead of after the grace period. The child is not reaped before
    /// the stop routine ends, so its pid cannot have been reused meanwhile.
    pub async fn stop_or_force(
        mut self,
        grace: Duration,
        force: impl std::future::Future<Output = ()>,
    ) -> ExitStatus {
        if let Some(status) = self.try_exited() {
            return status;
        }
        let outcome = self
            .identity
            .stop_or_force(self.stop_signal, grace, force)
            .await;
        if matches!(outcome, StopOutcome::Survived | StopOutcome::NotRunning)
            && self.try_exited().is_none()
        {
            // Still running (uninterruptible, or /proc did not show its start time): it is not
            // reaped, so its pid is still its own; kill it and wait however long it takes.
            let _ = self.child.start_kill();
        }
        self.wait().await
    }

    /// Freeze the child with every process it forked (freeze.rs) until the returned value is
    /// dropped.
    pub async fn freeze(&self, within: Duration) -> Result<super::Frozen, super::FreezeError> {
        super::Frozen::freeze(&self.name, &self.identity, within).await
    }

    /// After the leader exited on its own: SIGKILL what is left of its process group. The
    /// group id stays allocated while any member lives, so it cannot name a stranger's group.
    pub fn kill_orphaned_group(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-self.pid()), Signal::SIGKILL);
    }

    /// SIGKILL the child's process group (it leads its own session), before it is reaped.
    pub fn kill_group(&mut self) {
        if self.try_exited().is_none() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(-self.pid()), Signal::SIGKILL);
            let _ = self.child.start_kill();
        }
    }
}

/// Run `spec` to completion; a non-zero exit is an error carrying the end of its log.
pub async fn run_to_completion(spec: &ChildSpec, action: &str) -> Result<(), SupervisorError> {
    let mut child = spawn(spec).await?;
    let status = child.wait().await;
    if status.success() {
        Ok(())
    } else {
        Err(SupervisorError::Exited {
            name: spec.name.clone(),
            action: action.to_string(),
            status: status.to_string(),
            log: spec.log.clone(),
            log_tail: log_tail(&spec.log, 15),
        })
    }
}

/// Start `spec` as a background process that outlives opsbox: its own session, no parent-death
/// signal, not killed when the handle is dropped. Used for the detached supervisor only.
pub fn spawn_detached(spec: &ChildSpec) -> Result<std::process::Child, SupervisorError> {
    use std::os::unix::process::CommandExt;
    let (log, stderr) = open_log(spec)?;
    let mut command = std::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr);
    if let Some(dir) = &spec.cwd {
        command.current_dir(dir);
    }
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    command.spawn().map_err(|source| SupervisorError::Spawn {
        name: spec.name.clone(),
        program: spec.program.clone(),
        source,
    })
}

/// Run a short-lived helper command (pip, npm, `--version`) to completion and capture its
/// output; killed if it runs past `timeout`.
pub async fn capture_output(
    program: &std::ffi::OsStr,
    args: &[&std::ffi::OsStr],
    cwd: Option<&std::path::Path>,
    env: &[(&std::ffi::OsStr, &std::ffi::OsStr)],
    timeout: Duration,
) -> std::io::Result<std::process::Output> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("did not finish within {} s", timeout.as_secs()),
        )),
    }
}
