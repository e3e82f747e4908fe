//! `opsbox completions <shell>`.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: &CompletionsArgs) {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "opsbox", &mut script);
    crate::output::data(&String::from_utf8_lossy(&script));
}
