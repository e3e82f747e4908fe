//! The only code that prints. stdout carries data (`env`, `--json`, tables asked for); stderr
//! carries progress, status lines and errors. No colour or bars when stderr is not a terminal
//! or NO_COLOR is set.
// The one module allowed to write to stdout and stderr (clippy.toml bans it elsewhere).
#![allow(clippy::disallowed_methods)]

pub mod env_format;
pub mod progress;
pub mod summary;
pub mod url;

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

pub use progress::ProgressReporter;

#[derive(Debug, Clone, Copy)]
struct Style {
    quiet: bool,
    colour: bool,
    interactive: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

fn style() -> Style {
    *STYLE.get_or_init(|| Style {
        quiet: false,
        colour: false,
        interactive: false,
    })
}

/// Decide once how to print. `verbose` turns on tracing output from the libraries.
pub fn init(quiet: bool, verbose: u8) {
    let interactive = std::io::stderr().is_terminal();
    let colour = interactive && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = STYLE.set(Style {
        quiet,
        colour,
        interactive,
    });
    if verbose > 0 {
        let level = if verbose > 1 { "debug" } else { "info" };
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
            )
            .try_init();
    }
}

/// Whether bars and cursor tricks are allowed.
pub fn interactive() -> bool {
    style().interactive
}

fn paint(text: &str, code: &str) -> String {
    if style().colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A progress or status line on stderr (suppressed by --quiet).
pub fn info(message: &str) {
    if !style().quiet {
        let _ = writeln!(std::io::stderr(), "{message}");
    }
}

/// A line of the opsbox log shown as progress, unless it is a detail line meant only for the
/// log (a full error chain).
pub fn info_unless_detail(line: &str) {
    if !line.starts_with(progress::DETAIL_PREFIX) {
        info(line);
    }
}

/// A warning on stderr (shown even with --quiet).
pub fn warn(message: &str) {
    let _ = writeln!(std::io::stderr(), "{} {message}", paint("warning:", "33;1"));
}

/// Data on stdout.
pub fn data(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// Data on stdout, reporting failure (a closed pipe), for loops that should stop then.
pub fn try_data(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Render an error: `error:` line, `caused by:` chain, `hint:` (what to do), then any detail
/// lines (the end of a service's log).
pub fn error(error: &dyn std::error::Error, hint: Option<String>, details: &[String]) {
    let mut text = format!("{} {error}\n", paint("error:", "31;1"));
    // Each cause once: one whose text was already printed (an error that also writes its
    // source into its message) is skipped, and fs-err's copy of a path the message names
    // is dropped.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        let cause_text = match crate::fetch::split_path_error(&cause_text) {
            Some((path, cause)) if text.contains(path) => cause,
            _ => &cause_text,
        };
        if !text.contains(cause_text) {
            text.push_str(&format!("  caused by: {cause_text}\n"));
        }
        source = cause.source();
    }
    if let Some(hint) = hint {
        text.push_str(&format!("{} {hint}\n", paint("hint:", "36;1")));
    }
    if !details.is_empty() {
        text.push_str("last log lines:\n");
        for line in details {
            text.push_str(&format!("  | {line}\n"));
        }
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Lay out rows as aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`.
pub fn human_duration(seconds: u64) -> String {
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{hours}h{minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m{secs:02}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_compose() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(7_500), "2h05m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3_600), "3d04h");
    }
}
