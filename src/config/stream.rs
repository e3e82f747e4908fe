//! The `EVENTS` stream definition, read from `ops/setup_streams.sh` (the `nats stream add` line),
//! so the stream opsbox creates and the one the compose setup creates cannot drift.

use std::time::Duration;

use async_nats::jetstream::stream;

use super::ConfigError;
use super::shell_words;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    File,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Limits,
    Interest,
    WorkQueue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    Old,
    New,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    /// Empty means the server's default: the stream name is the only subject.
    pub subjects: Vec<String>,
    pub storage: Storage,
    pub retention: Retention,
    pub discard: Discard,
    pub replicas: usize,
    /// -1 = unlimited
    pub max_msgs: i64,
    /// -1 = unlimited
    pub max_bytes: i64,
    /// zero = unlimited
    pub max_age: Duration,
    /// -1 = unlimited
    pub max_msg_size: i32,
    pub duplicate_window: Duration,
    /// -1 = unlimited
    pub max_msgs_per_subject: i64,
    pub allow_rollup: bool,
    pub deny_delete: bool,
    pub deny_purge: bool,
}

/// The nats CLI's defaults for `nats stream add --defaults`.
const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// `nats stream add` flags that take a value but that opsbox does not model (they keep the
/// server's defaults in opsbox's copy of the stream).
const IGNORED_VALUE_FLAGS: &[&str] = &["--description", "--tag", "--metadata", "--context"];

/// Flags without a value that do not change the stream definition.
const IGNORED_SWITCHES: &[&str] = &["--defaults", "--json", "--trace", "-f", "--force"];

impl StreamSpec {
    /// Parse the first `nats stream add NAME ...` command in the shell script `text`; `path` is
    /// only used in error messages.
    pub fn parse_setup_script(path: &str, text: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_string(),
            message,
        };
        let tokens = shell_words::split(text).map_err(|line| ConfigError::Malformed {
            path: path.to_string(),
            message: format!("line {line}: unterminated quote"),
        })?;
        let commands = shell_words::commands(&tokens);
        let (line, args) = commands
            .iter()
            .find_map(|(line, words)| {
                let at = words
                    .windows(3)
                    .position(|w| w[0] == "nats" && w[1] == "stream" && w[2] == "add")?;
                Some((*line, &words[at + 3..]))
            })
            .ok_or_else(|| invalid("no `nats stream add NAME ...` command found".to_string()))?;
        let invalid_flag = |flag: &str, value: &str, expected: &str| {
            invalid(format!(
                "line {line}: `nats stream add` has {flag} {value:?}; expected {expected}"
            ))
        };

        let mut name = None;
        let mut spec = StreamSpec {
            name: String::new(),
            subjects: Vec::new(),
            storage: Storage::File,
            retention: Retention::Limits,
            discard: Discard::Old,
            replicas: 1,
            max_msgs: -1,
            max_bytes: -1,
            max_age: Duration::ZERO,
            max_msg_size: -1,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_msgs_per_subject: -1,
            allow_rollup: false,
            deny_delete: false,
            deny_purge: false,
        };

        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if !arg.starts_with('-') {
                if name.is_some() {
                    return Err(invalid(format!(
                        "line {line}: `nats stream add` has a second stream name {arg:?}"
                    )));
                }
                name = Some(arg.clone());
                continue;
            }
            let switch = match arg.as_str() {
                "--allow-rollup" => Some((&mut spec.allow_rollup, true)),
                "--no-allow-rollup" => Some((&mut spec.allow_rollup, false)),
                "--deny-delete" => Some((&mut spec.deny_delete, true)),
                "--no-deny-delete" => Some((&mut spec.deny_delete, false)),
                "--deny-purge" => Some((&mut spec.deny_purge, true)),
                "--no-deny-purge" => Some((&mut spec.deny_purge, false)),
                _ => None,
            };
            if let Some((field, value)) = switch {
                *field = value;
                continue;
            }
            if IGNORED_SWITCHES.contains(&arg.as_str()) {
                continue;
            }
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) => (flag, value.to_string()),
                None => {
                    let value = args.next().ok_or_else(|| {
                        invalid(format!("line {line}: `nats stream add` {arg} has no value"))
                    })?;
                    (arg.as_str(), value.clone())
                }
            };
            match flag {
                "--subjects" | "--subject" => spec.subjects.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                "--storage" => {
                    spec.storage = match value.to_ascii_lowercase().as_str() {
                        "file" | "f" => Storage::File,
                        "memory" | "m" => Storage::Memory,
                        _ => return Err(invalid_flag(flag, &value, "file or memory")),
                    }
                }
                "--retention" => {
                    spec.retention = match value.to_ascii_lowercase().as_str() {
                        "limits" | "limit" => Retention::Limits,
                        "interest" => Retention::Interest,
                        "work" | "workq" | "workqueue" => Retention::WorkQueue,
                        _ => return Err(invalid_flag(flag, &value, "limits, interest or work")),
                    }
                }
                "--discard" => {
                    spec.discard = match value.to_ascii_lowercase().as_str() {
                        "old" => Discard::Old,
                        "new" => Discard::New,
                        _ => return Err(invalid_flag(flag, &value, "old or new")),
                    }
                }
                "--replicas" => {
                    spec.replicas = value
                        .parse()
                        .ok()
                        .filter(|r| (1..=5).contains(r))
                        .ok_or_else(|| invalid_flag(flag, &value, "a number from 1 to 5"))?;
                }
                "--max-msgs" => {
                    spec.max_msgs = parse_limit(&value)
                        .ok_or_else(|| invalid_flag(flag, &value, "-1 or a count"))?;
                }
                "--max-msgs-per-subject" => {
                    spec.max_msgs_per_subject = parse_limit(&value)
                        .ok_or_else(|| invalid_flag(flag, &value, "-1 or a count"))?;
                }
                "--max-bytes" => {
                    spec.max_bytes = parse_size(&value)
                        .ok_or_else(|| invalid_flag(flag, &value, "-1 or a size like 1GB"))?;
                }
                "--max-msg-size" => {
                    spec.max_msg_size = parse_size(&value)
                        .and_then(|size| i32::try_from(size).ok())
                        .ok_or_else(|| invalid_flag(flag, &value, "-1 or a size like 1MB"))?;
                }
                "--max-age" => {
                    spec.max_age = parse_duration(&value).ok_or_else(|| {
                        invalid_flag(flag, &value, "0 or a duration like 24h, 30d, 1y")
                    })?;
                }
                "--dupe-window" => {
                    spec.duplicate_window = parse_duration(&value)
                        .ok_or_else(|| invalid_flag(flag, &value, "a duration like 2m"))?;
                }
                f if IGNORED_VALUE_FLAGS.contains(&f) => {}
                _ => {
                    return Err(invalid(format!(
                        "line {line}: `nats stream add` has the flag {flag}, which opsbox does not \
                         know; add it to src/config/stream.rs so both setups stay the same"
                    )));
                }
            }
        }
        spec.name = name
            .ok_or_else(|| invalid(format!("line {line}: `nats stream add` has no stream name")))?;
        Ok(spec)
    }

    /// The async-nats stream configuration for this spec.
    pub fn to_config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            storage: match self.storage {
                Storage::File => stream::StorageType::File,
                Storage::Memory => stream::StorageType::Memory,
            },
            retention: match self.retention {
                Retention::Limits => stream::RetentionPolicy::Limits,
                Retention::Interest => stream::RetentionPolicy::Interest,
                Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
            },
            discard: match self.discard {
                Discard::Old => stream::DiscardPolicy::Old,
                Discard::New => stream::DiscardPolicy::New,
            },
            num_replicas: self.replicas,
            max_messages: self.max_msgs,
            max_bytes: self.max_bytes,
            max_age: self.max_age,
            max_message_size: self.max_msg_size,
            duplicate_window: self.duplicate_window,
            max_messages_per_subject: self.max_msgs_per_subject,
            // What the nats CLI sends for "unlimited".
            max_consumers: -1,
            allow_rollup: self.allow_rollup,
            deny_delete: self.deny_delete,
            deny_purge: self.deny_purge,
            ..Default::default()
        }
    }
}

/// `-1` (unlimited) or a non-negative count.
fn parse_limit(value: &str) -> Option<i64> {
    let limit: i64 = value.trim().parse().ok()?;
    (limit >= -1).then_some(limit)
}

/// `-1` or a size with an optional binary unit, as the nats CLI reads them: `512`, `1K`, `1KB`,
/// `1KiB`, `10MB`, `1G`, `2TB`.
fn parse_size(value: &str) -> Option<i64> {
    let value = value.trim();
    if value == "-1" {
        return Some(-1);
    }
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let number: i64 = value[..digits].parse().ok()?;
    let power = match value[digits..].to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 1,
        "M" | "MB" | "MIB" => 2,
        "G" | "GB" | "GIB" => 3,
        "T" | "TB" | "TIB" => 4,
        "P" | "PB" | "PIB" => 5,
        _ => return None,
    };
    number.checked_mul(1024_i64.checked_pow(power)?)
}

/// `0` or a sequence of number+unit, as the nats CLI reads durations: `ns`, `us`, `ms`, `s`, `m`,
/// `h`, `d`, `w`, `M` (30 days), `y` (365 days), e.g. `2m`, `24h`, `30d`, `1y`, `1h30m`.
pub(crate) fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value == "0" {
        return Some(Duration::ZERO);
    }
    if value.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        const DAY: u64 = 24 * 60 * 60;
        let part = match unit {
            "ns" => Duration::from_nanos(number),
            "us" | "µs" => Duration::from_micros(number),
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60)?),
            "h" => Duration::from_secs(number.checked_mul(60 * 60)?),
            "d" => Duration::from_secs(number.checked_mul(DAY)?),
            "w" => Duration::from_secs(number.checked_mul(7 * DAY)?),
            "M" => Duration::from_secs(number.checked_mul(30 * DAY)?),
            "y" => Duration::from_secs(number.checked_mul(365 * DAY)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "ops/setup_streams.sh";

    fn parse(text: &str) -> Result<StreamSpec, ConfigError> {
        StreamSpec::parse_setup_script(PATH, text)
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(spec) => panic!("expected an error, got {spec:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn the_real_setup_script_gives_the_events_stream() {
        let spec =
            parse(crate::config::DEFAULT_SETUP_STREAMS).expect("ops/setup_streams.sh parses");
        assert_eq!(
            spec,
            StreamSpec {
                name: "EVENTS".into(),
                subjects: vec!["enterprise.>".into()],
                storage: Storage::File,
                retention: Retention::Limits,
                discard: Discard::Old,
                replicas: 1,
                max_msgs: -1,
                max_bytes: -1,
                max_age: Duration::ZERO,
                max_msg_size: -1,
                duplicate_window: Duration::from_secs(120),
                max_msgs_per_subject: -1,
                allow_rollup: false,
                deny_delete: false,
                deny_purge: false,
            }
        );
        let config = spec.to_config();
        assert_eq!(config.name, "EVENTS");
        assert_eq!(config.subjects, vec!["enterprise.>".to_string()]);
        assert_eq!(config.storage, stream::StorageType::File);
        assert_eq!(config.retention, stream::RetentionPolicy::Limits);
        assert_eq!(config.discard, stream::DiscardPolicy::Old);
        assert_eq!(config.num_replicas, 1);
        assert_eq!(config.max_messages, -1);
        assert_eq!(config.max_bytes, -1);
        assert_eq!(config.max_age, Duration::ZERO);
        assert_eq!(config.max_message_size, -1);
        assert_eq!(config.max_messages_per_subject, -1);
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
    }

    #[test]
    fn flags_in_every_spelling_and_defaults() {
        let spec = parse(
            "#!/bin/sh\nnats stream add --subjects a.* --subject='b.>,c' \\\n  --storage=memory \
             --retention work --discard \"new\" --replicas=3 --max-age 1y --max-bytes 1GB \
             --max-msg-size=1M --dupe-window 30s --deny-delete ORDERS\n",
        )
        .expect("parses");
        assert_eq!(spec.name, "ORDERS");
        assert_eq!(spec.subjects, vec!["a.*", "b.>", "c"]);
        assert_eq!(spec.storage, Storage::Memory);
        assert_eq!(spec.retention, Retention::WorkQueue);
        assert_eq!(spec.discard, Discard::New);
        assert_eq!(spec.replicas, 3);
        assert_eq!(spec.max_age, Duration::from_secs(365 * 24 * 3600));
        assert_eq!(spec.max_bytes, 1 << 30);
        assert_eq!(spec.max_msg_size, 1 << 20);
        assert_eq!(spec.duplicate_window, Duration::from_secs(30));
        assert!(spec.deny_delete);
        // Not given: the nats CLI defaults.
        assert_eq!(spec.max_msgs, -1);
        assert_eq!(spec.max_msgs_per_subject, -1);
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_size("-1"), Some(-1));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("2KiB"), Some(2048));
        assert_eq!(parse_size("1Q"), None);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        assert_eq!(
            error("echo hello\n"),
            "ops/setup_streams.sh: no `nats stream add NAME ...` command found"
        );
        assert_eq!(
            error("set -eu\nnats stream add EVENTS \\\n  --max-age forever\n"),
            "ops/setup_streams.sh: line 2: `nats stream add` has --max-age \"forever\"; \
             expected 0 or a duration like 24h, 30d, 1y"
        );
        assert_eq!(
            error("nats stream add EVENTS --storage disk"),
            "ops/setup_streams.sh: line 1: `nats stream add` has --storage \"disk\"; \
             expected file or memory"
        );
        assert!(
            error("nats stream add EVENTS --mirror OTHER").contains("the flag --mirror"),
            "unknown flags are reported"
        );
        assert_eq!(
            error("nats stream add --subjects a"),
            "ops/setup_streams.sh: line 1: `nats stream add` has no stream name"
        );
        assert_eq!(
            error("nats stream add 'EVENTS\n"),
            "ops/setup_streams.sh is malformed: line 1: unterminated quote"
        );
    }
}
