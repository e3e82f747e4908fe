//! Connection variables rendered for shells (`sh`), env files (`dotenv`), programs (`json`)
//! and GitHub Actions (`github`, the `$GITHUB_ENV` file syntax).

use crate::cli::EnvFormat;

/// Ordered `NAME=value` pairs.
pub type EnvVars = Vec<(&'static str, String)>;

/// The whole text for `format`, one variable per line (JSON: one object).
pub fn render(vars: &EnvVars, format: EnvFormat) -> String {
    match format {
        EnvFormat::Sh => vars
            .iter()
            .map(|(key, value)| format!("export {key}={}\n", sh_quote(value)))
            .collect(),
        EnvFormat::Dotenv => vars
            .iter()
            .map(|(key, value)| format!("{key}={}\n", dotenv_quote(value)))
            .collect(),
        EnvFormat::Json => {
            let fields: Vec<String> = vars
                .iter()
                .map(|(key, value)| {
                    format!(
                        "  {}: {}",
                        serde_json::Value::from(*key),
                        serde_json::Value::from(value.as_str())
                    )
                })
                .collect();
            format!("{{\n{}\n}}\n", fields.join(",\n"))
        }
        EnvFormat::Github => vars
            .iter()
            .map(|(key, value)| github_line(key, value))
            .collect(),
    }
}

/// Single quotes keep everything literal in POSIX sh, bash and zsh; a single quote itself is
/// closed, escaped and reopened (`'\''`).
pub fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn plain(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.,:/@+%=".contains(c))
}

/// Bare when safe; single quotes (literal in compose and python-dotenv) when possible; double
/// quotes with escapes otherwise.
fn dotenv_quote(value: &str) -> String {
    if plain(value) {
        value.to_string()
    } else if !value.contains(['\'', '\n', '\r']) {
        format!("'{value}'")
    } else {
        let mut out = String::from("\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str(r"\\"),
                '"' => out.push_str("\\\""),
                '$' => out.push_str(r"\$"),
                '`' => out.push_str(r"\`"),
                '\n' => out.push_str(r"\n"),
                '\r' => out.push_str(r"\r"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

/// `$GITHUB_ENV` takes `NAME=value`, and a heredoc form for values with line breaks.
fn github_line(key: &str, value: &str) -> String {
    if !value.contains(['\n', '\r']) {
        return format!("{key}={value}\n");
    }
    let mut delimiter = String::from("OPSBOX_EOF");
    while value.contains(&delimiter) {
        delimiter.push('_');
    }
    format!("{key}<<{delimiter}\n{value}\n{delimiter}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> EnvVars {
        vec![("A", "plain".into()), ("B", "it's $x \"y\"".into())]
    }

    #[test]
    fn sh_escapes_single_quotes() {
        assert_eq!(
            render(&vars(), EnvFormat::Sh),
            "export A='plain'\nexport B='it'\\''s $x \"y\"'\n"
        );
    }

    #[test]
    fn dotenv_quotes_only_when_needed() {
        assert_eq!(
            render(&vars(), EnvFormat::Dotenv),
            "A=plain\nB=\"it's \\$x \\\"y\\\"\"\n"
        );
        let spaced = vec![("C", "a b".to_string())];
        assert_eq!(render(&spaced, EnvFormat::Dotenv), "C='a b'\n");
    }

    #[test]
    fn json_is_one_ordered_object() {
        let text = render(&vars(), EnvFormat::Json);
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["B"], "it's $x \"y\"");
        assert!(text.find("\"A\"") < text.find("\"B\""));
    }

    #[test]
    fn github_uses_a_heredoc_for_multiline_values() {
        let multi = vec![("M", "one\ntwo".to_string())];
        assert_eq!(
            render(&multi, EnvFormat::Github),
            "M<<OPSBOX_EOF\none\ntwo\nOPSBOX_EOF\n"
        );
    }
}
