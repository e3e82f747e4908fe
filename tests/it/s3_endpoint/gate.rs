//! The gate a snapshot of the running stack closes: it holds writes from S3 clients and from
//! the console's in-process storage alike (reads pass a gate closed to writes).

use std::time::Duration;

use opsbox::services::s3::{S3Server, in_process_request as in_process};
use s3s::dto::{ListBucketsInput, PutObjectInput, StreamingBlob};

use super::*;

/// Long enough for an unheld call on this machine, short enough for a test.
const HELD: Duration = Duration::from_millis(700);

/// Our endpoint (the gate is opsbox's: stock s3s-fs has none), or `None` under
/// `IT_S3_BACKEND=stock`.
async fn ours() -> Option<Endpoint> {
    if stock() {
        return None;
    }
    Some(Endpoint::start().await)
}

fn server(endpoint: &Endpoint) -> &S3Server {
    match &endpoint.server {
        Some(Running::Ours(server)) => server,
        _ => unreachable!("not stock, so ours"),
    }
}

/// Whether a console ListBuckets is answered within [`HELD`].
async fn listed_within_held(storage: &dyn s3s::S3) -> bool {
    tokio::time::timeout(
        HELD,
        storage.list_buckets(in_process(ListBucketsInput::default())),
    )
    .await
    .is_ok()
}

fn put_input(key: &str, body: &'static [u8]) -> PutObjectInput {
    PutObjectInput::builder()
        .bucket(PRESET.to_string())
        .key(key.to_string())
        .content_length(Some(body.len() as i64))
        .body(Some(StreamingBlob::from(s3s::Body::from(
            bytes::Bytes::from_static(body),
        ))))
        .build()
        .expect("a PutObject input")
}

#[tokio::test]
async fn a_gate_closed_to_writes_holds_console_and_client_writes_alike() {
    let Some(s3) = ours().await else { return };
    let server = server(&s3);
    let control = server.control();
    let storage = server.storage();
    let client = s3.client();

    let closed = control.gate.close_writes().await;
    assert!(
        listed_within_held(&*storage).await,
        "a console read was held by a gate closed to writes"
    );
    let console_put = tokio::spawn({
        let storage = storage.clone();
        async move {
            storage
                .put_object(in_process(put_input("console", b"one")))
                .await
        }
    });
    let client_put = tokio::spawn({
        let client = client.clone();
        async move { put(&client, PRESET, "client", b"two").await }
    });
    tokio::time::sleep(HELD).await;
    assert!(
        !console_put.is_finished(),
        "a console upload went through a closed gate"
    );
    assert!(
        !client_put.is_finished(),
        "a client PUT went through a closed gate"
    );
    assert_eq!(list_keys(&client, PRESET, "").await, Vec::<String>::new());

    drop(closed);
    console_put
        .await
        .unwrap()
        .expect("the console upload after the gate opened");
    client_put.await.unwrap();
    assert_eq!(list_keys(&client, PRESET, "").await, ["client", "console"]);
}

#[tokio::test]
async fn a_closed_gate_holds_console_reads_too() {
    let Some(s3) = ours().await else { return };
    let server = server(&s3);
    let storage = server.storage();
    let closed = server.control().gate.close().await;
    assert!(
        !listed_within_held(&*storage).await,
        "a console read went through a gate closed to everything"
    );
    drop(closed);
    let listed = storage
        .list_buckets(in_process(ListBucketsInput::default()))
        .await
        .expect("list buckets once the gate opened");
    assert!(
        listed
            .output
            .buckets
            .is_some_and(|b| b.iter().any(|b| b.name.as_deref() == Some(PRESET)))
    );
}
