//! One module per subcommand.

pub mod completions;
pub mod down;
pub mod env;
pub mod fetch;
pub mod logs;
pub mod ls;
pub mod reset;
pub mod snapshot;
pub mod status;
pub mod up;
