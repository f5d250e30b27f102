//! The way to S3: the pooled HTTPS client, signing, presigned redirects for NARs, streaming
//! both ways, and S3's answers mapped to statuses Nix will not remember as misses.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use super::log::log;
use super::respond::{Body, BoxError, empty, redirect, text};
use super::route::Target;
use super::sign::{self, Verdict};
use super::state::{InFlight, MountEntry, State, Upstream};

/// The longest wait for S3's answer or for the next piece of its body.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// hyper's read buffer for S3's answers. With its default (~400 KiB) the proxy spent about a
/// quarter more CPU per byte on large NARs (bench-proxy.sh); 2 MiB saved a little more but
/// cost 7 MiB more peak RSS. It bounds memory per transfer, never by the object's size.
pub(super) const UPSTREAM_READ_BUF: usize = 1024 * 1024;

pub(super) const REQUEST_HEADERS: &[HeaderName] = &[
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LENGTH,
    header::CACHE_CONTROL,
];

const RESPONSE_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::EXPIRES,
];

/// Forwards a routed request to S3 (or answers a NAR with a presigned redirect) and maps the
/// answer; `guard` keeps the request in flight until the body is done.
pub(super) async fn forward(
    state: &State,
    target: Target,
    req: Request<Incoming>,
    guard: InFlight,
) -> Response<Body> {
    let what = target.what();
    let Target {
        name,
        key,
        method,
        mount,
        session,
        peer_uid,
    } = target;
    let (region, url) = match sign::upstream(&mount.s3, &key) {
        Ok(target) => target,
        Err(e) => {
            log(format!("{what}: {e:#} (502)"));
            return text(
                StatusCode::BAD_GATEWAY,
                "the cache's S3 settings are invalid; see the proxy log",
            );
        }
    };
    // Uploads a stopped proxy left unfinished go first (the next push's first request).
    if peer_uid == super::paths::uid() {
        super::multipart::abort_leftovers(state, &name, &mount, &session).await;
    }
    // NARs are most of the bytes: where S3 takes presigned URLs, Nix gets one and downloads
    // straight from S3 (curl, and so Nix, follows redirects), and the proxy copies nothing.
    if method == Method::GET
        && key.starts_with("nar/")
        && state.redirect_nars
        && presign_works(state, &mount, &session, &name).await
    {
        match sign::presigned_get(&session, region, &url, PRESIGNED_FOR, SystemTime::now()) {
            Ok(location) => match HeaderValue::from_str(&location) {
                Ok(location) => {
                    if state.verbose {
                        log(format!("{what}: 307 to a presigned S3 URL"));
                    }
                    return redirect(location);
                }
                Err(_) => log(format!("{what}: the presigned URL is no header; streaming")),
            },
            Err(e) => log(format!("{what}: cannot presign ({e:#}); streaming")),
        }
    }
    // S3 wants x-amz-* headers signed; the storage class is the only one we add.
    let amz: Vec<(&str, &str)> = match mount.s3.params.storage_class() {
        Some(class) if method == Method::PUT => vec![("x-amz-storage-class", class)],
        _ => Vec::new(),
    };
    let signed = match sign::signed_headers(&session, region, method.as_str(), &url, &amz) {
        Ok(h) => h,
        Err(e) => {
            log(format!("{what}: cannot sign: {e:#} (502)"));
            return text(StatusCode::BAD_GATEWAY, "cannot sign the upstream request");
        }
    };
    let (parts, body) = req.into_parts();
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if method == Method::PUT && super::multipart::wanted(&mount, length) {
        let ct = parts.headers.get(header::CONTENT_TYPE).cloned();
        let resp = super::multipart::upload(
            state,
            &what,
            &name,
            &mount,
            &session,
            region,
            &url,
            ct,
            body,
            length.unwrap_or(0),
        )
        .await;
        drop(guard);
        return resp;
    }
    let progress = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let up_body: Body = if method == Method::PUT {
        // Streamed through; S3 needs Content-Length on PUT, which Nix (curl) always sends.
        let progress = progress.clone();
        body.map_err(|e| Box::new(e) as BoxError)
            .map_frame(move |f| {
                *progress.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
                f
            })
            .boxed_unsync()
    } else {
        empty()
    };
    let mut up = Request::builder()
        .method(method.clone())
        .uri(&url)
        .header(header::USER_AGENT, super::state::USER_AGENT);
    for (k, v) in signed {
        up = up.header(k, v);
    }
    for (k, v) in &amz {
        up = up.header(*k, *v);
    }
    for h in REQUEST_HEADERS {
        if let Some(v) = parts.headers.get(h) {
            up = up.header(h, v);
        }
    }
    let up = match up.body(up_body) {
        Ok(r) => r,
        Err(e) => {
            log(format!(
                "{what}: cannot build the upstream request: {e} (502)"
            ));
            return text(StatusCode::BAD_GATEWAY, "cannot build the upstream request");
        }
    };
    let failed = |kind: &str, detail: String| {
        // No URL in the message: hyper's errors do not carry it.
        log(format!("{what}: upstream {kind}: {detail} (502)"));
        text(
            StatusCode::BAD_GATEWAY,
            &format!("the S3 endpoint {kind}; see the proxy log"),
        )
    };
    let resp = match answer_in_time(state.client.request(up), &progress).await {
        Some(Ok(r)) => r,
        Some(Err(e)) if is_timeout(&e) => return failed("timed out", error_chain(&e)),
        Some(Err(e)) if e.is_connect() => return failed("cannot connect", error_chain(&e)),
        Some(Err(e)) => return failed("failed", error_chain(&e)),
        None => return failed("timed out", "no answer in time".into()),
    };
    let status = resp.status().as_u16();
    if (200..300).contains(&status) || matches!(status, 304 | 412 | 416) {
        if peer_uid == 0 && key == "nix-cache-info" {
            state
                .daemon_used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone());
        }
        if state.verbose {
            log(format!("{what}: {status}"));
        }
        let p = &mount.s3.params;
        if key == "nix-cache-info"
            && method == Method::GET
            && status == 200
            && (p.priority().is_some() || p.want_mass_query().is_some())
        {
            let body = read_limited(resp, 64 * 1024).await;
            return cache_info_response(&with_url_settings(
                &body,
                p.priority(),
                p.want_mass_query(),
            ));
        }
        return pass(resp, guard);
    }
    // An error: S3 explains it in a small XML body (none for HEAD).
    let body = read_limited(resp, 64 * 1024).await;
    let (code, message) = sign::error_code(&body);
    let verdict = sign::classify(status, code.as_deref());
    let reason = format!(
        "upstream {status} {}{}",
        code.as_deref().unwrap_or("(no error code)"),
        message.map(|m| format!(": {m}")).unwrap_or_default()
    );
    // Writes: Nix remembers no failed upload, so S3's refusal goes to Nix as S3 said it, and
    // a policy that denies writes (AccessDenied) says nothing about the session's reads.
    if method == Method::PUT
        && let Some((s, session_fault)) = write_refusal(status, code.as_deref())
    {
        if session_fault {
            session.refused.store(true, Ordering::Relaxed);
        }
        log(format!("{what}: S3 refused the upload: {reason} ({s})"));
        return text(
            StatusCode::from_u16(s).unwrap_or(StatusCode::FORBIDDEN),
            &format!(
                "S3 refused the upload to cache {name:?}: {}",
                reason.trim_start_matches("upstream ")
            ),
        );
    }
    match verdict {
        Verdict::Pass => unreachable!("handled above"),
        Verdict::NotFound => {
            if state.verbose {
                log(format!("{what}: 404"));
            }
            text(StatusCode::NOT_FOUND, "no such object in the cache")
        }
        Verdict::CredentialsRefused => {
            session.refused.store(true, Ordering::Relaxed);
            let hint = if code.as_deref() == Some("AccessDenied") || code.is_none() {
                " (if the key is merely missing, S3 says AccessDenied unless the policy grants s3:ListBucket)"
            } else {
                ""
            };
            log(format!(
                "{what}: S3 refused the AWS session: {reason}{hint} (503)"
            ));
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "S3 refused the AWS session for cache {name:?} ({}); run `nixstore-auth login` or start the command through `nixstore-auth exec` again",
                    code.as_deref().unwrap_or("403")
                ),
            )
        }
        Verdict::Upstream(s) => {
            log(format!("{what}: {reason} ({s})"));
            text(
                StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY),
                &format!(
                    "S3 answered {status} {}; see the proxy log",
                    code.as_deref().unwrap_or("")
                ),
            )
        }
    }
}

/// `nix-cache-info` with the cache URL's `priority` and `want-mass-query`: the daemon reads the
/// cache through the proxy's URL, which cannot carry them, and Nix takes them from this file
/// when its URL has none (the same meaning as on Nix's own `s3://` URL).
fn with_url_settings(body: &str, priority: Option<i64>, mass: Option<bool>) -> String {
    let mut out: String = body
        .lines()
        .filter(|l| {
            !(priority.is_some() && l.starts_with("Priority:")
                || mass.is_some() && l.starts_with("WantMassQuery:"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(p) = priority {
        out.push_str(&format!("Priority: {p}\n"));
    }
    if let Some(m) = mass {
        out.push_str(&format!("WantMassQuery: {}\n", u8::from(m)));
    }
    out
}

fn cache_info_response(text: &str) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(text.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/x-nix-cache-info"),
    );
    r
}

/// What S3's refusal of a write (PUT) becomes: `Some((status for Nix, whether the session
/// itself is at fault))` for a 4xx, passed on as it is; `None` keeps the read rule (5xx stay
/// 5xx). Only errors about the credentials themselves mark the session refused, not
/// AccessDenied (a policy that denies writes still allows reads).
fn write_refusal(status: u16, code: Option<&str>) -> Option<(u16, bool)> {
    if !(400..500).contains(&status) {
        return None;
    }
    let session_fault = matches!(
        code,
        Some(
            "ExpiredToken"
                | "TokenRefreshRequired"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "InvalidSecurity"
        )
    );
    Some((status, session_fault))
}

/// How long a presigned NAR URL stays valid. Nix follows it at once; S3 checks it only when
/// the download starts, so a long NAR outlives it safely.
const PRESIGNED_FOR: Duration = Duration::from_secs(300);

/// Whether S3 accepts presigned GETs from `session` for this mount, found once per mount entry
/// (every lease brings a new one) with a presigned GET of `nix-cache-info`. Anything but a 2xx
/// (moto with authentication on answers 500, a store may not support them, a firewall may
/// differ) keeps NARs streaming through the proxy, which always works.
async fn presign_works(
    state: &State,
    mount: &MountEntry,
    session: &sign::Session,
    name: &str,
) -> bool {
    *mount
        .presign
        .get_or_init(|| async {
            let answer = presigned_probe(state, mount, session).await;
            let ok = matches!(&answer, Ok(s) if s.is_success());
            log(match (&answer, ok) {
                (_, true) => format!(
                    "cache {name}: S3 takes presigned URLs; NAR downloads go straight to S3 (307)"
                ),
                (Ok(s), false) => format!(
                    "cache {name}: a presigned GET got {}; NARs stream through the proxy",
                    s.as_u16()
                ),
                (Err(e), false) => format!(
                    "cache {name}: a presigned GET failed ({e}); NARs stream through the proxy"
                ),
            });
            ok
        })
        .await
}

/// S3's status for a presigned GET of the mount's `nix-cache-info`, or why there is none.
async fn presigned_probe(
    state: &State,
    mount: &MountEntry,
    session: &sign::Session,
) -> Result<StatusCode, String> {
    let (region, url) =
        sign::upstream(&mount.s3, "nix-cache-info").map_err(|e| format!("{e:#}"))?;
    let url = sign::presigned_get(session, region, &url, PRESIGNED_FOR, SystemTime::now())
        .map_err(|e| format!("{e:#}"))?;
    let req = Request::get(url)
        .header(header::USER_AGENT, super::state::USER_AGENT)
        .body(empty())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(PROBE_TIMEOUT, state.client.request(req))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| error_chain(&e))?;
    let status = resp.status();
    let _ = read_limited(resp, 64 * 1024).await;
    Ok(status)
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits for S3's answer until `READ_TIMEOUT` passes with no progress: none since `last` (set
/// when the request started and at every piece of an upload, which S3 answers only once it
/// has all of it). None when the time ran out.
pub(super) async fn answer_in_time<F: std::future::Future>(
    fut: F,
    last: &std::sync::Mutex<tokio::time::Instant>,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        let since = *last.lock().unwrap_or_else(|e| e.into_inner());
        match tokio::time::timeout_at(since + READ_TIMEOUT, &mut fut).await {
            Ok(out) => return Some(out),
            Err(_) if *last.lock().unwrap_or_else(|e| e.into_inner()) == since => return None,
            Err(_) => {}
        }
    }
}

/// Sends `req` on `client` within the read timeout (`answer_in_time`). A failure comes back as
/// the proxy log's line and the shorter text the caller is answered, naming `what` ("cache",
/// "store") and never a URL or a header (hyper's errors carry neither).
pub(super) async fn send_in_time(
    client: &Upstream,
    req: Request<Body>,
    progress: &std::sync::Mutex<tokio::time::Instant>,
    what: &str,
) -> Result<Response<Incoming>, (String, String)> {
    match answer_in_time(client.request(req), progress).await {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => {
            let kind = if is_timeout(&e) {
                "timed out"
            } else if e.is_connect() {
                "cannot be reached"
            } else {
                "failed"
            };
            Err((
                format!("the {what} {kind}: {}", error_chain(&e)),
                format!("the {what} {kind}; see the proxy log"),
            ))
        }
        None => Err((
            format!("the {what} timed out"),
            format!("the {what} timed out; see the proxy log"),
        )),
    }
}

pub(super) fn is_timeout(e: &hyper_util::client::legacy::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        src = s.source();
    }
    false
}

/// The error with its causes, "a: b: c" (hyper's top-level messages alone say little).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// S3's response body on its way to Nix: fails when S3 sends nothing for `READ_TIMEOUT`, and
/// holds the in-flight count until done.
struct Relay {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _guard: InFlight,
}

impl hyper::body::Body for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                let next = tokio::time::Instant::now() + READ_TIMEOUT;
                self.deadline.as_mut().reset(next);
                Poll::Ready(f.map(|r| r.map_err(|e| Box::new(e) as BoxError)))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err("the S3 endpoint stopped sending".into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Passes S3's answer on, streaming its body; the request counts as in flight until it is done.
pub(super) fn pass(resp: Response<Incoming>, guard: InFlight) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let body = Relay {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(READ_TIMEOUT)),
        _guard: guard,
    }
    .boxed_unsync();
    let mut out = Response::new(body);
    *out.status_mut() = parts.status;
    for h in RESPONSE_HEADERS {
        if let Some(v) = parts.headers.get(h) {
            out.headers_mut().insert(h.clone(), v.clone());
        }
    }
    out
}

pub(super) async fn read_limited(resp: Response<Incoming>, limit: usize) -> String {
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Ok(Ok(Some(Ok(frame)))) = tokio::time::timeout(READ_TIMEOUT, body.frame())
        .await
        .map(Ok::<_, ()>)
    {
        if let Ok(chunk) = frame.into_data() {
            buf.extend_from_slice(&chunk);
        }
        if buf.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The client for S3: HTTP/1.1, HTTPS with the system's roots, pooled connections, no
/// redirects (S3's redirects are errors to report, not to follow).
pub(super) fn upstream_client() -> Upstream {
    use hyper_util::client::legacy::connect::HttpConnector;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
        .unwrap_or_else(|e| {
            // Plain-HTTP endpoints still work; HTTPS ones then fail with a certificate error.
            log(format!(
                "no system CA certificates ({e}); HTTPS endpoints will fail"
            ));
            // Invariant: aws-lc-rs, the provider we build with, has the default versions.
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("aws-lc-rs supports the default TLS versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        })
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .http1_max_buf_size(UPSTREAM_READ_BUF)
        .build(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_s_priority_and_mass_query_reach_nix_in_nix_cache_info() {
        let info = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n";
        assert_eq!(
            with_url_settings(info, Some(10), None),
            "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 10\n"
        );
        assert_eq!(
            with_url_settings("StoreDir: /nix/store\n", None, Some(false)),
            "StoreDir: /nix/store\nWantMassQuery: 0\n"
        );
    }

    #[test]
    fn a_refused_write_is_passed_on_and_only_credential_errors_blame_the_session() {
        assert_eq!(write_refusal(403, Some("AccessDenied")), Some((403, false)));
        assert_eq!(write_refusal(403, None), Some((403, false)));
        assert_eq!(
            write_refusal(400, Some("EntityTooLarge")),
            Some((400, false))
        );
        assert_eq!(write_refusal(403, Some("ExpiredToken")), Some((403, true)));
        assert_eq!(
            write_refusal(403, Some("SignatureDoesNotMatch")),
            Some((403, true))
        );
        // Reads keep their rule: a 403 AccessDenied on GET is still a credential problem.
        assert_eq!(
            sign::classify(403, Some("AccessDenied")),
            Verdict::CredentialsRefused
        );
        assert_eq!(write_refusal(503, Some("SlowDown")), None);
        assert_eq!(write_refusal(500, None), None);
    }
}
