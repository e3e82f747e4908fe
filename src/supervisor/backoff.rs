//! Restart delays: start small, double up to a cap, reset after a healthy period.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    healthy_after: Duration,
    next: Duration,
    /// Restarts since the last reset.
    pub restarts: u32,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration, healthy_after: Duration) -> Self {
        Self {
            initial,
            cap,
            healthy_after,
            next: initial,
            restarts: 0,
        }
    }

    /// The delay before the next restart of a child that ran since `started`.
    pub fn next_delay(&mut self, started: Instant) -> Duration {
        if started.elapsed() >= self.healthy_after {
            self.next = self.initial;
            self.restarts = 0;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        self.restarts += 1;
        delay
    }

    /// Crash-looping: several restarts without a healthy period in between.
    pub fn crash_looping(&self) -> bool {
        self.restarts >= 3
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            // A run that stayed up this long was healthy: the next crash restarts quickly
            // again. Shorter runs count as a crash loop and double the delay.
            Duration::from_secs(2),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets_after_a_healthy_run() {
        let mut backoff = Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(4),
            Duration::from_secs(60),
        );
        let now = Instant::now();
        let delays: Vec<_> = (0..6).map(|_| backoff.next_delay(now)).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 4000, 4000].map(Duration::from_millis)
        );
        assert!(backoff.crash_looping());
        let long_ago = Instant::now() - Duration::from_secs(61);
        assert_eq!(backoff.next_delay(long_ago), Duration::from_millis(500));
        assert_eq!(backoff.restarts, 1);
    }
}
