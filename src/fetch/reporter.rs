//! How fetch code reports progress without drawing anything itself (the `output` module
//! implements this with indicatif on a TTY, and with nothing on a pipe).

/// Receives fetch progress. Implementations must be cheap; fetch calls them from async code.
pub trait Reporter: Send + Sync {
    /// One line saying where a binary came from: "nats-server 2.12.8: from cache".
    fn resolved(&self, name: &str, version: &str, source: &super::Source);
    /// A warning the user should see (version differs, falling back to another source, ...).
    fn warn(&self, message: &str);
    /// A download starts; `total` is the length when known.
    fn download_start(&self, name: &str, url: &str, total: Option<u64>);
    /// `bytes` more bytes arrived.
    fn download_progress(&self, bytes: u64);
    /// The download finished (successfully or not).
    fn download_end(&self);
}
