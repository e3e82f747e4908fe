//! Acked JetStream publish throughput, for bench/jetstream.sh.
//!
//! `nats_publish_bench <nats-url> [seconds] [payload-bytes]`: creates the `EVENTS` stream from
//! ops/setup_streams.sh (found by walking up from the working directory, like opsbox) if the
//! server does not have it, then publishes to `enterprise.bench` for `seconds` (default 5) each:
//!
//! - `sequential`: publish, await the ack, publish the next;
//! - `pipelined_64`: up to 64 publishes awaiting their acks at any time.
//!
//! Prints one `name value unit` line per measurement (acked messages per second).
// Tests and tools print their own progress; the print bans are for the opsbox library.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;

const SUBJECT: &str = "enterprise.bench";
const IN_FLIGHT: usize = 64;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: nats_publish_bench <nats-url> [seconds] [payload-bytes]")?;
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let size: usize = args.next().map_or(Ok(128), |s| s.parse())?;
    let window = Duration::from_secs(seconds);

    let cwd = std::env::current_dir()?;
    let ops = opsbox::config::Ops::load(opsbox::config::Ops::find(&cwd).as_deref())?;
    let client = async_nats::connect(&url).await?;
    let js = jetstream::new(client);
    js.get_or_create_stream(ops.stream.to_config()).await?;
    let payload = Bytes::from(vec![b'x'; size]);

    // Sequential: one message in flight.
    let mut count = 0u64;
    let began = Instant::now();
    while began.elapsed() < window {
        js.publish(SUBJECT, payload.clone()).await?.await?;
        count += 1;
    }
    report("sequential", count, began.elapsed());

    // Pipelined: keep IN_FLIGHT acks outstanding; the oldest is awaited first (acks arrive in
    // order on one connection).
    let mut pending = VecDeque::with_capacity(IN_FLIGHT);
    let mut count = 0u64;
    let began = Instant::now();
    while began.elapsed() < window {
        if pending.len() == IN_FLIGHT
            && let Some(ack) = pending.pop_front()
        {
            ack.await?;
            count += 1;
        }
        pending.push_back(js.publish(SUBJECT, payload.clone()).await?);
    }
    for ack in pending {
        ack.await?;
        count += 1;
    }
    report(&format!("pipelined_{IN_FLIGHT}"), count, began.elapsed());
    Ok(())
}

fn report(name: &str, count: u64, elapsed: Duration) {
    println!("{name} {:.0} msgs/s", count as f64 / elapsed.as_secs_f64());
}
