//! The per-project state directory: its layout, the lock that makes one stack per project, and
//! the run file that tells `status`, `logs` and `down` what is running.

pub mod control;
pub mod instances;
pub mod lock;
pub mod log_follower;
pub mod prune;
pub mod run_file;

use std::path::{Path, PathBuf};

pub use lock::{LockMode, StateLock, lock_file, lock_file_blocking, try_lock_file};
pub use log_follower::LogFollower;
pub use run_file::{ExitRecord, RunFile, ServiceRecord, ServiceState};

use crate::types::ServiceName;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the data directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the data directory {path} is not writable")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opsbox is already running for this project (pid {pid}, data dir {data_dir})")]
    AlreadyRunning { pid: String, data_dir: PathBuf },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the run file {path}")]
    WriteRunFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run file {path} is unreadable: {message}")]
    ReadRunFile { path: PathBuf, message: String },
    #[error(
        "invalid instance name `{name}`: use lowercase letters, digits, `-` and `_`, starting with a letter or digit (at most 63)"
    )]
    InvalidName { name: String },
    #[error("the instance file {path} is unreadable: {message}")]
    ReadInstanceFile { path: PathBuf, message: String },
    #[error("cannot write the instance file {path}")]
    WriteInstanceFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StateError {
    pub fn hint(&self) -> Option<String> {
        match self {
            StateError::Create { path, .. } | StateError::NotWritable { path, .. } => Some(format!(
                "choose a writable directory with --data-dir / OPSBOX_DATA_DIR, or fix the permissions of {}",
                path.display()
            )),
            StateError::AlreadyRunning { .. } => Some(
                "use `opsbox status` to see it, `opsbox down` to stop it, or a different --data-dir".into(),
            ),
            StateError::InvalidName { .. } => Some(
                "pick another name with -p / OPSBOX_PROJECT, e.g. `-p ci-3`; `opsbox ls` lists the instances".into(),
            ),
            StateError::ReadInstanceFile { path, .. } => Some(format!(
                "delete {} (it only names the instance and its last ports; data is not affected)",
                path.display()
            )),
            StateError::ReadRunFile { .. } => Some(
                "if no opsbox is running for this project, delete the run file; data is not affected".into(),
            ),
            _ => None,
        }
    }
}

/// Paths inside one project's data directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("opsbox.lock")
    }
    pub fn run_file(&self) -> PathBuf {
        self.root.join("run.json")
    }
    pub fn instance_file(&self) -> PathBuf {
        self.root.join(instances::INSTANCE_FILE)
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The log of a service, or of opsbox itself (`None`).
    pub fn log(&self, service: Option<ServiceName>) -> PathBuf {
        let name = service.map_or("opsbox", ServiceName::as_str);
        self.logs().join(format!("{name}.log"))
    }
    pub fn nats(&self) -> PathBuf {
        self.root.join("nats")
    }
    pub fn jetstream(&self) -> PathBuf {
        self.nats().join("jetstream")
    }
    pub fn postgres(&self) -> PathBuf {
        self.root.join("postgres")
    }
    pub fn postgres_data(&self) -> PathBuf {
        self.postgres().join("data")
    }
    pub fn s3(&self) -> PathBuf {
        self.root.join("s3")
    }

    /// The data directory of a service, as shown by `status`.
    pub fn service_data(&self, service: ServiceName) -> PathBuf {
        match service {
            ServiceName::Nats => self.jetstream(),
            ServiceName::Postgres => self.postgres_data(),
            ServiceName::S3 => self.s3(),
        }
    }

    /// Create the directory tree and prove it is writable.
    pub fn create(&self) -> Result<(), StateError> {
        for dir in [self.root.clone(), self.logs()] {
            fs_err::create_dir_all(&dir)
                .map_err(|source| StateError::Create { path: dir, source })?;
        }
        let probe = self.root.join(".opsbox-write-test");
        // std: StateError::NotWritable names the directory; the probe file's path would be noise.
        #[allow(clippy::disallowed_methods)]
        let written = std::fs::write(&probe, b"ok");
        written.map_err(|source| StateError::NotWritable {
            path: self.root.clone(),
            source,
        })?;
        let _ = fs_err::remove_file(probe);
        Ok(())
    }
}

/// What a data directory says about the supervisor of its project.
#[derive(Debug, Clone)]
pub enum Presence {
    /// Nobody holds the lock. `stale` is a run file a supervisor that died left behind (it
    /// may still name children that outlived it).
    NotRunning { stale: Option<RunFile> },
    /// The lock is held but there is no run file naming a live supervisor yet: one is
    /// starting (or a foreign process holds the lock).
    Starting,
    /// The lock is held and the run file names a live supervisor.
    Running(RunFile),
}

/// Look at the lock and the run file. The run file alone proves nothing (a killed supervisor
/// cannot delete it); the lock alone names nobody we could signal.
pub fn presence(state: &StateDir) -> Result<Presence, StateError> {
    if !StateLock::is_held(state) {
        // A corrupt leftover is as stale as a readable one.
        let stale = RunFile::read(&state.run_file()).ok().flatten();
        return Ok(Presence::NotRunning { stale });
    }
    match RunFile::read(&state.run_file())? {
        Some(run) if run.supervisor.is_alive() => Ok(Presence::Running(run)),
        _ => Ok(Presence::Starting),
    }
}

/// The run file of the running supervisor, when the lock is held and the supervisor it names
/// is alive.
pub fn running(state: &StateDir) -> Result<Option<RunFile>, StateError> {
    Ok(match presence(state)? {
        Presence::Running(run) => Some(run),
        _ => None,
    })
}

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync, rename, fsync
/// the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    if let Ok(dir) = fs_err::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}
