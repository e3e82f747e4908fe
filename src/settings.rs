//! Flags, environment and the ops/ files resolved once into one `Settings`, before any command
//! runs.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::cli::{BinaryArgs, GlobalArgs, PortArgs, PortMode, ServiceArg};
use crate::config::Ops;
use crate::console::ConsoleConfig;
use crate::error::{Error, Result};
use crate::fetch::{DEFAULT_NATS_VERSION, DEFAULT_POSTGRES_VERSION, PostgresRequest};
use crate::output::env_format::EnvVars;
use crate::services::nats::NatsConfig;
use crate::services::postgres::PostgresConfig;
use crate::services::s3::S3Config;
use crate::state::StateDir;
use crate::state::instances::{InstanceName, InstanceRecord, PortSlot};
use crate::types::ServiceName;

#[derive(Debug, Clone)]
pub struct Settings {
    pub ops: Ops,
    /// The project directory (parent of ops/), when one was found.
    pub project_dir: Option<PathBuf>,
    /// The instance's name (`-p`, else derived from the project directory).
    pub instance: InstanceName,
    /// Where this user's instances live (the ports lock and `opsbox ls` look here).
    pub data_root: PathBuf,
    pub state: StateDir,
    /// `--ports auto`: ports not given by a flag are chosen by `up` (see `ports.rs`).
    pub port_mode: PortMode,
    /// The port flags as given (with `--ports auto`, these stay fixed).
    pub explicit_ports: PortArgs,
    pub cache_dir: PathBuf,
    pub offline: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub host: IpAddr,
    pub services: Vec<ServiceName>,
    pub nats: NatsSettings,
    pub postgres: PostgresSettings,
    pub s3: S3Settings,
    /// The web console's port; `None` when --services leaves the console out.
    pub console_port: Option<u16>,
    pub mirror: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub port: u16,
    pub monitor_port: u16,
    pub binary: Option<PathBuf>,
    pub version: String,
}

#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub major: u32,
    /// Another major version the user allowed (`--allow-postgres-major`).
    pub allow_major: Option<u32>,
    pub dir: Option<PathBuf>,
    pub version: String,
}

impl PostgresSettings {
    /// What to ask the fetcher for.
    pub fn fetch_request(&self) -> PostgresRequest {
        PostgresRequest {
            explicit: self.dir.clone(),
            version: self.version.clone(),
            major: self.major,
            allow_major: self.allow_major.filter(|&major| major != self.major),
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub buckets: Vec<String>,
}

impl Settings {
    /// Resolve everything; `host`, `ports`, `binaries` and `services` come from the subcommand
    /// where it has them.
    pub fn resolve(
        global: &GlobalArgs,
        host: Option<IpAddr>,
        ports: &PortArgs,
        binaries: &BinaryArgs,
        services: &[ServiceArg],
    ) -> Result<Settings> {
        let (project_dir, ops_dir) = match &global.project_dir {
            Some(dir) => {
                let ops = dir.join("ops");
                if !ops.join("docker-compose.yml").is_file() {
                    return Err(Error::Usage {
                        message: format!(
                            "--project-dir {}: there is no ops/docker-compose.yml in it",
                            dir.display()
                        ),
                        hint: Some("point --project-dir at the directory that holds ops/".into()),
                    });
                }
                (Some(absolute(dir)), Some(ops))
            }
            None => {
                let cwd = std::env::current_dir()
                    .map_err(|e| Error::io("cannot read the working directory", e))?;
                match Ops::find(&cwd) {
                    Some(ops) => (ops.parent().map(Path::to_path_buf), Some(ops)),
                    None => (None, None),
                }
            }
        };
        let ops = Ops::load(ops_dir.as_deref())?;

        let data_root = match &global.data_root {
            Some(dir) => absolute(dir),
            None => default_data_root(),
        };
        let instance = match (&global.project, &global.data_dir) {
            (Some(name), _) => InstanceName::parse(name, &data_root)?,
            (None, Some(dir)) => InstanceName::derived(
                absolute(dir)
                    .file_name()
                    .map_or("default".into(), |n| n.to_string_lossy().into_owned()),
            ),
            (None, None) => InstanceName::derived(project_key(project_dir.as_deref())),
        };
        let data_dir = match &global.data_dir {
            Some(dir) => absolute(dir),
            None => data_root.join(instance.as_str()),
        };
        let cache_dir = match &global.cache_dir {
            Some(dir) => absolute(dir),
            None => default_cache_dir(),
        };

        let compose = &ops.compose;
        let nats = NatsSettings {
            port: ports.nats_port.unwrap_or(compose.nats.client_port),
            monitor_port: ports.nats_monitor_port.unwrap_or(compose.nats.monitor_port),
            binary: binaries.nats_server.clone(),
            version: binaries
                .nats_version
                .clone()
                .unwrap_or_else(|| DEFAULT_NATS_VERSION.to_string()),
        };
        let postgres = PostgresSettings {
            port: ports.postgres_port.unwrap_or(compose.postgres.port),
            user: compose.postgres.user.clone(),
            password: compose.postgres.password.clone(),
            database: compose.postgres.database.clone(),
            major: compose.postgres.major,
            allow_major: binaries.allow_postgres_major,
            dir: binaries.postgres_dir.clone(),
            version: binaries
                .postgres_version
                .clone()
                .unwrap_or_else(|| DEFAULT_POSTGRES_VERSION.to_string()),
        };
        let s3 = S3Settings {
            port: ports.s3_port.unwrap_or(compose.minio.api_port),
            access_key: compose.minio.root_user.clone(),
            secret_key: compose.minio.root_password.clone(),
            region: "us-east-1".into(),
            buckets: compose.buckets.clone(),
        };
        let console = services.is_empty() || services.contains(&ServiceArg::Console);
        let console_port =
            console.then(|| ports.console_port.unwrap_or(compose.minio.console_port));
        let mut selected: Vec<ServiceName> = services
            .iter()
            .filter_map(|s| match s {
                ServiceArg::Nats => Some(ServiceName::Nats),
                ServiceArg::Postgres => Some(ServiceName::Postgres),
                ServiceArg::S3 => Some(ServiceName::S3),
                ServiceArg::Console => None,
            })
            .collect();
        if selected.is_empty() {
            selected = ServiceName::ALL.to_vec();
        }
        selected.sort();
        selected.dedup();

        Ok(Settings {
            ops,
            project_dir,
            instance,
            data_root,
            state: StateDir::new(data_dir),
            port_mode: PortMode::Compose,
            explicit_ports: ports.clone(),
            cache_dir,
            offline: global.offline,
            quiet: global.quiet,
            verbose: global.verbose,
            host: host.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            services: selected,
            nats,
            postgres,
            s3,
            console_port,
            mirror: binaries.mirror.clone().filter(|m| !m.is_empty()),
        })
    }

    /// The command line of the background supervisor of `up -d`: everything resolved, so it
    /// runs exactly this stack. Paths stay `OsString`s (no lossy conversion); resolving these
    /// arguments gives these settings back (tested below).
    pub fn supervise_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: OsString| {
            out.push(name.into());
            out.push(value);
        };
        if let Some(dir) = &self.project_dir {
            flag("--project-dir", dir.clone().into_os_string());
        }
        flag("--data-dir", self.state.root.clone().into_os_string());
        flag("--data-root", self.data_root.clone().into_os_string());
        if self.instance.is_explicit() {
            flag("--project", self.instance.as_str().into());
        }
        flag("--cache-dir", self.cache_dir.clone().into_os_string());
        if self.offline {
            out.push("--offline".into());
        }
        if self.quiet {
            out.push("--quiet".into());
        }
        for _ in 0..self.verbose {
            out.push("--verbose".into());
        }
        out.push("supervise".into());
        let mut flag = |name: &str, value: OsString| {
            out.push(name.into());
            out.push(value);
        };
        flag("--host", self.host.to_string().into());
        // Only the ports given by a flag: the others are the compose ports, or with
        // `--ports auto` chosen by the supervisor itself (it holds the instance's lock).
        for slot in PortSlot::ALL {
            if slot != PortSlot::Console
                && let Some(port) = self.explicit_port(slot)
            {
                flag(slot.flag(), port.to_string().into());
            }
        }
        if self.port_mode == PortMode::Auto {
            flag("--ports", "auto".into());
        }
        let mut services: Vec<&str> = self.services.iter().map(|s| s.as_str()).collect();
        if self.console_port.is_some() {
            if let Some(port) = self.explicit_ports.console_port {
                flag("--console-port", port.to_string().into());
            }
            services.push("console");
        }
        flag("--services", services.join(",").into());
        flag("--nats-version", self.nats.version.clone().into());
        flag("--postgres-version", self.postgres.version.clone().into());
        if let Some(path) = &self.nats.binary {
            flag("--nats-server", path.clone().into_os_string());
        }
        if let Some(dir) = &self.postgres.dir {
            flag("--postgres-dir", dir.clone().into_os_string());
        }
        if let Some(mirror) = &self.mirror {
            flag("--mirror", mirror.clone().into());
        }
        if let Some(major) = self.postgres.allow_major {
            flag("--allow-postgres-major", major.to_string().into());
        }
        out
    }

    /// Settings for commands that only need the project (no host, port or binary flags), of
    /// an existing instance (see [`Settings::existing_instance`]).
    pub fn for_project(global: &GlobalArgs) -> Result<Settings> {
        Self::resolve(
            &Self::existing_instance(global),
            None,
            &PortArgs::default(),
            &BinaryArgs::default(),
            &[],
        )
    }

    /// With `--ports auto`: every port no flag fixed starts as the one this instance used last
    /// (`instance.json`), which `up` keeps when it is still free.
    pub fn with_port_mode(mut self, mode: Option<PortMode>) -> Settings {
        self.port_mode = mode.unwrap_or_default();
        if self.port_mode != PortMode::Auto {
            return self;
        }
        let Some(record) = InstanceRecord::read(&self.state)
            .ok()
            .flatten()
            .filter(|record| record.auto_ports)
        else {
            return self;
        };
        let explicit = &self.explicit_ports;
        for (slot, port) in record.ports {
            match slot {
                PortSlot::Nats if explicit.nats_port.is_none() => self.nats.port = port,
                PortSlot::NatsMonitor if explicit.nats_monitor_port.is_none() => {
                    self.nats.monitor_port = port
                }
                PortSlot::Postgres if explicit.postgres_port.is_none() => self.postgres.port = port,
                PortSlot::S3 if explicit.s3_port.is_none() => self.s3.port = port,
                PortSlot::Console
                    if explicit.console_port.is_none() && self.console_port.is_some() =>
                {
                    self.console_port = Some(port);
                }
                _ => {}
            }
        }
        self
    }

    /// The port flag given for `slot`, if any.
    pub fn explicit_port(&self, slot: PortSlot) -> Option<u16> {
        let explicit = &self.explicit_ports;
        match slot {
            PortSlot::Nats => explicit.nats_port,
            PortSlot::NatsMonitor => explicit.nats_monitor_port,
            PortSlot::Postgres => explicit.postgres_port,
            PortSlot::S3 => explicit.s3_port,
            PortSlot::Console => explicit.console_port,
        }
    }

    /// The current port of `slot` (`None` when the stack does not run it).
    pub fn port(&self, slot: PortSlot) -> Option<u16> {
        match slot {
            PortSlot::Nats => self.runs(ServiceName::Nats).then_some(self.nats.port),
            PortSlot::NatsMonitor => self
                .runs(ServiceName::Nats)
                .then_some(self.nats.monitor_port),
            PortSlot::Postgres => self
                .runs(ServiceName::Postgres)
                .then_some(self.postgres.port),
            PortSlot::S3 => self.runs(ServiceName::S3).then_some(self.s3.port),
            PortSlot::Console => self.console_port,
        }
    }

    /// Set the port of `slot` (after `--ports auto` chose it).
    pub fn set_port(&mut self, slot: PortSlot, port: u16) {
        match slot {
            PortSlot::Nats => self.nats.port = port,
            PortSlot::NatsMonitor => self.nats.monitor_port = port,
            PortSlot::Postgres => self.postgres.port = port,
            PortSlot::S3 => self.s3.port = port,
            PortSlot::Console => self.console_port = Some(port),
        }
    }

    /// Every port of the stack, by slot.
    pub fn ports(&self) -> crate::state::instances::PortSet {
        PortSlot::ALL
            .iter()
            .filter_map(|&slot| self.port(slot).map(|port| (slot, port)))
            .collect()
    }

    /// What `instance.json` says about this instance now (ports filled in by the caller).
    pub fn instance_record(&self) -> InstanceRecord {
        InstanceRecord {
            name: self.instance.to_string(),
            project_dir: self.project_dir.clone(),
            auto_ports: self.port_mode == PortMode::Auto,
            ports: self.ports(),
            started_at: crate::types::unix_now(),
        }
    }

    pub fn runs(&self, service: ServiceName) -> bool {
        self.services.contains(&service)
    }

    /// The host clients should connect to (127.0.0.1 when listening on all addresses).
    /// What nats-server needs, and nothing else.
    pub fn nats_config(&self) -> NatsConfig {
        NatsConfig {
            host: self.host,
            client_host: self.client_host(),
            port: self.nats.port,
            monitor_port: self.nats.monitor_port,
            conf: self.ops.nats_conf.clone(),
            stream: self.ops.stream.clone(),
        }
    }

    /// What PostgreSQL needs, and nothing else.
    pub fn postgres_config(&self) -> PostgresConfig {
        PostgresConfig {
            host: self.host,
            client_host: self.client_host(),
            port: self.postgres.port,
            user: self.postgres.user.clone(),
            password: self.postgres.password.clone(),
            database: self.postgres.database.clone(),
            initdb_dir: self.ops.initdb_dir.clone(),
            cache_dir: self.cache_dir.clone(),
        }
    }

    /// What the S3 endpoint needs, and nothing else.
    pub fn s3_config(&self) -> S3Config {
        S3Config {
            root: self.state.s3(),
            access_key: self.s3.access_key.clone(),
            secret_key: self.s3.secret_key.clone(),
            buckets: self.s3.buckets.clone(),
            log: self.state.log(Some(ServiceName::S3)),
        }
    }

    /// What the web console needs; `env` is what `opsbox env` prints, `storage` the S3
    /// endpoint's own storage when S3 runs in this stack.
    pub fn console_config(&self, env: EnvVars, storage: Option<Arc<dyn s3s::S3>>) -> ConsoleConfig {
        let host = self.client_host();
        let postgres = self.runs(ServiceName::Postgres).then(|| {
            let mut config = tokio_postgres::Config::new();
            config
                .host(host.trim_start_matches('[').trim_end_matches(']'))
                .port(self.postgres.port)
                .user(&self.postgres.user)
                .password(&self.postgres.password)
                .dbname(&self.postgres.database);
            config
        });
        ConsoleConfig {
            access_key: self.s3.access_key.clone(),
            secret_key: self.s3.secret_key.clone(),
            run_file: self.state.run_file(),
            env,
            storage: storage.filter(|_| self.runs(ServiceName::S3)),
            nats_url: self
                .runs(ServiceName::Nats)
                .then(|| format!("nats://{host}:{}", self.nats.port)),
            postgres,
        }
    }

    pub fn client_host(&self) -> String {
        if self.host.is_unspecified() {
            "127.0.0.1".into()
        } else if self.host.is_ipv6() {
            format!("[{}]", self.host)
        } else {
            self.host.to_string()
        }
    }
}

impl Settings {
    /// The flags for a command acting on an existing instance (`status`, `logs`, `env`,
    /// `down`): with `-p NAME` and no `--project-dir`, the project that instance was started
    /// from, so `opsbox -p ci-3 env` works from any directory.
    pub fn existing_instance(global: &GlobalArgs) -> GlobalArgs {
        let mut global = global.clone();
        if global.project_dir.is_some() {
            return global;
        }
        let Some(name) = &global.project else {
            return global;
        };
        let root = data_root(&global);
        let dir = global
            .data_dir
            .as_deref()
            .map_or_else(|| root.join(name), absolute);
        let recorded = InstanceRecord::read(&StateDir::new(dir))
            .ok()
            .flatten()
            .and_then(|record| record.project_dir)
            .filter(|dir| dir.join("ops").join("docker-compose.yml").is_file());
        if recorded.is_some() {
            global.project_dir = recorded;
        }
        global
    }
}

/// The directory holding every instance of this user: `--data-root`, else the default.
pub fn data_root(global: &GlobalArgs) -> PathBuf {
    global
        .data_root
        .as_deref()
        .map_or_else(default_data_root, absolute)
}

/// The binary cache: `--cache-dir`, else the default.
pub fn cache_dir(global: &GlobalArgs) -> PathBuf {
    global
        .cache_dir
        .as_deref()
        .map_or_else(default_cache_dir, absolute)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Where projects' data lives by default. As root, a system location: the unprivileged account
/// PostgreSQL runs as cannot traverse /root.
fn default_data_root() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/opsbox/projects");
    }
    directories::ProjectDirs::from("", "", "opsbox")
        .map(|d| d.data_local_dir().join("projects"))
        .unwrap_or_else(|| std::env::temp_dir().join("opsbox").join("projects"))
}

fn default_cache_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/cache/opsbox");
    }
    directories::ProjectDirs::from("", "", "opsbox")
        .map(|d| d.cache_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("opsbox").join("cache"))
}

/// A readable, unique directory name for a project: `<dir name>-<hash of its path>`.
fn project_key(project_dir: Option<&Path>) -> String {
    match project_dir {
        None => "default".into(),
        Some(dir) => {
            let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            let hash = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
            let name: String = canonical
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "project".into())
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("{name}-{}", &hex::encode(hash)[..8])
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn resolve(args: &[OsString]) -> Settings {
        let cli = Cli::try_parse_from(
            std::iter::once(OsString::from("opsbox")).chain(args.iter().cloned()),
        )
        .expect("the arguments parse");
        let (Command::Supervise(up) | Command::Up(up)) = &cli.command else {
            panic!("not an up command: {:?}", cli.command);
        };
        Settings::resolve(
            &cli.global,
            Some(up.host),
            &up.ports,
            &up.binaries,
            &up.services,
        )
        .expect("the arguments resolve")
    }

    #[test]
    fn supervise_args_round_trip_even_for_paths_that_are_not_utf8() {
        let odd = |name: &str| {
            let mut bytes = format!("/tmp/opsbox-{name}-").into_bytes();
            bytes.extend([0xff, 0xfe]);
            OsString::from_vec(bytes)
        };
        let project = OsString::from(env!("CARGO_MANIFEST_DIR"));
        let args: Vec<OsString> = [
            "--project-dir".into(),
            project,
            "--data-dir".into(),
            odd("data"),
            "--cache-dir".into(),
            odd("cache"),
            "--offline".into(),
            "--verbose".into(),
            "--verbose".into(),
            "up".into(),
            "--host".into(),
            "127.0.0.2".into(),
            "--nats-port".into(),
            "14222".into(),
            "--postgres-port".into(),
            "15432".into(),
            "--services".into(),
            "nats,postgres,console".into(),
            "--nats-server".into(),
            odd("nats-server"),
            "--postgres-dir".into(),
            odd("pg"),
            "--allow-postgres-major".into(),
            "15".into(),
            "--mirror".into(),
            "http://127.0.0.1:1/m".into(),
        ]
        .into_iter()
        .collect();
        let first = resolve(&args);
        let again = resolve(&first.supervise_args());
        assert_eq!(format!("{again:?}"), format!("{first:?}"));
        assert_eq!(again.state.root.as_os_str(), odd("data"));
        assert_eq!(
            again.nats.binary.as_deref().map(Path::as_os_str),
            Some(odd("nats-server").as_os_str())
        );
    }
}
