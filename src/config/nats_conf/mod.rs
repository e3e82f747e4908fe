//! Reads `ops/nats.conf` (the nats-server configuration format) for the values opsbox needs:
//! client port, monitoring port, and the JetStream block. The file itself is passed to
//! nats-server unchanged.
//! The generic parser is `parser.rs`.

mod parser;

use std::path::PathBuf;

use self::parser::{Document, Node, Value, lookup};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConf {
    /// Where the file lives on disk; `None` for the compiled-in default.
    pub path: Option<PathBuf>,
    /// The file's full text.
    pub text: String,
    pub port: u16,
    pub http_port: Option<u16>,
    pub jetstream: bool,
    pub store_dir: Option<String>,
    /// The files named by `include` lines, as written (opsbox does not follow them).
    pub includes: Vec<String>,
}

/// The client port nats-server uses when the file sets none.
pub const DEFAULT_PORT: u16 = 4222;

impl NatsConf {
    /// Parse the nats-server configuration `text`; `path` is only used in error messages.
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let Document { top, includes } = parser::parse(path, text)?;
        let error = |line: usize, message: String| ConfigError::Malformed {
            path: path.to_string(),
            message: format!("line {line}: {message}"),
        };
        // `$NAME` refers to a top-level assignment (nats-server also looks at the environment,
        // which would make opsbox's view depend on the shell it runs in).
        let resolve = |node: &'_ Node, key: &str| -> Result<Node, ConfigError> {
            match &node.value {
                Value::Variable(name) => top
                    .iter()
                    .rev()
                    .find(|entry| entry.key == *name)
                    .map(|entry| &entry.node)
                    .filter(|target| !matches!(target.value, Value::Variable(_)))
                    .map(|target| Node {
                        value: target.value.clone(),
                        line: node.line,
                    })
                    .ok_or_else(|| {
                        error(
                            node.line,
                            format!("{key} refers to ${name}, which is not set in the file"),
                        )
                    }),
                _ => Ok(node.clone()),
            }
        };
        let port_of = |node: &Node, key: &str| -> Result<u16, ConfigError> {
            let node = resolve(node, key)?;
            let port = match &node.value {
                Value::Integer(port) => Some(*port),
                // `host:port`, as in `http: localhost:8222` or `listen: 0.0.0.0:4222`.
                Value::Text(text) => text
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse::<i64>().ok()),
                _ => None,
            };
            port.and_then(|port| u16::try_from(port).ok())
                .filter(|&port| port != 0)
                .ok_or_else(|| {
                    error(
                        node.line,
                        format!(
                            "{key} must be a port number from 1 to 65535, found {}",
                            describe(&node.value)
                        ),
                    )
                })
        };

        let port = match (lookup(&top, "port"), lookup(&top, "listen")) {
            (Some(node), _) => port_of(node, "port")?,
            (None, Some(node)) => port_of(node, "listen")?,
            (None, None) => DEFAULT_PORT,
        };
        let http_port = ["http_port", "monitor_port", "http"]
            .iter()
            .find_map(|key| lookup(&top, key).map(|node| port_of(node, key)))
            .transpose()?;

        let mut store_dir = None;
        let jetstream = match lookup(&top, "jetstream") {
            None => false,
            Some(node) => match resolve(node, "jetstream")?.value {
                Value::Bool(enabled) => enabled,
                Value::Text(text)
                    if matches!(text.to_ascii_lowercase().as_str(), "enabled" | "enable") =>
                {
                    true
                }
                Value::Text(text)
                    if matches!(text.to_ascii_lowercase().as_str(), "disabled" | "disable") =>
                {
                    false
                }
                Value::Map(block) => {
                    store_dir = ["store_dir", "storedir", "store"]
                        .iter()
                        .find_map(|key| lookup(&block, key).map(|node| (key, node)))
                        .map(|(key, node)| match resolve(node, key)?.value {
                            Value::Text(dir) => Ok(dir),
                            other => Err(error(
                                node.line,
                                format!(
                                    "jetstream {key} must be a path, found {}",
                                    describe(&other)
                                ),
                            )),
                        })
                        .transpose()?;
                    match lookup(&block, "enabled").map(|node| &node.value) {
                        Some(Value::Bool(enabled)) => *enabled,
                        _ => true,
                    }
                }
                other => {
                    return Err(error(
                        node.line,
                        format!(
                            "jetstream must be a block, true/false or enabled/disabled, found {}",
                            describe(&other)
                        ),
                    ));
                }
            },
        };
        if store_dir.is_none()
            && let Some(node) = lookup(&top, "store_dir")
            && let Value::Text(dir) = resolve(node, "store_dir")?.value
        {
            store_dir = Some(dir);
        }

        Ok(Self {
            path: None,
            text: text.to_string(),
            port,
            http_port,
            jetstream,
            store_dir,
            includes,
        })
    }
}

/// A value as an error message shows it.
fn describe(value: &Value) -> String {
    match value {
        Value::Text(text) => format!("{text:?}"),
        Value::Integer(integer) => integer.to_string(),
        Value::Float(float) => float.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Variable(name) => format!("${name}"),
        Value::Array(_) => "an array".to_string(),
        Value::Map(_) => "a block".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "ops/nats.conf";

    fn parse(text: &str) -> NatsConf {
        match NatsConf::parse(PATH, text) {
            Ok(conf) => conf,
            Err(error) => panic!("{text:?} should parse: {error}"),
        }
    }

    fn error(text: &str) -> String {
        match NatsConf::parse(PATH, text) {
            Ok(conf) => panic!("expected an error, got {conf:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn the_real_nats_conf() {
        let conf = parse(crate::config::DEFAULT_NATS_CONF);
        assert_eq!(conf.port, 4222);
        assert_eq!(conf.http_port, Some(8222));
        assert!(conf.jetstream);
        assert_eq!(conf.store_dir.as_deref(), Some("/data/jetstream"));
        assert!(conf.includes.is_empty());
        assert_eq!(conf.text, crate::config::DEFAULT_NATS_CONF);
    }

    #[test]
    fn separators_blocks_comments_and_values() {
        let conf = parse(
            "// a comment\nport = 4333 # trailing\nserver_name my-server\n\
             include ./accounts.conf\ninclude \"tls.conf\";\n\
             cluster: {\n  name: c1\n  routes: [\n    nats://a:6222, nats://b:6222\n    \
             nats://c:6222\n  ]\n}\nmax_payload: 1MB\nping_interval: \"2m\"\ndebug: true\n\
             authorization { users = [ {user: a, password: 'p#w'} ] }\n\
             jetstream: {store_dir: '/var/js', max_mem: 1G}\n",
        );
        assert_eq!(conf.port, 4333);
        assert_eq!(conf.http_port, None);
        assert!(conf.jetstream);
        assert_eq!(conf.store_dir.as_deref(), Some("/var/js"));
        assert_eq!(conf.includes, vec!["./accounts.conf", "tls.conf"]);
    }

    #[test]
    fn defaults_and_alternative_keys() {
        let conf = parse("");
        assert_eq!(
            (conf.port, conf.http_port, conf.jetstream, conf.store_dir),
            (4222, None, false, None)
        );
        assert_eq!(parse("http: localhost:8333").http_port, Some(8333));
        assert_eq!(parse("http: 8334").http_port, Some(8334));
        assert_eq!(parse("monitor_port 8335").http_port, Some(8335));
        assert_eq!(parse("listen: 0.0.0.0:4333").port, 4333);
        assert_eq!(parse("client_port = 4334\nport: $client_port").port, 4334);
        let enabled = parse("jetstream: enabled\nstore_dir: /srv/js");
        assert!(enabled.jetstream);
        assert_eq!(enabled.store_dir.as_deref(), Some("/srv/js"));
        assert!(parse("jetstream: true").jetstream);
        assert!(!parse("jetstream: disabled").jetstream);
        assert!(!parse("jetstream { enabled: false }").jetstream);
        assert!(parse("jetstream {}").jetstream);
    }

    #[test]
    fn malformed_files_name_the_file_and_line() {
        assert_eq!(
            error("port: 4222\njetstream {\n  store_dir: \"/data\"\n"),
            "ops/nats.conf is malformed: line 2: unbalanced braces: the block opened here with \
             '{' is never closed"
        );
        assert_eq!(
            error("port: 4222\n}\n"),
            "ops/nats.conf is malformed: line 2: unbalanced braces: '}' closes no block"
        );
        assert_eq!(
            error("port: 4222\njetstream {\n  store_dir: \"/data\n}\n"),
            "ops/nats.conf is malformed: line 3: unterminated string: the \" opened here is never \
             closed"
        );
        assert_eq!(
            error("# c\nport: abc\n"),
            "ops/nats.conf is malformed: line 2: port must be a port number from 1 to 65535, \
             found \"abc\""
        );
        assert_eq!(
            error("port: 70000"),
            "ops/nats.conf is malformed: line 1: port must be a port number from 1 to 65535, \
             found 70000"
        );
        assert_eq!(
            error("\n\nhttp_port: 0"),
            "ops/nats.conf is malformed: line 3: http_port must be a port number from 1 to \
             65535, found 0"
        );
        assert_eq!(
            error("port: $NOPE"),
            "ops/nats.conf is malformed: line 1: port refers to $NOPE, which is not set in the \
             file"
        );
        assert_eq!(
            error("routes: [a, b\n"),
            "ops/nats.conf is malformed: line 1: unbalanced brackets: the array opened here with \
             '[' is never closed"
        );
        assert_eq!(
            error("port:\n"),
            "ops/nats.conf is malformed: line 1: port has no value"
        );
        assert_eq!(
            error("port: 4222 4223\n"),
            "ops/nats.conf is malformed: line 1: unexpected '4' after the value of port"
        );
    }
}
