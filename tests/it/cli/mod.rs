//! The command line without services: `down`, `env`, `logs`, `status` and completions against
//! temp data dirs and stand-in processes, and the whole life of a real stack (`stack`).

mod down;
mod env;
mod logs;
mod stack;
mod status;

use std::process::Command;

use crate::support::stack::Opsbox;

#[test]
fn bash_completions_are_a_valid_bash_script() {
    let project = Opsbox::with_own_cache();
    let outcome = project.run(&["completions", "bash"]);
    outcome.expect_code(0, "completions bash");
    assert!(
        outcome.stdout.contains("opsbox"),
        "the completion script does not mention opsbox"
    );
    let script = project.home.path().join("opsbox.bash");
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
