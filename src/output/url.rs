//! Connection URLs as clients parse them: the one place that builds a PostgreSQL URL, so every
//! printed URL (the `up` summary, `env`, `status`) percent-encodes user, password and database
//! the same way.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters left alone in URL user info and path segments (RFC 3986 unreserved).
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, URL_COMPONENT).to_string()
}

/// `postgresql://user[:password]@host:port/database`; `host` is already in URL form (IPv6 in
/// brackets). Without a password the URL is safe to show in a status table.
pub fn postgres(
    user: &str,
    password: Option<&str>,
    host: &str,
    port: u16,
    database: &str,
) -> String {
    let credentials = match password {
        Some(password) => format!("{}:{}", encode(user), encode(password)),
        None => encode(user),
    };
    format!(
        "postgresql://{credentials}@{host}:{port}/{}",
        encode(database)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_credentials_are_encoded_and_round_trip() {
        let password = "p@ss:w/rd?#% é";
        let url = postgres("post gres", Some(password), "[::1]", 5432, "hist/orian");
        assert_eq!(
            url,
            "postgresql://post%20gres:p%40ss%3Aw%2Frd%3F%23%25%20%C3%A9@[::1]:5432/hist%2Forian"
        );
        let decoded: String =
            percent_encoding::percent_decode_str("p%40ss%3Aw%2Frd%3F%23%25%20%C3%A9")
                .decode_utf8()
                .unwrap()
                .into_owned();
        assert_eq!(decoded, password);
        assert_eq!(
            postgres("postgres", None, "127.0.0.1", 5432, "historian"),
            "postgresql://postgres@127.0.0.1:5432/historian"
        );
    }
}
