//! Automatic ports (`--ports auto`): free ports for one instance, chosen without races between
//! instances starting at the same moment.
//!
//! Three layers, because each alone leaves a gap:
//! - a host-wide flock (`<data root>/.ports.lock`) around "pick + record in instance.json", so
//!   two opsbox instances never pick the same port, even before either listens on it;
//! - bind-and-hold for the listeners opsbox owns (S3, console): the socket that proved the port
//!   free is the one the server uses, so nothing can take it in between;
//! - for nats-server and PostgreSQL, which bind their own sockets after we released ours, the
//!   stack starts them and, when one exits with "address already in use" (another program took
//!   the port in that moment), picks again with [`repick`] and starts it again.

use std::fs::File;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use crate::state::instances::{self, InstanceRecord, PortSet, PortSlot};
use crate::state::{LockMode, StateDir, lock_file_blocking};

/// How many ports the kernel may hand us that another instance claimed before we give up.
const ATTEMPTS: usize = 200;

/// What to do for one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// This port and no other (a `--nats-port`-style flag).
    Fixed(u16),
    /// Any free port; `preferred` (the one used last) first when it is free.
    Auto { preferred: Option<u16> },
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("cannot lock {path} to choose ports")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {slot}: port {port} on {host} is already in use{held_by}", slot = slot.as_str())]
    InUse {
        slot: PortSlot,
        host: IpAddr,
        port: u16,
        /// " by opsbox instance `NAME` (dir DIR)" or " (by pid N: command)" when known.
        held_by: String,
        /// How to name the opsbox instance holding it, when it is one (`-p NAME`, or
        /// `--data-dir DIR` for one whose data dir is outside the data root).
        instance: Option<String>,
    },
    #[error("cannot listen on {address} for {slot}", slot = slot.as_str())]
    Listen {
        slot: PortSlot,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("found no free port for {slot} on {host} after {ATTEMPTS} attempts", slot = slot.as_str())]
    Exhausted { slot: PortSlot, host: IpAddr },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl PortError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PortError::InUse {
                slot,
                port,
                instance: Some(selector),
                ..
            } => Some(format!(
                "stop it with `opsbox {selector} down`, or start this one with `--ports auto` (free ports, kept across restarts) or `{} <free port>` instead of {port}",
                slot.flag()
            )),
            PortError::InUse { slot, port, .. } => Some(format!(
                "stop whatever listens on {port} (`ss -ltnp 'sport = {port}'`), or start with `--ports auto` (free ports) or `{} <free port>`",
                slot.flag()
            )),
            PortError::Listen { .. } => {
                Some("check --host: it must be an address of this machine".into())
            }
            PortError::Lock { path, .. } => Some(format!(
                "check the permissions of {} (it is shared by every instance of this user)",
                path.display()
            )),
            PortError::Exhausted { .. } => {
                Some("free some ports, or give them explicitly (--nats-port ...)".into())
            }
            PortError::State(e) => e.hint(),
        }
    }
}

/// The ports of one instance, with the sockets that proved them free.
#[derive(Debug)]
pub struct Allocation {
    pub ports: PortSet,
    listeners: Vec<(PortSlot, TcpListener)>,
}

impl Allocation {
    /// The socket bound to `slot`'s port, to serve on (S3, console). Call for every slot opsbox
    /// serves itself, then drop the allocation to release the ports the children will bind.
    pub fn take_listener(&mut self, slot: PortSlot) -> Option<TcpListener> {
        let index = self.listeners.iter().position(|(s, _)| *s == slot)?;
        Some(self.listeners.swap_remove(index).1)
    }
}

/// The host-wide lock around choosing ports; released on drop.
struct HostLock {
    _file: File,
}

impl HostLock {
    /// Held for the milliseconds it takes to bind a few sockets and write one file.
    fn acquire(root: &Path) -> Result<HostLock, PortError> {
        let path = root.join(".ports.lock");
        fs_err::create_dir_all(root)
            .and_then(|()| lock_file_blocking(&path, LockMode::Exclusive))
            .map(|file| HostLock { _file: file })
            .map_err(|source| PortError::Lock { path, source })
    }
}

/// Choose every port of `wanted` for the instance in `state` and record them in its
/// `instance.json` (as `record` with these ports), all under the host-wide lock.
pub fn allocate(
    root: &Path,
    state: &StateDir,
    host: IpAddr,
    wanted: &[(PortSlot, Want)],
    mut record: InstanceRecord,
) -> Result<Allocation, PortError> {
    let _lock = HostLock::acquire(root)?;
    let claimed = instances::claimed_ports(root, &state.root);
    let mut allocation = Allocation {
        ports: PortSet::new(),
        listeners: Vec::new(),
    };
    for &(slot, want) in wanted {
        let listener = match want {
            Want::Fixed(port) => bind(host, slot, port).map_err(|e| in_use(e, root, state))?,
            Want::Auto { preferred } => {
                let taken = |port: u16| {
                    claimed.contains(&port) || allocation.ports.values().any(|&p| p == port)
                };
                let reuse = preferred
                    .filter(|&port| port != 0 && !taken(port))
                    .and_then(|port| bind(host, slot, port).ok());
                match reuse {
                    Some(listener) => listener,
                    None => free_listener(host, slot, &taken)?,
                }
            }
        };
        let port = listener
            .local_addr()
            .map_err(|source| PortError::Listen {
                slot,
                address: SocketAddr::new(host, 0),
                source,
            })?
            .port();
        allocation.ports.insert(slot, port);
        allocation.listeners.push((slot, listener));
    }
    record.ports = allocation.ports.clone();
    record.write(state)?;
    register(root, state);
    Ok(allocation)
}

/// Record the ports of an instance started without `--ports auto`, under the host-wide lock
/// when this user can take it. The file is written atomically, so an allocation never reads
/// half a claim either way; the lock only orders the claim against a running allocation. A
/// data root this user cannot write (a system account whose home does not exist, with
/// `--data-dir` elsewhere) has no `--ports auto` instances to order against.
pub fn record(root: &Path, state: &StateDir, record: InstanceRecord) -> Result<(), PortError> {
    let lock = match HostLock::acquire(root) {
        Ok(lock) => Some(lock),
        Err(PortError::Lock { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    record.write(state)?;
    if lock.is_some() {
        register(root, state);
    }
    Ok(())
}

/// List a data dir outside the root under it (`instances::register`). Only `ls`, `down --all`
/// and other instances' port choices miss an instance that cannot be listed, so a root this
/// user cannot write does not stop a start.
fn register(root: &Path, state: &StateDir) {
    let _ = instances::register(root, state);
}

/// A new free port for `slot` after its server found the old one taken: chosen and recorded
/// under the host-wide lock, never one of `avoid` (the ports that failed) or another live
/// instance's.
pub fn repick(
    root: &Path,
    state: &StateDir,
    host: IpAddr,
    slot: PortSlot,
    avoid: &[u16],
) -> Result<u16, PortError> {
    let _lock = HostLock::acquire(root)?;
    let claimed = instances::claimed_ports(root, &state.root);
    let mut record = InstanceRecord::read(state)?.unwrap_or_else(|| InstanceRecord {
        name: state
            .root
            .file_name()
            .map_or("default".into(), |n| n.to_string_lossy().into_owned()),
        project_dir: None,
        auto_ports: true,
        ports: PortSet::new(),
        started_at: 0,
    });
    let own: Vec<u16> = record
        .ports
        .iter()
        .filter(|(s, _)| **s != slot)
        .map(|(_, p)| *p)
        .collect();
    let taken = |port: u16| claimed.contains(&port) || avoid.contains(&port) || own.contains(&port);
    let listener = free_listener(host, slot, &taken)?;
    let port = listener
        .local_addr()
        .map_err(|source| PortError::Listen {
            slot,
            address: SocketAddr::new(host, 0),
            source,
        })?
        .port();
    record.ports.insert(slot, port);
    record.write(state)?;
    Ok(port)
}

/// A listener on a port the kernel chose that `taken` does not exclude. Rejected sockets stay
/// bound until the end, so the kernel does not hand out the same port again.
fn free_listener(
    host: IpAddr,
    slot: PortSlot,
    taken: &dyn Fn(u16) -> bool,
) -> Result<TcpListener, PortError> {
    let mut rejected = Vec::new();
    for _ in 0..ATTEMPTS {
        let listener = bind(host, slot, 0)?;
        let port = listener.local_addr().map_or(0, |a| a.port());
        if port != 0 && !taken(port) {
            return Ok(listener);
        }
        rejected.push(listener);
    }
    Err(PortError::Exhausted { slot, host })
}

fn bind(host: IpAddr, slot: PortSlot, port: u16) -> Result<TcpListener, PortError> {
    let address = SocketAddr::new(host, port);
    let listener = TcpListener::bind(address).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            PortError::InUse {
                slot,
                host,
                port,
                held_by: String::new(),
                instance: None,
            }
        } else {
            PortError::Listen {
                slot,
                address,
                source,
            }
        }
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| PortError::Listen {
            slot,
            address,
            source,
        })?;
    Ok(listener)
}

/// A port-in-use error completed with who holds the port: another opsbox instance of this user
/// (by name), else the process /proc shows listening on it.
pub fn in_use(error: PortError, root: &Path, state: &StateDir) -> PortError {
    let PortError::InUse {
        slot, host, port, ..
    } = error
    else {
        return error;
    };
    let (held_by, instance) = describe_holder(root, state, port);
    PortError::InUse {
        slot,
        host,
        port,
        held_by,
        instance,
    }
}

/// " by opsbox instance `NAME` (dir DIR)" or " (by pid N: command)", and how to name the
/// instance on the command line.
pub fn describe_holder(root: &Path, state: &StateDir, port: u16) -> (String, Option<String>) {
    if let Some(holder) = instances::holder_of(root, port, &state.root) {
        let selector = holder.selector(root);
        return (
            format!(
                ": it is held by opsbox instance `{}` (dir {})",
                holder.name,
                holder.state.root.display()
            ),
            Some(selector),
        );
    }
    let owner = crate::supervisor::process::port_owner(port)
        .map(|(pid, command)| format!(" (by pid {pid}: {command})"))
        .unwrap_or_default();
    (owner, None)
}

/// Whether a server's log, from `offset` on, says it could not bind its port.
pub fn log_says_address_in_use(log: &Path, offset: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = Vec::new();
    let Ok(mut file) = fs_err::File::open(log) else {
        return false;
    };
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut text).is_err() {
        return false;
    }
    String::from_utf8_lossy(&text)
        .to_ascii_lowercase()
        .contains("address already in use")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> InstanceRecord {
        InstanceRecord {
            name: "t".into(),
            project_dir: None,
            auto_ports: true,
            ports: PortSet::new(),
            started_at: 0,
        }
    }

    fn auto(slots: &[PortSlot], preferred: Option<u16>) -> Vec<(PortSlot, Want)> {
        slots
            .iter()
            .map(|&slot| (slot, Want::Auto { preferred }))
            .collect()
    }

    #[test]
    fn a_live_instances_claim_is_never_handed_out_even_before_it_listens() {
        let root = tempfile::tempdir().unwrap();
        let host = IpAddr::from([127, 0, 0, 1]);
        let first = StateDir::new(root.path().join("first"));
        first.create().unwrap();
        let _held = crate::state::StateLock::acquire(&first).unwrap();
        let mut allocation = allocate(
            root.path(),
            &first,
            host,
            &auto(&PortSlot::ALL, None),
            record(),
        )
        .unwrap();
        let first_ports: Vec<u16> = allocation.ports.values().copied().collect();
        // Release every socket: the ports are free again, only the claim protects them.
        for slot in PortSlot::ALL {
            drop(allocation.take_listener(slot));
        }
        let second = StateDir::new(root.path().join("second"));
        second.create().unwrap();
        for port in &first_ports {
            let allocation = allocate(
                root.path(),
                &second,
                host,
                &auto(&[PortSlot::Nats], Some(*port)),
                record(),
            )
            .unwrap();
            assert_ne!(allocation.ports[&PortSlot::Nats], *port);
        }
    }

    #[test]
    fn a_free_preferred_port_is_kept_and_a_taken_one_replaced() {
        let root = tempfile::tempdir().unwrap();
        let host = IpAddr::from([127, 0, 0, 1]);
        let state = StateDir::new(root.path().join("one"));
        state.create().unwrap();
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let preferred = free.local_addr().unwrap().port();
        drop(free);
        let allocation = allocate(
            root.path(),
            &state,
            host,
            &auto(&[PortSlot::S3], Some(preferred)),
            record(),
        )
        .unwrap();
        assert_eq!(allocation.ports[&PortSlot::S3], preferred);
        let recorded = InstanceRecord::read(&state).unwrap().unwrap();
        assert_eq!(recorded.ports[&PortSlot::S3], preferred);
        // Held by the allocation's socket: the next allocation must choose another.
        let again = allocate(
            root.path(),
            &state,
            host,
            &auto(&[PortSlot::S3], Some(preferred)),
            record(),
        )
        .unwrap();
        assert_ne!(again.ports[&PortSlot::S3], preferred);
    }
}
