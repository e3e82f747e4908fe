//! `snapshot export` / `import`: one tar archive compressed with zstd, `manifest.json` first,
//! then every directory, file and link of the snapshot's `data/`. Import checks the manifest
//! (format, PostgreSQL major) before reading on, unpacks into a staging directory while
//! hashing, and names the snapshot only when every member matched its sha256 and nothing is
//! missing or extra: a bad archive never touches the stack or its snapshots.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{self, EntryKind, Manifest};
use super::{Progress, Result, SnapshotError, Snapshots};
use crate::types::ServiceName;

/// zstd level: fast, still a good ratio on database pages and JetStream blocks.
const LEVEL: i32 = 3;

/// Write snapshot `name` to `file` (replaced atomically when complete).
pub fn export(
    snapshots: &Snapshots,
    name: &str,
    file: &Path,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let manifest = snapshots.manifest(name)?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp =
        tempfile::NamedTempFile::new_in(dir).map_err(SnapshotError::io("create a file in", dir))?;
    let encoder = zstd::stream::write::Encoder::new(temp.as_file(), LEVEL)
        .map_err(SnapshotError::io("compress", file))?;
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    let manifest_bytes = manifest.to_json();
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest_bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(manifest.created_unix_ms / 1000);
    header.set_cksum();
    builder
        .append_data(&mut header, manifest::FILE, manifest_bytes.as_slice())
        .map_err(SnapshotError::io("write", file))?;
    let source = snapshots.dir(name).join("data");
    progress.begin(&format!("exporting {name}"), manifest.bytes());
    for part in &manifest.parts {
        for entry in &part.entries {
            let relative = Path::new(&part.path).join(&entry.path);
            builder
                .append_path_with_name(source.join(&relative), Path::new("data").join(&relative))
                .map_err(SnapshotError::io("archive", &source.join(&relative)))?;
            progress.advance(entry.size);
        }
    }
    progress.end();
    let encoder = builder
        .into_inner()
        .map_err(SnapshotError::io("write", file))?;
    encoder.finish().map_err(SnapshotError::io("write", file))?;
    temp.as_file()
        .sync_all()
        .map_err(SnapshotError::io("write", file))?;
    temp.persist(file)
        .map_err(|e| SnapshotError::io("write", file)(e.error))?;
    Ok(manifest)
}

/// What the importing stack accepts.
pub struct ImportTarget {
    /// PostgreSQL majors this stack runs (its own, and one allowed with --allow-postgres-major).
    pub postgres_majors: Vec<u32>,
    /// The account PGDATA must belong to (opsbox runs as root), if any.
    pub postgres_owner: Option<(u32, u32)>,
}

/// Import `file` as snapshot `name` (default: the name in its manifest).
pub fn import(
    snapshots: &Snapshots,
    file: &Path,
    name: Option<&str>,
    target: &ImportTarget,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let bad = |reason: String| SnapshotError::BadArchive {
        path: file.to_path_buf(),
        reason,
    };
    let reader = fs_err::File::open(file).map_err(SnapshotError::io("open", file))?;
    let decoder = zstd::stream::read::Decoder::new(reader)
        .map_err(|e| bad(format!("not zstd-compressed ({e})")))?;
    let mut archive = tar::Archive::new(decoder);
    let mut members = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive ({e})")))?;
    let mut first = members
        .next()
        .ok_or_else(|| bad("it is empty".into()))?
        .map_err(|e| bad(format!("unreadable ({e})")))?;
    let first_path = first.path().map(|p| p.into_owned()).unwrap_or_default();
    if first_path != Path::new(manifest::FILE) {
        return Err(bad(format!(
            "its first member is {}, not {}",
            first_path.display(),
            manifest::FILE
        )));
    }
    let mut bytes = Vec::new();
    first
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read its manifest ({e})")))?;
    drop(first);
    let mut manifest = Manifest::parse(&bytes).map_err(bad)?;
    if let Some(major) = manifest.postgres_major
        && manifest.part(ServiceName::Postgres).is_some()
        && !target.postgres_majors.contains(&major)
    {
        return Err(SnapshotError::PostgresMajor {
            path: file.to_path_buf(),
            archive: major,
            stack: target.postgres_majors.first().copied().unwrap_or(0),
        });
    }
    let name = name.unwrap_or(&manifest.name).to_string();
    super::validate_name(&name)?;
    let final_dir = snapshots.dir(&name);
    if final_dir.exists() {
        return Err(SnapshotError::Exists {
            name,
            dir: snapshots.root(),
        });
    }
    let root = snapshots.root();
    fs_err::create_dir_all(&root).map_err(SnapshotError::io("create", &root))?;
    let staging = snapshots.staging();
    let unpacked = unpack(
        &mut members,
        &mut manifest,
        &staging,
        target,
        progress,
        &bad,
    );
    if let Err(e) = unpacked {
        let _ = super::remove_tree(&staging);
        return Err(e);
    }
    manifest.name = name.clone();
    let path = staging.join(manifest::FILE);
    fs_err::write(&path, manifest.to_json()).map_err(SnapshotError::io("write", &path))?;
    super::name_staging(&staging, &final_dir)?;
    Ok(manifest)
}

fn unpack<R: Read>(
    members: &mut tar::Entries<'_, R>,
    manifest: &mut Manifest,
    staging: &Path,
    target: &ImportTarget,
    progress: &dyn Progress,
    bad: &dyn Fn(String) -> SnapshotError,
) -> Result<()> {
    // Every entry the manifest promises, by its member name.
    let mut expected: HashMap<PathBuf, &super::Entry> = HashMap::new();
    for part in &manifest.parts {
        for entry in &part.entries {
            expected.insert(Path::new("data").join(&part.path).join(&entry.path), entry);
        }
    }
    let data = staging.join("data");
    fs_err::create_dir_all(&data).map_err(SnapshotError::io("create", &data))?;
    let mut dirs = Vec::new();
    for part in &manifest.parts {
        let dir = staging.join("data").join(&part.path);
        fs_err::create_dir_all(&dir).map_err(SnapshotError::io("create", &dir))?;
        dirs.push((dir, part.mode));
    }
    progress.begin("importing", manifest.bytes());
    for member in members {
        let mut member = member.map_err(|e| bad(format!("unreadable member ({e})")))?;
        let path = member
            .path()
            .map_err(|e| bad(format!("a member has an unreadable name ({e})")))?
            .into_owned();
        let Some(entry) = expected.remove(&path) else {
            return Err(bad(format!(
                "member {} is not in its manifest",
                path.display()
            )));
        };
        let destination = staging.join(&path);
        match entry.kind {
            EntryKind::Dir => {
                fs_err::create_dir_all(&destination)
                    .map_err(SnapshotError::io("create", &destination))?;
                dirs.push((destination.clone(), entry.mode));
            }
            EntryKind::Symlink => {
                let link = entry.target.clone().unwrap_or_default();
                fs_err::os::unix::fs::symlink(&link, &destination)
                    .map_err(SnapshotError::io("create", &destination))?;
            }
            EntryKind::File => {
                let mut out = fs_err::File::create(&destination)
                    .map_err(SnapshotError::io("create", &destination))?;
                let mut hasher = Sha256::new();
                let mut buffer = vec![0u8; 256 * 1024];
                let mut size = 0u64;
                loop {
                    let n = member.read(&mut buffer).map_err(|e| {
                        bad(format!("member {} is cut short ({e})", path.display()))
                    })?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                    out.write_all(&buffer[..n])
                        .map_err(SnapshotError::io("write", &destination))?;
                    size += n as u64;
                    progress.advance(n as u64);
                }
                let sha256 = hex::encode(hasher.finalize());
                if Some(&sha256) != entry.sha256.as_ref() || size != entry.size {
                    return Err(bad(format!(
                        "member {} has sha256 {sha256} ({size} bytes); its manifest says {} ({} bytes)",
                        path.display(),
                        entry.sha256.as_deref().unwrap_or("none"),
                        entry.size
                    )));
                }
                out.set_permissions(std::fs::Permissions::from_mode(entry.mode))
                    .map_err(SnapshotError::io("set the mode of", &destination))?;
            }
        }
    }
    progress.end();
    if let Some(missing) = expected.keys().min() {
        return Err(bad(format!(
            "member {} of its manifest is missing ({} in all)",
            missing.display(),
            expected.len()
        )));
    }
    for (dir, mode) in dirs.iter().rev() {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(*mode))
            .map_err(SnapshotError::io("set the mode of", dir))?;
    }
    if let Some((uid, gid)) = target.postgres_owner
        && let Some(part) = manifest.part(ServiceName::Postgres)
    {
        super::tree::chown_tree(&staging.join("data").join(&part.path), uid, gid)?;
    }
    adopt_s3_inodes(manifest, staging)
}

/// The copied S3 objects have new inodes: update their metadata (and its manifest entries, so
/// the snapshot still verifies when exported again).
fn adopt_s3_inodes(manifest: &mut Manifest, staging: &Path) -> Result<()> {
    let Some(part) = manifest
        .parts
        .iter_mut()
        .find(|p| p.service == ServiceName::S3)
    else {
        return Ok(());
    };
    let root = staging.join("data").join(&part.path);
    let updated = crate::services::s3::adopt_copied_inodes(&root)
        .map_err(SnapshotError::io("update the object metadata in", &root))?;
    for relative in updated {
        let relative = relative.to_string_lossy();
        if let Some(entry) = part.entries.iter_mut().find(|e| e.path == relative) {
            let path = root.join(&entry.path);
            entry.sha256 = Some(super::tree::sha256_file(&path, &super::NoProgress)?);
            let size = fs_err::metadata(&path)
                .map_err(SnapshotError::io("read", &path))?
                .len();
            part.bytes = part.bytes - entry.size + size;
            entry.size = size;
        }
    }
    Ok(())
}
