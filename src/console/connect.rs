//! Connect: the URLs and variables `opsbox env` prints (the same code builds both), each with a
//! copy button.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::auth::Session;
use super::layout::{self, Section};
use super::routes::Shared;
use crate::cli::EnvFormat;
use crate::output::env_format;

/// The variables that are addresses, shown first as a table.
const URLS: [(&str, &str); 4] = [
    ("NATS_URL", "NATS"),
    ("DATABASE_URL", "PostgreSQL"),
    ("AWS_ENDPOINT_URL", "S3"),
    ("OPSBOX_CONSOLE_URL", "Console"),
];

pub async fn page(State(app): State<Shared>, Extension(session): Extension<Session>) -> Response {
    let vars = &app.config.env;
    let all = env_format::render(vars, EnvFormat::Sh);
    let dotenv = env_format::render(vars, EnvFormat::Dotenv);
    let body = html! {
        h1 { "Connect" }
        section.card aria-labelledby="urls-title" {
            h2 #urls-title { "Addresses" }
            table {
                thead { tr { th scope="col" { "Service" } th scope="col" { "URL" } th scope="col" { span.hide-narrow { "Copy" } } } }
                tbody {
                    @for (index, (name, label)) in URLS.iter().enumerate() {
                        @if let Some((_, value)) = vars.iter().find(|(key, _)| key == name) {
                            tr {
                                td { (label) }
                                td { code #{"url-" (index)} { (value) } }
                                td { button.secondary type="button" data-copy={"url-" (index)} aria-label={"Copy the " (label) " URL"} { "Copy" } }
                            }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="env-title" {
            h2 #env-title { "Environment (" code { "eval \"$(opsbox env)\"" } ")" }
            @for (index, (key, value)) in vars.iter().enumerate() {
                div.env-line {
                    code #{"env-" (index)} { "export " (key) "=" (env_format::sh_quote(value)) }
                    button.secondary type="button" data-copy={"env-" (index)} aria-label={"Copy " (key)} { "Copy" }
                }
            }
            p { button type="button" data-copy="env-all" { "Copy all" } }
            pre #env-all { (all) }
        }
        section.card aria-labelledby="dotenv-title" {
            h2 #dotenv-title { ".env file (" code { "opsbox env --format dotenv" } ")" }
            p { button type="button" data-copy="env-dotenv" { "Copy" } }
            pre #env-dotenv { (dotenv) }
        }
    };
    let flash = app.sessions.take_flash(&session);
    layout::page("Connect", Section::Connect, &session, flash, body).into_response()
}
