//! The `EVENTS` stream definition, read from `ops/setup_streams.sh` (the `nats stream add` line),
//! so the stream opsbox creates and the one the compose setup creates cannot drift.

use std::time::Duration;

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    File,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Limits,
    Interest,
    WorkQueue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    Old,
    New,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    pub storage: Storage,
    pub retention: Retention,
    pub discard: Discard,
    pub replicas: usize,
    /// -1 = unlimited
    pub max_msgs: i64,
    /// -1 = unlimited
    pub max_bytes: i64,
    /// zero = unlimited
    pub max_age: Duration,
    /// -1 = unlimited
    pub max_msg_size: i32,
    pub duplicate_window: Duration,
}

impl StreamSpec {
    pub fn parse_setup_script(path: &str, text: &str) -> Result<Self, ConfigError> {
        let _ = (path, text);
        todo!("config helper")
    }

    /// The async-nats stream configuration for this spec.
    pub fn to_config(&self) -> async_nats::jetstream::stream::Config {
        todo!("config helper")
    }
}
