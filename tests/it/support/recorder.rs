//! A `Reporter` that records every call so tests can assert on them.

use std::sync::Mutex;

use opsbox::fetch::{FetchEnd, FetchId, FetchStart, Reporter, Source};

#[derive(Default)]
pub struct Recorder {
    pub resolved: Mutex<Vec<(String, String, Source)>>,
    pub warnings: Mutex<Vec<String>>,
    /// (line, detail) of each fallback.
    pub fallbacks: Mutex<Vec<(String, String)>>,
    /// (id, via, what) of each fetch started.
    pub started: Mutex<Vec<(FetchId, String, String)>>,
    pub ended: Mutex<Vec<(FetchId, FetchEnd)>>,
}

impl Recorder {
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap().clone()
    }
    pub fn resolved(&self) -> Vec<(String, String, Source)> {
        self.resolved.lock().unwrap().clone()
    }
    pub fn fallbacks(&self) -> Vec<(String, String)> {
        self.fallbacks.lock().unwrap().clone()
    }
    /// Every fetch started has ended, once.
    pub fn assert_every_fetch_ended(&self) {
        let started: Vec<FetchId> = self.started.lock().unwrap().iter().map(|s| s.0).collect();
        let ended: Vec<FetchId> = self.ended.lock().unwrap().iter().map(|e| e.0).collect();
        assert_eq!(started, ended, "fetches started and ended");
    }
}

impl Reporter for Recorder {
    fn resolved(&self, name: &str, version: &str, source: &Source) {
        self.resolved
            .lock()
            .unwrap()
            .push((name.into(), version.into(), source.clone()));
    }
    fn fallback(&self, line: &str, detail: &str) {
        self.fallbacks
            .lock()
            .unwrap()
            .push((line.into(), detail.into()));
    }
    fn warn(&self, message: &str) {
        self.warnings.lock().unwrap().push(message.into());
    }
    fn fetch_started(&self, id: FetchId, start: &FetchStart<'_>) {
        self.started
            .lock()
            .unwrap()
            .push((id, start.via.into(), start.what.into()));
    }
    fn fetch_progress(&self, _id: FetchId, _bytes: u64) {}
    fn fetch_ended(&self, id: FetchId, end: &FetchEnd) {
        self.ended.lock().unwrap().push((id, *end));
    }
}
