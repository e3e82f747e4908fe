//! NATS: JetStream streams (subjects, messages, bytes, sequences, consumers), the last messages
//! of a stream with their payload as text or hex, and publishing a message to a subject.

use std::time::Duration;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use futures::TryStreamExt;
use maud::{Markup, html};

use super::auth::Session;
use super::layout::{self, Failure, Section, segment};
use super::routes::Shared;

/// Messages shown by default, and at most.
const DEFAULT_COUNT: u64 = 20;
const MAX_COUNT: u64 = 200;
/// How long any one call to the server may take before the page says so.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Payloads longer than this are cut in the list (the size column tells the real size).
const PREVIEW_BYTES: usize = 4096;

/// One client connection, made on first use and reused (the client reconnects by itself).
pub struct Connection {
    url: Option<String>,
    client: tokio::sync::Mutex<Option<async_nats::Client>>,
}

impl Connection {
    pub fn new(url: Option<String>) -> Self {
        Connection {
            url,
            client: tokio::sync::Mutex::new(None),
        }
    }

    async fn client(&self) -> Result<async_nats::Client, Failure> {
        let url = self.url.as_deref().ok_or_else(|| {
            Failure::unavailable("NATS does not run in this stack (see --services).")
        })?;
        let mut client = self.client.lock().await;
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let connected = async_nats::ConnectOptions::new()
            .name("opsbox console")
            .connection_timeout(CALL_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| Failure::unavailable(format!("cannot connect to NATS at {url}: {e}")))?;
        *client = Some(connected.clone());
        Ok(connected)
    }

    async fn jetstream(&self) -> Result<async_nats::jetstream::Context, Failure> {
        let mut context = async_nats::jetstream::new(self.client().await?);
        context.set_timeout(CALL_TIMEOUT);
        Ok(context)
    }
}

fn format_time(time: time::OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".into())
}

/// Stream names cannot hold these (they become subjects and file names on the server).
fn valid_stream(name: &str) -> Result<(), Failure> {
    if name.is_empty()
        || name.len() > 255
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c))
    {
        return Err(Failure::bad_request(format!(
            "`{name}` is not a stream name"
        )));
    }
    Ok(())
}

/// A subject to publish to: dot-separated tokens, none empty, no wildcards, no white space.
fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("the subject is empty".into());
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("the subject `{subject}` contains white space"));
    }
    if subject.split('.').any(|token| token.is_empty()) {
        return Err(format!(
            "the subject `{subject}` has an empty token (`..` or a dot at an end)"
        ));
    }
    if subject.split('.').any(|token| token == "*" || token == ">") {
        return Err(format!(
            "the subject `{subject}` has a wildcard: messages are published to one concrete subject"
        ));
    }
    Ok(())
}

fn page(app: &Shared, session: &Session, title: &str, body: Markup) -> Response {
    let flash = app.sessions.take_flash(session);
    layout::page(title, Section::Nats, session, flash, body).into_response()
}

fn publish_form(session: &Session, subject: &str) -> Markup {
    html! {
        section.card aria-labelledby="publish-title" {
            h2 #publish-title { "Publish a message" }
            form method="post" action="/nats/publish" {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="subject" { "Subject" }
                input #subject type="text" name="subject" value=(subject) required placeholder="enterprise.test";
                label for="payload" { "Payload" }
                textarea #payload name="payload" {}
                p { button type="submit" { "Publish" } }
            }
        }
    }
}

pub async fn streams(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
) -> Result<Response, Failure> {
    let js = app.nats.jetstream().await?;
    let infos: Vec<async_nats::jetstream::stream::Info> =
        tokio::time::timeout(CALL_TIMEOUT, js.streams().try_collect())
            .await
            .map_err(|_| Failure::unavailable("NATS did not list its streams in time"))?
            .map_err(|e| Failure::unavailable(format!("cannot list the JetStream streams: {e}")))?;
    let body = html! {
        h1 { "NATS JetStream" }
        section.card aria-labelledby="streams-title" {
            h2 #streams-title { (infos.len()) " stream(s)" }
            table {
                thead { tr {
                    th scope="col" { "Stream" } th scope="col" { "Subjects" }
                    th.num scope="col" { "Messages" } th.num scope="col" { "Bytes" }
                    th.num.hide-narrow scope="col" { "First seq" } th.num.hide-narrow scope="col" { "Last seq" }
                    th.num scope="col" { "Consumers" }
                } }
                tbody {
                    @for info in &infos {
                        tr data-stream=(info.config.name) {
                            td { a href={"/nats/s/" (segment(&info.config.name))} { (info.config.name) } }
                            td.mono { (info.config.subjects.join(", ")) }
                            td.num { (info.state.messages) }
                            td.num { (layout::bytes(info.state.bytes)) }
                            td.num.hide-narrow { (info.state.first_sequence) }
                            td.num.hide-narrow { (info.state.last_sequence) }
                            td.num { (info.state.consumer_count) }
                        }
                    }
                }
            }
        }
        (publish_form(&session, ""))
    };
    Ok(page(&app, &session, "NATS", body))
}

#[derive(serde::Deserialize)]
pub struct StreamQuery {
    count: Option<u64>,
    #[serde(default)]
    hex: bool,
}

struct Shown {
    sequence: u64,
    subject: String,
    time: String,
    size: usize,
    payload: String,
    as_hex: bool,
}

fn show_payload(payload: &[u8], hex: bool) -> (String, bool) {
    let cut = &payload[..payload.len().min(PREVIEW_BYTES)];
    match std::str::from_utf8(cut) {
        Ok(text)
            if !hex
                && !text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            (text.to_string(), false)
        }
        _ => (hex::encode(cut), true),
    }
}

pub async fn stream(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Query(options): Query<StreamQuery>,
) -> Result<Response, Failure> {
    valid_stream(&name)?;
    let js = app.nats.jetstream().await?;
    let mut stream = js.get_stream(&name).await.map_err(|e| {
        Failure::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("cannot open stream {name}: {e}"),
        )
    })?;
    let info = stream
        .info()
        .await
        .map_err(|e| Failure::unavailable(format!("cannot read stream {name}: {e}")))?
        .clone();
    let count = options.count.unwrap_or(DEFAULT_COUNT).clamp(1, MAX_COUNT);
    let mut shown = Vec::new();
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut sequence = last;
    // Deleted messages leave gaps: look at no more than twice the count.
    let mut budget = count * 2;
    while info.state.messages > 0
        && sequence >= first.max(1)
        && (shown.len() as u64) < count
        && budget > 0
    {
        budget -= 1;
        if let Ok(message) = stream.get_raw_message(sequence).await {
            let (payload, as_hex) = show_payload(&message.payload, options.hex);
            shown.push(Shown {
                sequence: message.sequence,
                subject: message.subject.to_string(),
                time: format_time(message.time),
                size: message.payload.len(),
                payload,
                as_hex,
            });
        }
        sequence -= 1;
    }
    let base = format!("/nats/s/{}", segment(&name));
    let subject = info
        .config
        .subjects
        .first()
        .map_or(String::new(), |s| s.replace(['>', '*'], "test"));
    let body = html! {
        h1 { "Stream " (name) }
        section.card {
            dl.facts {
                dt { "Subjects" } dd.mono { (info.config.subjects.join(", ")) }
                dt { "Messages" } dd { (info.state.messages) }
                dt { "Bytes" } dd { (layout::bytes(info.state.bytes)) }
                dt { "First sequence" } dd { (first) }
                dt { "Last sequence" } dd { (last) }
                dt { "Consumers" } dd { (info.state.consumer_count) }
                dt { "Created" } dd { (format_time(info.created)) }
            }
        }
        section.card aria-labelledby="messages-title" {
            h2 #messages-title { "Last " (shown.len()) " message(s)" }
            p {
                @if options.hex {
                    a href={(base) "?count=" (count)} { "Show payloads as text" }
                } @else {
                    a href={(base) "?count=" (count) "&hex=true"} { "Show payloads as hex" }
                }
                " · "
                a href={(base) "?count=" (MAX_COUNT)} { "Show the last " (MAX_COUNT) }
            }
            table {
                thead { tr {
                    th.num scope="col" { "Seq" } th scope="col" { "Subject" }
                    th.hide-narrow scope="col" { "Time" } th.num scope="col" { "Size" }
                    th scope="col" { "Payload" }
                } }
                tbody {
                    @for message in &shown {
                        tr data-sequence=(message.sequence) {
                            td.num { (message.sequence) }
                            td.mono { (message.subject) }
                            td.hide-narrow { (message.time) }
                            td.num { (message.size) }
                            td { pre.payload data-hex[message.as_hex] { (message.payload) } }
                        }
                    }
                }
            }
        }
        (publish_form(&session, &subject))
    };
    Ok(page(&app, &session, &format!("NATS {name}"), body))
}

#[derive(serde::Deserialize)]
pub struct PublishForm {
    subject: String,
    #[serde(default)]
    payload: String,
}

pub async fn publish(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
    Form(form): Form<PublishForm>,
) -> Result<Response, Failure> {
    let subject = form.subject.trim().to_string();
    if let Err(problem) = check_subject(&subject) {
        app.sessions
            .set_flash(&session, format!("Not published: {problem}."));
        return Ok(Redirect::to("/nats").into_response());
    }
    let js = app.nats.jetstream().await?;
    let payload = bytes::Bytes::from(form.payload.into_bytes());
    // Through JetStream first, to report the stream and sequence that stored it.
    let acked = match js.publish(subject.clone(), payload.clone()).await {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    let message = match acked {
        Ok(ack) => {
            let target = format!("/nats/s/{}", segment(&ack.stream));
            app.sessions.set_flash(
                &session,
                format!(
                    "Published to {subject}: stored in {} as sequence {}.",
                    ack.stream, ack.sequence
                ),
            );
            return Ok(Redirect::to(&target).into_response());
        }
        Err(e) if e.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound => {
            let client = app.nats.client().await?;
            client
                .publish(subject.clone(), payload)
                .await
                .map_err(|e| Failure::unavailable(format!("cannot publish to {subject}: {e}")))?;
            client
                .flush()
                .await
                .map_err(|e| Failure::unavailable(format!("cannot publish to {subject}: {e}")))?;
            format!("Published to {subject} (no stream stores this subject).")
        }
        Err(e) => format!("Not published to {subject}: {e}."),
    };
    app.sessions.set_flash(&session, message);
    Ok(Redirect::to("/nats").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked_before_publishing() {
        assert!(check_subject("enterprise.test").is_ok());
        assert!(check_subject("").is_err());
        assert!(check_subject("a b").is_err());
        assert!(check_subject("a..b").is_err());
        assert!(check_subject("enterprise.>").is_err());
        assert!(check_subject("enterprise.*.x").is_err());
    }

    #[test]
    fn binary_payloads_are_shown_as_hex() {
        assert_eq!(show_payload(b"hello", false), ("hello".to_string(), false));
        assert_eq!(show_payload(&[0, 255], false), ("00ff".to_string(), true));
        assert_eq!(show_payload(b"hi", true), ("6869".to_string(), true));
    }
}
