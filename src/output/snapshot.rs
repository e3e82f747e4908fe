//! What snapshot commands print: a byte bar for saves, restores, exports and imports on a
//! terminal, one summary line (or JSON on stdout) when done, and the `snapshot ls` table.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

/// What is shown of a snapshot (src/snapshot fills it from its manifest).
#[derive(Debug, Clone)]
pub struct SnapshotSummary {
    pub name: String,
    pub created: String,
    pub opsbox_version: String,
    pub postgres_major: Option<u32>,
    pub nats_server_version: Option<String>,
    pub files: u64,
    pub bytes: u64,
    /// (service, files, bytes)
    pub services: Vec<(String, u64, u64)>,
}

/// A bar on stderr when it is a terminal (and not --quiet); nothing otherwise.
#[derive(Default)]
pub struct SnapshotProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl SnapshotProgress {
    pub fn begin(&self, label: &str, total: u64) {
        if !super::interactive() || super::style().quiet {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.inc(bytes);
        }
    }

    pub fn end(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

/// The JSON form of a snapshot (without its file list).
pub fn summary_json(manifest: &SnapshotSummary) -> serde_json::Value {
    json!({
        "name": manifest.name,
        "created": manifest.created,
        "opsbox_version": manifest.opsbox_version,
        "postgres_major": manifest.postgres_major,
        "nats_server_version": manifest.nats_server_version,
        "files": manifest.files,
        "bytes": manifest.bytes,
        "services": manifest.services.iter().map(|(service, files, bytes)| json!({
            "service": service,
            "files": files,
            "bytes": bytes,
        })).collect::<Vec<_>>(),
    })
}

/// After a save, restore, export or import: one line on stderr, or JSON on stdout.
pub fn done(
    verb: &str,
    manifest: &SnapshotSummary,
    took: Duration,
    extra: Option<(&str, String)>,
    paused_ms: Option<u64>,
    json: bool,
) {
    if json {
        let mut value = summary_json(manifest);
        value["action"] = json!(verb);
        value["seconds"] = json!(took.as_secs_f64());
        if let Some((key, text)) = &extra {
            value[*key] = json!(text);
        }
        value["running"] = json!(paused_ms.is_some());
        if let Some(paused) = paused_ms {
            value["paused_ms"] = json!(paused);
        }
        super::data(&value.to_string());
        return;
    }
    let services: Vec<String> = manifest.services.iter().map(|s| s.0.clone()).collect();
    super::info(&format!(
        "{verb} {}: {} ({} files, {}) in {:.2} s{}{}",
        manifest.name,
        if services.is_empty() {
            "no data".to_string()
        } else {
            services.join(", ")
        },
        manifest.files,
        HumanBytes(manifest.bytes),
        took.as_secs_f64(),
        extra
            .map(|(key, text)| format!("; {key}: {text}"))
            .unwrap_or_default(),
        paused_ms
            .map(|paused| format!("; the stack kept running, its clients held for {paused} ms"))
            .unwrap_or_default()
    ));
}

/// What a save of a running stack took again while the stack held still.
pub fn caught_up(files: u64, bytes: u64) {
    super::info(&format!(
        "took again while the stack held still: {files} files, {}",
        HumanBytes(bytes)
    ));
}

/// `snapshot ls`: a table, or JSON on stdout.
pub fn list(snapshots: &[(String, Result<SnapshotSummary, String>)], json: bool) {
    if json {
        let items: Vec<serde_json::Value> = snapshots
            .iter()
            .map(|(name, manifest)| match manifest {
                Ok(manifest) => summary_json(manifest),
                Err(error) => json!({"name": name, "error": error}),
            })
            .collect();
        super::data(&serde_json::Value::Array(items).to_string());
        return;
    }
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|(name, manifest)| match manifest {
            Ok(m) => vec![
                name.clone(),
                m.created.clone(),
                HumanBytes(m.bytes).to_string(),
                m.services
                    .iter()
                    .map(|s| s.0.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                m.postgres_major.map_or("-".into(), |v| v.to_string()),
                m.nats_server_version.clone().unwrap_or_else(|| "-".into()),
            ],
            Err(error) => vec![name.clone(), format!("damaged: {error}")],
        })
        .collect();
    if rows.is_empty() {
        super::info("no snapshots (save one with `opsbox snapshot save NAME`)");
        return;
    }
    super::data(&super::table(
        &["NAME", "CREATED", "SIZE", "SERVICES", "POSTGRES", "NATS"],
        &rows,
    ));
}
