//! A `Reporter` that records every call so tests can assert on them.

use std::sync::Mutex;

use opsbox::fetch::{Reporter, Source};

#[derive(Default)]
pub struct Recorder {
    pub resolved: Mutex<Vec<(String, String, Source)>>,
    pub warnings: Mutex<Vec<String>>,
    pub downloads: Mutex<Vec<String>>,
    pub bytes: Mutex<u64>,
}

impl Recorder {
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap().clone()
    }
    pub fn resolved(&self) -> Vec<(String, String, Source)> {
        self.resolved.lock().unwrap().clone()
    }
}

impl Reporter for Recorder {
    fn resolved(&self, name: &str, version: &str, source: &Source) {
        self.resolved
            .lock()
            .unwrap()
            .push((name.into(), version.into(), source.clone()));
    }
    fn warn(&self, message: &str) {
        self.warnings.lock().unwrap().push(message.into());
    }
    fn download_start(&self, _name: &str, url: &str, _total: Option<u64>) {
        self.downloads.lock().unwrap().push(url.into());
    }
    fn download_progress(&self, bytes: u64) {
        *self.bytes.lock().unwrap() += bytes;
    }
    fn download_end(&self) {}
}
