//! nats-server: the wrapper configuration around the project's nats.conf, readiness, and the
//! EVENTS stream.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use super::{ServiceName, probe};
use crate::config::StreamSpec;
use crate::error::{Error, Result};
use crate::fetch::NatsBinary;
use crate::settings::Settings;
use crate::supervisor::{ChildSpec, RunningChild, log_tail};

/// nats-server as opsbox runs it.
#[derive(Debug, Clone)]
pub struct NatsService {
    pub binary: NatsBinary,
    /// The generated configuration that includes the project's nats.conf.
    pub wrapper: PathBuf,
    pub host: IpAddr,
    pub client_host: String,
    pub port: u16,
    pub monitor_port: u16,
    pub stream: StreamSpec,
    pub log: PathBuf,
    pub store_dir: PathBuf,
}

impl NatsService {
    /// Write the wrapper configuration and create the store directory.
    pub fn prepare(settings: &Settings, binary: NatsBinary) -> Result<Self> {
        let state = &settings.state;
        let dir = state.nats();
        let store_dir = state.jetstream();
        fs_err::create_dir_all(&store_dir)
            .map_err(|e| Error::io(format!("cannot create {}", store_dir.display()), e))?;
        let conf = &settings.ops.nats_conf;
        // The project's file is used unchanged. For the compiled-in default, a copy is written
        // next to the wrapper so there is a file to include.
        let included = match &conf.path {
            Some(path) => std::path::absolute(path).unwrap_or_else(|_| path.clone()),
            None => {
                let copy = dir.join("nats.conf");
                fs_err::write(&copy, &conf.text)
                    .map_err(|e| Error::io(format!("cannot write {}", copy.display()), e))?;
                copy
            }
        };
        let wrapper = dir.join("opsbox-nats.conf");
        let text = wrapper_config(&include_path(&dir, &included), &conf.text, &store_dir);
        crate::state::write_atomically(&wrapper, text.as_bytes())
            .map_err(|e| Error::io(format!("cannot write {}", wrapper.display()), e))?;
        Ok(Self {
            binary,
            wrapper,
            host: settings.host,
            client_host: settings.client_host(),
            port: settings.nats.port,
            monitor_port: settings.nats.monitor_port,
            stream: settings.ops.stream.clone(),
            log: state.log(Some(ServiceName::Nats)),
            store_dir,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.client_host, self.port)
    }

    pub fn monitor_url(&self) -> String {
        format!("http://{}:{}", self.client_host, self.monitor_port)
    }

    fn probe_addr(&self, port: u16) -> SocketAddr {
        let ip = if self.host.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.host
        };
        SocketAddr::new(ip, port)
    }

    /// The command line: the wrapper configuration, and the listen address and ports as flags
    /// (flags override the file; the monitor follows the client listen address).
    pub fn child_spec(&self) -> ChildSpec {
        ChildSpec::new("nats-server", &self.binary.path, self.log.clone()).args([
            "-c".into(),
            self.wrapper.clone().into_os_string(),
            "-a".into(),
            self.host.to_string().into(),
            "-p".into(),
            self.port.to_string().into(),
            "-m".into(),
            self.monitor_port.to_string().into(),
        ])
    }

    /// Ready = 200 from /healthz?js-enabled-only=true on the monitor port and the client port
    /// accepting (healthz can answer a moment before the client port does).
    pub async fn wait_ready(&self, child: &mut RunningChild, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let monitor = self.probe_addr(self.monitor_port);
        let client = self.probe_addr(self.port);
        loop {
            if let Some(status) = child.try_exited() {
                return Err(self.not_ready(
                    started,
                    format!("nats-server exited during start-up ({status})"),
                ));
            }
            // The client port first: it opens after JetStream is up, so the health check that
            // follows passes at once instead of logging a failed check in nats-server's log.
            if probe::tcp(client).await
                && probe::http_status(monitor, "/healthz?js-enabled-only=true").await == Some(200)
            {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(self.not_ready(
                    started,
                    format!("no healthy answer from {monitor}/healthz and {client}"),
                ));
            }
            tokio::time::sleep(probe::POLL_INTERVAL).await;
        }
    }

    fn not_ready(&self, started: Instant, reason: String) -> Error {
        Error::NotReady {
            service: ServiceName::Nats,
            waited_secs: started.elapsed().as_secs(),
            reason,
            log: Some(self.log.clone()),
            log_tail: log_tail(&self.log, 10),
        }
    }

    /// Create the stream from ops/setup_streams.sh, or check that the existing one matches.
    /// An existing stream with other subjects or storage is reported, never deleted.
    pub async fn ensure_stream(&self) -> Result<()> {
        let fail = |message: String| Error::Service {
            service: ServiceName::Nats,
            message,
            hint: None,
        };
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(format!("nats://{}", self.probe_addr(self.port)))
            .await
            .map_err(|e| fail(format!("cannot connect to {}: {e}", self.url())))?;
        let js = jetstream::new(client);
        let wanted = self.stream.to_config();
        match js.get_stream(&self.stream.name).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .map_err(|e| fail(format!("cannot read stream {}: {e}", self.stream.name)))?;
                let have = &info.config;
                let mut have_subjects = have.subjects.clone();
                let mut want_subjects = wanted.subjects.clone();
                have_subjects.sort();
                want_subjects.sort();
                if have_subjects != want_subjects || have.storage != wanted.storage {
                    return Err(Error::Service {
                        service: ServiceName::Nats,
                        message: format!(
                            "stream {} exists with subjects {:?} and {:?} storage, but ops/setup_streams.sh defines subjects {:?} and {:?} storage",
                            self.stream.name,
                            have.subjects,
                            have.storage,
                            wanted.subjects,
                            wanted.storage
                        ),
                        hint: Some(format!(
                            "opsbox never deletes stored messages: change it yourself (`nats stream edit {}`), or start from empty data with `opsbox down -v`",
                            self.stream.name
                        )),
                    });
                }
                Ok(())
            }
            Err(_) => {
                js.get_or_create_stream(wanted)
                    .await
                    .map_err(|e| fail(format!("cannot create stream {}: {e}", self.stream.name)))?;
                Ok(())
            }
        }
    }
}

/// nats-server resolves `include` relative to the including file's directory, even for an
/// absolute path, so the path is written relative to `from`.
fn include_path(from: &std::path::Path, target: &std::path::Path) -> PathBuf {
    let from = from.canonicalize().unwrap_or_else(|_| from.to_path_buf());
    let target = target
        .canonicalize()
        .unwrap_or_else(|_| target.to_path_buf());
    let from_parts: Vec<_> = from.components().collect();
    let target_parts: Vec<_> = target.components().collect();
    let common = from_parts
        .iter()
        .zip(&target_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative = PathBuf::new();
    for _ in common..from_parts.len() {
        relative.push("..");
    }
    for part in &target_parts[common..] {
        relative.push(part);
    }
    relative
}

/// The wrapper: include the project's file, then a jetstream block that keeps every setting of
/// the project's block but points store_dir at opsbox's data and syncs every write.
///
/// A later `jetstream { }` block replaces an earlier one as a whole in nats-server's parser (it
/// does not merge), and `-sd` is refused when the file sets store_dir, so the project's other
/// JetStream settings are carried over line by line.
fn wrapper_config(
    included: &std::path::Path,
    project_text: &str,
    store_dir: &std::path::Path,
) -> String {
    let mut kept = String::new();
    if let Some(body) = jetstream_block_body(project_text) {
        for line in body.lines() {
            let key = line
                .trim_start()
                .split(|c: char| c == ':' || c == '=' || c.is_whitespace())
                .next()
                .unwrap_or("");
            if !line.trim().is_empty()
                && key != "store_dir"
                && key != "sync_interval"
                && key != "sync"
            {
                kept.push_str("  ");
                kept.push_str(line.trim());
                kept.push('\n');
            }
        }
    }
    format!(
        "# Generated by opsbox on every start; edit {included} instead.\n\
         include {included:?}\n\
         \n\
         jetstream {{\n\
         {kept}  store_dir: {store:?}\n\
         \x20 # Every acknowledged message is on disk before the ack (see docs/reliability.md).\n\
         \x20 sync_interval: always\n\
         }}\n",
        included = included.display().to_string(),
        store = store_dir.display().to_string(),
    )
}

/// The text between the braces of the top-level `jetstream { ... }` block, if there is one.
fn jetstream_block_body(text: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut in_string: Option<char> = None;
    let mut start = None;
    let mut word = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(quote) = in_string {
            if c == quote {
                in_string = None;
            }
            i += 1;
            continue;
        }
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '"' | '\'' => in_string = Some(c),
            '{' => {
                if depth == 0 && word == "jetstream" {
                    start = Some(i + 1);
                }
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0
                    && let Some(s) = start
                {
                    return Some(chars[s..i].iter().collect());
                }
            }
            c if depth == 0 && (c.is_alphanumeric() || c == '_') => {
                let previous = if i > 0 { chars[i - 1] } else { ' ' };
                if !(previous.is_alphanumeric() || previous == '_') {
                    word.clear();
                }
                word.push(c);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_keeps_the_project_jetstream_settings_and_overrides_store_dir() {
        let project = "port: 4222\n# jetstream { no }\njetstream {\n  store_dir: \"/data/jetstream\"\n  max_file_store: 1G\n}\n";
        let text = wrapper_config(
            std::path::Path::new("/p/ops/nats.conf"),
            project,
            std::path::Path::new("/s/jetstream"),
        );
        assert!(text.contains("include \"/p/ops/nats.conf\""), "{text}");
        assert!(text.contains("max_file_store: 1G"), "{text}");
        assert!(text.contains("store_dir: \"/s/jetstream\""), "{text}");
        assert!(!text.contains("/data/jetstream"), "{text}");
        assert!(text.contains("sync_interval: always"), "{text}");
    }

    #[test]
    fn include_path_is_relative_to_the_wrapper_directory() {
        assert_eq!(
            include_path(
                std::path::Path::new("/nonexistent/data/nats"),
                std::path::Path::new("/nonexistent/repo/ops/nats.conf")
            ),
            PathBuf::from("../../repo/ops/nats.conf")
        );
    }

    #[test]
    fn block_body_is_found_with_colon_syntax_and_absent_without_a_block() {
        assert_eq!(
            jetstream_block_body("jetstream: { max_mem: 1G }").as_deref(),
            Some(" max_mem: 1G ")
        );
        assert_eq!(jetstream_block_body("jetstream: enabled\n"), None);
        assert_eq!(jetstream_block_body("cluster { name: x }\n"), None);
    }
}
