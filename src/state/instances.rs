//! Named instances: the name of each stack on this host, its `instance.json` (name, project and
//! the ports it last used, kept across `down`), and the list of every instance under the data
//! root that `opsbox ls`, `opsbox down --all` and the port allocator read.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Presence, RunFile, StateDir, StateError, StateLock, write_atomically};

/// The longest instance name (it becomes a directory name).
const MAX_NAME: usize = 63;

/// A valid instance name, as compose's project names: lowercase letters, digits, `-` and `_`,
/// starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName {
    name: String,
    /// Given with `-p` (else derived from the project or data directory).
    explicit: bool,
}

impl InstanceName {
    /// Check a name given with `-p` / `OPSBOX_PROJECT`. A name that breaks the rule is still
    /// accepted when an instance of exactly that name exists under `root` (names derived from
    /// a directory keep its upper-case letters), so every name `opsbox ls` shows works with `-p`.
    pub fn parse(name: &str, root: &Path) -> Result<InstanceName, StateError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        let existing = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains('/')
            && name != ".."
            && root.join(name).join(INSTANCE_FILE).is_file();
        if valid || existing {
            Ok(InstanceName {
                name: name.to_string(),
                explicit: true,
            })
        } else {
            Err(StateError::InvalidName {
                name: name.to_string(),
            })
        }
    }

    /// A name opsbox derived itself (from the project directory): trusted as it is.
    pub fn derived(name: String) -> InstanceName {
        InstanceName {
            name,
            explicit: false,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn is_explicit(&self) -> bool {
        self.explicit
    }
}

impl std::fmt::Display for InstanceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The file in each instance's data directory that names it.
pub const INSTANCE_FILE: &str = "instance.json";

/// One port of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortSlot {
    Nats,
    NatsMonitor,
    Postgres,
    S3,
    Console,
}

impl PortSlot {
    pub const ALL: [PortSlot; 5] = [
        PortSlot::Nats,
        PortSlot::NatsMonitor,
        PortSlot::Postgres,
        PortSlot::S3,
        PortSlot::Console,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PortSlot::Nats => "nats",
            PortSlot::NatsMonitor => "nats-monitor",
            PortSlot::Postgres => "postgres",
            PortSlot::S3 => "s3",
            PortSlot::Console => "console",
        }
    }

    /// The `up` flag that sets this port.
    pub fn flag(self) -> &'static str {
        match self {
            PortSlot::Nats => "--nats-port",
            PortSlot::NatsMonitor => "--nats-monitor-port",
            PortSlot::Postgres => "--postgres-port",
            PortSlot::S3 => "--s3-port",
            PortSlot::Console => "--console-port",
        }
    }
}

/// The ports of one stack, by slot (a slot the stack does not run is absent).
pub type PortSet = BTreeMap<PortSlot, u16>;

/// `instance.json`: what identifies an instance and what it used last; kept by `down`,
/// deleted with the data by `down -v`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub name: String,
    pub project_dir: Option<PathBuf>,
    /// Whether the ports were chosen by `--ports auto` (then the next `--ports auto` start
    /// tries them first).
    #[serde(default)]
    pub auto_ports: bool,
    /// The ports of the last start (or the one under way).
    #[serde(default)]
    pub ports: PortSet,
    /// Unix seconds of the last start.
    pub started_at: u64,
}

impl InstanceRecord {
    /// Read `instance.json`; `Ok(None)` when there is none.
    pub fn read(state: &StateDir) -> Result<Option<InstanceRecord>, StateError> {
        let path = state.instance_file();
        match fs_err::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::ReadInstanceFile {
                        path,
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::ReadInstanceFile {
                path,
                message: e.to_string(),
            }),
        }
    }

    pub fn write(&self, state: &StateDir) -> Result<(), StateError> {
        let path = state.instance_file();
        let bytes = serde_json::to_vec_pretty(self).expect("instance file serialises");
        write_atomically(&path, &bytes).map_err(|source| StateError::WriteInstanceFile {
            path: path.clone(),
            source,
        })
    }
}

/// One instance found under the data root.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub state: StateDir,
    pub record: Option<InstanceRecord>,
    pub presence: Presence,
}

impl Instance {
    /// The project directory: from the run file of a running stack, else from `instance.json`.
    pub fn project_dir(&self) -> Option<PathBuf> {
        match &self.presence {
            Presence::Running(run) if run.project_dir.is_some() => run.project_dir.clone(),
            _ => self.record.as_ref().and_then(|r| r.project_dir.clone()),
        }
    }

    /// The ports it listens on now (running) or used last (stopped).
    pub fn ports(&self) -> PortSet {
        if let Presence::Running(run) = &self.presence
            && let Some(ports) = &run.ports
        {
            return ports.clone();
        }
        self.record
            .as_ref()
            .map(|r| r.ports.clone())
            .unwrap_or_default()
    }

    /// Whether a supervisor holds the instance's lock (running or starting).
    pub fn is_live(&self) -> bool {
        !matches!(self.presence, Presence::NotRunning { .. })
    }

    /// How to name this instance on the command line: `-p NAME`, or `--data-dir DIR` when its
    /// data dir is outside `root`.
    pub fn selector(&self, root: &Path) -> String {
        if is_elsewhere(root, &self.state.root) {
            format!("--data-dir {}", self.state.root.display())
        } else {
            format!("-p {}", self.name)
        }
    }

    pub fn run_file(&self) -> Option<&RunFile> {
        match &self.presence {
            Presence::Running(run) => Some(run),
            _ => None,
        }
    }
}

/// Where instances whose data dir is outside the root (`--data-dir`) are registered: one
/// symbolic link per data dir, named by a hash of its path.
const ELSEWHERE: &str = ".elsewhere";

/// Make the instance in `state` known under `root` when its data dir is elsewhere, so `ls`,
/// `down --all` and the port allocator see it. Called with the record of its ports.
pub fn register(root: &Path, state: &StateDir) -> std::io::Result<()> {
    if !is_elsewhere(root, &state.root) {
        return Ok(());
    }
    let links = root.join(ELSEWHERE);
    fs_err::create_dir_all(&links)?;
    let name = link_name(&state.root);
    let link = links.join(&name);
    if fs_err::read_link(&link).is_ok_and(|target| target == state.root) {
        return Ok(());
    }
    // Made under a name of its own, then renamed over whatever link was there.
    let staged = links.join(format!(".{name}.{}", std::process::id()));
    let _ = fs_err::remove_file(&staged);
    fs_err::os::unix::fs::symlink(&state.root, &staged)?;
    fs_err::rename(&staged, &link)
}

/// Whether the data dir `dir` is outside `root` (started with `--data-dir`): then `-p` does not
/// reach it, `--data-dir DIR` does.
pub fn is_elsewhere(root: &Path, dir: &Path) -> bool {
    dir.parent() != Some(root)
}

fn link_name(dir: &Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..8])
}

/// Whether `state` holds an instance: an `instance.json`, or what an older opsbox left
/// without one (a lock or run file, or service data).
fn is_instance(state: &StateDir) -> bool {
    state.instance_file().is_file()
        || state.lock_file().is_file()
        || state.run_file().is_file()
        || state.postgres().is_dir()
        || state.nats().is_dir()
}

/// Every instance under `root`, by name: its directories that hold one, and the data dirs
/// elsewhere registered in `.elsewhere/` (a link whose data dir is gone, after `down -v`, is
/// removed).
pub fn list(root: &Path) -> Vec<Instance> {
    let Ok(entries) = fs_err::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<Instance> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            let state = StateDir::new(entry.path());
            is_instance(&state).then(|| load(name, state))
        })
        .collect();
    found.extend(elsewhere(root));
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.state.root.cmp(&b.state.root)));
    found
}

fn elsewhere(root: &Path) -> Vec<Instance> {
    let Ok(links) = fs_err::read_dir(root.join(ELSEWHERE)) else {
        return Vec::new();
    };
    links
        .flatten()
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|entry| {
            let target = fs_err::read_link(entry.path()).ok()?;
            let state = StateDir::new(target.clone());
            if !is_instance(&state) {
                if !target.exists() {
                    let _ = fs_err::remove_file(entry.path());
                }
                return None;
            }
            let name = target
                .file_name()
                .map_or("default".into(), |n| n.to_string_lossy().into_owned());
            Some(load(name, state))
        })
        .collect()
}

/// The instance in `state` (which need not be under the root).
pub fn load(name: String, state: StateDir) -> Instance {
    let record = InstanceRecord::read(&state).ok().flatten();
    let presence = super::presence(&state).unwrap_or(Presence::Starting);
    Instance {
        name: record.as_ref().map_or(name, |r| r.name.clone()),
        state,
        record,
        presence,
    }
}

/// The live instance (other than the one in `except`) that holds or claimed `port`, if any.
pub fn holder_of(root: &Path, port: u16, except: &Path) -> Option<Instance> {
    list(root)
        .into_iter()
        .filter(|instance| instance.state.root != except && instance.is_live())
        .find(|instance| instance.ports().values().any(|&p| p == port))
}

/// Ports claimed by live instances other than the one in `except`: what `--ports auto` must
/// not hand out even when nothing listens on them yet (a stack still starting).
pub fn claimed_ports(root: &Path, except: &Path) -> Vec<u16> {
    list(root)
        .into_iter()
        .filter(|instance| instance.state.root != except)
        .filter(|instance| StateLock::is_held(&instance.state))
        .flat_map(|instance| instance.ports().into_values())
        .collect()
}

/// Bytes on disk under `dir` (allocated blocks, as `du` counts them); unreadable parts count 0.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_compose_rules() {
        let root = tempfile::tempdir().unwrap();
        for good in ["ci-3", "a", "0", "my_stack-2"] {
            assert!(InstanceName::parse(good, root.path()).is_ok(), "{good}");
        }
        for bad in ["", "-x", "_x", "Ci", "a b", "a/b", "..", ".hidden", "é"] {
            let error = InstanceName::parse(bad, root.path()).unwrap_err();
            assert!(error.to_string().contains(&format!("`{bad}`")), "{error}");
        }
        let long = "a".repeat(MAX_NAME + 1);
        assert!(InstanceName::parse(&long, root.path()).is_err());
    }

    #[test]
    fn an_existing_derived_name_is_accepted() {
        let root = tempfile::tempdir().unwrap();
        let state = StateDir::new(root.path().join("MyRepo-0a1b2c3d"));
        state.create().unwrap();
        InstanceRecord {
            name: "MyRepo-0a1b2c3d".into(),
            project_dir: None,
            auto_ports: false,
            ports: PortSet::new(),
            started_at: 0,
        }
        .write(&state)
        .unwrap();
        assert!(InstanceName::parse("MyRepo-0a1b2c3d", root.path()).is_ok());
        assert!(InstanceName::parse("MyRepo-ffffffff", root.path()).is_err());
    }
}
