//! `opsbox fetch`: resolve (and download and verify when needed) nats-server and PostgreSQL
//! now, so a later `opsbox up --offline` finds them in the cache.

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{FetchArgs, GlobalArgs, PortArgs};
use crate::error::Result;
use crate::fetch::Fetcher;
use crate::output;
use crate::settings::Settings;

pub async fn run(global: &GlobalArgs, args: &FetchArgs) -> Result<ExitCode> {
    let settings = Settings::resolve(global, None, &PortArgs::default(), &args.binaries, &[])?;
    let fetcher = Fetcher {
        cache_dir: settings.cache_dir.clone(),
        offline: settings.offline,
        mirror: settings.mirror.clone(),
        reporter: Arc::new(output::ProgressReporter::default()),
    };
    // The reporter prints where each one came from; these lines say where it is.
    let nats = fetcher
        .nats_server(settings.nats.binary.clone(), &settings.nats.version)
        .await?;
    output::info(&format!(
        "nats-server {}: {}",
        nats.version,
        nats.path.display()
    ));
    let postgres = fetcher
        .postgres(settings.postgres.dir.clone(), &settings.postgres.version)
        .await?;
    output::info(&format!(
        "postgresql {}: {}",
        postgres.version,
        postgres.dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}
