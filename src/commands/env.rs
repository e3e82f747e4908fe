//! `opsbox env`: the connection variables applications need (NATS_URL, DATABASE_URL, PG*, AWS_*,
//! and the compose services' own variables), from the running stack's actual ports when it
//! runs, else from the settings.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{BinaryArgs, EnvArgs, EnvFormat, GlobalArgs};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use crate::stack;
use crate::state;

pub async fn run(global: &GlobalArgs, args: &EnvArgs) -> Result<ExitCode> {
    let settings = Settings::resolve(
        global,
        Some(args.host),
        &args.ports,
        &BinaryArgs::default(),
        &[],
    )?;
    let run = state::running(&settings.state)?;
    let vars = stack::connection_variables(&settings, run.as_ref());
    let text = output::env_format::render(&vars, args.format);

    if args.format == EnvFormat::Github
        && let Some(path) = std::env::var_os("GITHUB_ENV").filter(|p| !p.is_empty())
    {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|e| {
                Error::io(
                    format!(
                        "cannot append to the $GITHUB_ENV file {}",
                        std::path::Path::new(&path).display()
                    ),
                    e,
                )
            })?;
        output::info(&format!(
            "added {} variables to $GITHUB_ENV ({})",
            vars.len(),
            std::path::Path::new(&path).display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    output::data(&text);
    Ok(ExitCode::SUCCESS)
}
