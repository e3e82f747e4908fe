//! Test fixtures: a loopback mirror, real upstream-layout artifacts, a recording reporter.

pub mod artifacts;
pub mod mirror;
pub mod recorder;
pub mod s3;
pub mod stack;
