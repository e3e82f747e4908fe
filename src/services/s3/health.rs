//! MinIO's health routes, answered before s3s (and its authentication) sees the request.

use http::{Method, Request, Response, StatusCode};

/// `GET`/`HEAD` of `/minio/health/live` or `/minio/health/ready`: 200 with an empty body.
pub fn respond<B>(req: &Request<B>) -> Option<Response<s3s::Body>> {
    let is_health = matches!(
        req.uri().path(),
        "/minio/health/live" | "/minio/health/ready"
    );
    if !is_health || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let mut response = Response::new(s3s::Body::empty());
    *response.status_mut() = StatusCode::OK;
    Some(response)
}
