//! PostgreSQL: databases, schemas, tables with estimated rows and size, and the first rows of a
//! table, read in a read-only transaction with a statement timeout and a row limit.

use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use tokio_postgres::SimpleQueryMessage;

use super::auth::Session;
use super::layout::{self, Failure, Section, segment};
use super::routes::Shared;

/// Rows shown of a table.
pub const ROW_LIMIT: usize = 100;
/// The longest a query of the console may run (SET LOCAL statement_timeout).
const STATEMENT_TIMEOUT: &str = "5s";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(app: &Shared, database: &str) -> Result<tokio_postgres::Client, Failure> {
    let mut config = app.config.postgres.clone().ok_or_else(|| {
        Failure::unavailable("PostgreSQL does not run in this stack (see --services).")
    })?;
    config
        .dbname(database)
        .application_name("opsbox console")
        .connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        Failure::unavailable(format!(
            "cannot connect to PostgreSQL database {database}: {e}"
        ))
    })?;
    tokio::spawn(connection);
    Ok(client)
}

fn failed(action: &str, error: &tokio_postgres::Error) -> Failure {
    let detail = error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_string());
    Failure::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot {action}: {detail}"),
    )
}

/// An identifier quoted for SQL: inside double quotes, a double quote is doubled.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn page(app: &Shared, session: &Session, title: &str, body: Markup) -> Response {
    let flash = app.sessions.take_flash(session);
    layout::page(title, Section::Postgres, session, flash, body).into_response()
}

fn default_database(app: &Shared) -> Result<String, Failure> {
    app.config
        .postgres
        .as_ref()
        .and_then(|c| c.get_dbname().map(str::to_string))
        .ok_or_else(|| {
            Failure::unavailable("PostgreSQL does not run in this stack (see --services).")
        })
}

pub async fn databases(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
) -> Result<Response, Failure> {
    let client = connect(&app, &default_database(&app)?).await?;
    let rows = client
        .query(
            "SELECT datname, pg_database_size(datname) FROM pg_database \
             WHERE NOT datistemplate AND datallowconn ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| failed("list databases", &e))?;
    let body = html! {
        h1 { "PostgreSQL databases" }
        section.card {
            table {
                thead { tr { th scope="col" { "Database" } th.num scope="col" { "Size" } } }
                tbody {
                    @for row in &rows {
                        @let name: String = row.get(0);
                        @let size: i64 = row.get(1);
                        tr { td { a href={"/postgres/" (segment(&name))} { (name) } } td.num { (layout::bytes(size.max(0) as u64)) } }
                    }
                }
            }
        }
    };
    Ok(page(&app, &session, "PostgreSQL", body))
}

pub async fn tables(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
    Path(database): Path<String>,
) -> Result<Response, Failure> {
    let client = connect(&app, &database).await?;
    let schemas = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema') \
             AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%' ORDER BY nspname",
            &[],
        )
        .await
        .map_err(|e| failed("list schemas", &e))?;
    let tables = client
        .query(
            "SELECT n.nspname, c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid), \
             CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view' \
             WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| failed("list tables", &e))?;
    let body = html! {
        h1 { "Database " (database) }
        nav aria-label="Database" { ol.breadcrumbs { li { a href="/postgres" { "Databases" } } li { (database) } } }
        section.card {
            h2 { "Schemas" }
            p.mono { @for (i, row) in schemas.iter().enumerate() { @if i > 0 { ", " } (row.get::<_, String>(0)) } }
        }
        section.card {
            h2 { (tables.len()) " table(s) and view(s)" }
            table {
                thead { tr {
                    th scope="col" { "Schema" } th scope="col" { "Name" } th.hide-narrow scope="col" { "Kind" }
                    th.num scope="col" { "Rows (estimate)" } th.num scope="col" { "Size" }
                } }
                tbody {
                    @for row in &tables {
                        @let schema: String = row.get(0);
                        @let name: String = row.get(1);
                        @let estimate: i64 = row.get(2);
                        @let size: i64 = row.get(3);
                        @let kind: Option<String> = row.get(4);
                        tr {
                            td.mono { (schema) }
                            td { a href={"/postgres/" (segment(&database)) "/" (segment(&schema)) "/" (segment(&name))} { (name) } }
                            td.hide-narrow { (kind.unwrap_or_default()) }
                            td.num { @if estimate < 0 { "not analysed" } @else { (estimate) } }
                            td.num { (layout::bytes(size.max(0) as u64)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        &app,
        &session,
        &format!("PostgreSQL {database}"),
        body,
    ))
}

pub async fn rows(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
    Path((database, schema, table)): Path<(String, String, String)>,
) -> Result<Response, Failure> {
    let mut client = connect(&app, &database).await?;
    let transaction = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| failed("start a read-only transaction", &e))?;
    transaction
        .batch_execute(&format!(
            "SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'; SET LOCAL lock_timeout = '1s'"
        ))
        .await
        .map_err(|e| failed("set the statement timeout", &e))?;
    let exists = transaction
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[&schema, &table],
        )
        .await
        .map_err(|e| failed("look up the table", &e))?;
    if exists.is_none() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("there is no table {schema}.{table} in database {database}"),
        ));
    }
    // The simple protocol returns every value as text, whatever its type.
    let messages = transaction
        .simple_query(&format!(
            "SELECT * FROM {}.{} LIMIT {ROW_LIMIT}",
            quote_identifier(&schema),
            quote_identifier(&table)
        ))
        .await
        .map_err(|e| failed(&format!("read {schema}.{table}"), &e))?;
    // Nothing was changed; end the transaction without committing anything.
    let _ = transaction.rollback().await;
    let mut columns: Vec<String> = Vec::new();
    let mut values: Vec<Vec<Option<String>>> = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(description) => {
                columns = description.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                if columns.is_empty() {
                    columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                values.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    let body = html! {
        h1 { (schema) "." (table) }
        nav aria-label="Database" {
            ol.breadcrumbs {
                li { a href="/postgres" { "Databases" } }
                li { a href={"/postgres/" (segment(&database))} { (database) } }
                li { (schema) "." (table) }
            }
        }
        section.card {
            h2 { "First " (values.len()) " row(s)" }
            p.muted { "Read in a read-only transaction, at most " (ROW_LIMIT) " rows, statement timeout " (STATEMENT_TIMEOUT) "." }
            table {
                thead { tr { @for column in &columns { th scope="col" { (column) } } } }
                tbody {
                    @for row in &values {
                        tr { @for value in row { td { @match value { Some(text) => (text), None => span.muted { "NULL" } } } } }
                    }
                }
            }
        }
    };
    Ok(page(&app, &session, &format!("{schema}.{table}"), body))
}

#[cfg(test)]
mod tests {
    use super::quote_identifier;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("events"), "\"events\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
