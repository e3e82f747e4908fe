//! The gate every S3 request passes: a snapshot of a running stack closes it to writes (a
//! save: reads go on), or to everything (a restore swaps the directories underneath). Closing
//! waits for the requests already inside, so the files hold still once it is closed.

use std::sync::Arc;

use http::Method;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

#[derive(Debug, Clone, Default)]
pub struct Gate {
    all: Arc<RwLock<()>>,
    writes: Arc<RwLock<()>>,
}

/// A request inside the gate; the gate cannot close until it is dropped.
#[derive(Debug)]
pub struct Pass {
    _all: OwnedRwLockReadGuard<()>,
    _write: Option<OwnedRwLockReadGuard<()>>,
}

/// A closed gate; dropping it opens the gate again.
#[derive(Debug)]
pub struct Closed {
    _guard: OwnedRwLockWriteGuard<()>,
}

impl Gate {
    /// Wait until a request with `method` may go in.
    pub async fn enter(&self, method: &Method) -> Pass {
        let all = Arc::clone(&self.all).read_owned().await;
        let write = if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            None
        } else {
            Some(Arc::clone(&self.writes).read_owned().await)
        };
        Pass {
            _all: all,
            _write: write,
        }
    }

    /// Hold every request that changes data, once those inside have finished.
    pub async fn close_writes(&self) -> Closed {
        Closed {
            _guard: Arc::clone(&self.writes).write_owned().await,
        }
    }

    /// Hold every request, once those inside have finished.
    pub async fn close(&self) -> Closed {
        Closed {
            _guard: Arc::clone(&self.all).write_owned().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn closed_to_writes_lets_reads_in_and_holds_writes_until_opened() {
        let gate = Gate::default();
        let closed = gate.close_writes().await;
        let read = tokio::time::timeout(Duration::from_millis(100), gate.enter(&Method::GET)).await;
        assert!(read.is_ok(), "a GET was held by a gate closed to writes");
        drop(read);
        let put = tokio::time::timeout(Duration::from_millis(100), gate.enter(&Method::PUT)).await;
        assert!(put.is_err(), "a PUT went through a gate closed to writes");
        drop(closed);
        let put = tokio::time::timeout(Duration::from_millis(100), gate.enter(&Method::PUT)).await;
        assert!(put.is_ok(), "a PUT was still held after the gate opened");
    }

    #[tokio::test]
    async fn closing_waits_for_the_requests_inside() {
        let gate = Gate::default();
        let inside = gate.enter(&Method::GET).await;
        let closing = tokio::time::timeout(Duration::from_millis(100), gate.close()).await;
        assert!(
            closing.is_err(),
            "the gate closed over a request still inside"
        );
        drop(inside);
        let closed = tokio::time::timeout(Duration::from_millis(100), gate.close()).await;
        assert!(closed.is_ok());
    }
}
