//! The clouds' cache kinds in the proxy (GCS, Azure Blob), generic over
//! [`crate::cloud::ObjectAuth`]: a key becomes the object's URL with the credential's headers
//! (or its SAS), a NAR becomes a presigned redirect where the credential can sign and the store
//! takes presigned GETs (found once per mount), else it streams. A refusal asks the credential
//! for a new one once (`ObjectAuth::refused`); one only a person can replace is answered by the
//! rule every kind follows (`route::answer_without`).
//!
//! The credential is loaded as the user, from the environment the command's lease brought
//! (`EnvSnapshot`): a background proxy runs with the service manager's environment, not the
//! user's shell's.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::https_rules::{self, Outcome};
use super::log::log;
use super::respond::{Body, empty, redirect, text};
use super::state::{InFlight, State, Upstream};
use super::upstream;
use crate::cloud::{AuthError, ObjectAuth, State as CredState};
use crate::cloud_cache::EnvSnapshot;

pub(super) use super::object_mounts::{
    load_recorded, mount_for_lease, status_row, statuses, use_runtime,
};

/// One GCS or Azure mount.
pub struct ObjectMount {
    pub auth: Arc<dyn ObjectAuth>,
    /// The cache's URL, for the log and `proxy status`.
    pub url: String,
    /// The command that gives the cache a working credential.
    pub fix: String,
    pub(super) client: Upstream,
    /// Mounted by a background proxy because config.toml records the cache.
    pub(super) recorded: bool,
    /// The environment the credential was loaded from: a lease with another one mounts anew.
    pub(super) env: EnvSnapshot,
    /// Whether the store takes our presigned GETs: tried once, at the first NAR.
    presign: tokio::sync::OnceCell<bool>,
    /// For an Azure cache, its container (uploads are Put Blob or Put Block).
    pub(super) azure: Option<Arc<crate::azure::Blob>>,
    /// The stored secret it was made from (`cloud_cache::secret_tag`): another one remounts.
    pub(super) secret_tag: Option<String>,
}

/// A request for a cloud mount.
pub(super) struct ObjectTarget {
    pub name: String,
    pub key: String,
    pub mount: Arc<ObjectMount>,
    pub peer_uid: u32,
}

/// How long a presigned NAR URL stays valid (Nix follows it at once).
const PRESIGNED_FOR: Duration = Duration::from_secs(300);

impl ObjectMount {
    /// The mount of the recorded cloud cache `entry`, its credential loaded from `env` and the
    /// user's secret store (an Azure key or SAS). Inside the tokio runtime (google-cloud-auth
    /// renews its tokens in a task). The error names the cache, never a secret.
    pub(super) fn recorded(
        entry: &crate::config::CacheEntry,
        cfg: &crate::config::Config,
        dirs: &crate::config::Dirs,
        env: &EnvSnapshot,
        recorded: bool,
    ) -> anyhow::Result<ObjectMount> {
        let loaded = crate::cloud_cache::load(entry, cfg, dirs, env)?;
        let files = env.ca_files();
        let tls = https_rules::tls_config(&files)?;
        let https_only = loaded.scheme_https;
        Ok(ObjectMount {
            auth: loaded.auth,
            url: entry.kind.url(),
            fix: loaded.fix,
            client: super::https::client(tls, https_only),
            recorded,
            env: env.clone(),
            presign: Default::default(),
            azure: loaded.azure,
            secret_tag: loaded.secret_tag,
        })
    }

    /// What NARs take so far: `redirect`, `stream` or `untried`.
    pub(super) fn nars(&self, redirect_nars: bool) -> &'static str {
        match self.presign.get() {
            _ if !redirect_nars => "stream",
            Some(true) => "redirect",
            Some(false) => "stream",
            None => "untried",
        }
    }
}

/// Whether the store takes the mount's credential: a GET of `nix-cache-info` (a missing one is
/// fine; so is a store that cannot be reached now, which requests report themselves).
pub(super) async fn check(m: &ObjectMount) -> Result<(), String> {
    let authorized = tokio::time::timeout(
        Duration::from_secs(10),
        m.auth.authorize(Method::GET, "nix-cache-info"),
    );
    let a = match authorized.await {
        Ok(Ok(a)) => a,
        Ok(Err(AuthError::NeedsPerson { why, fix })) => return Err(format!("{why}; fix: `{fix}`")),
        Ok(Err(AuthError::Refused(why))) => return Err(format!("{why}; fix: `{}`", m.fix)),
        // Slow or failing for now: requests report it themselves.
        Ok(Err(AuthError::Transient(_))) | Err(_) => return Ok(()),
    };
    let mut req = Request::get(a.url.as_str()).header(header::USER_AGENT, super::state::USER_AGENT);
    for (k, v) in &a.headers {
        req = req.header(k, v);
    }
    let req = req.body(empty()).map_err(|e| e.to_string())?;
    let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(10), m.client.request(req)).await
    else {
        return Ok(());
    };
    let status = resp.status().as_u16();
    let detail = upstream::read_limited(resp, 4096).await;
    let code = crate::azure::error_code(&detail);
    if is_refusal(status, code) {
        return Err(format!(
            "the store refused {} ({status} {}); fix: `{}`",
            m.auth.describe(),
            code.unwrap_or("no error code"),
            m.fix
        ));
    }
    Ok(())
}

/// Serves a routed request to a cloud mount.
pub(super) async fn serve(
    state: &Arc<State>,
    t: ObjectTarget,
    req: Request<Incoming>,
    guard: InFlight,
) -> Response<Body> {
    let method = req.method().clone();
    let what = format!("{method} {}/{}", t.name, t.key);
    let without = |why: String| {
        let standing = super::credential::Standing::NeedsPerson { why };
        super::route::answer_without(state, &standing, &t.name, &method, &t.key, &t.mount.fix)
    };
    if let CredState::NeedsPerson { why, .. } = t.mount.auth.state() {
        return without(why);
    }
    if method == Method::PUT {
        // `route` let only the proxy's own user through with a PUT.
        return super::object_upload::upload(&t.mount, &what, &t.key, req, guard).await;
    }
    if method == Method::GET
        && t.key.starts_with("nar/")
        && state.redirect_nars
        && presign_works(&t.mount, &t.name).await
    {
        match t.mount.auth.presign_get(&t.key, PRESIGNED_FOR).await {
            Ok(Some(url)) => match HeaderValue::from_str(url.as_str()) {
                Ok(location) => {
                    if state.verbose {
                        log(format!("{what}: 307 to a presigned URL"));
                    }
                    return redirect(location);
                }
                Err(_) => log(format!("{what}: the presigned URL is no header; streaming")),
            },
            Ok(None) => {}
            Err(e) => log(format!("{what}: cannot presign ({e}); streaming")),
        }
    }
    match forward(&t.mount, &what, &t.key, req, guard, state.verbose).await {
        Forwarded::Answer(r) => {
            if t.peer_uid == 0 && t.key == "nix-cache-info" && r.status().is_success() {
                state
                    .daemon_used
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(t.name.clone());
            }
            r
        }
        Forwarded::NeedsPerson(why) => without(why),
    }
}

enum Forwarded {
    Answer(Response<Body>),
    NeedsPerson(String),
}

/// Whether a store status (and the error code in its body) says the credential was refused:
/// 401/403, and Azure's 400 for a signature that does not match (`InvalidAuthenticationInfo`,
/// `AuthenticationFailed`; Azurite answers a Shared Key mismatch so).
pub fn is_refusal(status: u16, code: Option<&str>) -> bool {
    matches!(status, 401 | 403)
        || (status == 400
            && matches!(
                code,
                Some("InvalidAuthenticationInfo" | "AuthenticationFailed")
            ))
}

/// Reads (GET/HEAD) `key` from the store with the mount's credential, asking once more with a
/// new one when the store refused it and one may come without a person.
async fn forward(
    mount: &ObjectMount,
    what: &str,
    key: &str,
    req: Request<Incoming>,
    guard: InFlight,
    verbose: bool,
) -> Forwarded {
    let (parts, _body) = req.into_parts();
    let method = parts.method.clone();
    let fail = |status: StatusCode, line: String, msg: &str| {
        log(format!("{what}: {line} ({})", status.as_u16()));
        Forwarded::Answer(text(status, msg))
    };
    let mut retried = false;
    loop {
        let authorized = match mount.auth.authorize(method.clone(), key).await {
            Ok(a) => a,
            Err(AuthError::NeedsPerson { why, .. }) => return Forwarded::NeedsPerson(why),
            Err(AuthError::Refused(why)) => {
                return fail(
                    StatusCode::BAD_GATEWAY,
                    why,
                    "cannot authorise the request; see the proxy log",
                );
            }
            Err(AuthError::Transient(why)) => {
                return fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    why,
                    "cannot authorise the request now; see the proxy log",
                );
            }
        };
        // Exactly the credential's headers (Shared Key signs them), plus Nix's conditionals.
        let mut up = Request::builder()
            .method(method.clone())
            .uri(authorized.url.as_str())
            .header(header::USER_AGENT, super::state::USER_AGENT);
        for (k, v) in &authorized.headers {
            up = up.header(k, v);
        }
        for h in [
            header::RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
        ] {
            if let Some(v) = parts.headers.get(&h) {
                up = up.header(h, v);
            }
        }
        let up = match up.body(empty()) {
            Ok(r) => r,
            Err(e) => {
                return fail(
                    StatusCode::BAD_GATEWAY,
                    format!("cannot build the request: {e}"),
                    "cannot build the upstream request",
                );
            }
        };
        let progress = std::sync::Mutex::new(tokio::time::Instant::now());
        let resp = match upstream::send_in_time(&mount.client, up, &progress, "store").await {
            Ok(r) => r,
            Err((logged, shown)) => return fail(StatusCode::BAD_GATEWAY, logged, &shown),
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) || matches!(status, 304 | 404 | 412 | 416) {
            if verbose {
                log(format!("{what}: {status}"));
            }
            return Forwarded::Answer(upstream::pass(resp, guard));
        }
        let detail = upstream::read_limited(resp, 4096).await;
        let code = crate::azure::error_code(&detail);
        let shown = super::log::clean(code.unwrap_or(detail.trim()), 200);
        let refused = is_refusal(status, code);
        // Only a token the store does not take (401, Azure's authentication codes) is worth a
        // new one; a 403 for missing permissions stays one.
        let renew = status == 401
            || matches!(
                code,
                Some("InvalidAuthenticationInfo" | "AuthenticationFailed")
            );
        let renewable = refused && renew && mount.auth.refused(&authorized);
        let mapped = if refused { 403 } else { status };
        match https_rules::outcome(mapped, renewable, retried, false) {
            Outcome::RetryFresh => {
                log(format!(
                    "{what}: the store refused the credential ({status} {shown}); asking once more with a new one"
                ));
                retried = true;
                continue;
            }
            Outcome::NeedsPerson => {
                let why = format!("the store refused the credential ({status} {shown})");
                log(format!("{what}: {why}"));
                return Forwarded::NeedsPerson(why);
            }
            Outcome::Pass | Outcome::Status(_) => {
                let s = match https_rules::outcome(status, false, true, false) {
                    Outcome::Status(s) => s,
                    _ => 502,
                };
                let s = StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY);
                return fail(
                    s,
                    format!("the store answered {status}: {shown}"),
                    &format!("the store answered {status}; see the proxy log"),
                );
            }
        }
    }
}

/// Whether the store takes presigned GETs from this mount's credential, found once with a
/// presigned GET of `nix-cache-info`; anything but a 2xx keeps NARs streaming.
async fn presign_works(mount: &ObjectMount, name: &str) -> bool {
    *mount
        .presign
        .get_or_init(|| async {
            let answer = presigned_probe(mount).await;
            let ok = matches!(&answer, Ok(Some(s)) if s.is_success());
            log(match &answer {
                _ if ok => format!(
                    "cache {name}: the store takes presigned URLs; NAR downloads go straight to it (307)"
                ),
                Ok(None) => format!(
                    "cache {name}: its credential cannot presign; NARs stream through the proxy"
                ),
                Ok(Some(s)) => format!(
                    "cache {name}: a presigned GET got {}; NARs stream through the proxy",
                    s.as_u16()
                ),
                Err(e) => format!(
                    "cache {name}: a presigned GET failed ({e}); NARs stream through the proxy"
                ),
            });
            ok
        })
        .await
}

async fn presigned_probe(mount: &ObjectMount) -> Result<Option<StatusCode>, String> {
    let Some(url) = mount
        .auth
        .presign_get("nix-cache-info", PRESIGNED_FOR)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let req = Request::get(url.as_str())
        .header(header::USER_AGENT, super::state::USER_AGENT)
        .body(empty())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), mount.client.request(req))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| upstream::error_chain(&e))?;
    let status = resp.status();
    let _ = upstream::read_limited(resp, 64 * 1024).await;
    Ok(Some(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_status_and_code() {
        // (status, code) -> refused
        let rows = [
            (401, None, true),
            (403, Some("AuthorizationFailure"), true),
            (400, Some("InvalidAuthenticationInfo"), true),
            (400, Some("AuthenticationFailed"), true),
            (400, Some("InvalidQueryParameterValue"), false),
            (400, None, false),
            (404, Some("BlobNotFound"), false),
            (500, None, false),
        ];
        for (status, code, want) in rows {
            assert_eq!(is_refusal(status, code), want, "{status} {code:?}");
        }
    }
}
