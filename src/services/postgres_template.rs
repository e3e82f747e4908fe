//! The cluster template: one initialised PostgreSQL cluster per recipe (binaries, superuser,
//! password, initdb options and environment), kept in the shared cache and copied into each new
//! data directory instead of running initdb again. Verified on every copy, like a cached binary.
//!
//! ```text
//! <cache>/postgres-templates/<version>-<key>/
//!   cluster/           initdb's output (0700, owned by the account PostgreSQL runs as)
//!   manifest           one line per directory and file: kind, mode, sha256, relative path
//!   recipe             what the key covers (the password only as part of the key)
//!   .opsbox-verified   sha256 of the manifest
//! <cache>/postgres-templates/<version>-<key>.lock
//! ```
//!
//! Readers copy under a shared lock, a build or rebuild happens under the exclusive lock, so
//! eight instances starting at once on an empty cache run initdb once and never copy a
//! template that is being replaced. The template itself runs nothing: the caller's `build`
//! runs initdb (through the supervisor) into the directory it is given.

use std::ffi::OsString;
use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::state::{LockMode, lock_file};

/// Bumped when the layout or the meaning of a template changes: old ones are then ignored.
const FORMAT: &str = "opsbox cluster template 1";
const CLUSTER: &str = "cluster";
const MANIFEST: &str = "manifest";
const RECIPE: &str = "recipe";
const RECORD: &str = ".opsbox-verified";
/// How many cluster templates the cache keeps (the most recently used).
const KEEP_TEMPLATES: usize = 4;

/// Everything the result of initdb depends on.
#[derive(Debug, Clone)]
pub struct ClusterRecipe<'a> {
    /// The PostgreSQL version, e.g. "16.14.0".
    pub version: &'a str,
    /// The installation whose initdb and postgres build the cluster.
    pub install_dir: &'a Path,
    pub superuser: &'a str,
    pub password: &'a str,
    /// initdb's options that shape the cluster (auth, encoding, locale, checksums ...).
    pub initdb_options: &'a [&'a str],
    /// The environment initdb runs with (LC_ALL, TZ: initdb writes the time zone into
    /// postgresql.conf).
    pub environment: &'a [(OsString, OsString)],
    /// The account that owns the cluster's files (uid, gid) when opsbox runs as root.
    pub owner: Option<(u32, u32)>,
}

/// How a new data directory got its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provided {
    /// Copied from a template that was already there.
    Copied,
    /// The template cache could not be used (e.g. another user's cache directory): initdb ran
    /// straight into the new data directory.
    WithoutTemplate { reason: String },
    /// The template did not exist: built (initdb), then copied.
    Built,
    /// The template failed verification: rebuilt, then copied.
    Rebuilt { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster template {dir} is unusable right after it was built: {reason}")]
    Unusable { dir: PathBuf, reason: String },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TemplateError {
    let path = path.to_path_buf();
    move |source| TemplateError::Io {
        action,
        path,
        source: crate::fetch::without_path(source),
    }
}

/// An error and its cause on one line.
pub fn error_chain(error: &TemplateError) -> String {
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// What a copy attempt found.
enum Copy {
    Done,
    Missing,
    Corrupt(String),
}

/// The template for one recipe, in one cache directory.
#[derive(Debug, Clone)]
pub struct ClusterTemplate {
    pub dir: PathBuf,
    recipe: String,
    owner: Option<(u32, u32)>,
}

impl ClusterTemplate {
    pub fn new(cache_dir: &Path, recipe: &ClusterRecipe<'_>) -> Self {
        let binaries = binaries_identity(recipe.install_dir);
        let mut described = vec![
            FORMAT.to_string(),
            format!("version {}", recipe.version),
            format!("superuser {}", recipe.superuser),
        ];
        described.extend(
            recipe
                .initdb_options
                .iter()
                .map(|option| format!("initdb {option}")),
        );
        described.extend(recipe.environment.iter().map(|(key, value)| {
            format!("env {}={}", key.to_string_lossy(), value.to_string_lossy())
        }));
        described.push(format!("binaries {binaries}"));
        // The files belong to the account the server runs as: another account (opsbox run by
        // another user on the same cache) has its own template.
        let (uid, gid) = recipe.owner.unwrap_or_else(|| {
            (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        });
        described.push(format!("owner {uid}:{gid}"));
        let mut hasher = Sha256::new();
        for line in &described {
            hasher.update(line.as_bytes());
            hasher.update([0]);
        }
        // The password is part of the key but never written down: different credentials never
        // share a template.
        hasher.update(recipe.password.as_bytes());
        let key = hex::encode(hasher.finalize());
        let dir =
            cache_dir
                .join("postgres-templates")
                .join(format!("{}-{}", recipe.version, &key[..24]));
        Self {
            dir,
            recipe: format!("{}\nkey {key}\n", described.join("\n")),
            owner: recipe.owner,
        }
    }

    fn root(&self) -> &Path {
        self.dir
            .parent()
            .expect("a template has a parent directory")
    }

    /// Fill the empty directory `target` with a verified copy of the template, building (or
    /// rebuilding) the template first when it is missing or fails verification. `build` runs
    /// initdb into the directory it is given (created empty, 0700, owned by the recipe's owner).
    pub async fn provide<E, F, Fut>(&self, target: &Path, build: F) -> Result<Provided, E>
    where
        E: From<TemplateError>,
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let lock = match self.lock(false).await {
            Ok(lock) => lock,
            Err(error) => {
                build(target.to_path_buf()).await?;
                return Ok(Provided::WithoutTemplate {
                    reason: error_chain(&error),
                });
            }
        };
        if let Copy::Done = self.copy_into(target)? {
            crate::state::prune::touch(&self.dir, RECORD);
            return Ok(Provided::Copied);
        }
        clear_dir(target)?;
        drop(lock);
        let _lock = self.lock(true).await?;
        // Another instance may have built it while this one waited for the lock.
        let found = self.copy_into(target)?;
        let provided = match found {
            Copy::Done => return Ok(Provided::Copied),
            Copy::Missing => Provided::Built,
            Copy::Corrupt(reason) => Provided::Rebuilt { reason },
        };
        clear_dir(target)?;
        self.build(build).await?;
        self.prune();
        match self.copy_into(target)? {
            Copy::Done => Ok(provided),
            Copy::Missing => Err(TemplateError::Unusable {
                dir: self.dir.clone(),
                reason: "it is missing".into(),
            }
            .into()),
            Copy::Corrupt(reason) => Err(TemplateError::Unusable {
                dir: self.dir.clone(),
                reason,
            }
            .into()),
        }
    }

    /// The template's lock file, taken shared (to copy) or exclusive (to build), blocking.
    async fn lock(&self, exclusive: bool) -> Result<std::fs::File, TemplateError> {
        let root = self.root().to_path_buf();
        create_searchable_dir(&root)?;
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = root.join(format!("{name}.lock"));
        let mode = if exclusive {
            LockMode::Exclusive
        } else {
            LockMode::Shared
        };
        lock_file(&path, mode).await.map_err(io("lock", &path))
    }

    /// Copy the template's cluster into `target`, checking every file against the manifest and
    /// the manifest against its record. Errors reading the template mean it is corrupt; errors
    /// writing `target` are returned as errors.
    fn copy_into(&self, target: &Path) -> Result<Copy, TemplateError> {
        if !self.dir.exists() {
            return Ok(Copy::Missing);
        }
        let manifest = match self.verified_manifest() {
            Ok(manifest) => manifest,
            Err(reason) => return Ok(Copy::Corrupt(reason)),
        };
        let cluster = self.dir.join(CLUSTER);
        for line in manifest.lines() {
            let Some(entry) = Entry::parse(line) else {
                return Ok(Copy::Corrupt(format!(
                    "its manifest has a bad line: {line}"
                )));
            };
            let to = target.join(entry.path);
            match entry.hash {
                None if entry.path == "." => {}
                None => fs_err::create_dir(&to).map_err(io("create", &to))?,
                Some(expected) => {
                    let from = cluster.join(entry.path);
                    if let Err(error) = fs_err::symlink_metadata(&from) {
                        return Ok(Copy::Corrupt(format!(
                            "cannot read {}: {error}",
                            from.display()
                        )));
                    }
                    // std's copy uses copy_file_range: extents are shared (a reflink) where
                    // the file system can (btrfs, XFS), an in-kernel copy elsewhere.
                    fs_err::copy(&from, &to).map_err(io("copy the template file to", &to))?;
                    let actual = crate::fetch::sha256_file(&to).map_err(io("read", &to))?;
                    if actual != expected {
                        return Ok(Copy::Corrupt(format!(
                            "checksum mismatch for {}: recorded {expected}, found {actual}",
                            from.display()
                        )));
                    }
                }
            }
            fs_err::set_permissions(&to, std::fs::Permissions::from_mode(entry.mode))
                .map_err(io("set permissions of", &to))?;
            self.give_to_owner(&to)?;
        }
        Ok(Copy::Done)
    }

    /// The manifest, if its hash matches the record and the recipe is this one.
    fn verified_manifest(&self) -> Result<String, String> {
        let read = |name: &str| {
            let path = self.dir.join(name);
            fs_err::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let record = read(RECORD)?;
        let manifest = read(MANIFEST)?;
        let recipe = read(RECIPE)?;
        if recipe != self.recipe {
            return Err(format!(
                "{} does not describe this recipe",
                self.dir.join(RECIPE).display()
            ));
        }
        let expected = record.split_whitespace().next().unwrap_or_default();
        let actual = hex::encode(Sha256::digest(manifest.as_bytes()));
        if actual != expected {
            return Err(format!(
                "checksum mismatch for {}: recorded {expected}, found {actual}",
                self.dir.join(MANIFEST).display()
            ));
        }
        Ok(manifest)
    }

    /// Replace the template: `build` fills a fresh directory, its manifest is written, it is
    /// flushed to disk and renamed into place. Called with the exclusive lock held.
    async fn build<E, F, Fut>(&self, build: F) -> Result<(), E>
    where
        E: From<TemplateError>,
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let root = self.root();
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(root)
            .map_err(io("create a staging directory in", root))?;
        // The PostgreSQL account only needs to pass through to the cluster directory.
        fs_err::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o711))
            .map_err(io("set permissions of", staging.path()))?;
        let cluster = staging.path().join(CLUSTER);
        fs_err::create_dir(&cluster).map_err(io("create", &cluster))?;
        fs_err::set_permissions(&cluster, std::fs::Permissions::from_mode(0o700))
            .map_err(io("set permissions of", &cluster))?;
        self.give_to_owner(&cluster)?;
        build(cluster.clone()).await?;

        let manifest = manifest_of(&cluster)?;
        let write = |name: &str, text: &str| {
            let path = staging.path().join(name);
            fs_err::write(&path, text).map_err(io("write", &path))
        };
        write(MANIFEST, &manifest)?;
        write(RECIPE, &self.recipe)?;
        let record = format!(
            "{}  {MANIFEST}\n",
            hex::encode(Sha256::digest(manifest.as_bytes()))
        );
        write(RECORD, &record)?;
        let staged = staging.keep();
        let file = fs_err::File::open(&staged).map_err(io("open", &staged))?;
        nix::unistd::syncfs(&file).map_err(|e| io("sync", &staged)(e.into()))?;
        if self.dir.exists() {
            fs_err::remove_dir_all(&self.dir).map_err(io("remove the old template", &self.dir))?;
        }
        if let Err(error) = fs_err::rename(&staged, &self.dir) {
            let _ = fs_err::remove_dir_all(&staged);
            return Err(io("move the new template to", &self.dir)(error).into());
        }
        Ok(())
    }

    /// Remove the templates of other recipes beyond the [`KEEP_TEMPLATES`] most recently used
    /// (a changed password or PostgreSQL version makes a new one each time).
    fn prune(&self) {
        crate::state::prune::Cache {
            root: self.root(),
            used_marker: RECORD,
            companions: &[],
        }
        .prune(&self.dir, KEEP_TEMPLATES);
    }

    fn give_to_owner(&self, path: &Path) -> Result<(), TemplateError> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                .map_err(io("change the owner of", path))?;
        }
        Ok(())
    }
}

/// One line of the manifest: `d 0700 - path` or `f 0600 <sha256> path`.
struct Entry<'a> {
    mode: u32,
    hash: Option<&'a str>,
    path: &'a str,
}

impl<'a> Entry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut fields = line.splitn(4, ' ');
        let kind = fields.next()?;
        let mode = u32::from_str_radix(fields.next()?, 8).ok()?;
        let hash = fields.next()?;
        let path = fields.next()?;
        if path.split('/').any(|part| part == ".." || part.is_empty()) {
            return None;
        }
        match kind {
            "d" => Some(Entry {
                mode,
                hash: None,
                path,
            }),
            "f" if hash.len() == 64 => Some(Entry {
                mode,
                hash: Some(hash),
                path,
            }),
            _ => None,
        }
    }
}

/// The manifest of a freshly built cluster: directories before their contents, sorted.
fn manifest_of(cluster: &Path) -> Result<String, TemplateError> {
    let mut lines = Vec::new();
    let mut stack = vec![PathBuf::from(".")];
    while let Some(relative) = stack.pop() {
        let dir = cluster.join(&relative);
        let meta = fs_err::symlink_metadata(&dir).map_err(io("read", &dir))?;
        lines.push(format!(
            "d {:o} - {}",
            meta.mode() & 0o7777,
            relative.display()
        ));
        let mut entries: Vec<_> = fs_err::read_dir(&dir)
            .map_err(io("read", &dir))?
            .collect::<Result<_, _>>()
            .map_err(io("read", &dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries.into_iter().rev() {
            let path = entry.path();
            let child = if relative == Path::new(".") {
                PathBuf::from(entry.file_name())
            } else {
                relative.join(entry.file_name())
            };
            let kind = entry.file_type().map_err(io("read", &path))?;
            if kind.is_dir() {
                stack.push(child);
            } else if kind.is_file() {
                let mode = entry.metadata().map_err(io("read", &path))?.mode() & 0o7777;
                let hash = crate::fetch::sha256_file(&path).map_err(io("read", &path))?;
                lines.push(format!("f {mode:o} {hash} {}", child.display()));
            } else {
                return Err(TemplateError::Io {
                    action: "put into the template",
                    path,
                    source: std::io::Error::other(
                        "initdb made something that is neither a file nor a directory",
                    ),
                });
            }
        }
    }
    // A pre-order walk: every directory comes before what it holds.
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

/// What identifies the binaries: the cache entry's verification record (sha256 of every
/// executable), or, for an installation outside the cache, the executables' sizes and times.
fn binaries_identity(install_dir: &Path) -> String {
    if let Ok(record) = fs_err::read_to_string(install_dir.join(".opsbox-verified")) {
        return hex::encode(Sha256::digest(record.as_bytes()));
    }
    ["initdb", "postgres"]
        .iter()
        .map(|name| {
            let path = install_dir.join("bin").join(name);
            let real = fs_err::canonicalize(&path).unwrap_or(path);
            match fs_err::metadata(&real) {
                Ok(meta) => format!(
                    "{} {} {}.{}",
                    real.display(),
                    meta.len(),
                    meta.mtime(),
                    meta.mtime_nsec()
                ),
                Err(_) => format!("{} absent", real.display()),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The templates directory: PostgreSQL's account passes through it (search only) to reach its
/// cluster while building it.
fn create_searchable_dir(dir: &Path) -> Result<(), TemplateError> {
    fs_err::create_dir_all(dir).map_err(io("create", dir))?;
    let meta = fs_err::metadata(dir).map_err(io("read", dir))?;
    if meta.mode() & 0o111 != 0o111 {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .map_err(io("set permissions of", dir))?;
    }
    Ok(())
}

/// Empty a directory (a copy that failed verification), keeping the directory itself.
fn clear_dir(dir: &Path) -> Result<(), TemplateError> {
    for entry in fs_err::read_dir(dir).map_err(io("read", dir))? {
        let path = entry.map_err(io("read", dir))?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            fs_err::remove_dir_all(&path)
        } else {
            fs_err::remove_file(&path)
        };
        removed.map_err(io("remove", &path))?;
    }
    Ok(())
}
