//! Uploads to a cloud mount (`push` and `watch-store` through the proxy, from its own user
//! only): GCS takes the body as it comes (PUT with the Bearer token, XML API); Azure takes it
//! by Put Blob (Content-Length signed by Shared Key, the body streamed) up to
//! [`BLOCKS_ABOVE`], and above that in blocks of [`BLOCK`] bytes (one in memory at a time)
//! committed by Put Block List. An upload is never retried here: its body can be sent once,
//! and the pusher retries the path.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::log::log;
use super::object::{ObjectMount, is_refusal};
use super::respond::{Body, BoxError, text};
use super::state::InFlight;
use super::upstream;
use crate::cloud::{AuthError, Authorized};

/// Above this many bytes an Azure upload goes in blocks.
const BLOCKS_ABOVE: u64 = 256 * 1024 * 1024;
/// One block of an Azure block upload.
const BLOCK: usize = 32 * 1024 * 1024;

/// What an upload came to.
enum Done {
    Stored,
    /// The store refused the credential: why.
    Refused(String),
    /// Anything else: the status for the pusher and why (for the log).
    Failed(StatusCode, String),
}

impl From<AuthError> for Done {
    fn from(e: AuthError) -> Done {
        match e {
            AuthError::NeedsPerson { why, fix } => Done::Refused(format!("{why} (fix: {fix})")),
            AuthError::Refused(why) => Done::Refused(why),
            AuthError::Transient(why) => Done::Failed(StatusCode::SERVICE_UNAVAILABLE, why),
        }
    }
}

/// Uploads the body of `req` as `key`.
pub(super) async fn upload(
    mount: &ObjectMount,
    what: &str,
    key: &str,
    req: Request<Incoming>,
    guard: InFlight,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let header_of = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let Some(len) = header_of(header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok()) else {
        return text(
            StatusCode::LENGTH_REQUIRED,
            "uploads to GCS and Azure caches need a Content-Length",
        );
    };
    let mut headers = vec![
        (
            "content-type".to_string(),
            header_of(header::CONTENT_TYPE).unwrap_or_else(|| "application/octet-stream".into()),
        ),
        ("content-length".to_string(), len.to_string()),
    ];
    if let Some(e) = header_of(header::CONTENT_ENCODING) {
        headers.push(("content-encoding".to_string(), e));
    }
    let done = match &mount.azure {
        Some(blob) if len > BLOCKS_ABOVE => blocks(blob, key, body, &headers[0].1).await,
        Some(blob) => {
            headers.push(("x-ms-blob-type".to_string(), "BlockBlob".to_string()));
            match blob
                .authorize_url(Method::PUT, blob.container.url(key), &headers)
                .await
            {
                Ok(a) => send(mount, &a, &[], body).await,
                Err(e) => e.into(),
            }
        }
        None => match mount.auth.authorize(Method::PUT, key).await {
            Ok(a) => send(mount, &a, &headers, body).await,
            Err(e) => e.into(),
        },
    };
    drop(guard);
    match done {
        Done::Stored => {
            log(format!("{what}: stored ({len} bytes)"));
            let mut r = Response::new(super::respond::empty());
            *r.status_mut() = StatusCode::OK;
            r
        }
        Done::Refused(why) => {
            log(format!("{what}: the store refused the upload: {why} (403)"));
            text(
                StatusCode::FORBIDDEN,
                &format!(
                    "the store refused the credential for this upload; fix: `{}`",
                    mount.fix
                ),
            )
        }
        Done::Failed(status, why) => {
            log(format!("{what}: {why} ({})", status.as_u16()));
            text(status, "the upload failed; see the proxy log")
        }
    }
}

/// Sends `a` (plus `extra` headers, unsigned) with the request's body streamed.
async fn send(
    mount: &ObjectMount,
    a: &Authorized,
    extra: &[(String, String)],
    body: Incoming,
) -> Done {
    let mut up = Request::builder()
        .method(Method::PUT)
        .uri(a.url.as_str())
        .header(header::USER_AGENT, super::state::USER_AGENT);
    for (k, v) in &a.headers {
        up = up.header(k, v);
    }
    for (k, v) in extra {
        match HeaderValue::from_str(v) {
            Ok(v) => up = up.header(k.as_str(), v),
            Err(_) => {
                return Done::Failed(StatusCode::BAD_REQUEST, format!("a bad {k} header"));
            }
        }
    }
    let body: Body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
    let up = match up.body(body) {
        Ok(r) => r,
        Err(e) => {
            return Done::Failed(
                StatusCode::BAD_GATEWAY,
                format!("cannot build the request: {e}"),
            );
        }
    };
    let resp = match mount.client.request(up).await {
        Ok(r) => r,
        Err(e) => {
            return Done::Failed(
                StatusCode::BAD_GATEWAY,
                format!("the store failed: {}", upstream::error_chain(&e)),
            );
        }
    };
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        let _ = upstream::read_limited(resp, 4096).await;
        return Done::Stored;
    }
    let detail = upstream::read_limited(resp, 4096).await;
    let code = crate::azure::error_code(&detail);
    let shown = super::log::clean(code.unwrap_or(detail.trim()), 200);
    if is_refusal(status, code) {
        return Done::Refused(format!("{status} {shown}"));
    }
    let s = if matches!(status, 429 | 503) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    };
    Done::Failed(s, format!("the store answered {status}: {shown}"))
}

/// An Azure block upload: Put Block for each [`BLOCK`] bytes of the body, then Put Block List.
async fn blocks(
    blob: &Arc<crate::azure::Blob>,
    key: &str,
    mut body: Incoming,
    content_type: &str,
) -> Done {
    let mut ids = Vec::new();
    let mut buf = BytesMut::with_capacity(BLOCK);
    loop {
        let frame = match body.frame().await {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                return Done::Failed(
                    StatusCode::BAD_REQUEST,
                    format!("reading the upload failed: {e}"),
                );
            }
            None => break,
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        while buf.len() >= BLOCK {
            let chunk: Bytes = buf.split_to(BLOCK).freeze();
            let id = crate::azure::upload::block_id(ids.len());
            if let Err(e) = blob.put_block(key, &id, chunk).await {
                return e.into();
            }
            ids.push(id);
        }
    }
    if !buf.is_empty() {
        let id = crate::azure::upload::block_id(ids.len());
        if let Err(e) = blob.put_block(key, &id, buf.freeze()).await {
            return e.into();
        }
        ids.push(id);
    }
    match blob.put_block_list(key, &ids, content_type).await {
        Ok(()) => Done::Stored,
        Err(e) => e.into(),
    }
}
