//! Reads `ops/docker-compose.yml`: the services opsbox replaces, their host ports, credentials,
//! database name, image versions and the buckets the setup creates.

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    pub nats: NatsService,
    pub minio: MinioService,
    pub postgres: PostgresService,
    /// Buckets the compose setup creates (`mc mb --ignore-existing ...`).
    pub buckets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsService {
    /// e.g. `nats:latest`
    pub image: String,
    /// Host port published for the container's client port.
    pub client_port: u16,
    /// Host port published for the container's monitoring port.
    pub monitor_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinioService {
    pub image: String,
    pub api_port: u16,
    pub console_port: u16,
    pub root_user: String,
    pub root_password: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresService {
    /// e.g. `postgres:16-alpine`
    pub image: String,
    /// The major version from the image tag (16 for `postgres:16-alpine`).
    pub major: u32,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Compose {
    /// Parse the compose file `text`; `path` is only used in error messages.
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let _ = (path, text);
        todo!("config helper")
    }
}
