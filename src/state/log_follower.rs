//! Reading a log as it grows: the last lines, then new complete lines as they are written,
//! across truncation (copytruncate) and rotation (a new file at the path). Used by `opsbox
//! logs -f` and by `up -d` to show the background supervisor's progress.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// How far back to read at a time when looking for the last lines.
const TAIL_BLOCK: u64 = 64 * 1024;

/// One log file being read: where we are in it and which file (device, inode) that is, so a
/// rotation (new inode) or truncation (shorter than our offset) is noticed.
pub struct LogFollower {
    pub path: PathBuf,
    file: Option<File>,
    identity: Option<(u64, u64)>,
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

impl LogFollower {
    /// A follower of `path`, not opened yet.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            identity: None,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// A follower that shows only what is written from now on.
    pub fn at_end(path: PathBuf) -> Self {
        let mut follower = Self::new(path);
        let _ = follower.open_at_tail(Some(0));
        follower
    }

    /// Open the log and return its last `tail` lines (all when `None`); `None` when there is
    /// no log file.
    pub fn open_at_tail(&mut self, tail: Option<usize>) -> std::io::Result<Option<Vec<u8>>> {
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
    pub fn poll(&mut self) -> Vec<u8> {
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

    /// The unfinished last line, taken (shown when following ends).
    pub fn take_partial(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
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
}
