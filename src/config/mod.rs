//! The project's canonical ops/ files: finding them, and reading ports, credentials, names and
//! versions out of them. The same files are compiled in as defaults.

pub mod compose;
pub mod nats_conf;
mod shell_words;
pub mod stream;

use std::path::{Path, PathBuf};

pub use compose::Compose;
pub use nats_conf::NatsConf;
pub use stream::StreamSpec;

/// The compiled-in copies of the canonical files, used when no ops/ directory is found.
pub const DEFAULT_COMPOSE: &str = include_str!("../../ops/docker-compose.yml");
pub const DEFAULT_NATS_CONF: &str = include_str!("../../ops/nats.conf");
pub const DEFAULT_SETUP_STREAMS: &str = include_str!("../../ops/setup_streams.sh");

/// Errors reading the ops/ files. Each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is malformed: {message}")]
    Malformed { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The parsed ops/ directory: where it came from and what it says.
#[derive(Debug, Clone)]
pub struct Ops {
    /// The ops/ directory, or `None` when the compiled-in defaults are used.
    pub dir: Option<PathBuf>,
    pub compose: Compose,
    pub nats_conf: NatsConf,
    pub stream: StreamSpec,
    /// `ops/postgres/initdb.d` when it exists.
    pub initdb_dir: Option<PathBuf>,
}

impl Ops {
    /// Walk up from `start` looking for `ops/docker-compose.yml`.
    pub fn find(start: &Path) -> Option<PathBuf> {
        start
            .ancestors()
            .map(|dir| dir.join("ops"))
            .find(|ops| ops.join("docker-compose.yml").is_file())
    }

    /// Read the ops/ directory `dir`, or the compiled-in defaults when `dir` is `None`.
    pub fn load(dir: Option<&Path>) -> Result<Self, ConfigError> {
        let read = |name: &str, default: &'static str| -> Result<(String, String), ConfigError> {
            match dir {
                Some(dir) => {
                    let path = dir.join(name);
                    match std::fs::read_to_string(&path) {
                        Ok(text) => Ok((path.display().to_string(), text)),
                        Err(source) => Err(ConfigError::Read { path, source }),
                    }
                }
                None => Ok((format!("<built-in ops/{name}>"), default.to_string())),
            }
        };
        let (compose_path, compose_text) = read("docker-compose.yml", DEFAULT_COMPOSE)?;
        let (nats_path, nats_text) = read("nats.conf", DEFAULT_NATS_CONF)?;
        let (streams_path, streams_text) = read("setup_streams.sh", DEFAULT_SETUP_STREAMS)?;
        let compose = Compose::parse(&compose_path, &compose_text)?;
        let mut nats_conf = NatsConf::parse(&nats_path, &nats_text)?;
        nats_conf.path = dir.map(|d| d.join("nats.conf"));
        let stream = StreamSpec::parse_setup_script(&streams_path, &streams_text)?;
        let initdb_dir = dir
            .map(|d| d.join("postgres").join("initdb.d"))
            .filter(|d| d.is_dir());
        Ok(Self {
            dir: dir.map(Path::to_path_buf),
            compose,
            nats_conf,
            stream,
            initdb_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_ops_dir_and_the_built_in_copies_agree() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = Ops::find(&repo.join("src")).expect("ops/ is found from src/");
        assert_eq!(dir, repo.join("ops"));
        let on_disk = Ops::load(Some(&dir)).expect("the repository's ops/ loads");
        let built_in = Ops::load(None).expect("the compiled-in ops/ files load");
        assert_eq!(on_disk.dir.as_deref(), Some(dir.as_path()));
        assert_eq!(on_disk.nats_conf.path, Some(dir.join("nats.conf")));
        assert_eq!(
            on_disk.initdb_dir,
            Some(dir.join("postgres").join("initdb.d"))
        );
        assert_eq!(built_in.dir, None);
        assert_eq!(built_in.nats_conf.path, None);
        assert_eq!(built_in.initdb_dir, None);
        assert_eq!(on_disk.compose, built_in.compose);
        assert_eq!(on_disk.stream, built_in.stream);
        assert_eq!(
            NatsConf {
                path: None,
                ..on_disk.nats_conf
            },
            built_in.nats_conf
        );
        assert_eq!(on_disk.compose.postgres.database, "historian");
        assert_eq!(on_disk.stream.name, "EVENTS");
    }

    #[test]
    fn a_missing_file_is_named() {
        let empty = tempfile::tempdir().expect("temp dir");
        let error = Ops::load(Some(empty.path())).expect_err("an empty dir has no ops files");
        assert_eq!(
            error.to_string(),
            format!(
                "cannot read {}",
                empty.path().join("docker-compose.yml").display()
            )
        );
    }
}
