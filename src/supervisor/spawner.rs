//! A long-lived thread that performs every fork. A parent-death signal (PR_SET_PDEATHSIG) fires
//! when the *thread* that forked the child exits, not the process; tokio's worker and blocking
//! threads come and go, so children are forked from this one thread, which lives as long as
//! opsbox does.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

/// Run `spawn` on the spawner thread (inside the current tokio runtime) and return its result.
pub async fn on_spawner_thread<T: Send + 'static>(
    spawn: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let sender = SPAWNER.get_or_init(|| {
        let handle = tokio::runtime::Handle::current();
        let (sender, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("opsbox-spawner".into())
            .spawn(move || {
                let _runtime = handle.enter();
                for job in receiver {
                    job();
                }
            })
            .expect("cannot start the spawner thread");
        sender
    });
    let (reply, answer) = tokio::sync::oneshot::channel();
    sender
        .send(Box::new(move || {
            let _ = reply.send(spawn());
        }))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
}
