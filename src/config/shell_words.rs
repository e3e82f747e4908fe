//! A small POSIX-shell word splitter, enough to read commands out of `ops/setup_streams.sh` and
//! compose `entrypoint`/`command` values: quotes, backslash escapes, line continuations,
//! comments and the command separators (`;`, `&&`, `||`, `|`, `&`, newline). It does not expand
//! anything: `$VAR` stays as written.
//!
//! Why not the `shell-words` or `shlex` crates: they split one command line into words, but
//! reading a script needs more — where each command ends (`;`, `&&`, `|`, newlines), the line
//! each word starts on (for errors that name the line of ops/setup_streams.sh), and comments
//! that end at a newline inside a multi-line script. Splitting per line first would break
//! backslash continuations and quoted newlines, so the two would disagree with the shell.

/// One shell token and the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Word(String),
    /// Ends a simple command: newline, `;`, `&&`, `||`, `|`, `&`, or a bracket keyword such as
    /// `then` is not included here (it is a word).
    Separator,
}

/// Split `text` into words and separators.
///
/// Err carries the line of an unterminated quote.
pub(crate) fn split(text: &str) -> Result<Vec<Token>, usize> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut word: Option<(String, usize)> = None;

    let finish = |word: &mut Option<(String, usize)>, tokens: &mut Vec<Token>| {
        if let Some((text, line)) = word.take() {
            tokens.push(Token {
                kind: TokenKind::Word(text),
                line,
            });
        }
    };

    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') => line += 1,
                Some(escaped) => {
                    word.get_or_insert_with(|| (String::new(), line))
                        .0
                        .push(escaped);
                }
                None => {}
            },
            '\'' => {
                let start = line;
                let current = &mut word.get_or_insert_with(|| (String::new(), line)).0;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            current.push(c);
                        }
                        None => return Err(start),
                    }
                }
            }
            '"' => {
                let start = line;
                let current = &mut word.get_or_insert_with(|| (String::new(), line)).0;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => line += 1,
                            Some(e @ ('"' | '\\' | '$' | '`')) => current.push(e),
                            Some(other) => {
                                current.push('\\');
                                current.push(other);
                            }
                            None => return Err(start),
                        },
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            current.push(c);
                        }
                        None => return Err(start),
                    }
                }
            }
            '#' if word.is_none() => {
                // A comment runs to the end of the line; the newline itself is a separator.
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '\n' | ';' | '&' | '|' => {
                finish(&mut word, &mut tokens);
                // `&&`, `||` and `;;` are one separator.
                if c != '\n' && chars.peek() == Some(&c) {
                    chars.next();
                }
                tokens.push(Token {
                    kind: TokenKind::Separator,
                    line,
                });
                if c == '\n' {
                    line += 1;
                }
            }
            c if c.is_whitespace() => finish(&mut word, &mut tokens),
            c => word.get_or_insert_with(|| (String::new(), line)).0.push(c),
        }
    }
    finish(&mut word, &mut tokens);
    Ok(tokens)
}

/// The simple commands in `tokens`: each a list of words and the line it starts on.
pub(crate) fn commands(tokens: &[Token]) -> Vec<(usize, Vec<String>)> {
    let mut commands = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut start = 0;
    for token in tokens {
        match &token.kind {
            TokenKind::Word(word) => {
                if current.is_empty() {
                    start = token.line;
                }
                current.push(word.clone());
            }
            TokenKind::Separator => {
                if !current.is_empty() {
                    commands.push((start, std::mem::take(&mut current)));
                }
            }
        }
    }
    if !current.is_empty() {
        commands.push((start, current));
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<(usize, Vec<String>)> {
        commands(&split(text).expect("valid shell"))
    }

    #[test]
    fn splits_quotes_continuations_and_separators() {
        let got = words("a 'b c' \"d\\\"e\" \\\n  f=g && h # comment\nif x; then y; fi");
        assert_eq!(
            got,
            vec![
                (
                    1,
                    vec!["a".into(), "b c".into(), "d\"e".into(), "f=g".into()]
                ),
                (2, vec!["h".into()]),
                (3, vec!["if".into(), "x".into()]),
                (3, vec!["then".into(), "y".into()]),
                (3, vec!["fi".into()]),
            ]
        );
    }

    #[test]
    fn unterminated_quote_reports_its_line() {
        assert_eq!(split("ok\nnats 'oops\n"), Err(2));
    }
}
