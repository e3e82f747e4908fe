//! When to restart a child that died: at once if it had been ready (a healthy service that was
//! killed), with exponential backoff if it died before becoming ready (a crash loop), and never
//! more often than a sliding-window rate limit allows (a service that becomes ready and dies at
//! once must not spin).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The numbers of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicySettings {
    /// Delay before restarting a child that had been ready: short, so the service is back at
    /// once, but not zero, so the old process's ports and shared memory are released.
    pub after_ready: Duration,
    /// Delay after the first start that failed before ready; doubles with each further one.
    pub first_backoff: Duration,
    /// The longest backoff.
    pub cap: Duration,
    /// At most `max_restarts` restarts within any `window`.
    pub window: Duration,
    pub max_restarts: usize,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            after_ready: Duration::from_millis(100),
            first_backoff: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            window: Duration::from_secs(60),
            // Room for a kill every few seconds (a soak kills 10 times in ~25 s); a service
            // that dies right after every ready is held to this many starts a minute.
            max_restarts: 15,
        }
    }
}

/// Why a restart waits as long as it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayReason {
    /// It had been ready: restart at once.
    WasReady,
    /// It died (or failed its readiness check) before ready this many times in a row.
    FailedBeforeReady { failures: u32 },
    /// The window already holds the maximum number of restarts.
    RateLimited { restarts: usize, window: Duration },
}

/// The decision for one restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartDecision {
    pub delay: Duration,
    pub reason: DelayReason,
}

impl RestartDecision {
    /// A service that cannot stay up: it keeps failing before ready, or hit the rate limit.
    pub fn crash_looping(&self) -> bool {
        match self.reason {
            DelayReason::WasReady => false,
            DelayReason::FailedBeforeReady { failures } => failures >= 2,
            DelayReason::RateLimited { .. } => true,
        }
    }

    /// Why the restart waits, in words for the log and `status`.
    pub fn explain(&self) -> String {
        let delay = human(self.delay);
        match self.reason {
            DelayReason::WasReady => {
                format!("it had been ready, so it restarts at once (in {delay})")
            }
            DelayReason::FailedBeforeReady { failures } => format!(
                "it was not healthy ({failures} time{} in a row: died before ready, failed its readiness check, or was stopped as unhealthy), so the restart backs off: next start in {delay}",
                if failures == 1 { "" } else { "s" }
            ),
            DelayReason::RateLimited { restarts, window } => format!(
                "rate limit: {restarts} restarts within the last {} s, so the next start waits {delay}",
                window.as_secs()
            ),
        }
    }
}

fn human(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// The restart state of one service.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    settings: PolicySettings,
    /// Starts that failed before ready since the last time the child was ready.
    failures: u32,
    /// When the restarts inside the window were (or are) due.
    recent: VecDeque<Instant>,
}

impl RestartPolicy {
    pub fn new(settings: PolicySettings) -> Self {
        Self {
            settings,
            failures: 0,
            recent: VecDeque::new(),
        }
    }

    /// The child died at `now`; `was_ready` says whether it had passed its readiness check.
    pub fn after_exit(&mut self, was_ready: bool, now: Instant) -> RestartDecision {
        let settings = self.settings;
        let (mut delay, mut reason) = if was_ready {
            self.failures = 0;
            (settings.after_ready, DelayReason::WasReady)
        } else {
            self.failures += 1;
            let doublings = (self.failures - 1).min(20);
            let delay = settings
                .first_backoff
                .saturating_mul(1 << doublings)
                .min(settings.cap);
            (
                delay,
                DelayReason::FailedBeforeReady {
                    failures: self.failures,
                },
            )
        };
        while self
            .recent
            .front()
            .is_some_and(|&at| at + settings.window <= now)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= settings.max_restarts {
            // The oldest restart leaving the window makes room for the next one.
            let index = self.recent.len() - settings.max_restarts;
            let room_at = self.recent[index] + settings.window;
            let wait = room_at.saturating_duration_since(now);
            if wait > delay {
                delay = wait;
                reason = DelayReason::RateLimited {
                    restarts: self.recent.len(),
                    window: settings.window,
                };
            }
        }
        self.recent.push_back(now + delay);
        RestartDecision { delay, reason }
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::new(PolicySettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PolicySettings {
        PolicySettings {
            after_ready: Duration::from_millis(100),
            first_backoff: Duration::from_millis(500),
            cap: Duration::from_secs(4),
            window: Duration::from_secs(60),
            max_restarts: 5,
        }
    }

    #[test]
    fn a_child_that_was_ready_restarts_at_once_every_time() {
        let mut policy = RestartPolicy::new(PolicySettings {
            max_restarts: 100,
            ..settings()
        });
        let start = Instant::now();
        for i in 0..20 {
            let decision = policy.after_exit(true, start + Duration::from_secs(i));
            assert_eq!(decision.delay, Duration::from_millis(100), "restart {i}");
            assert_eq!(decision.reason, DelayReason::WasReady);
            assert!(!decision.crash_looping());
        }
    }

    #[test]
    fn failures_before_ready_double_to_the_cap_and_a_ready_run_resets_them() {
        let mut policy = RestartPolicy::new(PolicySettings {
            max_restarts: 100,
            ..settings()
        });
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..6 {
            let decision = policy.after_exit(false, now);
            delays.push(decision.delay);
            now += decision.delay;
        }
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 4000, 4000].map(Duration::from_millis)
        );
        assert!(policy.after_exit(false, now).crash_looping());
        let after_ready = policy.after_exit(true, now);
        assert_eq!(after_ready.delay, Duration::from_millis(100));
        assert!(!after_ready.crash_looping());
        let first_failure = policy.after_exit(false, now);
        assert_eq!(first_failure.delay, Duration::from_millis(500));
        assert_eq!(
            first_failure.reason,
            DelayReason::FailedBeforeReady { failures: 1 }
        );
    }

    #[test]
    fn ready_then_dying_at_once_is_held_to_the_rate_limit() {
        let mut policy = RestartPolicy::new(settings());
        let start = Instant::now();
        let mut now = start;
        let mut starts = Vec::new();
        // The child becomes ready and dies 10 ms after each start, for five minutes.
        while now < start + Duration::from_secs(300) {
            let decision = policy.after_exit(true, now);
            now += decision.delay;
            starts.push((now, decision));
            now += Duration::from_millis(10);
        }
        // Never more than 5 starts in any 60 s.
        for (i, (at, _)) in starts.iter().enumerate() {
            let in_window = starts[i..]
                .iter()
                .take_while(|(later, _)| *later < *at + Duration::from_secs(60))
                .count();
            assert!(in_window <= 5, "{in_window} starts in 60 s from start {i}");
        }
        assert!(starts.len() <= 5 * 5 + 5, "{} starts", starts.len());
        let limited: Vec<_> = starts
            .iter()
            .filter(|(_, d)| matches!(d.reason, DelayReason::RateLimited { .. }))
            .collect();
        assert!(!limited.is_empty());
        assert!(limited.iter().all(|(_, d)| d.crash_looping()));
        assert!(
            limited[0]
                .1
                .explain()
                .starts_with("rate limit: 5 restarts within the last 60 s"),
            "{}",
            limited[0].1.explain()
        );
    }

    #[test]
    fn the_rate_limit_does_not_slow_restarts_spread_over_the_window() {
        let mut policy = RestartPolicy::new(settings());
        let start = Instant::now();
        // One kill every 13 s: 5 per 65 s, under the limit of 5 per 60 s.
        for i in 0..20u64 {
            let decision = policy.after_exit(true, start + Duration::from_secs(13 * i));
            assert_eq!(decision.reason, DelayReason::WasReady, "kill {i}");
        }
    }
}
