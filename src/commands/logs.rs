//! `opsbox logs`: the end of each selected log (services and opsbox's own), and with `-f` new
//! lines as they arrive, across truncation and rotation, until SIGINT/SIGTERM.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{GlobalArgs, LogsArgs};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use crate::types::ServiceName;

/// The names `opsbox logs` accepts, in display order.
pub const LOG_NAMES: [&str; 4] = ["nats", "postgres", "s3", "opsbox"];

/// How often `-f` looks for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How far back to read at a time when looking for the last lines.
const TAIL_BLOCK: u64 = 64 * 1024;

pub async fn run(global: &GlobalArgs, args: &LogsArgs) -> Result<ExitCode> {
    let names = select(&args.services)?;
    let settings = Settings::for_project(global)?;
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let prefixed = names.len() > 1;
    let mut logs: Vec<FollowedLog> = names
        .iter()
        .map(|name| {
            let service = match *name {
                "nats" => Some(ServiceName::Nats),
                "postgres" => Some(ServiceName::Postgres),
                "s3" => Some(ServiceName::S3),
                _ => None,
            };
            FollowedLog {
                prefix: if prefixed {
                    format!("{name:<width$} | ")
                } else {
                    String::new()
                },
                path: settings.state.log(service),
                file: None,
                identity: None,
                offset: 0,
                partial: Vec::new(),
            }
        })
        .collect();

    for log in &mut logs {
        match log.open_at_tail(args.tail) {
            Ok(Some(lines)) => {
                if !lines.is_empty() && !log.emit(&lines) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Ok(None) => output::info(&format!(
                "no log at {} (the service has not run yet); skipping it",
                log.path.display()
            )),
            Err(e) => {
                return Err(Error::io(
                    format!("cannot read the log {}", log.path.display()),
                    e,
                ));
            }
        }
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    follow(&mut logs).await
}

/// The selected log names (deduplicated, in display order); all when none are given.
fn select(requested: &[String]) -> Result<Vec<&'static str>> {
    if requested.is_empty() {
        return Ok(LOG_NAMES.to_vec());
    }
    for name in requested {
        if !LOG_NAMES.contains(&name.as_str()) {
            return Err(Error::Usage {
                message: format!("unknown service `{name}` for `opsbox logs`"),
                hint: Some(format!("valid names: {}", LOG_NAMES.join(", "))),
            });
        }
    }
    Ok(LOG_NAMES
        .iter()
        .copied()
        .filter(|name| requested.iter().any(|r| r == name))
        .collect())
}

async fn follow(logs: &mut [FollowedLog]) -> Result<ExitCode> {
    let signal_error = |e| Error::io("cannot listen for SIGINT/SIGTERM", e);
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut tick = tokio::time::interval(FOLLOW_POLL);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {
                for log in logs.iter_mut() {
                    let bytes = log.poll();
                    if !bytes.is_empty() && !log.emit(&bytes) {
                        // Nobody reads any more (`| head`): done.
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
        }
    }
    for log in logs.iter_mut() {
        let rest = std::mem::take(&mut log.partial);
        if !rest.is_empty() {
            log.emit(&rest);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One log file being read: where we are in it and which file (device, inode) that is, so a
/// rotation (new inode) or truncation (shorter than our offset) is noticed.
struct FollowedLog {
    prefix: String,
    path: PathBuf,
    file: Option<File>,
    identity: Option<(u64, u64)>,
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

impl FollowedLog {
    /// Open the log and return its last `tail` lines (all when `None`); `None` when there is
    /// no log file.
    fn open_at_tail(&mut self, tail: Option<usize>) -> std::io::Result<Option<Vec<u8>>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let metadata = file.metadata()?;
        let len = metadata.len();
        let start = match tail {
            None => 0,
            Some(n) => tail_start(&mut file, len, n)?,
        };
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::with_capacity((len - start) as usize);
        (&mut file).take(len - start).read_to_end(&mut bytes)?;
        self.offset = start + bytes.len() as u64;
        self.identity = Some((metadata.dev(), metadata.ino()));
        self.file = Some(file);
        Ok(Some(self.complete_lines(bytes)))
    }

    /// New bytes since the last look (complete lines only).
    fn poll(&mut self) -> Vec<u8> {
        let mut fresh = Vec::new();
        let current = std::fs::metadata(&self.path)
            .ok()
            .map(|m| ((m.dev(), m.ino()), m.len()));
        let rotated = match (current, self.identity) {
            (Some((now, _)), Some(before)) => now != before,
            (Some(_), None) => true,
            // Gone (mid-rotation): keep reading what we have open.
            (None, _) => false,
        };
        if rotated {
            // Finish the old file, then start the new one from its beginning.
            let mut rest = Vec::new();
            if let Some(file) = self.file.as_mut() {
                let _ = file.read_to_end(&mut rest);
            }
            let mut out = self.complete_lines(rest);
            // An unfinished last line of the old file is shown as a line of its own.
            let leftover = std::mem::take(&mut self.partial);
            if !leftover.is_empty() {
                out.extend(leftover);
                out.push(b'\n');
            }
            self.file = None;
            self.identity = None;
            self.offset = 0;
            if let Ok(Some(bytes)) = self.open_at_tail(None) {
                out.extend(bytes);
            }
            return out;
        }
        if let (Some(file), Some((_, len))) = (self.file.as_mut(), current) {
            if len < self.offset {
                // Truncated in place (copytruncate): start over.
                self.offset = 0;
                self.partial.clear();
                if file.seek(SeekFrom::Start(0)).is_err() {
                    return fresh;
                }
            }
            if let Ok(read) = file.read_to_end(&mut fresh) {
                self.offset += read as u64;
            }
        }
        self.complete_lines(fresh)
    }

    /// Prepend the pending partial line, keep a new unfinished line for later, return the
    /// complete lines.
    fn complete_lines(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.partial);
        all.extend(bytes);
        match all.iter().rposition(|b| *b == b'\n') {
            Some(end) => {
                self.partial = all.split_off(end + 1);
                all
            }
            None => {
                self.partial = all;
                Vec::new()
            }
        }
    }

    /// Print lines with this log's prefix; false when stdout is gone.
    fn emit(&self, bytes: &[u8]) -> bool {
        let text = String::from_utf8_lossy(bytes);
        let mut out = String::with_capacity(text.len() + 16);
        for line in text.lines() {
            out.push_str(&self.prefix);
            out.push_str(line);
            out.push('\n');
        }
        output::try_data(&out).is_ok()
    }
}

/// The offset where the last `n` lines of a `len`-byte file start, reading backwards in blocks.
fn tail_start(file: &mut File, len: u64, n: usize) -> std::io::Result<u64> {
    if n == 0 {
        return Ok(len);
    }
    let mut wanted = n;
    let mut end = len;
    let mut block = vec![0u8; TAIL_BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(TAIL_BLOCK);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..size])?;
        for (index, byte) in block[..size].iter().enumerate().rev() {
            let at = start + index as u64;
            // The file's final newline ends the last line; it does not start another one.
            if *byte != b'\n' || at + 1 == len {
                continue;
            }
            wanted -= 1;
            if wanted == 0 {
                return Ok(at + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn start_of_tail(content: &str, n: usize) -> String {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(content.as_bytes()).expect("write");
        let start = tail_start(&mut file, content.len() as u64, n).expect("tail");
        content[start as usize..].to_string()
    }

    #[test]
    fn tail_counts_lines_with_and_without_a_final_newline() {
        assert_eq!(start_of_tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(start_of_tail("a\nb\nc", 2), "b\nc");
        assert_eq!(start_of_tail("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(start_of_tail("a\nb\nc\n", 0), "");
        assert_eq!(start_of_tail("", 3), "");
    }

    #[test]
    fn unknown_names_are_usage_errors_naming_the_valid_ones() {
        let error = select(&["nats".into(), "redis".into()]).expect_err("redis is unknown");
        assert_eq!(error.exit_code(), 2);
        assert!(error.hint().is_some_and(|h| h.contains("postgres")));
        let picked = select(&["opsbox".into(), "nats".into(), "nats".into()]).expect("valid");
        assert_eq!(picked, vec!["nats", "opsbox"]);
    }
}
