//! `opsbox logs`: the end of each selected log (services and opsbox's own), and with `-f` new
//! lines as they arrive, across truncation and rotation, until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{GlobalArgs, LogsArgs};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use crate::state::LogFollower;
use crate::types::ServiceName;

/// The names `opsbox logs` accepts, in display order.
pub const LOG_NAMES: [&str; 4] = ["nats", "postgres", "s3", "opsbox"];

/// How often `-f` looks for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

pub async fn run(global: &GlobalArgs, args: &LogsArgs) -> Result<ExitCode> {
    let names = select(&args.services)?;
    let settings = Settings::for_project(global)?;
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let prefixed = names.len() > 1;
    let mut logs: Vec<(String, LogFollower)> = names
        .iter()
        .map(|name| {
            let service = match *name {
                "nats" => Some(ServiceName::Nats),
                "postgres" => Some(ServiceName::Postgres),
                "s3" => Some(ServiceName::S3),
                _ => None,
            };
            let prefix = if prefixed {
                format!("{name:<width$} | ")
            } else {
                String::new()
            };
            (prefix, LogFollower::new(settings.state.log(service)))
        })
        .collect();

    for (prefix, log) in &mut logs {
        match log.open_at_tail(args.tail) {
            Ok(Some(lines)) => {
                if !lines.is_empty() && !emit(prefix, &lines) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Ok(None) => output::info(&format!(
                "no log at {} (the service has not run yet); skipping it",
                log.path.display()
            )),
            Err(e) => {
                return Err(Error::io(
                    format!("cannot read the log {}", log.path.display()),
                    e,
                ));
            }
        }
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    follow(&mut logs).await
}

/// The selected log names (deduplicated, in display order); all when none are given.
fn select(requested: &[String]) -> Result<Vec<&'static str>> {
    if requested.is_empty() {
        return Ok(LOG_NAMES.to_vec());
    }
    for name in requested {
        if !LOG_NAMES.contains(&name.as_str()) {
            return Err(Error::Usage {
                message: format!("unknown service `{name}` for `opsbox logs`"),
                hint: Some(format!("valid names: {}", LOG_NAMES.join(", "))),
            });
        }
    }
    Ok(LOG_NAMES
        .iter()
        .copied()
        .filter(|name| requested.iter().any(|r| r == name))
        .collect())
}

async fn follow(logs: &mut [(String, LogFollower)]) -> Result<ExitCode> {
    let signal_error = |e| Error::io("cannot listen for SIGINT/SIGTERM", e);
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut tick = tokio::time::interval(FOLLOW_POLL);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {
                for (prefix, log) in logs.iter_mut() {
                    let bytes = log.poll();
                    if !bytes.is_empty() && !emit(prefix, &bytes) {
                        // Nobody reads any more (`| head`): done.
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
        }
    }
    for (prefix, log) in logs.iter_mut() {
        let rest = log.take_partial();
        if !rest.is_empty() {
            emit(prefix, &rest);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Print lines with this log's prefix; false when stdout is gone.
fn emit(prefix: &str, bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        out.push_str(prefix);
        out.push_str(line);
        out.push('\n');
    }
    output::try_data(&out).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_usage_errors_naming_the_valid_ones() {
        let error = select(&["nats".into(), "redis".into()]).expect_err("redis is unknown");
        assert_eq!(error.exit_code(), 2);
        assert!(error.hint().is_some_and(|h| h.contains("postgres")));
        let picked = select(&["opsbox".into(), "nats".into(), "nats".into()]).expect("valid");
        assert_eq!(picked, vec!["nats", "opsbox"]);
    }
}
