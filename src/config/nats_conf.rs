//! Reads `ops/nats.conf` (the nats-server configuration format) for the values opsbox needs:
//! client port, monitoring port, and the JetStream block. The file itself is passed to
//! nats-server unchanged.
//!
//! The parser covers the subset of the format documented for nats-server configuration files:
//! `#` and `//` comments, `key: value`, `key = value` and `key value`, blocks `name { ... }` and
//! `name: { ... }`, quoted and unquoted strings, numbers (with size suffixes), booleans, arrays,
//! `$variables` and `include` lines (recorded, not followed). Unknown keys are accepted:
//! nats-server itself validates them.

use std::path::PathBuf;

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

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Variable(String),
    Array(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
struct Node {
    value: Value,
    /// 1-based line where the value starts.
    line: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: String,
    node: Node,
}

/// Look `key` up in a block the way nats-server does: case-insensitively, the last one wins.
fn lookup<'a>(entries: &'a [Entry], key: &str) -> Option<&'a Node> {
    entries
        .iter()
        .rev()
        .find(|entry| entry.key.eq_ignore_ascii_case(key))
        .map(|entry| &entry.node)
}

struct Parser<'a> {
    path: &'a str,
    chars: Vec<char>,
    pos: usize,
    line: usize,
    includes: Vec<String>,
}

impl<'a> Parser<'a> {
    fn error(&self, line: usize, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::Malformed {
            path: self.path.to_string(),
            message: format!("line {line}: {message}"),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn at_comment(&self) -> bool {
        self.peek() == Some('#') || (self.peek() == Some('/') && self.peek_at(1) == Some('/'))
    }

    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    /// Skip spaces and tabs on the current line.
    fn skip_blanks(&mut self) {
        while self
            .peek()
            .is_some_and(|c| c == ' ' || c == '\t' || c == '\r')
        {
            self.bump();
        }
    }

    /// Skip whitespace, newlines, comments and the optional `;`/`,` separators.
    fn skip_between_items(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() || c == ';' || c == ',' => {
                    self.bump();
                }
                Some(_) if self.at_comment() => self.skip_comment(),
                _ => return,
            }
        }
    }

    /// The entries of a block up to its `}` (`open` is the line of its `{`), or of the whole
    /// file when `open` is `None`.
    fn parse_entries(&mut self, open: Option<usize>) -> Result<Vec<Entry>, ConfigError> {
        let mut entries = Vec::new();
        loop {
            self.skip_between_items();
            let line = self.line;
            match self.peek() {
                None => {
                    return match open {
                        Some(open) => Err(self.error(
                            open,
                            "unbalanced braces: the block opened here with '{' is never closed",
                        )),
                        None => Ok(entries),
                    };
                }
                Some('}') => {
                    return match open {
                        Some(_) => {
                            self.bump();
                            Ok(entries)
                        }
                        None => Err(self.error(line, "unbalanced braces: '}' closes no block")),
                    };
                }
                Some(c @ (']' | '{' | '[' | ':' | '=')) => {
                    return Err(self.error(line, format_args!("expected a key, found '{c}'")));
                }
                Some(_) => {}
            }
            let key = self.parse_key()?;
            self.skip_blanks();
            if key.eq_ignore_ascii_case("include") && !matches!(self.peek(), Some(':' | '=')) {
                let node = self.parse_value()?;
                match node.value {
                    Value::Text(file) => self.includes.push(file),
                    _ => return Err(self.error(line, "include needs a file name")),
                }
                self.end_of_item(&key)?;
                continue;
            }
            if matches!(self.peek(), Some(':' | '=')) {
                self.bump();
                self.skip_blanks();
            }
            if matches!(self.peek(), None | Some('\n')) || self.at_comment() {
                return Err(self.error(line, format_args!("{key} has no value")));
            }
            let node = self.parse_value()?;
            self.end_of_item(&key)?;
            entries.push(Entry { key, node });
        }
    }

    /// After a value: only blanks, a comment, or the end of the item may follow on the line.
    fn end_of_item(&mut self, key: &str) -> Result<(), ConfigError> {
        self.skip_blanks();
        match self.peek() {
            None | Some('\n' | ';' | ',' | '}' | ']') => Ok(()),
            Some(_) if self.at_comment() => Ok(()),
            Some(c) => Err(self.error(
                self.line,
                format_args!("unexpected '{c}' after the value of {key}"),
            )),
        }
    }

    fn parse_key(&mut self) -> Result<String, ConfigError> {
        if let Some(quote @ ('"' | '\'')) = self.peek() {
            return self.parse_quoted(quote);
        }
        let mut key = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, ':' | '=' | '{' | '[' | '}' | ']' | ';' | ',') {
                break;
            }
            key.push(c);
            self.bump();
        }
        Ok(key)
    }

    fn parse_quoted(&mut self, quote: char) -> Result<String, ConfigError> {
        let start = self.line;
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(self.error(
                        start,
                        format_args!(
                            "unterminated string: the {quote} opened here is never closed"
                        ),
                    ));
                }
                Some(c) if c == quote => return Ok(text),
                Some('\\') if quote == '"' => match self.bump() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('r') => text.push('\r'),
                    Some(c @ ('"' | '\\')) => text.push(c),
                    Some(c) => {
                        text.push('\\');
                        text.push(c);
                    }
                    None => {
                        return Err(self.error(
                            start,
                            "unterminated string: the \" opened here is never closed",
                        ));
                    }
                },
                Some(c) => text.push(c),
            }
        }
    }

    fn parse_value(&mut self) -> Result<Node, ConfigError> {
        let line = self.line;
        let value = match self.peek() {
            Some('{') => {
                self.bump();
                Value::Map(self.parse_entries(Some(line))?)
            }
            Some('[') => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip_between_items();
                    match self.peek() {
                        None => {
                            return Err(self.error(
                                line,
                                "unbalanced brackets: the array opened here with '[' is never closed",
                            ));
                        }
                        Some(']') => {
                            self.bump();
                            break;
                        }
                        Some(_) => {
                            items.push(self.parse_value()?);
                            self.end_of_item("an array item")?;
                        }
                    }
                }
                Value::Array(items)
            }
            Some(quote @ ('"' | '\'')) => Value::Text(self.parse_quoted(quote)?),
            Some('(') => {
                // A block string: everything up to the closing parenthesis.
                self.bump();
                let mut text = String::new();
                loop {
                    match self.bump() {
                        None => {
                            return Err(self.error(
                                line,
                                "unterminated block string: the '(' opened here is never closed",
                            ));
                        }
                        Some(')') => break,
                        Some(c) => text.push(c),
                    }
                }
                Value::Text(text)
            }
            Some('}') => return Err(self.error(line, "expected a value, found '}'")),
            _ => {
                let mut token = String::new();
                while let Some(c) = self.peek() {
                    if c.is_whitespace() || matches!(c, ',' | ';' | ']' | '}') {
                        break;
                    }
                    token.push(c);
                    self.bump();
                }
                classify(token)
            }
        };
        Ok(Node { value, line })
    }
}

/// An unquoted token as nats-server reads it: boolean, integer (with optional size suffix),
/// float, `$variable`, or a plain string.
fn classify(token: String) -> Value {
    if let Some(name) = token.strip_prefix('$') {
        return Value::Variable(name.to_string());
    }
    match token.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => return Value::Bool(true),
        "false" | "no" | "off" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(integer) = token.parse::<i64>() {
        return Value::Integer(integer);
    }
    let digits_end = token
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(token.len(), |(i, _)| i);
    if digits_end > 0
        && let Ok(number) = token[..digits_end].parse::<i64>()
    {
        let multiplier: Option<i64> = match token[digits_end..].to_ascii_lowercase().as_str() {
            "k" => Some(1_000),
            "kb" | "ki" | "kib" => Some(1 << 10),
            "m" => Some(1_000_000),
            "mb" | "mi" | "mib" => Some(1 << 20),
            "g" => Some(1_000_000_000),
            "gb" | "gi" | "gib" => Some(1 << 30),
            "t" => Some(1_000_000_000_000),
            "tb" | "ti" | "tib" => Some(1 << 40),
            _ => None,
        };
        if let Some(value) = multiplier.and_then(|m| number.checked_mul(m)) {
            return Value::Integer(value);
        }
    }
    if let Ok(float) = token.parse::<f64>() {
        return Value::Float(float);
    }
    Value::Text(token)
}

impl NatsConf {
    /// Parse the nats-server configuration `text`; `path` is only used in error messages.
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let mut parser = Parser {
            path,
            chars: text.chars().collect(),
            pos: 0,
            line: 1,
            includes: Vec::new(),
        };
        let top = parser.parse_entries(None)?;
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
            includes: parser.includes,
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
