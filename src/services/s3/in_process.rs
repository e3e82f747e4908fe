//! The storage as in-process callers (the console) see it: the endpoint's own backend behind
//! the same gate as its HTTP requests, so a snapshot of the running stack holds a console
//! upload or delete exactly as it holds a PUT from a client.
//!
//! Only the calls the console makes pass; the others answer NotImplemented.

use http::Method;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

use super::backend::Backend;
use super::gate::Gate;

/// A request as the endpoint's HTTP layer would hand it over after authentication.
pub fn request<T>(input: T) -> S3Request<T> {
    S3Request {
        input,
        method: Method::GET,
        uri: http::Uri::from_static("/"),
        headers: http::HeaderMap::new(),
        extensions: http::Extensions::new(),
        credentials: None,
        region: None,
        service: None,
        trailing_headers: None,
    }
}

#[derive(Debug, Clone)]
pub struct Gated {
    pub(super) backend: Backend,
    pub(super) gate: Gate,
}

/// The calls that pass, each through the gate as a request of its HTTP method would (reads
/// pass a gate closed to writes). The whole impl is made here: `async_trait` must see the
/// methods themselves.
macro_rules! through_gate {
    ($($name:ident($input:ty) -> $output:ty, $method:expr;)*) => {
        #[async_trait::async_trait]
        impl S3 for Gated {
            $(
                async fn $name(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    let _pass = self.gate.enter(&$method).await;
                    <Backend as S3>::$name(&self.backend, req).await
                }
            )*
        }
    };
}

through_gate! {
        list_buckets(ListBucketsInput) -> ListBucketsOutput, Method::GET;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output, Method::GET;
        head_object(HeadObjectInput) -> HeadObjectOutput, Method::HEAD;
        get_object(GetObjectInput) -> GetObjectOutput, Method::GET;
        create_bucket(CreateBucketInput) -> CreateBucketOutput, Method::PUT;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput, Method::DELETE;
        put_object(PutObjectInput) -> PutObjectOutput, Method::PUT;
        delete_object(DeleteObjectInput) -> DeleteObjectOutput, Method::DELETE;
}
