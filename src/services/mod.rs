//! The services opsbox runs. Each module builds its command lines, configuration and readiness
//! probes; none of them spawns or signals processes (that is the supervisor's job).

mod error;
pub mod nats;
pub mod postgres;
pub mod postgres_template;
pub mod probe;
pub mod s3;

pub use error::{Result, ServiceError};
