//! The integration-test binary: the opsbox library and the real `opsbox` binary against real
//! artifacts and real servers.
// Tests and tools print their own progress; the print bans are for the opsbox library.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod console;
mod faults;
mod fetch;
mod first_run;
mod layers;
mod nats;
mod pg_template;
mod postgres;
mod readme;
mod s3_clients;
mod s3_stack;
mod support;
mod up_errors;
