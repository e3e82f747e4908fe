//! The integration-test binary, the only one: the opsbox library, the real `opsbox` binary and
//! the in-process S3 endpoint against real artifacts, real servers and real clients. Every
//! fixture lives once in `support`.
// Tests and tools print their own progress; the print bans are for the opsbox library.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod cli;
mod console;
mod faults;
mod fetch;
mod first_run;
mod instances;
mod layers;
mod nats;
mod pg_template;
mod postgres;
mod readme;
mod s3_clients;
mod s3_endpoint;
mod s3_stack;
mod snapshots;
mod stack_template;
mod support;
mod up_errors;
