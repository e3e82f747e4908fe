//! Integration tests: the real `opsbox` binary with temp data and cache directories.
// Tests and tools print their own progress; the print bans are for the opsbox library.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod down;
mod env;
mod logs;
mod stack;
mod status;
mod support;

use std::process::Command;

use support::Project;

#[test]
fn bash_completions_are_a_valid_bash_script() {
    let project = Project::new();
    let outcome = project.run(&["completions", "bash"]);
    outcome.expect_code(0, "completions bash");
    assert!(
        outcome.stdout.contains("opsbox"),
        "the completion script does not mention opsbox"
    );
    let script = project.temp.path().join("opsbox.bash");
    std::fs::write(&script, &outcome.stdout).expect("write the script");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("run bash -n");
    assert!(
        check.status.success(),
        "bash -n rejected the completion script: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}
