//! The stack template: the "initial" snapshot of the first stack built from one recipe (the
//! PostgreSQL cluster template, the init scripts, the compose database, nats.conf, the EVENTS
//! definition and the buckets), kept in the shared cache. A new data dir of the same recipe
//! starts from it: its `initial` snapshot is hard-linked from the template (no byte copied:
//! snapshot files are never written again) and its data is restored from that, so a fresh
//! stack neither runs initdb.d, CREATE DATABASE and the stream setup again, nor pays for a
//! copy of its first state.
//!
//! ```text
//! <cache>/stack-templates/<key>/manifest.json    the snapshot's manifest (sha256 of every file)
//! <cache>/stack-templates/<key>/data/...         the snapshot's data
//! <cache>/stack-templates/<key>/recipe           what the key covers
//! <cache>/stack-templates/<key>/.opsbox-verified sha256 of manifest.json
//! <cache>/stack-templates/<key>.lock             shared to use, exclusive to keep
//! ```

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{self, Manifest};
use super::tree::{self, Copy};
use super::{INITIAL, NoProgress, Result, SnapshotError, Snapshots};
use crate::state::{LockMode, lock_file};

/// Bumped when the layout or the meaning of a stack template changes.
const FORMAT: &str = "opsbox stack template 1";
const RECIPE: &str = "recipe";
const RECORD: &str = ".opsbox-verified";

#[derive(Debug, Clone)]
pub struct StackTemplate {
    pub dir: PathBuf,
    recipe: String,
}

/// How a fresh data dir got its first state.
#[derive(Debug, PartialEq, Eq)]
pub enum Provided {
    /// From the template, which was there and verified.
    FromTemplate { created: String },
    /// No usable template: the stack builds its first state itself.
    Missing,
    /// A template was there but failed verification (it is rebuilt by `keep`).
    Corrupt { reason: String },
}

impl StackTemplate {
    /// The template of the recipe `lines` describe, in `cache_dir`.
    pub fn new(cache_dir: &Path, lines: &[String]) -> Self {
        let mut described = vec![FORMAT.to_string()];
        described.extend(lines.iter().cloned());
        let recipe = described.join("\n") + "\n";
        let key = hex::encode(Sha256::digest(recipe.as_bytes()));
        Self {
            dir: cache_dir.join("stack-templates").join(&key[..24]),
            recipe,
        }
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.with_extension("lock")
    }

    /// Make a fresh data dir's first state from the template: link it as the `initial`
    /// snapshot, then restore that (atomically, like every restore). Returns `Missing` or
    /// `Corrupt`, having changed nothing, when there is no usable template.
    pub async fn provide(&self, snapshots: &Snapshots) -> Result<Provided> {
        if !self.dir.is_dir() {
            return Ok(Provided::Missing);
        }
        let lock = self.lock_path();
        let _shared = lock_file(&lock, LockMode::Shared)
            .await
            .map_err(SnapshotError::io("lock", &lock))?;
        let manifest = match self.verified_manifest() {
            Ok(manifest) => manifest,
            Err(reason) => return Ok(Provided::Corrupt { reason }),
        };
        let snapshots = snapshots.clone();
        let template = self.clone();
        let created = manifest.created.clone();
        tokio::task::spawn_blocking(move || {
            template.link_into(&snapshots, &manifest)?;
            super::restore::recover(&snapshots)?;
            // The template's spare, claimed by one rename, or a copy of the linked snapshot.
            let prepared = match super::spare::claim(
                &snapshots,
                &template.spare(),
                &snapshots.manifest_path(INITIAL),
                // Eight new instances at once: the ones that miss the spare copy at once.
                super::spare::Wait::No,
            ) {
                Some(claimed) => {
                    super::restore::from_build(&snapshots, INITIAL, manifest, &claimed)
                }
                None => super::restore::prepare(&snapshots, INITIAL, &[], &NoProgress)?,
            };
            prepared.swap()
        })
        .await
        .map_err(|e| SnapshotError::io("restore", &self.dir)(std::io::Error::other(e)))??;
        crate::state::prune::touch(&self.dir, RECORD);
        Ok(Provided::FromTemplate { created })
    }

    /// The manifest, when its hash matches the record and the recipe is this one.
    fn verified_manifest(&self) -> std::result::Result<Manifest, String> {
        let read = |name: &str| {
            let path = self.dir.join(name);
            fs_err::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        if read(RECIPE)? != self.recipe.as_bytes() {
            return Err(format!(
                "{} does not describe this recipe",
                self.dir.join(RECIPE).display()
            ));
        }
        let record = String::from_utf8_lossy(&read(RECORD)?).into_owned();
        let expected = record.split_whitespace().next().unwrap_or_default();
        let actual = hex::encode(Sha256::digest(read(manifest::FILE)?));
        if actual != expected {
            return Err(format!(
                "checksum mismatch for {}: recorded {expected}, found {actual}",
                self.dir.join(manifest::FILE).display()
            ));
        }
        Manifest::read(&self.dir.join(manifest::FILE))
    }

    /// `snapshots/initial` as hard links of the template (a copy across file systems),
    /// checked against the manifest: every part's files and bytes.
    fn link_into(&self, snapshots: &Snapshots, manifest: &Manifest) -> Result<()> {
        let root = snapshots.root();
        fs_err::create_dir_all(&root).map_err(SnapshotError::io("create", &root))?;
        let staging = snapshots.staging();
        let linked = (|| {
            fs_err::create_dir_all(staging.join("data"))
                .map_err(SnapshotError::io("create", &staging))?;
            for part in &manifest.parts {
                let from = self.dir.join("data").join(&part.path);
                let to = staging.join("data").join(&part.path);
                if let Some(parent) = to.parent() {
                    fs_err::create_dir_all(parent).map_err(SnapshotError::io("create", parent))?;
                }
                let entries = link_or_copy(&from, &to)?;
                let found = super::save::part_of(part.service, entries);
                if found.files != part.files || found.bytes != part.bytes {
                    return Err(SnapshotError::Damaged {
                        name: format!("stack template {}", self.dir.display()),
                        reason: format!(
                            "its {} data has {} files, {} bytes; the manifest says {} files, {} bytes",
                            part.service, found.files, found.bytes, part.files, part.bytes
                        ),
                    });
                }
            }
            let manifest_path = staging.join(manifest::FILE);
            fs_err::copy(self.dir.join(manifest::FILE), &manifest_path)
                .map_err(SnapshotError::io("copy", &manifest_path))?;
            Ok(())
        })();
        if let Err(e) = linked {
            let _ = super::remove_tree(&staging);
            return Err(e);
        }
        let target = snapshots.dir(INITIAL);
        if let Err(e) = fs_err::rename(&staging, &target) {
            let _ = super::remove_tree(&staging);
            return Err(SnapshotError::io("name the snapshot", &target)(e));
        }
        super::sync_dir(&root)
    }

    /// Where the template's spare lives (spare.rs): the next new data dir claims it.
    fn spare(&self) -> PathBuf {
        self.dir.with_extension("spare")
    }

    /// Build the template's spare when it has none (in the background, after a start).
    pub fn replenish(&self) -> Result<bool> {
        if self.verified_manifest().is_err() {
            return Ok(false);
        }
        let root = self.dir.parent().expect("a stack template has a parent");
        // What builders that were killed left.
        if let Ok(entries) = fs_err::read_dir(root) {
            for entry in entries.flatten() {
                if super::dead_owner(&entry.file_name().to_string_lossy(), ".staging-") {
                    let _ = super::remove_tree(&entry.path());
                }
            }
        }
        let staging = root.join(format!(
            ".staging-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        super::spare::build(&self.dir, &self.spare(), &staging)
    }

    /// Keep the data dir's `initial` snapshot as this recipe's template, unless one is there
    /// already (another instance kept it first): hard links, a copy across file systems.
    pub async fn keep(&self, snapshots: &Snapshots) -> Result<bool> {
        let root = self
            .dir
            .parent()
            .expect("a stack template has a parent")
            .to_path_buf();
        fs_err::create_dir_all(&root).map_err(SnapshotError::io("create", &root))?;
        let lock = self.lock_path();
        let _exclusive = lock_file(&lock, LockMode::Exclusive)
            .await
            .map_err(SnapshotError::io("lock", &lock))?;
        if self.verified_manifest().is_ok() {
            return Ok(false);
        }
        let template = self.clone();
        let snapshots = snapshots.clone();
        tokio::task::spawn_blocking(move || {
            template.build(&snapshots, &root)?;
            prune(&root, &template.dir);
            Ok::<_, SnapshotError>(())
        })
        .await
        .map_err(|e| SnapshotError::io("keep", &self.dir)(std::io::Error::other(e)))??;
        Ok(true)
    }

    fn build(&self, snapshots: &Snapshots, root: &Path) -> Result<()> {
        let source = snapshots.dir(INITIAL);
        let manifest_bytes = fs_err::read(source.join(manifest::FILE))
            .map_err(SnapshotError::io("read", &source))?;
        let staging = root.join(format!(
            ".staging-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let built = (|| {
            fs_err::create_dir_all(&staging).map_err(SnapshotError::io("create", &staging))?;
            // PostgreSQL's account only needs to pass through to the cluster's directory.
            fs_err::set_permissions(
                &staging,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .map_err(SnapshotError::io("set the mode of", &staging))?;
            link_or_copy(&source.join("data"), &staging.join("data"))?;
            let write = |name: &str, bytes: &[u8]| {
                let path = staging.join(name);
                fs_err::write(&path, bytes).map_err(SnapshotError::io("write", &path))
            };
            write(manifest::FILE, &manifest_bytes)?;
            write(RECIPE, self.recipe.as_bytes())?;
            write(
                RECORD,
                format!(
                    "{}  {}\n",
                    hex::encode(Sha256::digest(&manifest_bytes)),
                    manifest::FILE
                )
                .as_bytes(),
            )?;
            super::sync_file_system(&staging)?;
            if self.dir.exists() {
                super::remove_tree(&self.dir)?;
            }
            fs_err::rename(&staging, &self.dir).map_err(SnapshotError::io("name", &self.dir))?;
            super::sync_dir(root)
        })();
        if built.is_err() {
            let _ = super::remove_tree(&staging);
        }
        built
    }
}

/// Hard-link the tree `from` into `to` (snapshot files are never written again, so a link is
/// as good as a copy); across file systems, copy it.
fn link_or_copy(from: &Path, to: &Path) -> Result<Vec<super::Entry>> {
    let linked = tree::copy_tree(
        from,
        to,
        &Copy {
            link: true,
            skip: &|_| false,
            progress: &NoProgress,
            since: None,
        },
    );
    match linked {
        Err(SnapshotError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::CrossesDevices =>
        {
            super::remove_tree(to)?;
            tree::copy_tree(
                from,
                to,
                &Copy {
                    link: false,
                    skip: &|_| false,
                    progress: &NoProgress,
                    since: None,
                },
            )
        }
        other => other,
    }
}

/// How many stack templates (each with its spare) the cache keeps: every edit of an init
/// script makes a new recipe, and the old ones would pile up. Data dirs started from a removed
/// template keep their `initial` (hard links hold the data).
const KEEP_TEMPLATES: usize = 4;

fn prune(root: &Path, kept: &Path) {
    crate::state::prune::Cache {
        root,
        used_marker: RECORD,
        companions: &[".spare"],
    }
    .prune(kept, KEEP_TEMPLATES);
}
