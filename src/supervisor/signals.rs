//! The signals opsbox itself receives: the first SIGINT/SIGTERM asks for a graceful stop, a
//! second one forces it.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How urgently opsbox was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopRequest {
    None,
    Graceful,
    Force,
}

/// Install handlers for SIGINT, SIGTERM and SIGHUP; the receiver moves to Graceful on the
/// first and Force on the second.
pub fn install() -> std::io::Result<watch::Receiver<StopRequest>> {
    let (sender, receiver) = watch::channel(StopRequest::None);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
                _ = hangup.recv() => {}
            }
            let next = match *sender.borrow() {
                StopRequest::None => StopRequest::Graceful,
                _ => StopRequest::Force,
            };
            if sender.send(next).is_err() {
                break;
            }
        }
    });
    Ok(receiver)
}
