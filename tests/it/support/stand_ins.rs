//! Stand-ins for a supervisor and its children (real processes: a shell holding the project's
//! lock, `sleep` leading its own process group) and the run file that names them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opsbox::state::{RunFile, ServiceRecord, ServiceState, StateLock};
use opsbox::types::ProcessIdentity;
use opsbox::types::ServiceName;

use super::stack::Opsbox;
use super::wait_for;

/// A real process standing in for the supervisor or one of its children; killed and reaped
/// when dropped.
pub struct StandIn {
    pub child: Child,
    pub identity: ProcessIdentity,
}

impl StandIn {
    /// A process that holds the project's lock like a supervisor (a shell that takes the flock
    /// and becomes `sleep`), and dies on SIGTERM.
    pub fn supervisor(project: &Opsbox) -> Self {
        let state = project.state();
        state.create().expect("create the data dir");
        let script = format!(
            "exec 9>>'{}' && flock -n 9 && exec sleep 300",
            state.lock_file().display()
        );
        let child = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn bash holding the lock");
        wait_for(
            Duration::from_secs(5),
            "the stand-in supervisor did not take the lock",
            || StateLock::is_held(&state),
        );
        Self::new(child)
    }

    /// A service process leading its own process group, like the children opsbox spawns.
    pub fn service() -> Self {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sleep")
            .arg("300")
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        Self::new(child)
    }

    fn new(child: Child) -> Self {
        let identity =
            ProcessIdentity::of(child.id() as i32).expect("the stand-in process is alive");
        Self { child, identity }
    }

    /// Whether it exited (reaping it, so a dead one is not a zombie).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A run file for `project` naming `supervisor` and the given services.
pub fn run_file(
    project: &Opsbox,
    supervisor: ProcessIdentity,
    services: Vec<(ServiceName, ServiceState, Option<ProcessIdentity>)>,
) -> RunFile {
    let state = project.state();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    RunFile {
        opsbox_version: env!("CARGO_PKG_VERSION").into(),
        supervisor,
        started_at: now - 200,
        detached: true,
        project_dir: Some(project.project.clone()),
        data_dir: project.data_dir.clone(),
        host: "127.0.0.1".into(),
        console_url: None,
        instance: None,
        ports: None,
        services: services
            .into_iter()
            .enumerate()
            .map(|(index, (name, state_now, process))| ServiceRecord {
                name,
                state: state_now,
                process,
                url: format!("http://127.0.0.1:{}", 41000 + index),
                port: 41000 + index as u16,
                started_at: Some(now - 192),
                data_dir: state.service_data(name),
                log: state.log(Some(name)),
                restarts: 0,
                last_error: None,
                last_exit: None,
                next_start_at_ms: None,
                restart_reason: None,
            })
            .collect(),
    }
}
