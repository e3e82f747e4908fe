//! How clients reach a stack: the variables `opsbox env` prints and the console's Connect page
//! shows, from the running stack's actual ports when it runs, else from the settings.

use std::net::IpAddr;

use crate::output::summary::SummaryFacts;
use crate::output::{self, env_format::EnvVars};
use crate::settings::Settings;
use crate::state::RunFile;
use crate::types::ServiceName;

/// The variables, in a stable order. Ports come from `run` (what actually listens) when given.
pub fn connection_variables(settings: &Settings, run: Option<&RunFile>) -> EnvVars {
    let port = |service: ServiceName, configured: u16| {
        run.and_then(|run| run.service(service))
            .map_or(configured, |record| record.port)
    };
    let nats_port = port(ServiceName::Nats, settings.nats.port);
    let postgres_port = port(ServiceName::Postgres, settings.postgres.port);
    let s3_port = port(ServiceName::S3, settings.s3.port);
    let host = client_host(settings, run);
    // PGHOST takes a bare address; URLs need IPv6 in brackets.
    let pg_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let pg = &settings.postgres;
    let s3 = &settings.s3;
    let s3_url = format!("http://{host}:{s3_port}");

    let mut vars: EnvVars = vec![
        ("NATS_URL", format!("nats://{host}:{nats_port}")),
        (
            "DATABASE_URL",
            output::url::postgres(
                &pg.user,
                Some(&pg.password),
                &host,
                postgres_port,
                &pg.database,
            ),
        ),
        ("PGHOST", pg_host),
        ("PGPORT", postgres_port.to_string()),
        ("PGUSER", pg.user.clone()),
        ("PGPASSWORD", pg.password.clone()),
        ("PGDATABASE", pg.database.clone()),
        ("AWS_ENDPOINT_URL", s3_url.clone()),
        ("AWS_ENDPOINT_URL_S3", s3_url),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("AWS_REGION", s3.region.clone()),
        ("AWS_DEFAULT_REGION", s3.region.clone()),
        ("MINIO_ROOT_USER", s3.access_key.clone()),
        ("MINIO_ROOT_PASSWORD", s3.secret_key.clone()),
        ("POSTGRES_USER", pg.user.clone()),
        ("POSTGRES_PASSWORD", pg.password.clone()),
        ("POSTGRES_DB", pg.database.clone()),
    ];
    if !s3.buckets.is_empty() {
        vars.push(("OPSBOX_S3_BUCKETS", s3.buckets.join(",")));
    }
    let console_url = match run {
        Some(run) => run.console_url.clone(),
        None => settings
            .console_port
            .map(|port| format!("http://{host}:{port}")),
    };
    if let Some(url) = console_url {
        vars.push(("OPSBOX_CONSOLE_URL", url));
    }
    vars
}

/// `--host` (default 127.0.0.1), unless the stack listens on one specific other address, where
/// the loopback address would not reach it.
fn client_host(settings: &Settings, run: Option<&RunFile>) -> String {
    let listening = run.and_then(|run| {
        run.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
    });
    match listening {
        Some(address)
            // The running stack's own address wins over the default (a stack started with
            // `--host 127.0.0.2` is reached there); a wildcard listener is reached the usual way.
            if settings.host == IpAddr::from([127, 0, 0, 1]) && !address.is_unspecified() =>
        {
            if address.is_ipv6() {
                format!("[{address}]")
            } else {
                address.to_string()
            }
        }
        _ => settings.client_host(),
    }
}

/// The connection summary `up` prints.
pub fn summary(run_file: &RunFile, settings: &Settings) -> String {
    let pg = &settings.postgres;
    let host = settings.client_host();
    let postgres_url =
        |port: u16| output::url::postgres(&pg.user, Some(&pg.password), &host, port, &pg.database);
    output::summary::render(
        run_file,
        &SummaryFacts {
            postgres_url: &postgres_url,
            postgres_credentials: (&pg.user, &pg.password),
            s3_credentials: (&settings.s3.access_key, &settings.s3.secret_key),
            stream: (&settings.ops.stream.name, &settings.ops.stream.subjects),
            nats_monitor_url: format!("http://{host}:{}", settings.nats.monitor_port),
            logs: &settings.state.logs(),
        },
    )
}
