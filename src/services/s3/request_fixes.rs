//! What s3s 0.14.1 itself (not s3s-fs) gets wrong, fixed around it:
//!
//! - before s3s: a body sent without Content-Length (`Transfer-Encoding: chunked`), which s3s
//!   refuses with 411 unless it is aws-chunked, is spooled to a temp file and given its length;
//!   a SigV4 request signed with a `Date` header and no `x-amz-date` (s3s insists
//!   on `x-amz-date`); presigned `X-Amz-Expires` outside 1..=604800 (s3s accepts any u32); a
//!   `Content-MD5` that is empty or not base64 of 16 bytes (400 InvalidDigest on every call,
//!   before the body is read);
//! - after s3s: every response carries `x-amz-request-id` and every error body the same
//!   `RequestId` (s3s sets neither); a 304 has no body.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderValue, Method, Request, Response, StatusCode};
use s3s::dto::{Timestamp, TimestampFormat};

/// S3's limit on a presigned URL's lifetime: seven days.
const MAX_PRESIGNED_EXPIRES: u64 = 604_800;

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A request id unique within this server's lifetime and unlikely to repeat across restarts.
pub fn request_id() -> String {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    });
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    format!("{start:08X}{n:08X}")
}

/// A request refused before s3s sees it, with S3's code and status.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
}

impl Refused {
    pub fn incomplete_body() -> Refused {
        Refused {
            status: StatusCode::BAD_REQUEST,
            code: "IncompleteBody",
            message: "The request body could not be received",
        }
    }

    pub fn response(&self) -> Response<s3s::Body> {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
            self.code, self.message
        );
        let mut response = Response::new(s3s::Body::from(xml));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        response
    }
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A PUT or POST without Content-Length whose body is not aws-chunked (which carries its own
/// decoded length): receive the body into an unlinked temp file, then hand s3s a body of known
/// length. Memory stays bounded whatever the size.
pub async fn spool_unsized_body(
    req: &mut Request<s3s::Body>,
    temp_dir: &Path,
) -> std::io::Result<()> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let headers = req.headers();
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let streaming = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    let has_length = headers.contains_key(http::header::CONTENT_LENGTH);
    if !chunked || streaming || has_length || !matches!(*req.method(), Method::PUT | Method::POST) {
        return Ok(());
    }
    let n = SPOOLED.fetch_add(1, Ordering::Relaxed);
    let path = temp_dir.join(format!("{}-spool-{n}.part", std::process::id()));
    let mut file = fs_err::tokio::File::create(&path).await?;
    // Unlinked at once: the open handles keep the bytes, nothing is left after a crash.
    let reader = fs_err::tokio::File::open(&path).await?;
    fs_err::tokio::remove_file(&path).await?;
    let mut body = std::mem::take(req.body_mut());
    let mut length = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        length += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    drop(file);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader.into_parts().0, 512 * 1024)
        .map(|chunk| chunk.map(http_body::Frame::data));
    *req.body_mut() = s3s::Body::http_body(http_body_util::StreamBody::new(stream));
    let headers = req.headers_mut();
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(())
}

static SPOOLED: AtomicU64 = AtomicU64::new(0);

/// Check and adjust a request before s3s parses it.
pub fn before_s3s(req: &mut Request<s3s::Body>) -> Result<(), Refused> {
    if let Some(query) = req.uri().query()
        && query_value(query, "X-Amz-Signature").is_some()
        && let Some(expires) = query_value(query, "X-Amz-Expires")
    {
        let valid = expires
            .parse::<u64>()
            .is_ok_and(|seconds| (1..=MAX_PRESIGNED_EXPIRES).contains(&seconds));
        if !valid {
            return Err(Refused {
                status: StatusCode::FORBIDDEN,
                code: "AccessDenied",
                message: "X-Amz-Expires must be a number of seconds from 1 to 604800",
            });
        }
    }
    if let Some(md5) = req.headers().get("content-md5") {
        use base64::Engine as _;
        let valid = base64::engine::general_purpose::STANDARD
            .decode(md5.as_bytes())
            .is_ok_and(|digest| digest.len() == 16);
        if !valid {
            return Err(Refused {
                status: StatusCode::BAD_REQUEST,
                code: "InvalidDigest",
                message: "The Content-MD5 you specified is not the base64 of an MD5 digest",
            });
        }
    }
    add_amz_date_from_date(req);
    Ok(())
}

/// SigV4 lets a client sign the `Date` header instead of `x-amz-date`; s3s reads the time
/// only from `x-amz-date`. Adding it (unsigned: the signed-headers list is unchanged) lets
/// s3s verify the signature with the time the client signed.
fn add_amz_date_from_date(req: &mut Request<s3s::Body>) {
    let headers = req.headers();
    let is_v4 = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
    if !is_v4 || headers.contains_key("x-amz-date") {
        return;
    }
    let Some(date) = headers
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let basic = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = match Timestamp::parse(TimestampFormat::HttpDate, date) {
        Ok(timestamp) => time::OffsetDateTime::from(timestamp),
        // SigV4 also allows the ISO 8601 basic form in Date.
        Err(_) => match time::PrimitiveDateTime::parse(date, basic) {
            Ok(time) => time.assume_utc(),
            Err(_) => return,
        },
    };
    if let Ok(text) = parsed.format(basic)
        && let Ok(value) = HeaderValue::from_str(&text)
    {
        req.headers_mut().insert("x-amz-date", value);
    }
}

/// Add the request id (header and error body) and drop the body of a 304.
pub fn after_s3s(mut response: Response<s3s::Body>, request_id: &str) -> Response<s3s::Body> {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amz-request-id", value);
    }
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED {
        *response.body_mut() = s3s::Body::empty();
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
        response.headers_mut().remove(http::header::CONTENT_TYPE);
        return response;
    }
    if status.as_u16() < 300 {
        return response;
    }
    // Error bodies are small and held in memory by s3s (`bytes()` is None for streams).
    let Some(body) = response.body().bytes() else {
        return response;
    };
    let text = String::from_utf8_lossy(&body);
    if text.contains("<RequestId>") {
        return response;
    }
    let Some(at) = text.rfind("</Error>") else {
        return response;
    };
    let with_id = format!(
        "{}<RequestId>{request_id}</RequestId>{}",
        &text[..at],
        &text[at..]
    );
    let length = with_id.len();
    *response.body_mut() = s3s::Body::from(with_id);
    if let Ok(value) = HeaderValue::from_str(&length.to_string()) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_get_the_request_id() {
        let refused = Refused {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidDigest",
            message: "bad",
        };
        let response = after_s3s(refused.response(), "ABC123");
        assert_eq!(response.headers()["x-amz-request-id"], "ABC123");
        let body = response.body().bytes().unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.ends_with("<RequestId>ABC123</RequestId></Error>"),
            "{text}"
        );
        assert_eq!(
            response.headers()["content-length"],
            body.len().to_string().as_str()
        );
    }

    #[test]
    fn date_header_becomes_amz_date() {
        let mut req = Request::builder()
            .header("authorization", "AWS4-HMAC-SHA256 Credential=x")
            .header("date", "Fri, 24 May 2013 00:00:00 GMT")
            .body(s3s::Body::empty())
            .unwrap();
        before_s3s(&mut req).unwrap();
        assert_eq!(req.headers()["x-amz-date"], "20130524T000000Z");
    }
}
