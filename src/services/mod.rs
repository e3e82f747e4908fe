//! The services opsbox runs. Each module builds its command lines, configuration and readiness
//! probes; none of them spawns or signals processes (that is the supervisor's job).

pub mod nats;
pub mod postgres;
pub mod postgres_template;
pub mod probe;
pub mod s3;

use std::fmt;

/// One of the stack's services, named as in `--services` and `opsbox logs`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    Nats,
    Postgres,
    S3,
}

impl ServiceName {
    pub const ALL: [ServiceName; 3] = [ServiceName::Nats, ServiceName::Postgres, ServiceName::S3];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Nats => "nats",
            ServiceName::Postgres => "postgres",
            ServiceName::S3 => "s3",
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
