//! PostgreSQL 16: initdb as an unprivileged account, durable settings, readiness by query, the
//! target database and init scripts.
//!
//! The postmaster runs as a direct child (no pg_ctl, which would detach it), so the supervisor
//! sees it exit and the kernel's parent-death signal reaches it if opsbox dies.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::error::{Result, ServiceError};
use super::postgres_template::{
    ClusterRecipe, ClusterTemplate, Provided, TemplateError, error_chain,
};
use super::probe;
use crate::fetch::PostgresInstall;
use crate::state::StateDir;
use crate::supervisor::process::StopOutcome;
use crate::supervisor::{
    Account, ChildSpec, RunningChild, log_tail, process, run_to_completion, spawn,
};
use crate::types::ProcessIdentity;
use crate::types::ServiceName;

/// PostgreSQL as opsbox runs it.
#[derive(Debug, Clone)]
pub struct PostgresService {
    pub install: PostgresInstall,
    pub data_dir: PathBuf,
    pub host: IpAddr,
    pub client_host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    /// The account the server runs as when opsbox runs as root.
    pub account: Option<Account>,
    pub log: PathBuf,
    pub initdb_dir: Option<PathBuf>,
    /// The shared cache, where the cluster template lives.
    pub cache_dir: PathBuf,
}

/// initdb's options: what every cluster opsbox makes is like (part of the template's recipe).
const INITDB_OPTIONS: [&str; 3] = ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"];

/// The major version a data directory was created by, as PostgreSQL records it (`PG_VERSION`).
pub fn data_directory_major(data_dir: &Path) -> Option<u32> {
    fs_err::read_to_string(data_dir.join("PG_VERSION"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn fail(message: impl Into<String>, hint: Option<String>) -> ServiceError {
    ServiceError::Failed {
        service: ServiceName::Postgres,
        message: message.into(),
        hint,
    }
}

/// What PostgreSQL needs from the resolved settings.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub host: IpAddr,
    /// The address clients use (the host, or loopback when the host is unspecified).
    pub client_host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The compose database, created on first start.
    pub database: String,
    /// `ops/postgres/initdb.d`, run once on a new cluster.
    pub initdb_dir: Option<PathBuf>,
    /// The shared cache (binaries and the cluster template).
    pub cache_dir: PathBuf,
}

impl From<TemplateError> for ServiceError {
    fn from(error: TemplateError) -> Self {
        fail(
            error_chain(&error),
            Some("remove the postgres-templates directory of the cache to have the template built again".into()),
        )
    }
}

impl PostgresService {
    pub fn prepare(
        config: PostgresConfig,
        state: &StateDir,
        install: PostgresInstall,
    ) -> Result<Self> {
        let account = Account::unprivileged_for_root("PostgreSQL")?;
        let parent = state.postgres();
        fs_err::create_dir_all(&parent)
            .map_err(|e| ServiceError::io(format!("cannot create {}", parent.display()), e))?;
        let service = Self {
            install,
            data_dir: state.postgres_data(),
            host: config.host,
            client_host: config.client_host,
            port: config.port,
            user: config.user,
            password: config.password,
            database: config.database,
            account,
            log: state.log(Some(ServiceName::Postgres)),
            initdb_dir: config.initdb_dir,
            cache_dir: config.cache_dir,
        };
        if let Some(account) = &service.account {
            // Our own directories may be opened for traversal (search only, no listing).
            for dir in [&state.root, &parent] {
                grant_search(dir, account)?;
            }
            for path in [&parent, &service.install.dir] {
                check_reachable(path, account)?;
            }
        }
        service.check_version()?;
        Ok(service)
    }

    /// The major version of the installed binaries, from the install's version string.
    fn install_major(&self) -> Option<u32> {
        self.install.version.split('.').next()?.parse().ok()
    }

    /// Refuse a data directory made by another major version: it would not start, and
    /// pointing another version at it risks it.
    fn check_version(&self) -> Result<()> {
        let marker = self.data_dir.join("PG_VERSION");
        let Some(found) = data_directory_major(&self.data_dir) else {
            return Ok(());
        };
        match self.install_major() {
            Some(major) if found != major => Err(fail(
                format!(
                    "the data directory {} was created by PostgreSQL {found} ({}), but the server is PostgreSQL {major}",
                    self.data_dir.display(),
                    marker.display()
                ),
                Some(format!(
                    "opsbox leaves it untouched: dump it with PostgreSQL {found}'s pg_dumpall and remove it (`opsbox down -v`), or use another --data-dir"
                )),
            )),
            _ => Ok(()),
        }
    }

    pub fn is_initialised(&self) -> bool {
        self.data_dir.join("PG_VERSION").is_file() && !self.initialising_marker().exists()
    }

    fn probe_ip(&self) -> IpAddr {
        if self.host.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.host
        }
    }

    fn spec(&self, name: &str, program: &str) -> ChildSpec {
        let mut spec = ChildSpec::new(name, self.install.bin(program), self.log.clone());
        spec.run_as = self.account.clone();
        spec.env.push(("LC_ALL".into(), "C".into()));
        spec.env.push(("TZ".into(), "UTC".into()));
        spec
    }

    /// The postmaster, listening on `listen` (an address, or '' for none).
    fn server_spec(&self, data_dir: &Path, listen: &str) -> ChildSpec {
        let mut spec = self.spec("postgres", "postgres");
        spec.args = vec![
            "-D".into(),
            data_dir.as_os_str().to_owned(),
            "-p".into(),
            self.port.to_string().into(),
            "-c".into(),
            format!("listen_addresses={listen}").into(),
            // Clients connect over TCP; no socket directory that root's umask could make
            // unusable.
            "-c".into(),
            "unix_socket_directories=".into(),
            // Durable: never trade acknowledged commits for speed.
            "-c".into(),
            "fsync=on".into(),
            "-c".into(),
            "synchronous_commit=on".into(),
            "-c".into(),
            "full_page_writes=on".into(),
            // Crash recovery first flushes the whole data directory; one syncfs does that in a
            // fraction of the time of an fsync per file (seconds under I/O load), with the
            // same guarantee.
            "-c".into(),
            "recovery_init_sync_method=syncfs".into(),
            "-c".into(),
            "logging_collector=off".into(),
        ];
        // SIGINT is PostgreSQL's fast shutdown: clean, so the next start needs no recovery.
        spec.stop_signal = Signal::SIGINT;
        spec.parent_death_signal = Signal::SIGINT;
        spec
    }

    pub fn child_spec(&self) -> ChildSpec {
        self.server_spec(&self.data_dir, &self.host.to_string())
    }

    /// The cluster template this service's new data directories are copied from.
    pub fn template(&self) -> ClusterTemplate {
        let environment = self.spec("initdb", "initdb").env;
        ClusterTemplate::new(
            &self.cache_dir,
            &ClusterRecipe {
                version: &self.install.version,
                install_dir: &self.install.dir,
                superuser: &self.user,
                password: &self.password,
                initdb_options: &INITDB_OPTIONS,
                environment: &environment,
                owner: self.account.as_ref().map(|a| (a.uid, a.gid)),
            },
        )
    }

    /// Present while a first initialisation is under way (beside PGDATA, not in it): a data
    /// directory with it is a failed initialisation, started again from scratch.
    fn initialising_marker(&self) -> PathBuf {
        let parent = self.data_dir.parent().unwrap_or(Path::new("."));
        parent.join("data.initialising")
    }

    /// First initialisation, in place behind a marker: a verified copy of the cluster template
    /// (built by initdb when missing), started to create the database and run
    /// ops/postgres/initdb.d, flushed to disk, then the marker goes. A failure leaves the
    /// marker, so the next start removes the half-initialised directory and begins again.
    ///
    /// Returns the server it started when it already listens where the service does (a
    /// loopback host), so it is not stopped and started again; `None` otherwise.
    pub async fn initialise(&self, timeout: Duration) -> Result<(Provided, Option<RunningChild>)> {
        let parent = self.data_dir.parent().unwrap_or(Path::new("."));
        let marker = self.initialising_marker();
        let io = |action: &str, path: &Path| {
            let context = format!("cannot {action} {}", path.display());
            move |e| ServiceError::io(context, e)
        };
        if marker.exists() {
            // Only ever a previous, failed initialisation of ours; it never held user data
            // that was acknowledged (`data.initialising` was a staging directory before).
            if self.data_dir.exists() {
                fs_err::remove_dir_all(&self.data_dir).map_err(io("remove", &self.data_dir))?;
            }
            if marker.is_dir() {
                fs_err::remove_dir_all(&marker).map_err(io("remove", &marker))?;
            } else {
                fs_err::remove_file(&marker).map_err(io("remove", &marker))?;
            }
        }
        if let Ok(mut entries) = fs_err::read_dir(&self.data_dir)
            && entries.next().is_some()
        {
            return Err(fail(
                format!(
                    "the data directory {} holds files but no PostgreSQL cluster (no PG_VERSION)",
                    self.data_dir.display()
                ),
                Some("opsbox leaves it untouched: move it away, or use another --data-dir".into()),
            ));
        }
        fs_err::write(&marker, "").map_err(io("write", &marker))?;
        sync_directory(parent);
        if !self.data_dir.exists() {
            fs_err::create_dir(&self.data_dir).map_err(io("create", &self.data_dir))?;
        }
        fs_err::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("set permissions of", &self.data_dir))?;
        self.give_to_account(&self.data_dir)?;
        let provided = self
            .template()
            .provide(&self.data_dir, |cluster| self.run_initdb(cluster))
            .await?;
        // The copied files reach the disk while the server starts; the marker goes only after.
        let data_dir = self.data_dir.clone();
        let synced = tokio::task::spawn_blocking(move || sync_filesystem(&data_dir));

        // Start it only for ourselves: no TCP listener on a public address during init. A
        // loopback host (127.0.0.2 for a second stack) is kept, so probes and init scripts
        // reach the server where they look for it, and the server stays as the service's.
        let local = Self {
            host: if self.host.is_loopback() {
                self.host
            } else {
                IpAddr::from([127, 0, 0, 1])
            },
            ..self.clone()
        };
        let spec = local.server_spec(&self.data_dir, &local.host.to_string());
        let mut child = spawn(&spec).await?;
        let setup = async {
            local
                .wait_ready_at(&mut child, timeout, &self.data_dir, "postgres")
                .await?;
            local.ensure_database().await?;
            local.run_init_scripts().await?;
            synced.await.map_err(|e| {
                ServiceError::io("cannot sync the new cluster", std::io::Error::other(e))
            })?
        }
        .await;
        if let Err(error) = setup {
            child.stop(Duration::from_secs(30)).await;
            return Err(error);
        }
        fs_err::remove_file(&marker).map_err(io("remove", &marker))?;
        sync_directory(parent);
        if local.host == self.host {
            Ok((provided, Some(child)))
        } else {
            child.stop(Duration::from_secs(30)).await;
            Ok((provided, None))
        }
    }

    /// initdb into the empty directory `cluster` (for the template).
    async fn run_initdb(&self, cluster: PathBuf) -> Result<()> {
        let parent = self.data_dir.parent().unwrap_or(Path::new("."));
        let password_file = parent.join("initdb.password");
        fs_err::write(&password_file, format!("{}\n", self.password)).map_err(|e| {
            ServiceError::io(format!("cannot write {}", password_file.display()), e)
        })?;
        fs_err::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).map_err(
            |e| {
                ServiceError::io(
                    format!("cannot set permissions of {}", password_file.display()),
                    e,
                )
            },
        )?;
        self.give_to_account(&password_file)?;
        let initdb = self
            .spec("initdb", "initdb")
            .arg("-D")
            .arg(&cluster)
            .arg("-U")
            .arg(&self.user)
            .arg(format!("--pwfile={}", password_file.display()))
            .args(INITDB_OPTIONS)
            // The template is flushed with one syncfs once built.
            .arg("--no-sync");
        let result = run_to_completion(&initdb, "initialising the database cluster").await;
        let _ = fs_err::remove_file(&password_file);
        Ok(result?)
    }

    fn give_to_account(&self, path: &Path) -> Result<()> {
        if let Some(account) = &self.account {
            std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).map_err(|e| {
                ServiceError::io(
                    format!("cannot give {} to {}", path.display(), account.name),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Handle a postmaster.pid left by a run that did not stop cleanly. A live postmaster
    /// proven to serve this data directory is stopped; a pid that names some unrelated process
    /// is never signalled, and the stale file is moved aside so PostgreSQL will start.
    ///
    /// After a hard crash (opsbox and the postmaster killed at once) the old postmaster is a
    /// zombie until whoever inherited it reaps it: PostgreSQL would take it for a live server
    /// (`kill(pid, 0)` succeeds on a zombie) and refuse to start. A zombie runs nothing, so it
    /// counts as gone: waited for briefly, then its file is moved aside. PostgreSQL's own check
    /// of the old shared memory still refuses while any of its backends is alive.
    pub async fn recover_stale_pid_file(&self, timeout: Duration) -> Result<Option<String>> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(text) = fs_err::read_to_string(&pid_file) else {
            return Ok(None);
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return Ok(None);
        };
        let zombie_deadline = Instant::now() + timeout.min(Duration::from_secs(2));
        let identity = loop {
            match process::state(pid) {
                // Dead: PostgreSQL itself removes a stale file whose pid is gone.
                None => return Ok(None),
                Some('Z' | 'X') if Instant::now() < zombie_deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some('Z' | 'X') => {
                    let aside = self.move_pid_file_aside(&pid_file)?;
                    return Ok(Some(format!(
                        "{} named pid {pid}, a postmaster that died and was not reaped yet; moved it to {}",
                        pid_file.display(),
                        aside.display()
                    )));
                }
                Some(_) => match ProcessIdentity::of(pid) {
                    Some(identity) => break identity,
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                },
            }
        };
        if self.is_our_postmaster(pid) {
            // SIGINT is PostgreSQL's fast shutdown.
            if identity.stop(Signal::SIGINT, Duration::from_secs(30)).await == StopOutcome::Survived
            {
                return Err(fail(
                    format!(
                        "a PostgreSQL (pid {pid}) left running on {} by an earlier opsbox survived SIGKILL",
                        self.data_dir.display()
                    ),
                    Some(format!(
                        "stop pid {pid} by hand, then run `opsbox up` again"
                    )),
                ));
            }
            return Ok(Some(format!(
                "stopped a PostgreSQL (pid {pid}) left running on {} by an earlier opsbox",
                self.data_dir.display()
            )));
        }
        let aside = self.move_pid_file_aside(&pid_file)?;
        Ok(Some(format!(
            "{} named pid {pid}, which is not a PostgreSQL server of this data directory; moved it to {} (that process was not touched)",
            pid_file.display(),
            aside.display()
        )))
    }

    fn move_pid_file_aside(&self, pid_file: &Path) -> Result<PathBuf> {
        let aside = self.data_dir.join("postmaster.pid.stale");
        fs_err::rename(pid_file, &aside).map_err(|e| {
            ServiceError::io(format!("cannot move aside {}", pid_file.display()), e)
        })?;
        Ok(aside)
    }

    /// The current length of the server log, to read what one start adds to it.
    pub fn log_length(&self) -> u64 {
        fs_err::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// Whether the server, in what it logged after `offset`, refused to start because of what
    /// a crashed predecessor left: its lock file naming a process that is still exiting, or
    /// its shared memory still attached by backends that have not noticed yet.
    pub fn refused_for_leftovers_since(&self, offset: u64) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let mut text = Vec::new();
        let Ok(mut file) = fs_err::File::open(&self.log) else {
            return false;
        };
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut text).is_err() {
            return false;
        }
        let text = String::from_utf8_lossy(&text);
        text.contains("lock file \"postmaster.pid\" already exists")
            || text.contains("pre-existing shared memory block")
    }

    /// A postmaster of this data directory: its executable is `postgres` and its working
    /// directory is the data directory (the postmaster chdirs there).
    fn is_our_postmaster(&self, pid: i32) -> bool {
        let exe_is_postgres = process::executable(pid)
            .and_then(|p| p.file_name().map(|n| n == "postgres"))
            .unwrap_or(false)
            || process::command_line(pid).is_some_and(|c| c.contains("postgres"));
        let cwd = fs_err::read_link(format!("/proc/{pid}/cwd")).ok();
        let data = self.data_dir.canonicalize().ok();
        exe_is_postgres && cwd.is_some() && cwd == data
    }

    /// Ready = an authenticated `SELECT 1` on the target database.
    pub async fn wait_ready(&self, child: &mut RunningChild, timeout: Duration) -> Result<()> {
        self.wait_ready_at(child, timeout, &self.data_dir, &self.database)
            .await
    }

    async fn wait_ready_at(
        &self,
        child: &mut RunningChild,
        timeout: Duration,
        data_dir: &Path,
        database: &str,
    ) -> Result<()> {
        let started = Instant::now();
        let addr = SocketAddr::new(self.probe_ip(), self.port);
        let mut last_error = String::from("no answer yet");
        loop {
            if let Some(status) = child.try_exited() {
                return Err(self.not_ready(
                    started,
                    format!("postgres exited during start-up ({status})"),
                ));
            }
            // The postmaster marks itself ready in postmaster.pid (what pg_ctl waits for);
            // querying before that only fills the log with "starting up" refusals.
            if postmaster_says_ready(data_dir) && probe::tcp(addr).await {
                match self.query_one(database).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last_error = e,
                }
            }
            if started.elapsed() >= timeout {
                return Err(
                    self.not_ready(started, format!("SELECT 1 on {addr} failed: {last_error}"))
                );
            }
            tokio::time::sleep(probe::POLL_INTERVAL).await;
        }
    }

    fn not_ready(&self, started: Instant, reason: String) -> ServiceError {
        ServiceError::NotReady {
            service: ServiceName::Postgres,
            waited_secs: started.elapsed().as_secs(),
            reason,
            log: Some(self.log.clone()),
            log_tail: log_tail(&self.log, 10),
        }
    }

    async fn connect(&self, database: &str) -> std::result::Result<tokio_postgres::Client, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(self.probe_ip().to_string())
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(database)
            .connect_timeout(Duration::from_secs(5));
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn query_one(&self, database: &str) -> std::result::Result<(), String> {
        let client = self.connect(database).await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Write every dirty page to disk now (CHECKPOINT), so that a copy taken next starts
    /// without replaying WAL.
    pub async fn checkpoint(&self) -> Result<()> {
        let client = self
            .connect("postgres")
            .await
            .map_err(|e| fail(format!("cannot connect to run CHECKPOINT: {e}"), None))?;
        client
            .batch_execute("CHECKPOINT")
            .await
            .map_err(|e| fail(format!("CHECKPOINT failed: {e}"), None))
    }

    /// Create the target database if it does not exist.
    pub async fn ensure_database(&self) -> Result<()> {
        let client = self.connect("postgres").await.map_err(|e| {
            fail(
                format!("cannot connect to create database {}: {e}", self.database),
                None,
            )
        })?;
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&self.database],
            )
            .await
            .map_err(|e| fail(format!("cannot list databases: {e}"), None))?
            .is_some();
        if !exists {
            let name = self.database.replace('"', "\"\"");
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
                .map_err(|e| {
                    fail(
                        format!("cannot create database {}: {e}", self.database),
                        None,
                    )
                })?;
        }
        Ok(())
    }

    /// Run `*.sql` and `*.sh` from ops/postgres/initdb.d in name order, like the official image.
    async fn run_init_scripts(&self) -> Result<()> {
        let Some(dir) = &self.initdb_dir else {
            return Ok(());
        };
        let mut scripts: Vec<PathBuf> = fs_err::read_dir(dir)
            .map_err(|e| ServiceError::io(format!("cannot read {}", dir.display()), e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql" || x == "sh"))
            .collect();
        scripts.sort();
        if scripts.is_empty() {
            return Ok(());
        }
        let client = self
            .connect(&self.database)
            .await
            .map_err(|e| fail(format!("cannot connect to run init scripts: {e}"), None))?;
        for script in scripts {
            let failed = |message: String| {
                fail(
                    format!("init script {} failed: {message}", script.display()),
                    Some("fix the script; the database was not created, the next `opsbox up` starts the initialisation again".into()),
                )
            };
            if script.extension().is_some_and(|x| x == "sql") {
                let sql = fs_err::read_to_string(&script).map_err(|e| failed(e.to_string()))?;
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| failed(format!("{e:?}")))?;
            } else {
                let spec = self
                    .spec("init script", "postgres")
                    .env("PGHOST", self.probe_ip().to_string())
                    .env("PGPORT", self.port.to_string())
                    .env("PGUSER", &self.user)
                    .env("PGPASSWORD", &self.password)
                    .env("PGDATABASE", &self.database)
                    .env("POSTGRES_USER", &self.user)
                    .env("POSTGRES_PASSWORD", &self.password)
                    .env("POSTGRES_DB", &self.database);
                let spec = ChildSpec {
                    program: "/bin/sh".into(),
                    args: vec![script.clone().into_os_string()],
                    ..spec
                };
                run_to_completion(&spec, "running an init script")
                    .await
                    .map_err(|e| failed(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Whether the postmaster.pid in `data_dir` has reached the "ready" status line.
fn postmaster_says_ready(data_dir: &Path) -> bool {
    fs_err::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().nth(7).map(|line| line.trim() == "ready"))
        .unwrap_or(false)
}

/// Make a directory's entries durable (best effort: a failure shows up as a missing entry, which
/// the marker logic handles).
fn sync_directory(dir: &Path) {
    if let Ok(dir) = fs_err::File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Flush everything under `dir` to disk (initdb ran with --no-sync).
fn sync_filesystem(dir: &Path) -> Result<()> {
    let file = fs_err::File::open(dir)
        .map_err(|e| ServiceError::io(format!("cannot open {}", dir.display()), e))?;
    nix::unistd::syncfs(&file)
        .map_err(|e| ServiceError::io(format!("cannot sync {}", dir.display()), e.into()))
}

/// Give `account` search (x) permission on a directory opsbox owns, when it lacks it.
fn grant_search(dir: &Path, account: &Account) -> Result<()> {
    let Ok(meta) = fs_err::metadata(dir) else {
        return Ok(());
    };
    if !can_search(&meta, account) {
        let mode = meta.permissions().mode() | 0o001;
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            ServiceError::io(format!("cannot set permissions of {}", dir.display()), e)
        })?;
    }
    Ok(())
}

fn can_search(meta: &std::fs::Metadata, account: &Account) -> bool {
    let mode = meta.mode();
    (meta.uid() == account.uid && mode & 0o100 != 0)
        || (meta.gid() == account.gid && mode & 0o010 != 0)
        || mode & 0o001 != 0
}

/// Every ancestor of `path` must be searchable by `account`, or PostgreSQL cannot reach it.
fn check_reachable(path: &Path, account: &Account) -> Result<()> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    for dir in absolute.ancestors() {
        if let Ok(meta) = fs_err::metadata(dir)
            && !can_search(&meta, account)
        {
            return Err(fail(
                format!(
                    "PostgreSQL runs as the unprivileged account {} (opsbox runs as root), which cannot reach {}: {} is not searchable by it",
                    account.name,
                    path.display(),
                    dir.display()
                ),
                Some(format!(
                    "use --data-dir / OPSBOX_CACHE_DIR outside it (the defaults for root are /var/lib/opsbox and /var/cache/opsbox), or `chmod o+x {}`",
                    dir.display()
                )),
            ));
        }
    }
    Ok(())
}
