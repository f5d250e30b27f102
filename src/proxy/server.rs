//! The running proxy: the HTTP front Nix talks to, the control socket, and the idle clock.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use zeroize::Zeroizing;

use super::control::{self, MountStatus, Reply, WireMount};
use super::paths::{self, Layout};
use super::sign::{self, Session, Verdict};
use crate::cache::S3Ref;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;
type Upstream = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Body,
>;

/// The longest wait for S3's answer or for the next piece of its body.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// hyper's read buffer for S3's answers. With its default (~400 KiB) the proxy spent about a
/// quarter more CPU per byte on large NARs (bench-proxy.sh); 2 MiB saved a little more but
/// cost 7 MiB more peak RSS. It bounds memory per transfer, never by the object's size.
const UPSTREAM_READ_BUF: usize = 1024 * 1024;

/// One line in the proxy's log (its stderr), sanitised. Callers never pass secrets or request
/// paths (the path starts with the URL secret); they pass `NAME/KEY`.
pub fn log(msg: impl AsRef<str>) {
    super::log::line(msg.as_ref());
}

static NO_SECRET: super::log::Refusals = super::log::Refusals::new();
static BAD_HOST: super::log::Refusals = super::log::Refusals::new();

struct MountEntry {
    s3: S3Ref,
    session: Option<Arc<Session>>,
    /// When the session that was dropped had expired, for the 503's explanation.
    expired_at: Option<i64>,
    /// Whether S3 takes presigned GETs from this session: tried once, at the first NAR.
    presign: tokio::sync::OnceCell<bool>,
}

pub(super) struct State {
    secret: RwLock<Zeroizing<String>>,
    secret_file: PathBuf,
    mounts: RwLock<HashMap<String, Arc<MountEntry>>>,
    client: Upstream,
    leases: AtomicUsize,
    ever_leased: AtomicBool,
    in_flight: AtomicUsize,
    port: u16,
    verbose: bool,
    redirect_nars: bool,
    stop: tokio::sync::Notify,
    /// Caches whose `nix-cache-info` root (the nix-daemon) has fetched through the URL: proof,
    /// from the user's side, that the daemon uses the URL (an administrator may have listed it
    /// in a file the user cannot read).
    daemon_used: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl State {
    /// Takes mounts and credentials from a client. Each mount keeps the session it has unless
    /// the new one is fresher, or the old one expired or was refused by S3.
    fn apply_lease(&self, creds: crate::aws::Credentials, mounts: Vec<WireMount>) {
        let now = sign::now_epoch();
        let new = Arc::new(Session::new(&creds));
        drop(creds);
        let mut map = self.mounts.write().unwrap_or_else(|e| e.into_inner());
        for m in mounts {
            let keep = map
                .get(&m.name)
                .and_then(|old| old.session.clone())
                .filter(|old| {
                    !old.expired(now)
                        && !old.refused()
                        && !sign::fresher(new.expiration, old.expiration)
                });
            let took_new = keep.is_none();
            let session = keep.unwrap_or_else(|| new.clone());
            if self.verbose {
                log(format!(
                    "mount {}: {} (expires {})",
                    m.name,
                    if took_new {
                        "took the client's session"
                    } else {
                        "kept its fresher session"
                    },
                    fmt_expiry(session.expiration)
                ));
            }
            map.insert(
                m.name.clone(),
                Arc::new(MountEntry {
                    s3: m.s3(),
                    session: Some(session),
                    expired_at: None,
                    presign: Default::default(),
                }),
            );
        }
    }

    fn status(&self) -> Reply {
        let now = sign::now_epoch();
        let map = self.mounts.read().unwrap_or_else(|e| e.into_inner());
        let mut mounts: Vec<MountStatus> = map
            .iter()
            .map(|(name, m)| MountStatus {
                name: name.clone(),
                url: m.s3.to_url(),
                session: match &m.session {
                    None if m.expired_at.is_some() => "expired",
                    None => "none",
                    Some(s) if s.expired(now) => "expired",
                    Some(s) if s.refused() => "refused",
                    Some(_) => "valid",
                }
                .into(),
                expiration: m
                    .session
                    .as_ref()
                    .and_then(|s| s.expiration)
                    .or(m.expired_at),
                nars: match m.presign.get() {
                    _ if !self.redirect_nars => "stream",
                    Some(true) => "redirect",
                    Some(false) => "stream",
                    None => "untried",
                }
                .into(),
                daemon_used: self
                    .daemon_used
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(name),
            })
            .collect();
        mounts.sort_by(|a, b| a.name.cmp(&b.name));
        Reply {
            ok: true,
            pid: std::process::id(),
            port: self.port,
            leases: self.leases.load(Ordering::SeqCst),
            mounts,
            ..Reply::default()
        }
    }
}

fn fmt_expiry(e: Option<i64>) -> String {
    match e {
        None => "never".into(),
        Some(e) => time::OffsetDateTime::from_unix_timestamp(e)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| e.to_string()),
    }
}

/// Counts a request as in flight until its response body is done.
struct InFlight(Arc<State>);

impl InFlight {
    fn new(state: &Arc<State>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
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

/// Compares without an early exit, so response times do not leak how much of a guess matched.
fn same_secret(given: &str, actual: &str) -> bool {
    let (a, b) = (given.as_bytes(), actual.as_bytes());
    let mut diff = (a.len() != b.len()) as u8;
    for (i, x) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ x;
    }
    diff == 0
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `key` is one of the files a Nix binary cache holds. Anything else is refused, so the
/// secret URL cannot be used to read or write arbitrary objects of the bucket.
pub fn cache_key_ok(key: &str) -> bool {
    let chars_ok = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+-._?=/:!".contains(&b));
    let segs: Vec<&str> = key.split('/').collect();
    if !chars_ok || segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return false;
    }
    match segs.as_slice() {
        ["nix-cache-info"] => true,
        [one] => one.ends_with(".narinfo") || one.ends_with(".ls"),
        ["nar" | "log" | "realisations" | "debuginfo", _] => true,
        _ => false,
    }
}

const REQUEST_HEADERS: &[HeaderName] = &[
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

/// Whether the request names the proxy itself (`127.0.0.1:PORT`), as every URL it hands out
/// does: anything else (a name that rebinds to loopback, a missing Host) is refused.
fn host_ok(req: &Request<Incoming>, port: u16) -> bool {
    let expected = format!("127.0.0.1:{port}");
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.as_bytes() == expected.as_bytes(),
        _ => false,
    }
}

/// Serves one request from a client owned by `peer_uid` (the proxy's own user, or root).
pub(super) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer_uid: u32,
) -> Result<Response<Body>, Infallible> {
    let guard = InFlight::new(&state);
    if !host_ok(&req, state.port) {
        BAD_HOST.note(|| {
            format!(
                "{} refused: a Host header not naming 127.0.0.1:{} (400)",
                req.method(),
                state.port
            )
        });
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "this proxy answers only to the URL nixstore-auth hands out (http://127.0.0.1:PORT/...)",
        ));
    }
    let path = req.uri().path().trim_start_matches('/');
    let (given, rest) = path.split_once('/').unwrap_or((path, ""));
    let authorised = {
        let secret = state.secret.read().unwrap_or_else(|e| e.into_inner());
        same_secret(given, &secret)
    };
    if !authorised {
        // Never log the path: a near miss of the secret would land in the log.
        NO_SECRET.note(|| {
            format!(
                "{} refused: the URL lacks the proxy's secret (401)",
                req.method()
            )
        });
        return Ok(text(
            StatusCode::UNAUTHORIZED,
            "the URL lacks this proxy's secret; use the URL that `nixstore-auth exec` hands to Nix (the secret changes with `nixstore-auth proxy rotate-secret`)",
        ));
    }
    let (name, raw_key) = rest.split_once('/').unwrap_or((rest, ""));
    let name = name.to_string();
    let Some(key) = percent_decode(raw_key).filter(|k| cache_key_ok(k)) else {
        log(format!(
            "{} {name}/{raw_key}: not a binary cache path (400)",
            req.method()
        ));
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "not a Nix binary cache path (nix-cache-info, *.narinfo, *.ls, nar/*, log/*)",
        ));
    };
    let method = req.method().clone();
    if !matches!(method, Method::GET | Method::HEAD | Method::PUT) {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET, HEAD and PUT are served",
        ));
    }
    // The daemon only reads; only the proxy's own user may write with its session.
    if method == Method::PUT && !super::peer::may_write(peer_uid, super::paths::uid()) {
        log(format!(
            "{method} {name}/{key} refused: uid {peer_uid} may only read (403)"
        ));
        return Ok(text(
            StatusCode::FORBIDDEN,
            "only the user who runs this proxy may upload through it",
        ));
    }
    let what = format!("{method} {name}/{key}");
    let mount = state
        .mounts
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .cloned();
    // An unknown name is a 503, not a 404: a proxy restarted without this mount must not make
    // the daemon remember misses for an hour.
    let Some(mount) = mount else {
        log(format!("{what}: no cache of that name is mounted (503)"));
        return Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "no cache named {name:?} is mounted; run the command through `nixstore-auth exec` so that it mounts the cache"
            ),
        ));
    };
    let now = sign::now_epoch();
    let session = match &mount.session {
        Some(s) if !s.expired(now) => s.clone(),
        other => {
            let why = match other
                .as_ref()
                .map(|s| s.expiration)
                .unwrap_or(mount.expired_at)
            {
                Some(e) => format!("the AWS session expired at {}", fmt_expiry(Some(e))),
                None => "there is no AWS session".into(),
            };
            log(format!("{what}: {why} (503)"));
            return Ok(text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "{why} for cache {name:?}; run `nixstore-auth login` or start the command through `nixstore-auth exec` again"
                ),
            ));
        }
    };
    let (region, url) = match sign::upstream(&mount.s3, &key) {
        Ok(target) => target,
        Err(e) => {
            log(format!("{what}: {e:#} (502)"));
            return Ok(text(
                StatusCode::BAD_GATEWAY,
                "the cache's S3 settings are invalid; see the proxy log",
            ));
        }
    };
    // NARs are most of the bytes: where S3 takes presigned URLs, Nix gets one and downloads
    // straight from S3 (curl, and so Nix, follows redirects), and the proxy copies nothing.
    if method == Method::GET
        && key.starts_with("nar/")
        && state.redirect_nars
        && presign_works(&state, &mount, &session, &name).await
    {
        match sign::presigned_get(&session, region, &url, PRESIGNED_FOR, SystemTime::now()) {
            Ok(location) => match HeaderValue::from_str(&location) {
                Ok(location) => {
                    if state.verbose {
                        log(format!("{what}: 307 to a presigned S3 URL"));
                    }
                    return Ok(redirect(location));
                }
                Err(_) => log(format!("{what}: the presigned URL is no header; streaming")),
            },
            Err(e) => log(format!("{what}: cannot presign ({e:#}); streaming")),
        }
    }
    let signed = match sign::signed_headers(&session, region, method.as_str(), &url) {
        Ok(h) => h,
        Err(e) => {
            log(format!("{what}: cannot sign: {e:#} (502)"));
            return Ok(text(
                StatusCode::BAD_GATEWAY,
                "cannot sign the upstream request",
            ));
        }
    };
    let (parts, body) = req.into_parts();
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
        .header(header::USER_AGENT, USER_AGENT);
    for (k, v) in signed {
        up = up.header(k, v);
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
            return Ok(text(
                StatusCode::BAD_GATEWAY,
                "cannot build the upstream request",
            ));
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
        Some(Err(e)) if is_timeout(&e) => return Ok(failed("timed out", error_chain(&e))),
        Some(Err(e)) if e.is_connect() => return Ok(failed("cannot connect", error_chain(&e))),
        Some(Err(e)) => return Ok(failed("failed", error_chain(&e))),
        None => return Ok(failed("timed out", "no answer in time".into())),
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
        return Ok(pass(resp, guard));
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
    Ok(match verdict {
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
    })
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
        .header(header::USER_AGENT, USER_AGENT)
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

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A 307 to `location`, never cached: the URL it names expires.
fn redirect(location: HeaderValue) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let h = r.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Waits for S3's answer until `READ_TIMEOUT` passes with no progress: none since `last` (set
/// when the request started and at every piece of an upload, which S3 answers only once it
/// has all of it). None when the time ran out.
async fn answer_in_time<F: std::future::Future>(
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

const USER_AGENT: &str = concat!("nixstore-auth-proxy/", env!("CARGO_PKG_VERSION"));

fn is_timeout(e: &hyper_util::client::legacy::Error) -> bool {
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
fn error_chain(e: &dyn std::error::Error) -> String {
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
fn pass(resp: Response<Incoming>, guard: InFlight) -> Response<Body> {
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

async fn read_limited(resp: Response<Incoming>, limit: usize) -> String {
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

async fn write_reply(w: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

async fn control_conn(state: Arc<State>, stream: UnixStream) {
    // The socket's directory is 0700 already; checking the peer costs nothing.
    match stream.peer_cred() {
        Ok(c) if c.uid() == paths::uid() => {}
        _ => return,
    }
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut leased = false;
    loop {
        let mut line = Zeroizing::new(Vec::new());
        match (&mut rd)
            .take(control::MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let req: control::Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(_) => {
                let _ = write_reply(
                    &mut wr,
                    &Reply {
                        error: Some("malformed control request".into()),
                        ..Reply::default()
                    },
                )
                .await;
                break;
            }
        };
        match req {
            control::Request::Lease { creds, mounts } => {
                let names: Vec<String> = mounts.iter().map(|m| m.name.clone()).collect();
                state.apply_lease(creds.into_credentials(), mounts);
                if !leased {
                    leased = true;
                    state.ever_leased.store(true, Ordering::SeqCst);
                    let n = state.leases.fetch_add(1, Ordering::SeqCst) + 1;
                    log(format!(
                        "client attached ({n} now) with caches {}",
                        names.join(", ")
                    ));
                }
                if write_reply(&mut wr, &state.status()).await.is_err() {
                    break;
                }
            }
            control::Request::Status => {
                let _ = write_reply(&mut wr, &state.status()).await;
                break;
            }
            control::Request::Stop => {
                log("stop requested");
                let _ = write_reply(&mut wr, &state.status()).await;
                state.stop.notify_one();
                break;
            }
            control::Request::ReloadSecret => {
                let reply = match paths::read_secret(&state.secret_file) {
                    Ok(Some(s)) => {
                        *state.secret.write().unwrap_or_else(|e| e.into_inner()) = s;
                        log("URL secret reloaded");
                        state.status()
                    }
                    Ok(None) => Reply {
                        error: Some("the secret file is gone".into()),
                        ..Reply::default()
                    },
                    Err(e) => Reply {
                        error: Some(format!("{e:#}")),
                        ..Reply::default()
                    },
                };
                let _ = write_reply(&mut wr, &reply).await;
                break;
            }
        }
    }
    if leased {
        let n = state.leases.fetch_sub(1, Ordering::SeqCst) - 1;
        log(format!("client detached ({n} left)"));
    }
}

/// The client for S3: HTTP/1.1, HTTPS with the system's roots, pooled connections, no
/// redirects (S3's redirects are errors to report, not to follow).
fn upstream_client() -> Upstream {
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

/// Runs until stopped, or idle (no client, nothing in flight) for the grace period, or idle
/// with no unexpired session left.
pub async fn run(layout: Layout, secret: Zeroizing<String>, verbose: bool) -> Result<()> {
    // The previous proxy may still be releasing the port for a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    let http = loop {
        match super::listen::bind(&layout) {
            Ok(l) => break l,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(e),
        }
    };
    let sock_path = layout.socket_path()?;
    let _ = std::fs::remove_file(&sock_path);
    let control = UnixListener::bind(&sock_path)
        .with_context(|| format!("cannot listen on {}", sock_path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600))?;
    }
    let client = upstream_client();
    let state = Arc::new(State {
        secret: RwLock::new(secret),
        secret_file: layout.secret_file(),
        mounts: RwLock::new(HashMap::new()),
        client,
        leases: AtomicUsize::new(0),
        ever_leased: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        port: layout.port,
        verbose,
        redirect_nars: layout.redirect_nars,
        stop: tokio::sync::Notify::new(),
        daemon_used: Default::default(),
    });
    log(format!(
        "listening on 127.0.0.1:{} (pid {}, idle grace {} s)",
        layout.port,
        std::process::id(),
        layout.grace_secs
    ));

    tokio::spawn(super::listen::serve(state.clone(), http));
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = control.accept().await {
                tokio::spawn(control_conn(st.clone(), s));
            }
        }
    });

    let grace = Duration::from_secs(layout.grace_secs);
    let mut idle_since: Option<Instant> = None;
    let rundir = layout.runtime_dir()?;
    let mut exit_lock = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let reason = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.stop.notified() => break "stopped on request".to_string(),
        }
        let now = sign::now_epoch();
        let usable = {
            let mut map = state.mounts.write().unwrap_or_else(|e| e.into_inner());
            for (name, m) in map.iter_mut() {
                if let Some(s) = m.session.as_ref().filter(|s| s.expired(now)) {
                    log(format!(
                        "the AWS session for {name} expired at {}; answering 503 until a client brings a fresh one",
                        fmt_expiry(s.expiration)
                    ));
                    // Dropping the last reference zeroizes the secret key.
                    *m = Arc::new(MountEntry {
                        s3: m.s3.clone(),
                        session: None,
                        expired_at: s.expiration,
                        presign: Default::default(),
                    });
                }
            }
            map.values().any(|m| m.session.is_some())
        };
        if state.leases.load(Ordering::SeqCst) > 0 || state.in_flight.load(Ordering::SeqCst) > 0 {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        let why = if state.ever_leased.load(Ordering::SeqCst) && !usable {
            "no client left and no unexpired session".to_string()
        } else if since.elapsed() >= grace {
            format!("no client for {} s", layout.grace_secs)
        } else {
            continue;
        };
        // A client attaching right now holds the start lock until its lease counts: exit only
        // with the lock, and only if still idle; it is released when the process ends.
        match paths::lock_start(&rundir, false) {
            Ok(Some(lock)) if state.leases.load(Ordering::SeqCst) == 0 => {
                exit_lock = Some(lock);
                break why;
            }
            _ => continue,
        }
    };
    // Remove the socket first, so that a new client starts a new proxy instead of reaching
    // this one while it exits.
    let _ = std::fs::remove_file(&sock_path);
    log(format!("exiting: {reason}"));
    drop(exit_lock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cache_paths_are_served() {
        for ok in [
            "nix-cache-info",
            "abc.narinfo",
            "abc.ls",
            "nar/1abc.nar.xz",
            "log/abc-hello-2.12.drv",
            "realisations/sha256:abc!out.doi",
        ] {
            assert!(cache_key_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "nar/",
            "nar/../x",
            "../x.narinfo",
            "nar/a/b",
            "other/x",
            "x.txt",
            "a b.narinfo",
            "secret/../nix-cache-info",
        ] {
            assert!(!cache_key_ok(bad), "{bad}");
        }
    }

    #[test]
    fn secret_comparison_and_decoding() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("abcd", "abc"));
        assert!(!same_secret("", "abc"));
        assert_eq!(percent_decode("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
    }
}
