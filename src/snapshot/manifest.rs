//! `manifest.json`: what a snapshot holds, made by which opsbox, PostgreSQL and nats-server,
//! and every file with its size and sha256.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::types::ServiceName;

pub const FILE: &str = "manifest.json";
/// Bumped when a manifest of this version could not be read correctly by an older opsbox.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub opsbox_version: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub created_unix_ms: u64,
    /// From PG_VERSION of the saved data directory.
    pub postgres_major: Option<u32>,
    /// The nats-server version this stack runs.
    pub nats_server_version: Option<String>,
    pub parts: Vec<Part>,
}

/// One service's data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    pub service: ServiceName,
    /// Relative to the data dir: nats/jetstream, postgres/data, s3.
    pub path: String,
    /// Mode of the part's own directory (PGDATA must stay 0700).
    pub mode: u32,
    pub files: u64,
    pub bytes: u64,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
}

/// A directory, file or symbolic link, relative to its part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl Manifest {
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    pub fn files(&self) -> u64 {
        self.parts.iter().map(|p| p.files).sum()
    }

    /// What `output` shows of it.
    pub fn summary(&self) -> crate::output::snapshot::SnapshotSummary {
        crate::output::snapshot::SnapshotSummary {
            name: self.name.clone(),
            created: self.created.clone(),
            opsbox_version: self.opsbox_version.clone(),
            postgres_major: self.postgres_major,
            nats_server_version: self.nats_server_version.clone(),
            files: self.files(),
            bytes: self.bytes(),
            services: self
                .parts
                .iter()
                .map(|p| (p.service.to_string(), p.files, p.bytes))
                .collect(),
        }
    }

    pub fn part(&self, service: ServiceName) -> Option<&Part> {
        self.parts.iter().find(|p| p.service == service)
    }

    pub fn read(path: &Path) -> Result<Manifest, String> {
        let bytes =
            fs_err::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a snapshot manifest ({e})"))?;
        if manifest.format > FORMAT {
            return Err(format!(
                "manifest format {} is newer than this opsbox reads ({FORMAT}); upgrade opsbox",
                manifest.format
            ));
        }
        for part in &manifest.parts {
            if part.path != super::part_path(part.service) {
                return Err(format!(
                    "part {} has the unexpected path {:?}",
                    part.service, part.path
                ));
            }
            for entry in &part.entries {
                if !is_plain_relative(&entry.path) {
                    return Err(format!(
                        "entry {:?} of {} leaves its directory",
                        entry.path, part.service
                    ));
                }
            }
        }
        Ok(manifest)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// A relative path without `..`, root or empty components (an archive cannot write outside
/// its directory).
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}
