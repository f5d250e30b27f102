//! From a request to what it asks for: the Host, the URL secret, the cache's name and key, the
//! method, the peer's right to write, the mount and its session. Anything else is answered
//! here, never forwarded.

use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

use super::credential::{self, WithoutCredential};
use super::log::log;
use super::respond::{Body, text};
use super::sign::Session;
use super::state::{MountEntry, State};

static NO_SECRET: super::log::Refusals = super::log::Refusals::new();
static BAD_HOST: super::log::Refusals = super::log::Refusals::new();
static MISSES: super::log::Refusals = super::log::Refusals::new();

/// A request the proxy may forward.
pub(super) struct Target {
    pub name: String,
    pub key: String,
    pub method: Method,
    pub mount: Arc<MountEntry>,
    pub session: Arc<Session>,
    /// The client's uid: the proxy's own user, or root (the nix-daemon).
    pub peer_uid: u32,
}

/// A request for an HTTPS mount (`https.rs` forwards it).
pub(super) struct HttpsTarget {
    pub name: String,
    pub key: String,
    pub mount: Arc<super::https::HttpsMount>,
    pub peer_uid: u32,
}

/// What a request routes to, by the mount's kind.
pub(super) enum Routed {
    S3(Target),
    Https(HttpsTarget),
    Object(super::object::ObjectTarget),
}

impl Target {
    /// `METHOD NAME/KEY`, for log lines (never the path: it starts with the URL secret).
    pub fn what(&self) -> String {
        format!("{} {}/{}", self.method, self.name, self.key)
    }
}

/// Compares without an early exit, so response times do not leak how much of a guess matched.
pub(super) fn same_secret(given: &str, actual: &str) -> bool {
    let (a, b) = (given.as_bytes(), actual.as_bytes());
    let mut diff = (a.len() != b.len()) as u8;
    for (i, x) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ x;
    }
    diff == 0
}

/// The object key a request names: percent-decoded once, and only if it is one of the files
/// a Nix binary cache holds.
fn decode_key(raw: &str) -> Option<String> {
    let key = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    cache_key_ok(&key).then(|| key.into_owned())
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

/// What `req` from a client owned by `peer_uid` (the proxy's own user, or root) asks for, or
/// the answer that refuses it.
pub(super) fn route(
    state: &State,
    req: &Request<Incoming>,
    peer_uid: u32,
) -> Result<Routed, Box<Response<Body>>> {
    if !host_ok(req, state.port) {
        BAD_HOST.note(|| {
            format!(
                "{} refused: a Host header not naming 127.0.0.1:{} (400)",
                req.method(),
                state.port
            )
        });
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            "this proxy answers only to the URL nixstore-auth hands out (http://127.0.0.1:PORT/...)",
        )));
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
        return Err(Box::new(text(
            StatusCode::UNAUTHORIZED,
            "the URL lacks this proxy's secret; use the URL that `nixstore-auth exec` hands to Nix (the secret changes with `nixstore-auth proxy rotate-secret`)",
        )));
    }
    let (segment, raw_key) = rest.split_once('/').unwrap_or((rest, ""));
    // Every generation of a name reaches the same mount (`urls.rs`).
    let Some(name) = super::urls::parse_mount_segment(segment) else {
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            "not a cache of this proxy (NAME or NAME~GENERATION)",
        )));
    };
    let name = name.to_string();
    let Some(key) = decode_key(raw_key) else {
        log(format!(
            "{} {name}/{raw_key}: not a binary cache path (400)",
            req.method()
        ));
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            "not a Nix binary cache path (nix-cache-info, *.narinfo, *.ls, nar/*, log/*)",
        )));
    };
    let method = req.method().clone();
    if !matches!(method, Method::GET | Method::HEAD | Method::PUT) {
        return Err(Box::new(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET, HEAD and PUT are served",
        )));
    }
    // The daemon only reads; only the proxy's own user may write with its session.
    if method == Method::PUT && !super::peer::may_write(peer_uid, super::paths::uid()) {
        log(format!(
            "{method} {name}/{key} refused: uid {peer_uid} may only read (403)"
        ));
        return Err(Box::new(text(
            StatusCode::FORBIDDEN,
            "only the user who runs this proxy may upload through it",
        )));
    }
    let what = format!("{method} {name}/{key}");
    let https = state
        .https
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .cloned();
    if let Some(mount) = https {
        return Ok(Routed::Https(HttpsTarget {
            name,
            key,
            mount,
            peer_uid,
        }));
    }
    let object = state
        .objects
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .cloned();
    if let Some(mount) = object {
        return Ok(Routed::Object(super::object::ObjectTarget {
            name,
            key,
            mount,
            peer_uid,
        }));
    }
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
        return Err(Box::new(text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "no cache named {name:?} is mounted; run the command through `nixstore-auth exec` so that it mounts the cache"
            ),
        )));
    };
    let now = crate::time::now();
    let session = match &mount.session {
        Some(s) if !s.expired(now) => s.clone(),
        _ => {
            return Err(Box::new(without_credential(
                state, &mount, &name, &method, &key, now,
            )));
        }
    };
    Ok(Routed::S3(Target {
        name,
        key,
        method,
        mount,
        session,
        peer_uid,
    }))
}

/// The answer for a request to a mount without a usable credential (`credential.rs` decides).
fn without_credential(
    state: &State,
    mount: &MountEntry,
    name: &str,
    method: &Method,
    key: &str,
    now: i64,
) -> Response<Body> {
    answer_without(
        state,
        &mount.standing(now),
        name,
        method,
        key,
        &credential::login_command(name),
    )
}

/// The answer for a request to a mount standing `standing` without a usable credential, by
/// the rule of `credential.rs` (whatever the mount's kind); `fix` is the command that brings
/// a credential.
pub(super) fn answer_without(
    state: &State,
    standing: &credential::Standing,
    name: &str,
    method: &Method,
    key: &str,
    fix: &str,
) -> Response<Body> {
    let standing = standing.clone();
    let read = matches!(*method, Method::GET | Method::HEAD);
    let what = format!("{method} {name}/{key}");
    match credential::without_credential(&standing, read, key == "nix-cache-info") {
        WithoutCredential::CacheInfo => {
            let body = state
                .cache_info
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned()
                .unwrap_or_else(|| credential::MINIMAL_CACHE_INFO.as_bytes().to_vec());
            super::respond::cache_info(body)
        }
        WithoutCredential::Miss => {
            state
                .missed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string());
            MISSES.note(|| {
                format!(
                    "{what}: a person is needed ({}); answering misses (404) until `{}`",
                    standing_why(&standing),
                    fix
                )
            });
            text(
                StatusCode::NOT_FOUND,
                &format!(
                    "cache {name:?} needs you: run `{}`; until then its paths count as missing",
                    fix
                ),
            )
        }
        WithoutCredential::Unavailable => {
            let why = standing_why(&standing);
            log(format!("{what}: {why} (503)"));
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "{why} for cache {name:?}; run `{}` or start the command through `nixstore-auth exec` again",
                    fix
                ),
            )
        }
    }
}

fn standing_why(s: &credential::Standing) -> String {
    match s {
        credential::Standing::NeedsPerson { why } | credential::Standing::Unavailable { why } => {
            why.clone()
        }
        other => other.word().to_string(),
    }
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
        assert_eq!(decode_key("a%2Bb.narinfo").as_deref(), Some("a+b.narinfo"));
        assert_eq!(decode_key("nar%2Fa.nar").as_deref(), Some("nar/a.nar"));
        assert_eq!(decode_key("a%2.narinfo"), None);
        assert_eq!(decode_key("a%zz.narinfo"), None);
        assert_eq!(decode_key("a%0A.narinfo"), None);
    }
}
