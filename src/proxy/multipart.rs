//! Large uploads to S3 behind one plain PUT: a PUT whose `Content-Length` reaches the cache
//! URL's `multipart-threshold` becomes CreateMultipartUpload, UploadPart in
//! `multipart-chunk-size` pieces (each held in memory so that it can be sent again, up to
//! [`PART_ATTEMPTS`] times) and CompleteMultipartUpload, or AbortMultipartUpload when the client
//! goes away or a part runs out of tries. (A single PUT above 5 GiB fails on AWS.) S3-specific:
//! other stores do their own large uploads behind the same PUT.
//!
//! Upload IDs in flight are recorded in `~/.local/state/nixstore-auth/multipart-uploads` (0600,
//! one JSON line each, with the proxy's pid): a proxy killed mid-upload leaves its records, and
//! the next proxy aborts them at the first request its own user makes for that cache (the next
//! `push`), since a store need not list unfinished uploads.

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::log::log;
use super::respond::{Body, empty, text};
use super::sign::{self, Session};
use super::state::{MountEntry, State};
use crate::s3_params::{MAX_PART, MAX_PARTS};

/// Tries per part (the first included).
pub const PART_ATTEMPTS: u32 = 3;
const PART_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether a PUT of `len` bytes to `mount` goes up in parts.
pub fn wanted(mount: &MountEntry, len: Option<u64>) -> bool {
    let p = &mount.s3.params;
    p.multipart() && len.is_some_and(|n| n >= p.multipart_threshold() && n > 0)
}

/// The part size for `len` bytes: the URL's chunk size, larger where S3's 10,000 parts would
/// not hold it.
pub fn part_size(chunk: u64, len: u64) -> u64 {
    chunk.max(len.div_ceil(MAX_PARTS)).min(MAX_PART)
}

/// One upload in flight, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    pid: u32,
    mount: String,
    url: String,
    region: String,
    upload_id: String,
}

static RECORDS: Mutex<()> = Mutex::new(());

fn records_file() -> Option<PathBuf> {
    crate::config::Dirs::new()
        .ok()
        .map(|d| d.state.join("multipart-uploads"))
}

fn read_records() -> Vec<Record> {
    let Some(path) = records_file() else {
        return Vec::new();
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Rewrites the record file with `keep(record)` true, then `add` (0600, atomically).
fn update_records(keep: impl Fn(&Record) -> bool, add: Option<&Record>) {
    let _g = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(path) = records_file() else {
        return;
    };
    let mut all: Vec<Record> = read_records().into_iter().filter(|r| keep(r)).collect();
    all.extend(add.cloned());
    let text: String = all
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .map(|l| l + "\n")
        .collect();
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            crate::fs::private_dir(dir).map_err(std::io::Error::other)?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
        };
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        log(format!("cannot record multipart uploads: {e}"));
    }
}

/// Whether `pid` runs (a zombie no longer does: a killed proxy whose parent is gone may stay
/// one where nothing reaps orphans).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Aborts the uploads a dead proxy left for mount `name` (once per mount and process).
pub(super) async fn abort_leftovers(
    state: &State,
    name: &str,
    mount: &MountEntry,
    session: &Session,
) {
    static DONE: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    {
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        if !done
            .get_or_insert_with(HashSet::new)
            .insert(name.to_string())
        {
            return;
        }
    }
    let Ok(base) = sign::object_url(&mount.s3, "x") else {
        return;
    };
    let base = base.trim_end_matches('x').to_string();
    let me = std::process::id();
    let left: Vec<Record> = read_records()
        .into_iter()
        .filter(|r| r.mount == name && r.url.starts_with(&base) && r.pid != me && !alive(r.pid))
        .collect();
    for r in left {
        match abort(state, session, &r.region, &r.url, &r.upload_id).await {
            Ok(()) => {
                log(format!(
                    "cache {name}: aborted an unfinished multipart upload a stopped proxy left"
                ));
                update_records(|x| x.upload_id != r.upload_id, None);
            }
            Err(e) => log(format!(
                "cache {name}: cannot abort an unfinished multipart upload ({e}); trying again next time"
            )),
        }
    }
}

/// A signed request to S3 with a small body; `(status, headers, body)`.
#[allow(clippy::too_many_arguments)]
async fn call(
    state: &State,
    session: &Session,
    region: &str,
    method: Method,
    url: &str,
    amz: &[(&str, &str)],
    extra: &[(header::HeaderName, HeaderValue)],
    body: Bytes,
) -> Result<(u16, hyper::HeaderMap, String), String> {
    let signed = sign::signed_headers(session, region, method.as_str(), url, amz)
        .map_err(|e| format!("{e:#}"))?;
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header(header::USER_AGENT, super::state::USER_AGENT)
        .header(header::CONTENT_LENGTH, body.len());
    for (k, v) in signed {
        req = req.header(k, v);
    }
    for (k, v) in amz {
        req = req.header(*k, *v);
    }
    for (k, v) in extra {
        req = req.header(k, v);
    }
    let req = req
        .body(
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(PART_TIMEOUT, state.client.request(req))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(PART_TIMEOUT, resp.into_body().collect())
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

async fn abort(
    state: &State,
    session: &Session,
    region: &str,
    url: &str,
    id: &str,
) -> Result<(), String> {
    let u = format!("{url}?uploadId={}", sign::encode_query_value(id));
    let (status, _, body) = call(
        state,
        session,
        region,
        Method::DELETE,
        &u,
        &[],
        &[],
        Bytes::new(),
    )
    .await?;
    // NoSuchUpload: gone already (completed, aborted, or expired by a lifecycle rule).
    if (200..300).contains(&status) || sign::error_code(&body).0.as_deref() == Some("NoSuchUpload")
    {
        Ok(())
    } else {
        Err(format!(
            "HTTP {status} {}",
            sign::error_code(&body).0.unwrap_or_default()
        ))
    }
}

/// Why an upload failed: the status for the client, and the message.
struct Failed(StatusCode, String);

/// Uploads the client's body of `len` bytes to `url` in parts and answers the client.
#[allow(clippy::too_many_arguments)]
pub(super) async fn upload(
    state: &State,
    what: &str,
    name: &str,
    mount: &MountEntry,
    session: &Session,
    region: &str,
    url: &str,
    content_type: Option<HeaderValue>,
    body: Incoming,
    len: u64,
) -> Response<Body> {
    let class = mount.s3.params.storage_class();
    let amz: Vec<(&str, &str)> = class
        .map(|c| ("x-amz-storage-class", c))
        .into_iter()
        .collect();
    let extra: Vec<(header::HeaderName, HeaderValue)> = content_type
        .map(|v| (header::CONTENT_TYPE, v))
        .into_iter()
        .collect();
    let created = call(
        state,
        session,
        region,
        Method::POST,
        &format!("{url}?uploads"),
        &amz,
        &extra,
        Bytes::new(),
    )
    .await;
    let id = match created {
        Ok((200, _, body)) => match tag(&body, "UploadId") {
            Some(id) => id,
            None => {
                return fail(
                    what,
                    Failed(StatusCode::BAD_GATEWAY, "no UploadId in S3's answer".into()),
                );
            }
        },
        Ok((status, _, body)) => return fail(what, refusal(status, &body)),
        Err(e) => return fail(what, Failed(StatusCode::BAD_GATEWAY, e)),
    };
    let record = Record {
        pid: std::process::id(),
        mount: name.to_string(),
        url: url.to_string(),
        region: region.to_string(),
        upload_id: id.clone(),
    };
    update_records(|_| true, Some(&record));
    let size = part_size(mount.s3.params.multipart_chunk_size(), len);
    let result = parts(state, what, session, region, url, &id, body, len, size).await;
    let done = match result {
        Ok(etags) => complete(state, session, region, url, &id, &etags).await,
        Err(f) => Err(f),
    };
    match done {
        Ok(()) => {
            update_records(|r| r.upload_id != id, None);
            if state.verbose {
                log(format!("{what}: 200 (multipart upload of {len} bytes)"));
            }
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::OK;
            r
        }
        Err(f) => {
            match abort(state, session, region, url, &id).await {
                Ok(()) => update_records(|r| r.upload_id != id, None),
                Err(e) => log(format!(
                    "{what}: cannot abort the multipart upload ({e}); the next proxy tries again"
                )),
            }
            fail(what, f)
        }
    }
}

/// Reads the client's body into parts of `size` and uploads each; the parts' ETags.
#[allow(clippy::too_many_arguments)]
async fn parts(
    state: &State,
    what: &str,
    session: &Session,
    region: &str,
    url: &str,
    id: &str,
    mut body: Incoming,
    len: u64,
    size: u64,
) -> Result<Vec<String>, Failed> {
    let mut etags = Vec::new();
    let mut buf = BytesMut::with_capacity(size.min(len) as usize);
    let mut received = 0u64;
    loop {
        let frame = tokio::time::timeout(PART_TIMEOUT, body.frame())
            .await
            .map_err(|_| Failed(StatusCode::BAD_GATEWAY, "the client stopped sending".into()))?;
        let end = match frame {
            None => true,
            Some(Err(e)) => {
                return Err(Failed(
                    StatusCode::BAD_GATEWAY,
                    format!("the client went away: {e}"),
                ));
            }
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    received += data.len() as u64;
                    buf.extend_from_slice(&data);
                }
                false
            }
        };
        while buf.len() as u64 >= size || (end && !buf.is_empty()) {
            let n = (size as usize).min(buf.len());
            let part = buf.split_to(n).freeze();
            let number = etags.len() + 1;
            etags.push(part_upload(state, what, session, region, url, id, number, part).await?);
        }
        if end {
            break;
        }
    }
    if received != len {
        return Err(Failed(
            StatusCode::BAD_REQUEST,
            format!("the client sent {received} of {len} bytes"),
        ));
    }
    Ok(etags)
}

/// One part, tried up to [`PART_ATTEMPTS`] times; its ETag.
#[allow(clippy::too_many_arguments)]
async fn part_upload(
    state: &State,
    what: &str,
    session: &Session,
    region: &str,
    url: &str,
    id: &str,
    number: usize,
    part: Bytes,
) -> Result<String, Failed> {
    let u = format!(
        "{url}?partNumber={number}&uploadId={}",
        sign::encode_query_value(id)
    );
    let mut last = Failed(StatusCode::BAD_GATEWAY, String::new());
    for attempt in 0..PART_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
        }
        match call(
            state,
            session,
            region,
            Method::PUT,
            &u,
            &[],
            &[],
            part.clone(),
        )
        .await
        {
            Ok((200, headers, _)) => {
                if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
                    return Ok(etag.to_string());
                }
                last = Failed(
                    StatusCode::BAD_GATEWAY,
                    format!("part {number}: no ETag in S3's answer"),
                );
            }
            Ok((status, _, body)) => {
                let f = refusal(status, &body);
                log(format!(
                    "{what}: part {number} got HTTP {status} (try {} of {PART_ATTEMPTS})",
                    attempt + 1
                ));
                // A refusal will not change; a 5xx or a timeout may.
                if (400..500).contains(&status) && !matches!(status, 408 | 429) {
                    return Err(f);
                }
                last = f;
            }
            Err(e) => {
                log(format!(
                    "{what}: part {number} failed: {e} (try {} of {PART_ATTEMPTS})",
                    attempt + 1
                ));
                last = Failed(StatusCode::BAD_GATEWAY, format!("part {number}: {e}"));
            }
        }
    }
    Err(last)
}

async fn complete(
    state: &State,
    session: &Session,
    region: &str,
    url: &str,
    id: &str,
    etags: &[String],
) -> Result<(), Failed> {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, etag) in etags.iter().enumerate() {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            etag.replace('&', "&amp;").replace('<', "&lt;")
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let u = format!("{url}?uploadId={}", sign::encode_query_value(id));
    let extra = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    )];
    match call(
        state,
        session,
        region,
        Method::POST,
        &u,
        &[],
        &extra,
        Bytes::from(xml),
    )
    .await
    {
        // S3 may answer 200 with an error in the body once it has started.
        Ok((200, _, body)) if !body.contains("<Error>") => Ok(()),
        Ok((status, _, body)) => Err(refusal(status, &body)),
        Err(e) => Err(Failed(StatusCode::BAD_GATEWAY, e)),
    }
}

/// S3's refusal as the client sees it: a 4xx passed on (Nix remembers no failed upload), else
/// 502.
fn refusal(status: u16, body: &str) -> Failed {
    let (code, message) = sign::error_code(body);
    let reason = format!(
        "S3 answered {status} {}{}",
        code.as_deref().unwrap_or("(no error code)"),
        message.map(|m| format!(": {m}")).unwrap_or_default()
    );
    let s = if (400..500).contains(&status) {
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
    } else {
        StatusCode::BAD_GATEWAY
    };
    Failed(s, reason)
}

fn fail(what: &str, f: Failed) -> Response<Body> {
    log(format!(
        "{what}: multipart upload failed: {} ({})",
        f.1,
        f.0.as_u16()
    ));
    text(f.0, &format!("the multipart upload failed: {}", f.1))
}

/// The text of the first `<name>` element.
fn tag(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find('<')? + start;
    Some(body[start..end].trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_keep_within_s3_limits() {
        let mib = 1024 * 1024;
        assert_eq!(part_size(5 * mib, 20 * mib), 5 * mib);
        // 100 GiB in 5 MiB parts would be 20,480 parts: larger parts then.
        let big = 100 * 1024 * mib;
        let p = part_size(5 * mib, big);
        assert!(big.div_ceil(p) <= MAX_PARTS && p > 5 * mib);
        assert_eq!(
            tag("<InitiateMultipartUploadResult><UploadId>abc-1</UploadId></InitiateMultipartUploadResult>", "UploadId").as_deref(),
            Some("abc-1")
        );
        assert_eq!(tag("<x/>", "UploadId"), None);
    }
}
