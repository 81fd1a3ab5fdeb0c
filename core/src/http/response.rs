//! Response builders, and an error rendered as the spec's answer.

use crate::error::RegistryError;
use crate::http::body::Body;
use crate::ports::BlobStore;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// The response type of the core.
pub type ApiResponse<B> = Response<Body<<B as BlobStore>::Reader>>;

/// An empty response with `Content-Length: 0`.
pub(crate) fn empty<B: BlobStore>(status: StatusCode) -> ApiResponse<B> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A JSON response.
pub(crate) fn json_response<B: BlobStore>(status: StatusCode, body: Vec<u8>) -> ApiResponse<B> {
    json::<B>(status, body, false)
}

/// A JSON response, without its body to a `HEAD`.
pub(crate) fn json<B: BlobStore>(status: StatusCode, body: Vec<u8>, head: bool) -> ApiResponse<B> {
    let len = body.len();
    let mut r = Response::new(if head { Body::Empty } else { Body::full(body) });
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// Renders an error as the spec's JSON body with its status and headers.
pub fn error_response<B: BlobStore>(e: &RegistryError, head: bool) -> ApiResponse<B> {
    let mut r = json::<B>(e.status, e.body(), head);
    for (k, v) in &e.headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().append(k.clone(), v);
        }
    }
    r
}

/// Adds the `Link` header of the next page.
pub(crate) fn set_link<R>(resp: &mut Response<R>, target: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("<{target}>; rel=\"next\"")) {
        resp.headers_mut().insert(header::LINK, v);
    }
}
