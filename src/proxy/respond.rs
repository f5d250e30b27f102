//! The proxy's own answers: short text bodies, empty bodies, redirects.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A short text answer, never cached.
pub fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(
        // Nix may show the body: S3's error codes in it are escaped like log lines.
        Full::new(Bytes::from(format!(
            "nixstore-auth proxy: {}\n",
            super::log::clean(msg, 1024)
        )))
        .map_err(|never| match never {})
        .boxed_unsync(),
    );
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A 307 to `location`, never cached: the URL it names expires.
pub fn redirect(location: HeaderValue) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let h = r.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The cache's `nix-cache-info` answered by the proxy itself (while a person is needed).
pub fn cache_info(body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/x-nix-cache-info"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
