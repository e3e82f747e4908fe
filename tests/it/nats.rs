//! nats-server under `opsbox up`: EVENTS from ops/setup_streams.sh, messages stored under the
//! opsbox data dir and kept across a SIGTERM and a new start.

use std::time::Duration;

use futures::StreamExt;
use nix::sys::signal::Signal;

use crate::support::stack::Opsbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_event_is_stored_in_events_and_survives_a_restart() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("nats");
    opsbox.wait_ready(&mut up, Duration::from_secs(120));

    // Durability as the running server reports it (monitoring endpoint), not as the generated
    // configuration says: every acknowledged write is synced before the ack.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let varz = reqwest::get(format!(
        "http://127.0.0.1:{}/varz",
        opsbox.nats_monitor_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let varz: serde_json::Value = serde_json::from_str(&varz).unwrap();
    let jetstream = &varz["jetstream"]["config"];
    assert_eq!(jetstream["sync_always"], true, "{jetstream}");
    assert_eq!(
        jetstream["store_dir"],
        opsbox
            .data_dir
            .join("nats/jetstream/jetstream")
            .display()
            .to_string(),
        "{jetstream}"
    );

    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream("EVENTS")
        .await
        .expect("EVENTS exists after up");
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.subjects, vec!["enterprise.>".to_string()]);
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(
        info.config.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
    // Every other flag of the `nats stream add` line in ops/setup_streams.sh, as the live
    // server reports the stream.
    let config = &info.config;
    assert_eq!(
        config.discard,
        async_nats::jetstream::stream::DiscardPolicy::Old
    );
    assert_eq!(config.num_replicas, 1);
    assert_eq!(config.max_messages, -1);
    assert_eq!(config.max_bytes, -1);
    assert_eq!(config.max_age, Duration::ZERO);
    assert_eq!(config.max_message_size, -1);
    assert_eq!(config.max_messages_per_subject, -1);
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert!(!config.allow_rollup);
    assert!(!config.deny_delete);
    assert!(!config.deny_purge);
    let ack = js
        .publish("enterprise.test.created", "order 42".into())
        .await
        .unwrap()
        .await
        .expect("JetStream acknowledged the message");
    assert_eq!(ack.stream, "EVENTS");
    drop(js);

    let status = up.stop(Signal::SIGTERM, Duration::from_secs(30));
    assert!(
        status.success(),
        "opsbox up exited with {status}:\n{}",
        up.stderr()
    );
    assert!(
        opsbox.data_dir.join("nats/jetstream/jetstream").is_dir(),
        "JetStream data is not under the opsbox data dir"
    );
    assert!(
        opsbox.run_file().is_none(),
        "a clean stop leaves no run file behind"
    );

    let mut up = opsbox.up_foreground("nats");
    opsbox.wait_ready(&mut up, Duration::from_secs(60));
    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("EVENTS").await.unwrap();
    let message = stream
        .get_raw_message(ack.sequence)
        .await
        .expect("the acknowledged message is still in EVENTS after the restart");
    assert_eq!(message.subject.as_str(), "enterprise.test.created");
    assert_eq!(&message.payload[..], b"order 42");

    // A consumer reads it back too.
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = consumer.fetch().max_messages(1).messages().await.unwrap();
    let first = messages.next().await.unwrap().unwrap();
    assert_eq!(&first.payload[..], b"order 42");

    let log = std::fs::read_to_string(opsbox.data_dir.join("logs/nats.log")).unwrap();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[WRN]") || l.contains("[ERR]") || l.contains("ebuil"))
        .collect();
    assert!(
        warnings.is_empty(),
        "the restart after a graceful stop logged warnings: {warnings:#?}"
    );

    let stderr = up.stderr();
    assert!(
        stderr.contains("nats-server 2."),
        "up says where nats-server came from:\n{stderr}"
    );
}

#[test]
fn nats_listens_on_loopback_only_by_default() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("nats");
    opsbox.wait_ready(&mut up, Duration::from_secs(120));
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    for port in [opsbox.nats_port, opsbox.nats_monitor_port] {
        let listeners: Vec<&str> = tcp
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(3) == Some(&"0A")
                    && fields
                        .get(1)
                        .is_some_and(|a| a.ends_with(&format!(":{port:04X}")))
            })
            .collect();
        assert!(!listeners.is_empty(), "nothing listens on {port}");
        for line in listeners {
            let local = line.split_whitespace().nth(1).unwrap();
            assert!(
                local.starts_with("0100007F:"),
                "port {port} listens on {local}, not 127.0.0.1"
            );
        }
    }
    up.stop(Signal::SIGINT, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_jetstream_block_file_does_not_stop_the_next_start() {
    let opsbox = Opsbox::new();
    let mut up = opsbox.up_foreground("nats");
    opsbox.wait_ready(&mut up, Duration::from_secs(120));
    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for i in 0..100 {
        js.publish("enterprise.test.truncate", format!("message {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    drop(js);
    up.stop(Signal::SIGTERM, Duration::from_secs(30));

    crate::support::stack::halve_events_block(&opsbox);

    let mut up = opsbox.up_foreground("nats");
    opsbox.wait_ready(&mut up, Duration::from_secs(60));
    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("EVENTS").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    assert!(
        state.messages > 0 && state.messages < 100,
        "the messages before the cut are served: {state:?}"
    );
    let first = stream.get_raw_message(state.first_sequence).await.unwrap();
    assert_eq!(&first.payload[..], b"message 0");
    // The stream still takes writes.
    js.publish("enterprise.test.truncate", "after".into())
        .await
        .unwrap()
        .await
        .expect("EVENTS accepts new messages after recovering from the truncated block");
    up.stop(Signal::SIGTERM, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_events_stream_with_other_subjects_is_reported_not_replaced() {
    let project = crate::support::project_copy();
    let opsbox = Opsbox::with_project(project.path().to_path_buf());
    let mut up = opsbox.up_foreground("nats");
    opsbox.wait_ready(&mut up, Duration::from_secs(120));
    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.publish("enterprise.keep", "precious".into())
        .await
        .unwrap()
        .await
        .unwrap();
    drop(js);
    up.stop(Signal::SIGTERM, Duration::from_secs(30));

    let script = project.path().join("ops/setup_streams.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, text.replace("\"enterprise.>\"", "\"historian.>\"")).unwrap();
    let output = opsbox.up_expecting_failure("nats");
    let stderr = output.stderr.as_str();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stream EVENTS exists with subjects [\"enterprise.>\"]")
            && stderr.contains("historian.>"),
        "{stderr}"
    );
    assert!(stderr.contains("never deletes"), "{stderr}");

    // Back to the original definition: the message is still there.
    std::fs::write(&script, text).unwrap();
    let mut up = opsbox.up_foreground("nats");
    opsbox.wait_ready(&mut up, Duration::from_secs(60));
    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("EVENTS").await.unwrap();
    assert_eq!(
        &stream.get_raw_message(1).await.unwrap().payload[..],
        b"precious"
    );
    up.stop(Signal::SIGTERM, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_project_the_compiled_in_ops_files_are_used() {
    let opsbox = Opsbox::new();
    let elsewhere = crate::support::temp_dir();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_opsbox"));
    command
        .current_dir(elsewhere.path())
        .env_remove("OPSBOX_PROJECT_DIR")
        .env("OPSBOX_CACHE_DIR", &opsbox.cache_dir)
        .arg("--data-dir")
        .arg(&opsbox.data_dir)
        .args(["up", "--services", "nats"])
        .args(opsbox.port_args());
    let log = opsbox.home.path().join("up-outside.log");
    let mut up = crate::support::stack::Foreground::spawn(&mut command, log);
    opsbox.wait_ready(&mut up, Duration::from_secs(120));
    let client = async_nats::connect(opsbox.nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream("EVENTS")
        .await
        .expect("EVENTS from the built-in setup_streams.sh");
    let subjects = stream.info().await.unwrap().config.subjects.clone();
    assert_eq!(subjects, vec!["enterprise.>".to_string()]);
    let run = opsbox.run_file().unwrap();
    assert_eq!(
        run["project_dir"],
        serde_json::Value::Null,
        "no project was found: {run}"
    );
    up.stop(Signal::SIGTERM, Duration::from_secs(30));
}
