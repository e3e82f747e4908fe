//! Binaries already on the machine: PATH lookups and asking a binary for its version.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::FetchError;

/// The process's PATH.
pub(crate) fn process_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_default()
}

/// A regular file with an execute bit.
pub(crate) fn is_executable(path: &Path) -> bool {
    fs_err::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The first executable `name` in `search_path`.
pub(crate) fn find_on_path(name: &str, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Runs `program args...` and returns its stdout, or a `CommandFailed`/`CommandSpawn` error.
pub(crate) async fn run(
    name: &str,
    version: &str,
    program: &OsStr,
    args: &[&OsStr],
    current_dir: Option<&Path>,
    path_env: Option<&OsStr>,
) -> Result<String, FetchError> {
    let command_text = std::iter::once(program)
        .chain(args.iter().copied())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let path_pair = path_env.map(|path| (OsStr::new("PATH"), path));
    let env: Vec<(&OsStr, &OsStr)> = path_pair.into_iter().collect();
    // Package clients may be slow but must not hang `up` forever.
    let output = crate::supervisor::capture_output(
        program,
        args,
        current_dir,
        &env,
        std::time::Duration::from_secs(600),
    )
    .await
    .map_err(|source| FetchError::CommandSpawn {
        name: name.into(),
        version: version.into(),
        command: command_text.clone(),
        source,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(FetchError::CommandFailed {
            name: name.into(),
            version: version.into(),
            command: command_text,
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The first `x.y[.z]` version number in `text` ("nats-server: v2.15.1" -> "2.15.1",
/// "postgres (PostgreSQL) 16.4" -> "16.4").
pub(crate) fn parse_version(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == 'v' || c == '(' || c == ')')
        .find(|word| {
            let mut parts = word.split('.');
            let first_ok = parts
                .next()
                .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            first_ok && word.contains('.') && word.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_string)
}

/// Runs `binary --version` and extracts the version number.
pub(crate) async fn binary_version(name: &str, binary: &Path) -> Result<String, FetchError> {
    let output = run(
        name,
        "",
        binary.as_os_str(),
        &[OsStr::new("--version")],
        None,
        None,
    )
    .await?;
    parse_version(&output).ok_or_else(|| FetchError::UnknownVersion {
        name: name.into(),
        path: binary.to_path_buf(),
        output: output.trim().to_string(),
    })
}
