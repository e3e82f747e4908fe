//! The shared vocabulary every layer uses: which service, which process. A leaf module: it
//! imports nothing from the rest of opsbox.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the stack's services, named as in `--services` and `opsbox logs`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    Nats,
    Postgres,
    S3,
}

impl ServiceName {
    pub const ALL: [ServiceName; 3] = [ServiceName::Nats, ServiceName::Postgres, ServiceName::S3];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Nats => "nats",
            ServiceName::Postgres => "postgres",
            ServiceName::S3 => "s3",
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pid plus the process's start time (clock ticks since boot), which together name one
/// process for the life of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: i32,
    pub start_ticks: u64,
}

impl ProcessIdentity {
    /// The identity of the live process `pid`, or `None` if there is none (or it is a zombie).
    pub fn of(pid: i32) -> Option<Self> {
        let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may contain spaces: split after the
        // last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state); starttime is field 22.
        if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
            return None;
        }
        let start_ticks = fields.get(19)?.parse().ok()?;
        Some(Self { pid, start_ticks })
    }

    /// Our own identity.
    pub fn current() -> Option<Self> {
        Self::of(std::process::id() as i32)
    }

    /// Whether this exact process is still alive.
    pub fn is_alive(&self) -> bool {
        Self::of(self.pid).is_some_and(|now| now.start_ticks == self.start_ticks)
    }
}

/// Seconds since the Unix epoch, as run files, instance files and snapshots record times.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
