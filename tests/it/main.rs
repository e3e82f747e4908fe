//! The integration-test binary: calls the opsbox library against real artifacts.

mod fetch;
mod support;
