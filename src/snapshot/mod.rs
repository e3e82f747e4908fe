//! Snapshots of a whole stack's data (JetStream store, PGDATA, S3 root) inside its data
//! directory: save, atomic restore with an intent journal, list, remove, export and import.
//!
//! ```text
//! <data dir>/snapshots/<name>/manifest.json     what the snapshot holds (manifest.rs)
//! <data dir>/snapshots/<name>/data/<part>/      nats/jetstream, postgres/data, s3
//! <data dir>/snapshots/.staging-<pid>-*/        a save or import being built (no name yet)
//! <data dir>/snapshots/.trash-*/                replaced data, deleted later by `up`
//! <data dir>/snapshots/.restore-<pid>-*/        a restore being built, then swapped
//! <data dir>/snapshots/restore.journal          the swap in progress (journal.rs)
//! ```
//!
//! The functions here work on a stack that is not running; the caller holds the data dir's
//! lock (commands/snapshot.rs, the supervisor for the automatic "initial" snapshot).

pub mod archive;
pub mod manifest;
pub mod restore;
pub mod save;
pub mod spare;
pub mod template;
pub mod tree;

use std::path::{Path, PathBuf};

pub use manifest::{Entry, EntryKind, Manifest, Part};

use crate::state::StateDir;
use crate::types::ServiceName;

/// The snapshot `up` keeps after the first successful start, and `reset` goes back to.
pub const INITIAL: &str = "initial";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("invalid snapshot name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("no snapshot named {name} in {dir}")]
    NotFound { name: String, dir: PathBuf },
    #[error("a snapshot named {name} already exists in {dir}")]
    Exists { name: String, dir: PathBuf },
    #[error("the snapshot {name} is damaged: {reason}")]
    Damaged { name: String, reason: String },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the archive {path} is not a usable opsbox snapshot: {reason}")]
    BadArchive { path: PathBuf, reason: String },
    #[error(
        "the archive {path} holds a PostgreSQL {archive} cluster, but this stack runs PostgreSQL {stack}"
    )]
    PostgresMajor {
        path: PathBuf,
        archive: u32,
        stack: u32,
    },
}

impl SnapshotError {
    pub fn hint(&self) -> Option<String> {
        match self {
            SnapshotError::InvalidName { .. } => Some(
                "use letters, digits, '.', '_' and '-' (at most 64, not starting with '.')".into(),
            ),
            SnapshotError::NotFound { .. } => {
                Some("`opsbox snapshot ls` lists the snapshots of this data dir".into())
            }
            SnapshotError::Exists { name, .. } => Some(format!(
                "choose another name, or remove the old one first with `opsbox snapshot rm {name}`"
            )),
            SnapshotError::Damaged { name, .. } => Some(format!(
                "the current state was not touched; remove the snapshot with `opsbox snapshot rm {name}` and save or import it again"
            )),
            SnapshotError::BadArchive { .. } => Some(
                "nothing was changed; export the snapshot again (`opsbox snapshot export NAME FILE`) and copy the file whole".into(),
            ),
            SnapshotError::PostgresMajor { archive, .. } => Some(format!(
                "nothing was changed; export the snapshot from a stack of PostgreSQL {archive}, or run this stack with PostgreSQL {archive} (--postgres-version / --allow-postgres-major {archive})"
            )),
            SnapshotError::Io { .. } => Some(
                "check free space and permissions in the data dir; the current state was not touched".into(),
            ),
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io {
            action,
            path,
            source: crate::fetch::without_path(source),
        }
    }
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// Progress of a save, restore, export or import, shown by src/output.
pub trait Progress: Send + Sync {
    /// A step of `total` bytes begins ("saving s1").
    fn begin(&self, label: &str, total: u64);
    /// `bytes` more are done.
    fn advance(&self, bytes: u64);
    /// The step is over.
    fn end(&self);
}

impl Progress for crate::output::SnapshotProgress {
    fn begin(&self, label: &str, total: u64) {
        crate::output::SnapshotProgress::begin(self, label, total);
    }
    fn advance(&self, bytes: u64) {
        crate::output::SnapshotProgress::advance(self, bytes);
    }
    fn end(&self) {
        crate::output::SnapshotProgress::end(self);
    }
}

/// Progress nobody sees (tests, the supervisor's automatic snapshot).
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn end(&self) {}
}

/// Where a service's data lives, relative to the data dir (and to a snapshot's `data/`).
pub fn part_path(service: ServiceName) -> &'static str {
    match service {
        ServiceName::Nats => "nats/jetstream",
        ServiceName::Postgres => "postgres/data",
        ServiceName::S3 => "s3",
    }
}

/// How a part's files are taken: S3 objects and metadata are only ever replaced by a rename
/// (services/s3/storage.rs), never rewritten in place, so a hard link is a stable copy;
/// PostgreSQL and JetStream rewrite their files in place, so those are copied.
pub fn links_files(service: ServiceName) -> bool {
    service == ServiceName::S3
}

/// Paths of the snapshots of one data dir.
#[derive(Debug, Clone)]
pub struct Snapshots {
    pub state: StateDir,
}

impl Snapshots {
    pub fn new(state: &StateDir) -> Self {
        Self {
            state: state.clone(),
        }
    }
    pub fn root(&self) -> PathBuf {
        self.state.root.join("snapshots")
    }
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }
    pub fn manifest_path(&self, name: &str) -> PathBuf {
        self.dir(name).join(manifest::FILE)
    }
    pub fn journal(&self) -> PathBuf {
        self.root().join("restore.journal")
    }
    /// The restores being built whose process is gone (and the fixed `.restore` of
    /// earlier opsbox versions).
    pub fn abandoned_restores(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs_err::read_dir(self.root()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name == ".restore" || dead_owner(&name, ".restore-")
            })
            .map(|entry| entry.path())
            .collect()
    }
    pub fn restore_previous(&self) -> PathBuf {
        self.root().join(".previous")
    }
    /// A fresh directory name for a snapshot being built.
    pub fn staging(&self) -> PathBuf {
        self.root().join(format!(
            ".staging-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// The manifest of snapshot `name`.
    pub fn manifest(&self, name: &str) -> Result<Manifest> {
        validate_name(name)?;
        let path = self.manifest_path(name);
        if !self.dir(name).is_dir() {
            return Err(SnapshotError::NotFound {
                name: name.into(),
                dir: self.root(),
            });
        }
        Manifest::read(&path).map_err(|reason| SnapshotError::Damaged {
            name: name.into(),
            reason,
        })
    }

    /// Every snapshot, oldest first; a directory without a readable manifest is listed with
    /// its error.
    pub fn list(&self) -> Result<Vec<(String, Result<Manifest, String>)>> {
        let root = self.root();
        let entries = match fs_err::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SnapshotError::io("read", &root)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let manifest = Manifest::read(&entry.path().join(manifest::FILE));
            out.push((name, manifest));
        }
        out.sort_by_key(|(name, manifest)| {
            (
                manifest.as_ref().map_or(0, |m| m.created_unix_ms),
                name.clone(),
            )
        });
        Ok(out)
    }

    /// Remove snapshot `name`: renamed out of sight first, so a removal cut short never
    /// leaves a half snapshot under its name.
    pub fn remove(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let dir = self.dir(name);
        if !dir.is_dir() {
            return Err(SnapshotError::NotFound {
                name: name.into(),
                dir: self.root(),
            });
        }
        let doomed = self.staging();
        fs_err::rename(&dir, &doomed).map_err(SnapshotError::io("move away", &dir))?;
        remove_tree(&doomed)
    }

    /// Move `path` out of the way under a `.trash-*` name (one rename), for
    /// `clean_leftovers` to delete later: a restore does not wait for the removal of the
    /// state it replaced.
    pub fn discard(&self, path: &Path) -> Result<()> {
        let trash = self
            .root()
            .join(format!(".trash-{}", uuid::Uuid::new_v4().simple()));
        match fs_err::rename(path, &trash) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SnapshotError::io("move away", path)(e)),
        }
    }

    /// Delete what restores discarded and what saves and imports of dead processes left
    /// (never a named snapshot, nor the staging of a process still running).
    pub fn clean_leftovers(&self) {
        let Ok(entries) = fs_err::read_dir(self.root()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".trash-") || dead_owner(&name, ".staging-") {
                let _ = remove_tree(&entry.path());
            }
        }
    }
}

/// Whether `name` is `<prefix><pid>-...` of a process that is gone (or a zombie: it was
/// killed and its parent has not reaped it yet).
pub(crate) fn dead_owner(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<i32>().ok())
        .is_some_and(|pid| crate::types::ProcessIdentity::of(pid).is_none())
}

/// A snapshot name: a plain file name that cannot collide with the staging names.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 64 {
        Some("it is longer than 64 characters")
    } else if name.starts_with('.') {
        Some("it starts with '.'")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("it has a character other than letters, digits, '.', '_' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SnapshotError::InvalidName {
            name: name.into(),
            reason,
        }),
        None => Ok(()),
    }
}

pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs_err::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::io("remove", path)(e)),
    }
}

/// Give a complete staging directory its name: flush the file system, rename it to `target`
/// (removing it if that fails), and make the rename durable. The one way a save, an import or
/// a template gets its name, so none is ever seen half built under it.
pub(crate) fn name_staging(staging: &Path, target: &Path) -> Result<()> {
    sync_file_system(staging)?;
    if let Err(e) = fs_err::rename(staging, target) {
        let _ = remove_tree(staging);
        return Err(SnapshotError::io("name the snapshot", target)(e));
    }
    match target.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// fsync a directory, so that renames and creations inside it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs_err::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SnapshotError::io("sync", dir))
}

/// Flush everything written on the data dir's file system (one call instead of an fsync per
/// copied file).
pub(crate) fn sync_file_system(dir: &Path) -> Result<()> {
    let file = fs_err::File::open(dir).map_err(SnapshotError::io("open", dir))?;
    nix::unistd::syncfs(&file)
        .map_err(|e| SnapshotError::io("sync the file system of", dir)(std::io::Error::from(e)))
}
