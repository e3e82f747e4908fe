//! Object keys: validation and the reversible key <-> on-disk path encoding.
//!
//! A key is split on `/` into segments. Each segment is percent-encoded so that the result
//! never starts with `.`, is never empty and contains no byte a file name cannot hold. The last
//! segment names the data file; every other segment names a directory whose name is the
//! encoded segment followed by `%` (which an encoded segment never ends with), so the object
//! `a` and the "directory" of `a/b` cannot collide. Encoded segments longer than a file name
//! may be are split into chunk directories ending in `%+`. Hence `.`, `..`, empty segments
//! and internal names are unreachable from the key space.

use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// S3's limit on the UTF-8 length of a key.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest chunk of an encoded segment stored in one path component (below `NAME_MAX` = 255).
const CHUNK: usize = 200;

/// Stands for an empty segment (a lone `%` is never produced by percent-encoding).
const EMPTY: &str = "%";

/// Bytes kept as they are; everything else is `%XX`.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a key cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    Empty,
    TooLong(usize),
}

pub fn validate(key: &str) -> Result<(), KeyProblem> {
    if key.is_empty() {
        return Err(KeyProblem::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyProblem::TooLong(key.len()));
    }
    Ok(())
}

fn encode_segment(segment: &str) -> String {
    if segment.is_empty() {
        return EMPTY.to_owned();
    }
    let encoded = utf8_percent_encode(segment, ENCODE).to_string();
    match encoded.strip_prefix('.') {
        Some(rest) => format!("%2E{rest}"),
        None => encoded,
    }
}

/// Push an encoded segment, split into chunk directories when it is too long for one name.
fn push_chunks(path: &mut PathBuf, encoded: &str, suffix: &str) {
    let mut rest = encoded;
    while rest.len() > CHUNK {
        // Encoded text is ASCII, so any byte index is a char boundary. The last piece keeps at
        // least three bytes so that it can never be `.` or `..`.
        let at = CHUNK.min(rest.len() - 3);
        let (head, tail) = rest.split_at(at);
        path.push(format!("{head}%+"));
        rest = tail;
    }
    path.push(format!("{rest}{suffix}"));
}

/// The path of `key`'s file relative to its bucket directory.
pub fn key_to_relative_path(key: &str) -> PathBuf {
    let mut path = PathBuf::new();
    let segments: Vec<&str> = key.split('/').collect();
    let (last, dirs) = segments
        .split_last()
        .expect("split yields at least one segment");
    for dir in dirs {
        push_chunks(&mut path, &encode_segment(dir), "%");
    }
    push_chunks(&mut path, &encode_segment(last), "");
    path
}

/// What a directory entry in a bucket tree stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A file holding the object whose last segment ends with this encoded text.
    Object(String),
    /// A directory for the key prefix `<encoded>/`.
    Directory(String),
    /// A chunk of a long segment that continues in the entries below.
    Chunk(String),
}

/// Classify one file name found in a bucket tree; `None` for names the encoding never makes.
pub fn classify(name: &str, is_dir: bool) -> Option<Entry> {
    if is_dir {
        if let Some(chunk) = name.strip_suffix("%+") {
            return Some(Entry::Chunk(chunk.to_owned()));
        }
        let encoded = name.strip_suffix('%')?;
        if encoded.is_empty() {
            return None;
        }
        Some(Entry::Directory(encoded.to_owned()))
    } else {
        if name.is_empty() || name == "." || name == ".." {
            return None;
        }
        Some(Entry::Object(name.to_owned()))
    }
}

/// Decode one complete encoded segment back to its text.
pub fn decode_segment(encoded: &str) -> Option<String> {
    if encoded == EMPTY {
        return Some(String::new());
    }
    percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The key stored at `relative` (a path below a bucket directory), if it is one the encoding makes.
pub fn relative_path_to_key(relative: &Path) -> Option<String> {
    let mut key = String::new();
    let mut pending = String::new();
    let components: Vec<_> = relative.components().collect();
    for (index, component) in components.iter().enumerate() {
        let name = component.as_os_str().to_str()?;
        let is_last = index + 1 == components.len();
        let entry = classify(name, !is_last)?;
        match entry {
            Entry::Chunk(chunk) => pending.push_str(&chunk),
            Entry::Directory(encoded) => {
                pending.push_str(&encoded);
                key.push_str(&decode_segment(&pending)?);
                key.push('/');
                pending.clear();
            }
            Entry::Object(encoded) => {
                pending.push_str(&encoded);
                key.push_str(&decode_segment(&pending)?);
                pending.clear();
            }
        }
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_round_trip_without_dot_components() {
        let long = "x".repeat(1000);
        let keys = [
            "../x",
            "a/../../b",
            "..",
            ".",
            "a//b",
            "%2E%2E/x",
            "e/",
            "/",
            "//",
            "a%",
            "a%+",
            ".hidden",
            "ü/€",
            &long,
            &format!("{}.", "y".repeat(199)),
            &format!("{}..", "y".repeat(200)),
            "a/b/c.txt",
        ];
        for key in keys {
            let path = key_to_relative_path(key);
            for component in path.components() {
                let name = component.as_os_str().to_str().unwrap();
                assert!(
                    name != "." && name != ".." && !name.is_empty() && name.len() < 256,
                    "{key}: {name}"
                );
                assert!(
                    matches!(component, std::path::Component::Normal(_)),
                    "{key}"
                );
            }
            assert_eq!(
                relative_path_to_key(&path).as_deref(),
                Some(key),
                "{key} -> {path:?}"
            );
        }
    }

    #[test]
    fn object_and_directory_never_collide() {
        assert_ne!(key_to_relative_path("a"), Path::new("a%"));
        assert_eq!(key_to_relative_path("a/b"), Path::new("a%/b"));
        assert_eq!(key_to_relative_path("e/"), Path::new("e%/%"));
    }
}
