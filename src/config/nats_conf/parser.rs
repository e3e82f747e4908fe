//! The generic part of reading a nats-server configuration file: text to a tree of blocks,
//! arrays and values. What opsbox takes from the tree is in `super`.
//!
//! The subset of the format documented for nats-server configuration files: `#` and `//`
//! comments, `key: value`, `key = value` and `key value`, blocks `name { ... }` and
//! `name: { ... }`, quoted and unquoted strings, numbers (with size suffixes), booleans, arrays,
//! `$variables` and `include` lines (recorded, not followed). Unknown keys are accepted:
//! nats-server itself validates them.

use super::ConfigError;

/// A parsed file: its top-level entries and the files its `include` lines name.
pub struct Document {
    pub top: Vec<Entry>,
    pub includes: Vec<String>,
}

/// Parse `text`; `path` is only used in error messages.
pub fn parse(path: &str, text: &str) -> Result<Document, ConfigError> {
    let mut parser = Parser {
        path,
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        includes: Vec::new(),
    };
    let top = parser.parse_entries(None)?;
    Ok(Document {
        top,
        includes: parser.includes,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Variable(String),
    Array(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// 1-based line where the value starts.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub node: Node,
}

/// Look `key` up in a block the way nats-server does: case-insensitively, the last one wins.
pub fn lookup<'a>(entries: &'a [Entry], key: &str) -> Option<&'a Node> {
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
