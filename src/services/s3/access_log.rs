//! The access log: one line per request (and one per internal error) appended to the log file.

use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Appends lines to the S3 log file; shared by the server and the storage backend.
#[derive(Debug, Clone)]
pub struct AccessLog {
    file: Arc<Mutex<std::fs::File>>,
}

impl AccessLog {
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            fs_err::create_dir_all(parent)?;
        }
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AccessLog {
            file: Arc::new(Mutex::new(file.into_parts().0)),
        })
    }

    pub fn line(&self, text: &str) {
        let now = time::OffsetDateTime::now_utc();
        let stamp = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A failing log write must not fail the request; there is nowhere else to report it.
        let _ = writeln!(file, "{stamp} {text}");
    }

    pub fn error(&self, text: &str) {
        self.line(&format!("error: {text}"));
    }
}

/// What is known about a request when its response head is ready.
#[derive(Debug)]
pub struct RequestRecord {
    pub method: http::Method,
    pub path: String,
    pub status: u16,
    pub started: Instant,
}

/// A response body that counts its bytes and writes the access-log line when it is finished or dropped.
pub struct LoggedBody {
    inner: s3s::Body,
    bytes: u64,
    record: Option<RequestRecord>,
    log: AccessLog,
}

impl LoggedBody {
    pub fn new(inner: s3s::Body, record: RequestRecord, log: AccessLog) -> LoggedBody {
        LoggedBody {
            inner,
            bytes: 0,
            record: Some(record),
            log,
        }
    }

    fn finish(&mut self, outcome: &str) {
        if let Some(r) = self.record.take() {
            let micros = r.started.elapsed().as_micros();
            self.log.line(&format!(
                "{} {} {} {} bytes {}.{:03} ms{outcome}",
                r.method,
                r.path,
                r.status,
                self.bytes,
                micros / 1000,
                micros % 1000
            ));
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let outcome = if self.inner.is_end_stream() {
            ""
        } else {
            " (body not fully sent)"
        };
        self.finish(outcome);
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let outcome = format!(" (body failed: {e})");
                this.finish(&outcome);
            }
            Poll::Ready(None) => this.finish(""),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
