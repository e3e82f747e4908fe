//! S3: buckets, objects by prefix ("folders") a page at a time, details, streamed upload and
//! download, delete. Every call goes through the S3 endpoint's own storage (the `s3s::S3`
//! implementation the endpoint serves), never to the files underneath.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use futures::StreamExt;
use maud::{Markup, html};
use s3s::dto::{
    CreateBucketInput, DeleteBucketInput, DeleteObjectInput, GetObjectInput, HeadObjectInput,
    ListBucketsInput, ListObjectsV2Input, PutObjectInput, StreamingBlob, Timestamp,
    TimestampFormat,
};
use s3s::{S3, S3ErrorCode};

use super::auth::Session;
use super::layout::{self, Failure, Section, query, segment};
use super::routes::Shared;
use crate::services::s3::in_process_request as request;

/// Keys per page of a listing.
pub const PAGE_SIZE: i32 = 100;
/// Chunks of an upload in flight between the request and the storage (memory stays bounded).
const UPLOAD_CHUNKS: usize = 8;

fn storage(app: &Shared) -> Result<Arc<dyn S3>, Failure> {
    app.config
        .storage
        .clone()
        .ok_or_else(|| Failure::unavailable("S3 does not run in this stack (see --services)."))
}

fn failed(action: &str, error: &s3s::S3Error) -> Failure {
    let status = match error.code() {
        S3ErrorCode::NoSuchBucket | S3ErrorCode::NoSuchKey => StatusCode::NOT_FOUND,
        S3ErrorCode::InvalidArgument
        | S3ErrorCode::InvalidBucketName
        | S3ErrorCode::KeyTooLongError
        | S3ErrorCode::BucketNotEmpty
        | S3ErrorCode::BucketAlreadyOwnedByYou
        | S3ErrorCode::BucketAlreadyExists => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Failure::new(status, describe(action, error))
}

fn describe(action: &str, error: &s3s::S3Error) -> String {
    format!(
        "cannot {action}: {} ({})",
        error.message().unwrap_or("the storage refused"),
        error.code().as_str()
    )
}

/// Bucket names come from the URL: only valid S3 names reach the storage.
fn valid_bucket(bucket: &str) -> Result<(), Failure> {
    if s3s::path::check_bucket_name(bucket) {
        Ok(())
    } else {
        Err(Failure::bad_request(format!(
            "`{bucket}` is not a valid bucket name (3-63 lowercase letters, digits, `-` and `.`)"
        )))
    }
}

fn valid_key(key: &str) -> Result<(), Failure> {
    if key.is_empty() || key.len() > 1024 {
        return Err(Failure::bad_request(
            "an object key must be 1 to 1024 bytes long",
        ));
    }
    Ok(())
}

fn timestamp(value: Option<&Timestamp>) -> String {
    let mut out = Vec::new();
    match value {
        Some(t) if t.format(TimestampFormat::DateTime, &mut out).is_ok() => {
            String::from_utf8_lossy(&out).into_owned()
        }
        _ => "-".into(),
    }
}

fn bucket_url(bucket: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        format!("/s3/b/{}", segment(bucket))
    } else {
        format!("/s3/b/{}?{}", segment(bucket), query(&[("prefix", prefix)]))
    }
}

fn object_url(bucket: &str, action: &str, key: &str) -> String {
    format!(
        "/s3/b/{}/{action}?{}",
        segment(bucket),
        query(&[("key", key)])
    )
}

fn page(app: &Shared, session: &Session, title: &str, body: Markup) -> Response {
    let flash = app.sessions.take_flash(session);
    layout::page(title, Section::S3, session, flash, body).into_response()
}

pub async fn buckets(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
) -> Result<Response, Failure> {
    let s3 = storage(&app)?;
    let listed = s3
        .list_buckets(request(ListBucketsInput::default()))
        .await
        .map_err(|e| failed("list buckets", &e))?;
    let buckets = listed.output.buckets.unwrap_or_default();
    let body = html! {
        h1 { "S3 buckets" }
        section.card aria-labelledby="create-title" {
            h2 #create-title { "Create a bucket" }
            form.toolbar method="post" action="/s3/buckets" {
                input type="hidden" name="csrf" value=(session.csrf);
                div {
                    label for="bucket-name" { "Bucket name" }
                    input #bucket-name type="text" name="name" required pattern="[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]" placeholder="my-bucket";
                }
                button type="submit" { "Create bucket" }
            }
        }
        section.card aria-labelledby="buckets-title" {
            h2 #buckets-title { (buckets.len()) " bucket(s)" }
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" .hide-narrow { "Created" } th scope="col" { "Actions" } } }
                tbody {
                    @for bucket in &buckets {
                        @let name = bucket.name.clone().unwrap_or_default();
                        tr {
                            td { a href=(bucket_url(&name, "")) { (name) } }
                            td.hide-narrow { (timestamp(bucket.creation_date.as_ref())) }
                            td {
                                form.inline method="post" action={"/s3/b/" (segment(&name)) "/delete"} {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    button.danger type="submit" aria-label={"Delete bucket " (name)} { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&app, &session, "S3", body))
}

#[derive(serde::Deserialize)]
pub struct NameForm {
    name: String,
}

pub async fn create_bucket(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
    Form(form): Form<NameForm>,
) -> Result<Response, Failure> {
    let s3 = storage(&app)?;
    let name = form.name.trim().to_string();
    if valid_bucket(&name).is_err() {
        app.sessions.set_flash(
            &session,
            format!("`{name}` is not a valid bucket name: use 3-63 lowercase letters, digits, `-` and `.`"),
        );
        return Ok(Redirect::to("/s3").into_response());
    }
    let input = CreateBucketInput::builder()
        .bucket(name.clone())
        .build()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    match s3.create_bucket(request(input)).await {
        Ok(_) => {
            app.sessions
                .set_flash(&session, format!("Bucket {name} created."));
            Ok(Redirect::to(&bucket_url(&name, "")).into_response())
        }
        Err(e) => {
            app.sessions
                .set_flash(&session, describe(&format!("create bucket {name}"), &e));
            Ok(Redirect::to("/s3").into_response())
        }
    }
}

pub async fn delete_bucket(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
    Path(bucket): Path<String>,
) -> Result<Response, Failure> {
    let s3 = storage(&app)?;
    valid_bucket(&bucket)?;
    let input = DeleteBucketInput::builder()
        .bucket(bucket.clone())
        .build()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    match s3.delete_bucket(request(input)).await {
        Ok(_) => {
            app.sessions
                .set_flash(&session, format!("Bucket {bucket} deleted."));
            Ok(Redirect::to("/s3").into_response())
        }
        Err(e) if *e.code() == S3ErrorCode::BucketNotEmpty => {
            app.sessions.set_flash(
                &session,
                format!("Bucket {bucket} is not empty: delete its objects first."),
            );
            Ok(Redirect::to(&bucket_url(&bucket, "")).into_response())
        }
        Err(e) => Err(failed(&format!("delete bucket {bucket}"), &e)),
    }
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    token: Option<String>,
}

pub async fn objects(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
    Path(bucket): Path<String>,
    Query(list): Query<ListQuery>,
) -> Result<Response, Failure> {
    let s3 = storage(&app)?;
    valid_bucket(&bucket)?;
    let input = ListObjectsV2Input::builder()
        .bucket(bucket.clone())
        .prefix(Some(list.prefix.clone()).filter(|p| !p.is_empty()))
        .delimiter(Some("/".into()))
        .max_keys(Some(PAGE_SIZE))
        .continuation_token(list.token.clone().filter(|t| !t.is_empty()))
        .build()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    let listed = s3
        .list_objects_v2(request(input))
        .await
        .map_err(|e| failed(&format!("list bucket {bucket}"), &e))?
        .output;
    let folders = listed.common_prefixes.unwrap_or_default();
    let objects = listed.contents.unwrap_or_default();
    let prefix = list.prefix.as_str();
    // The breadcrumb trail: the bucket, then each folder of the prefix.
    let mut crumbs = vec![(bucket.clone(), String::new())];
    let mut so_far = String::new();
    for part in prefix.split_inclusive('/') {
        so_far.push_str(part);
        crumbs.push((part.trim_end_matches('/').to_string(), so_far.clone()));
    }
    let body = html! {
        h1 { "Bucket " (bucket) }
        nav aria-label="Folder" {
            ol.breadcrumbs {
                li { a href="/s3" { "Buckets" } }
                @for (label, target) in &crumbs {
                    li { a href=(bucket_url(&bucket, target)) { (label) } }
                }
            }
        }
        section.card aria-labelledby="upload-title" {
            h2 #upload-title { "Upload to " code { (bucket) "/" (prefix) } }
            form.toolbar data-upload data-prefix=(prefix) method="post" action={"/s3/b/" (segment(&bucket)) "/upload"} {
                div {
                    label for="files" { "Files" }
                    input #files type="file" name="files" multiple required;
                }
                button type="submit" { "Upload" }
                p.progress data-upload-status role="status" aria-live="polite" {}
            }
        }
        section.card aria-labelledby="objects-title" {
            h2 #objects-title { (folders.len()) " folder(s), " (objects.len()) " object(s) on this page" }
            table {
                thead { tr {
                    th scope="col" { "Name" }
                    th.num scope="col" { "Size" }
                    th.hide-narrow scope="col" { "Last modified" }
                    th scope="col" { "Actions" }
                } }
                tbody {
                    @for folder in &folders {
                        @let full = folder.prefix.clone().unwrap_or_default();
                        tr {
                            td { a href=(bucket_url(&bucket, &full)) { "📁 " (full.strip_prefix(prefix).unwrap_or(&full)) } }
                            td.num { "-" } td.hide-narrow { "-" } td {}
                        }
                    }
                    @for object in &objects {
                        @let key = object.key.clone().unwrap_or_default();
                        tr data-key=(key) {
                            td { a href=(object_url(&bucket, "object", &key)) { (key.strip_prefix(prefix).unwrap_or(&key)) } }
                            td.num { (layout::bytes(object.size.unwrap_or(0).max(0) as u64)) }
                            td.hide-narrow { (timestamp(object.last_modified.as_ref())) }
                            td {
                                a.button.secondary href=(object_url(&bucket, "download", &key)) download aria-label={"Download " (key)} { "Download" }
                                " "
                                form.inline method="post" action={"/s3/b/" (segment(&bucket)) "/delete-object"} {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="key" value=(key);
                                    button.danger type="submit" aria-label={"Delete " (key)} { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
            p {
                @if list.token.as_deref().is_some_and(|t| !t.is_empty()) {
                    a.button.secondary href=(bucket_url(&bucket, prefix)) { "First page" } " "
                }
                @if let Some(next) = listed.next_continuation_token.filter(|_| listed.is_truncated == Some(true)) {
                    a.button.secondary rel="next" href={"/s3/b/" (segment(&bucket)) "?" (query(&[("prefix", prefix), ("token", &next)]))} { "Next page" }
                }
            }
            form.inline method="post" action={"/s3/b/" (segment(&bucket)) "/delete"} {
                input type="hidden" name="csrf" value=(session.csrf);
                button.danger type="submit" { "Delete bucket (when empty)" }
            }
        }
    };
    Ok(page(&app, &session, &format!("S3 {bucket}"), body))
}

#[derive(serde::Deserialize)]
pub struct KeyQuery {
    key: String,
}

pub async fn object(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
    Path(bucket): Path<String>,
    Query(KeyQuery { key }): Query<KeyQuery>,
) -> Result<Response, Failure> {
    let s3 = storage(&app)?;
    valid_bucket(&bucket)?;
    valid_key(&key)?;
    let input = HeadObjectInput::builder()
        .bucket(bucket.clone())
        .key(key.clone())
        .build()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    let head = s3
        .head_object(request(input))
        .await
        .map_err(|e| failed(&format!("read {bucket}/{key}"), &e))?
        .output;
    let parent = key.rfind('/').map_or("", |i| &key[..=i]);
    let mut metadata: Vec<(String, String)> = head
        .metadata
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    metadata.sort();
    let body = html! {
        h1 { "Object details" }
        nav aria-label="Folder" {
            ol.breadcrumbs {
                li { a href="/s3" { "Buckets" } }
                li { a href=(bucket_url(&bucket, "")) { (bucket) } }
                @if !parent.is_empty() { li { a href=(bucket_url(&bucket, parent)) { (parent) } } }
            }
        }
        section.card {
            dl.facts {
                dt { "Key" } dd.mono #object-key { (key) }
                dt { "Size" } dd { (layout::bytes(head.content_length.unwrap_or(0).max(0) as u64)) " (" (head.content_length.unwrap_or(0)) " bytes)" }
                dt { "ETag" } dd.mono { (head.e_tag.as_ref().map(|t| t.value().to_string()).unwrap_or_default()) }
                dt { "Content type" } dd { (head.content_type.clone().unwrap_or_else(|| "-".into())) }
                dt { "Last modified" } dd { (timestamp(head.last_modified.as_ref())) }
            }
            h2 { "Metadata" }
            @if metadata.is_empty() {
                p.muted { "No user metadata." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                    tbody { @for (name, value) in &metadata { tr { td.mono { (name) } td { (value) } } } }
                }
            }
            p {
                a.button href=(object_url(&bucket, "download", &key)) download { "Download" } " "
                form.inline method="post" action={"/s3/b/" (segment(&bucket)) "/delete-object"} {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="key" value=(key);
                    button.danger type="submit" { "Delete" }
                }
            }
        }
    };
    Ok(page(&app, &session, "Object", body))
}

/// The object's bytes as a download, streamed: always `attachment` and
/// `application/octet-stream`, so stored HTML never runs in the console's origin.
pub async fn download(
    State(app): State<Shared>,
    Path(bucket): Path<String>,
    Query(KeyQuery { key }): Query<KeyQuery>,
) -> Result<Response, Failure> {
    let s3 = storage(&app)?;
    valid_bucket(&bucket)?;
    valid_key(&key)?;
    let input = GetObjectInput::builder()
        .bucket(bucket.clone())
        .key(key.clone())
        .build()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    let output = s3
        .get_object(request(input))
        .await
        .map_err(|e| failed(&format!("read {bucket}/{key}"), &e))?
        .output;
    let blob = output.body.ok_or_else(|| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the storage returned no body",
        )
    })?;
    let name = key
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("download");
    let mut response = Response::new(Body::from_stream(blob));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(length) = output.content_length
        && let Ok(value) = HeaderValue::from_str(&length.to_string())
    {
        headers.insert(header::CONTENT_LENGTH, value);
    }
    let disposition = format!("attachment; filename*=UTF-8''{}", segment(name));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// An upload body handed to the storage chunk by chunk through a bounded channel (the storage
/// wants a `Sync` stream; the request body is not).
struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// One file, its bytes streamed from the request into the storage (JavaScript sends one PUT
/// per chosen file).
pub async fn upload(
    State(app): State<Shared>,
    Path(bucket): Path<String>,
    Query(KeyQuery { key }): Query<KeyQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let s3 = storage(&app)?;
    valid_bucket(&bucket)?;
    valid_key(&key)?;
    let (sender, receiver) = tokio::sync::mpsc::channel(UPLOAD_CHUNKS);
    let pump = tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other);
            let failed = chunk.is_err();
            if sender.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let input = PutObjectInput::builder()
        .bucket(bucket.clone())
        .key(key.clone())
        .content_type(content_type)
        .content_length(content_length)
        .body(Some(StreamingBlob::wrap(Chunks(receiver))))
        .build()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    let stored = s3.put_object(request(input)).await;
    pump.abort();
    let stored = stored.map_err(|e| failed(&format!("store {bucket}/{key}"), &e))?;
    let e_tag = stored
        .output
        .e_tag
        .map(|t| t.value().to_string())
        .unwrap_or_default();
    Ok((StatusCode::CREATED, format!("stored {key} (ETag {e_tag})")).into_response())
}

#[derive(serde::Deserialize)]
pub struct KeyForm {
    key: String,
}

pub async fn delete_object(
    State(app): State<Shared>,
    Extension(session): Extension<Session>,
    Path(bucket): Path<String>,
    Form(KeyForm { key }): Form<KeyForm>,
) -> Result<Response, Failure> {
    let s3 = storage(&app)?;
    valid_bucket(&bucket)?;
    valid_key(&key)?;
    let input = DeleteObjectInput::builder()
        .bucket(bucket.clone())
        .key(key.clone())
        .build()
        .map_err(|e| Failure::bad_request(e.to_string()))?;
    s3.delete_object(request(input))
        .await
        .map_err(|e| failed(&format!("delete {bucket}/{key}"), &e))?;
    app.sessions.set_flash(&session, format!("Deleted {key}."));
    let parent = key.rfind('/').map_or("", |i| &key[..=i]);
    Ok(Redirect::to(&bucket_url(&bucket, parent)).into_response())
}
