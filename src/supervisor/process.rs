//! Facts about processes read from /proc, and signals sent only after proving a pid still
//! names the process we recorded (pids get reused).

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::types::ProcessIdentity;

/// How long a SIGKILLed process may take to disappear.
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often a stop looks whether the process is gone.
const POLL: Duration = Duration::from_millis(10);

/// How [`ProcessIdentity::stop`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The process was already gone (or the pid names another process now): nothing was sent.
    NotRunning,
    /// It exited within the grace period.
    Stopped,
    /// It outlived the grace period (or the stop was forced) and was SIGKILLed with its group.
    Killed,
    /// It is still alive after SIGKILL (uninterruptible sleep, or another user's process).
    Survived,
}

impl ProcessIdentity {
    /// The one stop routine: `signal`, up to `grace` for the process to go, then SIGKILL to
    /// its process group and to it, up to [`KILL_WAIT`] more. A zombie counts as gone (it runs
    /// nothing); our own children are reaped by their owner afterwards.
    pub async fn stop(&self, signal: Signal, grace: Duration) -> StopOutcome {
        self.stop_or_force(signal, grace, std::future::pending())
            .await
    }

    /// `stop`, cut short when `force` completes first (a second Ctrl-C): SIGKILL at once
    /// instead of after the grace period.
    pub async fn stop_or_force(
        &self,
        signal: Signal,
        grace: Duration,
        force: impl Future<Output = ()>,
    ) -> StopOutcome {
        let sent = if signal == Signal::SIGKILL {
            // A group first, so no member survives its leader.
            self.signal_group(signal) | self.signal(signal)
        } else {
            self.signal(signal)
        };
        if !sent {
            return StopOutcome::NotRunning;
        }
        tokio::select! {
            gone = self.wait_gone(grace) => if gone {
                return StopOutcome::Stopped;
            },
            () = force => {}
        }
        self.signal_group(Signal::SIGKILL);
        self.signal(Signal::SIGKILL);
        if self.wait_gone(KILL_WAIT).await {
            StopOutcome::Killed
        } else {
            StopOutcome::Survived
        }
    }

    /// Whether the process is gone within `within`.
    pub async fn wait_gone(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if !self.is_alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Send `signal` if, and only if, the pid still names this process. Returns whether it was
    /// sent.
    pub fn signal(&self, signal: Signal) -> bool {
        self.is_alive() && kill(Pid::from_raw(self.pid), signal).is_ok()
    }

    /// Send `signal` to this process's whole process group (the children we spawn lead their
    /// own), after proving the leader is still ours.
    pub fn signal_group(&self, signal: Signal) -> bool {
        self.is_alive() && kill(Pid::from_raw(-self.pid), signal).is_ok()
    }
}

/// The state letter of `pid` from /proc/PID/stat (`R`, `S`, `D`, `Z` for a zombie, ...), or
/// `None` when there is no such process.
pub fn state(pid: i32) -> Option<char> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The parent pid of `pid`, from /proc/PID/stat.
pub fn parent(pid: i32) -> Option<i32> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every live process whose parent is in `parents` (and is not in it itself).
pub fn children_of(parents: &std::collections::HashSet<i32>) -> Vec<i32> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| !parents.contains(pid) && parent(*pid).is_some_and(|p| parents.contains(&p)))
        .collect()
}

/// The command line of `pid`, joined with spaces.
pub fn command_line(pid: i32) -> Option<String> {
    let raw = fs_err::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The executable of `pid` (needs permission to read /proc/PID/exe).
pub fn executable(pid: i32) -> Option<PathBuf> {
    fs_err::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The pid and command line of the process listening on TCP `port`, where /proc lets us see it.
pub fn port_owner(port: u16) -> Option<(i32, String)> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs_err::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT; st 0A is LISTEN; inode is field 9.
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if listening && local_port == Some(port) && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in fs_err::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs_err::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs_err::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                let command = command_line(pid).unwrap_or_else(|| "?".into());
                return Some((pid, command));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_of_self_is_alive_and_a_made_up_start_time_is_not() {
        let me = ProcessIdentity::current().expect("own /proc entry");
        assert!(me.is_alive());
        let other = ProcessIdentity {
            pid: me.pid,
            start_ticks: me.start_ticks + 1,
        };
        assert!(!other.is_alive());
        // Never signalled: the identity does not match.
        assert!(!other.signal(Signal::SIGTERM));
    }

    #[test]
    fn a_reaped_child_has_no_state_and_an_unreaped_one_is_a_zombie() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let began = std::time::Instant::now();
        while state(pid) != Some('Z') {
            assert!(
                began.elapsed() < std::time::Duration::from_secs(10),
                "`true` (pid {pid}) did not exit: state {:?}",
                state(pid)
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(ProcessIdentity::of(pid).is_none());
        child.wait().unwrap();
        assert_eq!(state(pid), None);
        assert!(state(std::process::id() as i32).is_some_and(|s| s != 'Z'));
    }

    #[test]
    fn port_owner_finds_our_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (pid, _) = port_owner(port).expect("owner of our own port");
        assert_eq!(pid, std::process::id() as i32);
    }
}
