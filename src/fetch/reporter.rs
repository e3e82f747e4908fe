//! How fetch code reports progress without drawing anything itself (the `output` module
//! implements this with indicatif on a terminal, and with start/end lines on a pipe). Each fetch
//! has its own id, so two fetches at once each get their own bar; a [`Progress`] guard reports
//! the end of its fetch when dropped, whichever way the fetch code returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Identifies one fetch (a download, or a package client's run) among those in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FetchId(u64);

impl FetchId {
    fn next() -> FetchId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        FetchId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a fetch that starts is about.
#[derive(Debug, Clone)]
pub struct FetchStart<'a> {
    /// "nats-server", "postgresql".
    pub name: &'a str,
    pub version: &'a str,
    /// Where the bytes come from: "GitHub", "mirror http://...", "pip", "npm".
    pub via: &'a str,
    /// The URL or command, for the log line.
    pub what: &'a str,
    /// The size in bytes, when known up front (an HTTP download with a length).
    pub total: Option<u64>,
}

/// How a fetch ended.
#[derive(Debug, Clone, Copy)]
pub struct FetchEnd {
    pub succeeded: bool,
    /// Bytes fetched, when known.
    pub bytes: Option<u64>,
    pub elapsed: Duration,
}

/// Receives fetch progress. Implementations must be cheap; fetch calls them from async code.
pub trait Reporter: Send + Sync {
    /// One line saying where a binary came from: "nats-server 2.12.8: from cache".
    fn resolved(&self, name: &str, version: &str, source: &super::Source);
    /// A source failed and the next one is tried. `line` is one short sentence for the user
    /// ("nats-server 2.15.1: GitHub unreachable (DNS), trying pip"); `detail` is the full error
    /// chain, for the log and `--verbose`.
    fn fallback(&self, line: &str, detail: &str);
    /// A warning the user should see (a corrupt cache entry, another version than asked, ...).
    fn warn(&self, message: &str);
    /// A fetch starts.
    fn fetch_started(&self, id: FetchId, start: &FetchStart<'_>);
    /// `bytes` bytes of the fetch have arrived so far.
    fn fetch_progress(&self, id: FetchId, bytes: u64);
    /// The fetch ended (successfully or not); `id` is not used again.
    fn fetch_ended(&self, id: FetchId, end: &FetchEnd);
}

/// One fetch in flight. Reports its end when dropped: as failed unless [`Progress::finish`] was
/// called, so an early `?` return still ends the bar.
pub(crate) struct Progress<'a> {
    reporter: &'a dyn Reporter,
    id: FetchId,
    bytes: Option<u64>,
    started: Instant,
    succeeded: bool,
}

impl<'a> Progress<'a> {
    pub(crate) fn start(reporter: &'a dyn Reporter, start: &FetchStart<'_>) -> Progress<'a> {
        let id = FetchId::next();
        reporter.fetch_started(id, start);
        Progress {
            reporter,
            id,
            bytes: None,
            started: Instant::now(),
            succeeded: false,
        }
    }

    /// `bytes` more bytes arrived.
    pub(crate) fn advance(&mut self, bytes: u64) {
        let total = self.bytes.unwrap_or(0) + bytes;
        self.bytes = Some(total);
        self.reporter.fetch_progress(self.id, total);
    }

    /// The fetch's size became known (a package client's file, once it is written).
    pub(crate) fn set_bytes(&mut self, bytes: u64) {
        self.bytes = Some(bytes);
        self.reporter.fetch_progress(self.id, bytes);
    }

    /// The fetch succeeded.
    pub(crate) fn finish(mut self) {
        self.succeeded = true;
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        self.reporter.fetch_ended(
            self.id,
            &FetchEnd {
                succeeded: self.succeeded,
                bytes: self.bytes,
                elapsed: self.started.elapsed(),
            },
        );
    }
}
