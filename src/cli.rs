//! The command line: clap derive types. Doc comments here are the `--help` text.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run the historian ops/ stack (NATS JetStream, PostgreSQL 16, S3) without Docker.
///
/// opsbox reads ports, credentials and names from the project's ops/docker-compose.yml and
/// ops/nats.conf (found by walking up from the working directory), so it and `docker compose`
/// cannot drift apart.
///
/// Exit codes: 0 success; 1 failure (a service did not start, a command failed, or `status`
/// found a service not ready); 2 usage error (unknown flag or bad value).
#[derive(Debug, Parser)]
#[command(
    name = "opsbox",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The instance's name, as compose's -p (lowercase letters, digits, - and _). Default: one
    /// derived from the project directory, so each checkout or git worktree is its own
    /// instance. `opsbox ls` lists them.
    #[arg(
        short = 'p',
        long = "project",
        global = true,
        env = "OPSBOX_PROJECT",
        value_name = "NAME"
    )]
    pub project: Option<String>,

    /// The project directory holding ops/ (default: walk up from the working directory; with
    /// -p, the directory that instance was started from).
    #[arg(long, global = true, env = "OPSBOX_PROJECT_DIR", value_name = "DIR")]
    pub project_dir: Option<PathBuf>,

    /// Where this instance's data, logs and run files live (default: <data root>/<name>).
    #[arg(long, global = true, env = "OPSBOX_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where the instances of this user live, one directory each (default: the user's data
    /// dir, as root /var/lib/opsbox/projects). `opsbox ls` lists what is here.
    #[arg(long, global = true, env = "OPSBOX_DATA_ROOT", value_name = "DIR")]
    pub data_root: Option<PathBuf>,

    /// Where downloaded binaries are cached (shared between projects).
    #[arg(long, global = true, env = "OPSBOX_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Never touch the network; fail with a list of what is missing instead.
    #[arg(long, global = true, env = "OPSBOX_OFFLINE")]
    pub offline: bool,

    /// Show more detail on stderr (repeat for more). Long form only: `-v` is `down -v`
    /// (delete data), as in docker compose.
    #[arg(long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the stack: nats-server with EVENTS, PostgreSQL 16, and the S3 endpoint.
    Up(UpArgs),
    /// Stop a running stack (foreground or detached); with -v also delete its data.
    Down(DownArgs),
    /// Show each service's state, pid, address, uptime and data dir.
    #[command(visible_alias = "ps")]
    Status(StatusArgs),
    /// List every instance of this user on this host, running or stopped with data.
    Ls(LsArgs),
    /// Show service logs.
    Logs(LogsArgs),
    /// Print connection settings for applications (NATS_URL, DATABASE_URL, AWS_*...).
    Env(EnvArgs),
    /// Download and verify every binary now, for later offline use.
    Fetch(FetchArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Save, restore, list, remove, export and import snapshots of the stack's data
    /// (JetStream store, PostgreSQL cluster, S3 buckets), kept in the data dir.
    Snapshot(SnapshotArgs),
    /// Put the data back to the state right after the first `up` (init scripts run, EVENTS
    /// created, buckets made): the "initial" snapshot opsbox keeps. The stack must be stopped.
    Reset(ResetArgs),
    #[command(hide = true)]
    Supervise(UpArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum ServiceArg {
    Nats,
    Postgres,
    S3,
    /// The web console (started with the stack unless --services leaves it out).
    Console,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Start in the background and return once every service is ready.
    #[arg(short, long)]
    pub detach: bool,

    /// With --detach: how long to wait for readiness, in seconds.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub wait_timeout: u64,

    /// Run only these services (comma separated).
    #[arg(short, long, value_delimiter = ',', value_name = "SERVICES")]
    pub services: Vec<ServiceArg>,

    /// Address to listen on (default 127.0.0.1; 0.0.0.0 exposes the stack to the network).
    #[arg(long, env = "OPSBOX_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// `auto`: a free port for every service whose port flag is not given, chosen without
    /// races between instances starting at once, and kept for this instance's next `up`
    /// while still free. Default: the compose ports.
    #[arg(long = "ports", env = "OPSBOX_PORTS", value_enum, value_name = "MODE")]
    pub port_mode: Option<PortMode>,

    #[command(flatten)]
    pub ports: PortArgs,

    #[command(flatten)]
    pub binaries: BinaryArgs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum PortMode {
    /// The compose ports (or the port flags).
    #[default]
    Compose,
    /// Free ports chosen by opsbox.
    Auto,
}

#[derive(Debug, Clone, Default, Args)]
pub struct PortArgs {
    /// NATS client port (default: from ops/nats.conf, 4222).
    #[arg(long, env = "OPSBOX_NATS_PORT", value_name = "PORT")]
    pub nats_port: Option<u16>,
    /// NATS monitoring port (default: from ops/nats.conf, 8222).
    #[arg(long, env = "OPSBOX_NATS_MONITOR_PORT", value_name = "PORT")]
    pub nats_monitor_port: Option<u16>,
    /// PostgreSQL port (default: from ops/docker-compose.yml, 5432).
    #[arg(long, env = "OPSBOX_POSTGRES_PORT", value_name = "PORT")]
    pub postgres_port: Option<u16>,
    /// S3 API port (default: from ops/docker-compose.yml, 9000).
    #[arg(long, env = "OPSBOX_S3_PORT", value_name = "PORT")]
    pub s3_port: Option<u16>,
    /// Web console port (default: from the compose file's MinIO console, 9001).
    #[arg(long, env = "OPSBOX_CONSOLE_PORT", value_name = "PORT")]
    pub console_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct BinaryArgs {
    /// Use this nats-server binary instead of downloading one.
    #[arg(long, env = "OPSBOX_NATS_SERVER", value_name = "PATH")]
    pub nats_server: Option<PathBuf>,
    /// nats-server version to download (default: pinned in opsbox).
    #[arg(long, env = "OPSBOX_NATS_VERSION", value_name = "VERSION")]
    pub nats_version: Option<String>,
    /// Use the PostgreSQL installation in this directory (holding bin/, lib/, share/).
    #[arg(long, env = "OPSBOX_POSTGRES_DIR", value_name = "DIR")]
    pub postgres_dir: Option<PathBuf>,
    /// PostgreSQL version to download (default: pinned in opsbox, a 16.x).
    #[arg(long, env = "OPSBOX_POSTGRES_VERSION", value_name = "VERSION")]
    pub postgres_version: Option<String>,
    /// Let a PostgreSQL of this other major version (e.g. a system PostgreSQL 15) create and
    /// run this project's database. Its data directory then stays of that major version.
    #[arg(long, env = "OPSBOX_ALLOW_POSTGRES_MAJOR", value_name = "MAJOR")]
    pub allow_postgres_major: Option<u32>,
    /// Base URL of a mirror in the upstream GitHub release layout (http, https or file).
    #[arg(long, env = "OPSBOX_MIRROR", value_name = "URL")]
    pub mirror: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Stop every instance of this user on this host (with -v: delete all their data).
    #[arg(long)]
    pub all: bool,
    /// Also delete the project's data (never the binary cache).
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Seconds to wait for a graceful stop before killing.
    #[arg(short, long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Services whose logs to show (nats, postgres, s3, opsbox); default all.
    pub services: Vec<String>,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines from the end of each log.
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum EnvFormat {
    #[default]
    Sh,
    Dotenv,
    Json,
    Github,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = EnvFormat::Sh)]
    pub format: EnvFormat,
    /// With `auto`, and the stack not running: the ports its next `up --ports auto` tries
    /// first (those it used last).
    #[arg(long = "ports", env = "OPSBOX_PORTS", value_enum, value_name = "MODE")]
    pub port_mode: Option<PortMode>,
    #[command(flatten)]
    pub ports: PortArgs,
    /// Address clients should use (default 127.0.0.1).
    #[arg(long, env = "OPSBOX_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub binaries: BinaryArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the data of the stopped stack as snapshot NAME.
    Save {
        /// Letters, digits, '.', '_' and '-'.
        name: String,
        /// Print the snapshot's summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Replace the data of the stopped stack by snapshot NAME (atomically: an interrupted
    /// restore leaves the previous data, and the next `up` finishes one that got that far).
    Restore {
        name: String,
        /// Restore only these services (comma separated; default all).
        #[arg(short, long, value_delimiter = ',', value_name = "SERVICES")]
        services: Vec<ServiceArg>,
        /// Print the snapshot's summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List the snapshots of this data dir.
    #[command(visible_alias = "list")]
    Ls {
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove snapshot NAME.
    Rm { name: String },
    /// Write snapshot NAME to FILE: one zstd-compressed tar with its manifest.
    Export {
        name: String,
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Add the snapshot in FILE (made by `export`) as NAME (default: its saved name), after
    /// verifying every member; then `opsbox snapshot restore NAME`.
    Import {
        file: PathBuf,
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Reset only these services (default all): nats, postgres, s3.
    #[arg(value_enum)]
    pub services: Vec<ServiceArg>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}
