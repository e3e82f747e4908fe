//! The integration-test binary: the opsbox library and the real `opsbox` binary against real
//! artifacts and real servers.

mod faults;
mod fetch;
mod nats;
mod postgres;
mod s3_stack;
mod support;
mod up_errors;
