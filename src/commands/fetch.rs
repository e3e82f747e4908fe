//! `opsbox fetch`: resolve (and download and verify when needed) nats-server and PostgreSQL
//! now, both at once, so a later `opsbox up --offline` finds them in the cache.

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
    let postgres_request = settings.postgres.fetch_request();
    let (nats, postgres) = tokio::join!(
        fetcher.nats_server(settings.nats.binary.clone(), &settings.nats.version),
        fetcher.postgres(&postgres_request),
    );
    // The reporter printed where each one came from; these lines say where it is.
    let nats = nats?;
    output::info(&format!(
        "nats-server {}: {}",
        nats.version,
        nats.path.display()
    ));
    let postgres = postgres?;
    output::info(&format!(
        "postgresql {}: {}",
        postgres.version,
        postgres.dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}
