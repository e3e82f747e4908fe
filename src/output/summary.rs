//! The connection summary `up` prints, like `supabase start` does: one row per service with
//! its URL, credentials and data directory.

use std::path::Path;

use crate::state::RunFile;
use crate::types::ServiceName;

/// What the summary shows besides the run file.
pub struct SummaryFacts<'a> {
    /// PostgreSQL's URL with the password, built by `output::url`.
    pub postgres_url: &'a dyn Fn(u16) -> String,
    pub postgres_credentials: (&'a str, &'a str),
    pub s3_credentials: (&'a str, &'a str),
    /// The stream's name and subjects.
    pub stream: (&'a str, &'a [String]),
    /// NATS's monitoring URL.
    pub nats_monitor_url: String,
    pub logs: &'a Path,
}

pub fn render(run_file: &RunFile, facts: &SummaryFacts<'_>) -> String {
    let pair = |(a, b): (&str, &str)| format!("{a} / {b}");
    let mut rows = Vec::new();
    for record in &run_file.services {
        let (url, credentials) = match record.name {
            ServiceName::Nats => (record.url.clone(), "-".to_string()),
            ServiceName::Postgres => (
                (facts.postgres_url)(record.port),
                pair(facts.postgres_credentials),
            ),
            ServiceName::S3 => (record.url.clone(), pair(facts.s3_credentials)),
        };
        rows.push(vec![
            record.name.to_string(),
            url,
            credentials,
            record.data_dir.display().to_string(),
        ]);
    }
    if let Some(url) = &run_file.console_url {
        rows.push(vec![
            "console".into(),
            url.clone(),
            pair(facts.s3_credentials),
            "-".into(),
        ]);
    }
    let mut text = super::table(&["SERVICE", "URL", "CREDENTIALS", "DATA"], &rows);
    if run_file
        .services
        .iter()
        .any(|s| s.name == ServiceName::Nats)
    {
        let (name, subjects) = facts.stream;
        text.push_str(&format!(
            "NATS stream {name} on {subjects:?}; monitoring {}\n",
            facts.nats_monitor_url
        ));
    }
    text.push_str(&format!("logs: {}\n", facts.logs.display()));
    text
}
