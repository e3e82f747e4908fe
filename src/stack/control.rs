//! The supervisor's side of the control channel (state/control.rs): holds the running stack
//! still while `opsbox snapshot save` copies its data (S3 closed to writes, nats-server and
//! PostgreSQL frozen), or stopped while `restore` / `reset` swap it (S3 closed, both stopped
//! cleanly), and lets it go again. One request at a time; a client that goes away ends its
//! freeze or hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::child::{ChildControl, MAX_FREEZE, READY_TIMEOUT};
use crate::output;
use crate::services::nats::NatsService;
use crate::services::postgres::PostgresService;
use crate::services::s3::S3Control;
use crate::snapshot::{self, Snapshots};
use crate::state::StateDir;
use crate::state::control::{Reply, Request, address};
use crate::types::ServiceName;

/// How long requests already inside the S3 endpoint may take to finish before a freeze or a
/// hold gives up.
const GATE_WITHIN: Duration = Duration::from_secs(30);
/// How long a service may take to answer a freeze or a clean stop.
const ANSWER_WITHIN: Duration = Duration::from_secs(45);

/// How long after an ack nats-server has surely written it to its consumer's state file
/// (it writes at most every 100 ms).
const NATS_ACK_FLUSH: Duration = Duration::from_millis(250);

/// What the channel controls.
pub struct Control {
    pub children: Vec<(ServiceName, mpsc::Sender<ChildControl>)>,
    /// The nats-server the stack runs (its store tells whether it has consumers).
    pub nats: Option<NatsService>,
    /// The PostgreSQL it runs (for CHECKPOINT).
    pub postgres: Option<PostgresService>,
    pub s3: Option<S3Control>,
    pub snapshots: Snapshots,
    /// One freeze or hold at a time.
    pub busy: tokio::sync::Mutex<()>,
}

/// Listen on the data dir's control socket; a stack that cannot (the name is taken) still
/// runs, and says snapshots of it need a stop.
pub fn listen(state: &StateDir) -> Option<tokio::net::UnixListener> {
    let bound = address(state)
        .and_then(|address| std::os::unix::net::UnixListener::bind_addr(&address))
        .and_then(|listener| {
            listener.set_nonblocking(true)?;
            tokio::net::UnixListener::from_std(listener)
        });
    match bound {
        Ok(listener) => Some(listener),
        Err(e) => {
            output::warn(&format!(
                "opsbox: no control channel ({e}); snapshots and reset need `opsbox down` first"
            ));
            None
        }
    }
}

/// Serve connections until the task is dropped (which ends every session, and with them any
/// freeze or hold).
pub async fn serve(listener: tokio::net::UnixListener, control: Arc<Control>) {
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    sessions.spawn(session(stream, Arc::clone(&control)));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = sessions.join_next() => {}
        }
    }
}

async fn session(stream: UnixStream, control: Arc<Control>) {
    let me = nix::unistd::geteuid().as_raw();
    let credentials = stream.peer_cred().ok();
    let allowed = credentials.is_some_and(|cred| cred.uid() == me || cred.uid() == 0);
    let peer = credentials.and_then(|cred| cred.pid());
    let (read, mut write) = stream.into_split();
    if !allowed {
        answer(
            &mut write,
            &Reply::failed("only the user running the stack (or root) may control it"),
        )
        .await;
        return;
    }
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Freeze) => {
                let _one = control.busy.lock().await;
                freeze(&control, &mut lines, &mut write).await
            }
            Ok(Request::Hold) => {
                let _one = control.busy.lock().await;
                hold(&control, &mut lines, &mut write, peer).await
            }
            Ok(Request::Checkpoint) => Some(match &control.postgres {
                Some(postgres) => match postgres.checkpoint().await {
                    Ok(()) => Reply {
                        ok: true,
                        ..Reply::default()
                    },
                    Err(e) => Reply::failed(e.to_string()),
                },
                None => Reply {
                    ok: true,
                    ..Reply::default()
                },
            }),
            Ok(request @ (Request::Thaw | Request::Release)) => Some(Reply::failed(format!(
                "nothing to end: {request:?} only follows a freeze or a hold on the same connection"
            ))),
            Err(e) => Some(Reply::failed(format!("malformed request {line:?}: {e}"))),
        };
        if let Some(reply) = reply {
            answer(&mut write, &reply).await;
        }
    }
}

async fn answer(write: &mut OwnedWriteHalf, reply: &Reply) {
    let mut line = serde_json::to_string(reply).expect("a reply serialises");
    line.push('\n');
    let _ = write.write_all(line.as_bytes()).await;
}

/// Tell the client the stack is held: the services named (S3 too when it runs).
async fn answer_held(
    control: &Control,
    write: &mut OwnedWriteHalf,
    mut services: Vec<ServiceName>,
    what: &str,
) {
    if control.s3.is_some() {
        services.push(ServiceName::S3);
    }
    output::info(what);
    answer(
        write,
        &Reply {
            ok: true,
            services,
            ..Reply::default()
        },
    )
    .await;
}

/// Wait for the client's next line (the end of its freeze or hold), or for it to go away, or
/// for the longest a hold may last.
async fn wait_for_end(lines: &mut tokio::io::Lines<BufReader<OwnedReadHalf>>) -> bool {
    matches!(
        tokio::time::timeout(MAX_FREEZE, lines.next_line()).await,
        Ok(Ok(Some(_)))
    )
}

/// After a client went away: wait (a few seconds at most) until its process is gone, since
/// a killed process closes its socket before it has died, and what it built is only
/// abandoned once it has.
async fn wait_gone(pid: Option<i32>) {
    let Some(pid) = pid else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while crate::types::ProcessIdentity::of(pid).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Close the S3 gate (to writes, or to everything), waiting for the requests inside.
async fn close_gate(
    control: &Control,
    writes_only: bool,
) -> Result<Option<crate::services::s3::gate::Closed>, Reply> {
    let Some(s3) = &control.s3 else {
        return Ok(None);
    };
    let closing = async {
        if writes_only {
            s3.gate.close_writes().await
        } else {
            s3.gate.close().await
        }
    };
    tokio::time::timeout(GATE_WITHIN, closing)
        .await
        .map(Some)
        .map_err(|_| {
            Reply::failed(format!(
                "S3 requests were still running after {} s; nothing was held",
                GATE_WITHIN.as_secs()
            ))
        })
}

async fn freeze(
    control: &Control,
    lines: &mut tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: &mut OwnedWriteHalf,
) -> Option<Reply> {
    let began = Instant::now();
    let closed = match close_gate(control, true).await {
        Ok(closed) => closed,
        Err(reply) => return Some(reply),
    };
    // One service after another, PostgreSQL first: a client's next step waits at the one
    // already frozen, so what lands in a later one never depends on what the earlier one
    // missed, and the copy is one consistent moment. nats-server writes a consumer's acks up
    // to 100 ms late, so when it has consumers it is frozen once that time has passed. A
    // thaw sender dropped thaws its service.
    let mut order: Vec<&(ServiceName, mpsc::Sender<ChildControl>)> =
        control.children.iter().collect();
    order.sort_by_key(|(name, _)| *name != ServiceName::Postgres);
    let mut thaws = Vec::new();
    let mut services: Vec<ServiceName> = Vec::new();
    let mut errors = Vec::new();
    for (name, sender) in order {
        if *name == ServiceName::Nats
            && control
                .nats
                .as_ref()
                .is_some_and(|nats| nats.store_has_consumers())
        {
            tokio::time::sleep(NATS_ACK_FLUSH).await;
        }
        let (frozen, frozen_answer) = oneshot::channel();
        let (thaw, thaw_signal) = oneshot::channel::<()>();
        let sent = sender
            .send(ChildControl::Freeze {
                frozen,
                thaw: thaw_signal,
            })
            .await;
        if sent.is_err() {
            errors.push(format!("{name} is not watched any more"));
            break;
        }
        thaws.push(thaw);
        match tokio::time::timeout(ANSWER_WITHIN, frozen_answer).await {
            Ok(Ok(Ok(()))) => services.push(*name),
            Ok(Ok(Err(e))) => errors.push(e),
            _ => errors.push(format!("{name} is not running now (restarting?)")),
        }
        if !errors.is_empty() {
            break;
        }
    }
    if !errors.is_empty() {
        drop(thaws);
        drop(closed);
        return Some(Reply::failed(format!(
            "cannot hold the stack still: {}; nothing was saved",
            errors.join("; ")
        )));
    }
    let held = format!(
        "opsbox: stack held still for a snapshot ({} ms to freeze)",
        began.elapsed().as_millis()
    );
    answer_held(control, write, services, &held).await;
    let _ = wait_for_end(lines).await;
    drop(thaws);
    drop(closed);
    let paused = began.elapsed().as_millis() as u64;
    output::info(&format!("opsbox: stack running again after {paused} ms"));
    Some(Reply {
        ok: true,
        paused_ms: Some(paused),
        ..Reply::default()
    })
}

async fn hold(
    control: &Control,
    lines: &mut tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: &mut OwnedWriteHalf,
    peer: Option<i32>,
) -> Option<Reply> {
    let began = Instant::now();
    let closed = match close_gate(control, false).await {
        Ok(closed) => closed,
        Err(reply) => return Some(reply),
    };
    let mut releases = Vec::new();
    let mut errors = Vec::new();
    let mut services = Vec::new();
    for (name, sender) in &control.children {
        let (stopped, stopped_answer) = oneshot::channel();
        let (release, release_signal) = oneshot::channel();
        let sent = sender
            .send(ChildControl::Hold {
                stopped,
                release: release_signal,
            })
            .await;
        if sent.is_err() {
            errors.push(format!("{name} is not watched any more"));
            continue;
        }
        match tokio::time::timeout(ANSWER_WITHIN, stopped_answer).await {
            Ok(Ok(())) => {
                services.push(*name);
                releases.push((*name, release));
            }
            _ => errors.push(format!("{name} did not stop (restarting?)")),
        }
    }
    // A swap an earlier client left half done is finished first, so this one starts clean.
    if errors.is_empty()
        && let Err(e) = recover(&control.snapshots).await
    {
        errors.push(e);
    }
    if errors.is_empty() {
        let held = format!(
            "opsbox: stack stopped for a restore ({} ms)",
            began.elapsed().as_millis()
        );
        answer_held(control, write, services, &held).await;
        if !wait_for_end(lines).await {
            wait_gone(peer).await;
        }
    }
    // Whatever the client did: a swap it left half done is finished (or discarded) before
    // any service reads the data.
    if let Err(e) = recover(&control.snapshots).await {
        errors.push(e);
    }
    if let Some(s3) = &control.s3
        && let Err(e) = s3.reopen()
    {
        errors.push(e.to_string());
    }
    let mut outcomes = Vec::new();
    for (name, release) in releases {
        let (outcome, outcome_answer) = oneshot::channel();
        if release.send(outcome).is_ok() {
            outcomes.push((name, outcome_answer));
        }
    }
    for (name, outcome) in outcomes {
        match tokio::time::timeout(READY_TIMEOUT + ANSWER_WITHIN, outcome).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => errors.push(e),
            _ => errors.push(format!("{name} did not become ready again")),
        }
    }
    drop(closed);
    let paused = began.elapsed().as_millis() as u64;
    // A reset's spare of `initial` is replaced, then what the swap replaced is deleted,
    // meanwhile (the spare first: a reset right after this one waits for it).
    let snapshots = control.snapshots.clone();
    tokio::task::spawn_blocking(move || {
        let replenished = snapshot::spare::replenish(&snapshots, snapshot::INITIAL);
        snapshots.clean_leftovers();
        replenished
    });
    if errors.is_empty() {
        output::info(&format!("opsbox: stack running again after {paused} ms"));
        Some(Reply {
            ok: true,
            paused_ms: Some(paused),
            ..Reply::default()
        })
    } else {
        Some(Reply::failed(errors.join("; ")))
    }
}

/// Finish (or discard) a restore's swap that its client left half done.
async fn recover(snapshots: &Snapshots) -> Result<(), String> {
    let snapshots = snapshots.clone();
    match tokio::task::spawn_blocking(move || snapshot::restore::recover(&snapshots)).await {
        Ok(Ok(recovered)) => {
            if let Some(message) = recovered.message() {
                output::warn(&message);
            }
            Ok(())
        }
        Ok(Err(e)) => Err(format!("cannot finish the interrupted restore: {e}")),
        Err(e) => Err(format!("cannot finish the interrupted restore: {e}")),
    }
}
