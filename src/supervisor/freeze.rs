//! Freezing a running child with everything it forked (SIGSTOP), so that its files hold
//! still for a snapshot while its clients only wait: the image taken meanwhile is the one a
//! power cut at that moment would leave, which PostgreSQL and JetStream are built to recover
//! from (WAL replay; block and index rebuild). PostgreSQL's backends lead their own process
//! groups, so the tree is found through parent pids, not the process group.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::process;
use crate::types::ProcessIdentity;

/// A frozen process tree. Dropping it thaws the tree, so no path leaves a service stopped.
#[derive(Debug)]
pub struct Frozen {
    name: String,
    /// Stopped by us, leader first.
    pids: Vec<i32>,
}

/// Why a freeze did not take.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error("{name} (pid {pid}) is not running")]
    NotRunning { name: String, pid: i32 },
    #[error("{name} did not stop within {within:?}: {busy} of its processes were still busy")]
    Busy {
        name: String,
        within: Duration,
        busy: usize,
    },
}

impl Frozen {
    /// SIGSTOP `leader` and every process it has forked, and return once all of them are
    /// stopped (a process inside a system call stops when the call returns). A fork racing
    /// the signal is restarted by the kernel after the stop, so each round finds what the
    /// last one stopped; it ends when a round finds nothing new and everything is stopped.
    pub async fn freeze(
        name: &str,
        leader: &ProcessIdentity,
        within: Duration,
    ) -> Result<Frozen, FreezeError> {
        if !leader.signal(Signal::SIGSTOP) {
            return Err(FreezeError::NotRunning {
                name: name.into(),
                pid: leader.pid,
            });
        }
        let mut frozen = Frozen {
            name: name.into(),
            pids: vec![leader.pid],
        };
        let mut tree: HashSet<i32> = HashSet::from([leader.pid]);
        let deadline = Instant::now() + within;
        loop {
            let mut new = false;
            for pid in process::children_of(&tree) {
                if kill(Pid::from_raw(pid), Signal::SIGSTOP).is_ok() {
                    tree.insert(pid);
                    frozen.pids.push(pid);
                    new = true;
                }
            }
            let busy = frozen
                .pids
                .iter()
                .filter(|&&pid| matches!(process::state(pid), Some(state) if !matches!(state, 'T' | 't' | 'Z' | 'X')))
                .count();
            if !new && busy == 0 {
                return Ok(frozen);
            }
            if Instant::now() >= deadline {
                // Dropping `frozen` lets everything run again.
                return Err(FreezeError::Busy {
                    name: name.into(),
                    within,
                    busy,
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// How many processes are stopped.
    pub fn processes(&self) -> usize {
        self.pids.len()
    }

    /// Let the tree run again (as dropping does).
    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // Children first, the leader last: the postmaster finds its backends running.
        for &pid in self.pids.iter().rev() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        tracing::debug!("thawed {} ({} processes)", self.name, self.pids.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell whose child keeps counting into a file: frozen, the file stops growing (child
    /// included); thawed, it grows again.
    #[tokio::test]
    async fn a_frozen_tree_stops_writing_and_a_thawed_one_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("count");
        let script = format!(
            "sh -c 'i=0; while :; do i=$((i+1)); echo $i >> {}; sleep 0.01; done' & wait",
            file.display()
        );
        let mut shell = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .spawn()
            .unwrap();
        let leader = ProcessIdentity::of(shell.id() as i32).unwrap();
        let size = || fs_err::metadata(&file).map_or(0, |m| m.len());
        while size() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let frozen = Frozen::freeze("counter", &leader, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            frozen.processes() >= 2,
            "the child was not found: {frozen:?}"
        );
        let before = size();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(size(), before, "the tree kept writing while frozen");
        frozen.thaw();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(size() > before, "the tree did not run again after the thaw");
        let _ = kill(Pid::from_raw(-(shell.id() as i32)), Signal::SIGKILL);
        for pid in process::children_of(&HashSet::from([shell.id() as i32])) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = shell.kill();
        let _ = shell.wait();
    }
}
