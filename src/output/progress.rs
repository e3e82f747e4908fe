//! The fetch `Reporter` for people. On a terminal: a bar per HTTP download (bytes, rate, time
//! left) and a spinner per package-client fetch (source, elapsed time, the size once known),
//! each fetch its own line, so fetches at once do not overwrite each other. On a pipe: one line
//! when each fetch starts and one when it ends (size, time), so CI logs show where the minutes
//! went. Either way one line per resolved binary and one short line per source fallback; the
//! full error chain of a fallback goes to the opsbox log and to `--verbose`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fetch::{FetchEnd, FetchId, FetchStart, Reporter, Source};

/// Detail lines in the opsbox log start with this; `up -d`, which shows the background
/// supervisor's log lines as they come, leaves them in the log.
pub const DETAIL_PREFIX: &str = "  detail: ";

/// How often spinners and elapsed times move without new bytes.
const TICK: Duration = Duration::from_millis(120);

pub struct ProgressReporter {
    multi: MultiProgress,
    fetches: Mutex<HashMap<FetchId, Fetch>>,
    /// The opsbox log, where fallbacks' full error chains go.
    log: Option<PathBuf>,
}

/// One fetch being shown.
struct Fetch {
    /// "nats-server 2.15.1"
    label: String,
    via: String,
    bar: Option<ProgressBar>,
}

impl Default for ProgressReporter {
    fn default() -> Self {
        let target = if super::interactive() && !super::style().quiet {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        ProgressReporter {
            multi: MultiProgress::with_draw_target(target),
            fetches: Mutex::default(),
            log: None,
        }
    }
}

impl ProgressReporter {
    /// A reporter that also appends the full error chain of each fallback to `log`.
    pub fn with_log(log: PathBuf) -> Self {
        ProgressReporter {
            log: Some(log),
            ..Self::default()
        }
    }

    fn bars(&self) -> bool {
        super::interactive() && !super::style().quiet
    }

    /// A status line printed above the bars (which are redrawn below it).
    fn line(&self, message: &str) {
        self.multi.suspend(|| super::info(message));
    }

    fn fetches(&self) -> std::sync::MutexGuard<'_, HashMap<FetchId, Fetch>> {
        self.fetches.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bar(&self, start: &FetchStart<'_>, label: &str) -> ProgressBar {
        // Added to the multi-bar before anything is set: a bar draws on its own until then.
        let (bar, template) = match start.total {
            // An HTTP download of known size: a bar with bytes, rate and time left.
            Some(total) => (
                self.multi.add(ProgressBar::new(total)),
                "  {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ),
            // A package client (or a download of unknown size): the source, elapsed time,
            // and the size once known.
            None => (
                self.multi.add(ProgressBar::new_spinner()),
                "  {spinner} {prefix} {msg} {elapsed}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("{label} from {}", start.via));
        bar.enable_steady_tick(TICK);
        bar
    }
}

/// `1.5 s`, `12.3 s`.
fn seconds(elapsed: Duration) -> String {
    format!("{:.1} s", elapsed.as_secs_f64())
}

impl Reporter for ProgressReporter {
    fn resolved(&self, name: &str, version: &str, source: &Source) {
        self.line(&format!("{name} {version}: {source}"));
    }

    fn fallback(&self, line: &str, detail: &str) {
        self.line(line);
        tracing::info!("{detail}");
        if let Some(log) = &self.log
            && let Ok(mut file) = fs_err::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
        {
            let _ = writeln!(file, "{DETAIL_PREFIX}{detail}");
        }
    }

    fn warn(&self, message: &str) {
        self.multi.suspend(|| super::warn(message));
    }

    fn fetch_started(&self, id: FetchId, start: &FetchStart<'_>) {
        let label = format!("{} {}", start.name, start.version);
        let bar = if self.bars() {
            Some(self.bar(start, &label))
        } else {
            let size = start
                .total
                .map(|total| format!(" ({})", HumanBytes(total)))
                .unwrap_or_default();
            super::info(&format!(
                "{label}: fetching from {}: {}{size}",
                start.via, start.what
            ));
            None
        };
        self.fetches().insert(
            id,
            Fetch {
                label,
                via: start.via.to_string(),
                bar,
            },
        );
    }

    fn fetch_progress(&self, id: FetchId, bytes: u64) {
        if let Some(Fetch { bar: Some(bar), .. }) = self.fetches().get(&id) {
            if bar.length().is_some() {
                bar.set_position(bytes);
            } else {
                bar.set_message(HumanBytes(bytes).to_string());
            }
        }
    }

    fn fetch_ended(&self, id: FetchId, end: &FetchEnd) {
        let Some(fetch) = self.fetches().remove(&id) else {
            return;
        };
        if let Some(bar) = &fetch.bar {
            bar.finish_and_clear();
            self.multi.remove(bar);
        }
        let (label, via, time) = (&fetch.label, &fetch.via, seconds(end.elapsed));
        let line = match (end.succeeded, end.bytes) {
            (true, Some(bytes)) => {
                format!(
                    "{label}: fetched {} from {via} in {time}",
                    HumanBytes(bytes)
                )
            }
            (true, None) => format!("{label}: fetched from {via} in {time}"),
            // On a terminal the fallback line that follows says it.
            (false, _) if fetch.bar.is_some() => return,
            (false, _) => format!("{label}: fetching from {via} failed after {time}"),
        };
        self.line(&line);
    }
}
