//! The fetch `Reporter` for people: one line per resolved binary, a bar per download on a
//! terminal, nothing but those lines on a pipe.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::fetch::{Reporter, Source};

#[derive(Default)]
pub struct ProgressReporter {
    bar: Mutex<Option<ProgressBar>>,
}

impl Reporter for ProgressReporter {
    fn resolved(&self, name: &str, version: &str, source: &Source) {
        super::info(&format!("{name} {version}: {source}"));
    }

    fn warn(&self, message: &str) {
        super::warn(message);
    }

    fn download_start(&self, name: &str, url: &str, total: Option<u64>) {
        super::info(&format!("{name}: downloading {url}"));
        if !super::interactive() {
            return;
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        if let Ok(style) =
            ProgressStyle::with_template("  {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
        {
            bar.set_style(style);
        }
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    fn download_progress(&self, bytes: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.inc(bytes);
        }
    }

    fn download_end(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}
