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
                    match fs_err::read_to_string(&path) {
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

        // The comparison above can fail: a copy of ops/ that differs in one value loads
        // differently from the built-in files, in each of the three files.
        let edits: [(&str, &str, &str); 3] = [
            (
                "docker-compose.yml",
                "POSTGRES_DB: historian",
                "POSTGRES_DB: other",
            ),
            ("nats.conf", "http_port: 8222", "http_port: 8223"),
            (
                "setup_streams.sh",
                "--subjects \"enterprise.>\"",
                "--subjects \"other.>\"",
            ),
        ];
        for (file, from, to) in edits {
            let copy = tempfile::tempdir().expect("temp dir");
            let ops = copy.path().join("ops");
            fs_err::create_dir_all(&ops).expect("create ops/");
            for name in ["docker-compose.yml", "nats.conf", "setup_streams.sh"] {
                fs_err::copy(dir.join(name), ops.join(name)).expect("copy an ops/ file");
            }
            let path = ops.join(file);
            let text = fs_err::read_to_string(&path).expect("read the copy");
            assert!(text.contains(from), "{file} no longer contains {from:?}");
            fs_err::write(&path, text.replacen(from, to, 1)).expect("edit the copy");
            let Ok(edited) = Ops::load(Some(&ops)) else {
                continue; // Refusing the edited file is also a detected difference.
            };
            let same = edited.compose == built_in.compose
                && edited.stream == built_in.stream
                && NatsConf {
                    path: None,
                    ..edited.nats_conf
                } == built_in.nats_conf;
            assert!(
                !same,
                "an edit of {file} ({from:?} -> {to:?}) went unnoticed"
            );
        }
    }

    /// The contract the compose stack documents (ports, credentials, names): the values opsbox
    /// takes from ops/ are these, so an edit of ops/ that changes one fails here until the
    /// documentation and this test are changed with it.
    #[test]
    fn the_ops_files_hold_the_documented_stack() {
        let ops = Ops::load(None).expect("the compiled-in ops/ files load");
        let compose = &ops.compose;
        assert_eq!(
            (compose.nats.client_port, compose.nats.monitor_port),
            (4222, 8222)
        );
        assert_eq!(
            (compose.minio.api_port, compose.minio.console_port),
            (9000, 9001)
        );
        assert_eq!(
            (
                compose.minio.root_user.as_str(),
                compose.minio.root_password.as_str()
            ),
            ("minioadmin", "minioadmin")
        );
        assert_eq!(compose.postgres.port, 5432);
        assert_eq!(compose.postgres.major, 16);
        assert_eq!(
            (
                compose.postgres.user.as_str(),
                compose.postgres.password.as_str(),
                compose.postgres.database.as_str()
            ),
            ("postgres", "postgres", "historian")
        );
        assert_eq!(compose.buckets, ["historian"]);
        assert_eq!(ops.stream.name, "EVENTS");
        assert_eq!(ops.stream.subjects, ["enterprise.>"]);
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
