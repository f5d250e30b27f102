//! The HTTPS cache kind's credential: a token from the keyring (or handed over by `exec`) or
//! from a token command, presented as Basic or Bearer, behind the same surface as the clouds'
//! ([`crate::cloud::ObjectAuth`]): the proxy asks it to authorise a request, tells it when the
//! cache refused one, and asks where it stands. An HTTPS cache presigns nothing: a NAR the cache
//! sends elsewhere arrives as its own redirect (`https_rules::redirect`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use url::Url;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::https_rules;
use super::log::log;
use super::respond::{Body, BoxError, empty, redirect, text};
use super::state::{InFlight, Upstream};
use super::upstream;
use crate::cloud::{AuthError, AuthResult, Authorized, BoxFuture, ObjectAuth, State};
use crate::nix::https_route::Auth;
use crate::secret::Token;
use crate::token_command::CommandToken;

/// Where the token comes from.
pub enum TokenSource {
    /// A public cache: no header.
    None,
    /// A fixed token (the keyring's, or the one `exec` handed over); only a person replaces it.
    Fixed(Token),
    /// A command run when needed (`token_command.rs`).
    Command(Arc<CommandToken>),
}

/// One HTTPS cache's credential.
pub struct Https {
    cache: String,
    /// The cache's URL, ending in `/` so that keys join below it.
    base: Url,
    auth: Auth,
    login: String,
    source: TokenSource,
    /// Set when the cache refused a credential only a person can replace: why.
    refused: Mutex<Option<String>>,
}

impl Https {
    pub fn new(cache: &str, url: &Url, auth: Auth, login: &str, source: TokenSource) -> Https {
        let mut base = url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Https {
            cache: cache.to_string(),
            base,
            auth,
            login: login.to_string(),
            source,
            refused: Mutex::new(None),
        }
    }

    /// The URL of `key` below the cache (keys are never URL-encoded by the caller).
    pub fn url_of(&self, key: &str) -> AuthResult<Url> {
        self.base
            .join(key.trim_start_matches('/'))
            .map_err(|e| AuthError::Refused(format!("invalid key: {e}")))
    }

    /// The cache's base URL (its origin decides which redirects keep the credential).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The same credential, known not to work until a person acts: why.
    pub fn needing(self, why: String) -> Https {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self
    }

    /// The cache refused a fresh credential too: only a person can help now. The mount answers
    /// misses (running no command) until it is mounted again (`use`, `secret set`).
    pub fn needs_person(&self, why: &str) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
    }

    /// The command that gives the cache a working credential.
    pub fn fix(&self) -> String {
        crate::nix::https_route::credential_fix(
            &self.cache,
            matches!(self.source, TokenSource::Command(_)),
        )
    }
}

impl ObjectAuth for Https {
    fn describe(&self) -> String {
        let what = match &self.source {
            TokenSource::None => "no token".to_string(),
            TokenSource::Fixed(_) => "a stored token".to_string(),
            TokenSource::Command(c) => format!("the token command {:?}", c.command().program()),
        };
        format!("{} auth with {what}", self.auth.as_str())
    }

    fn authorize<'a>(
        &'a self,
        method: Method,
        key: &'a str,
    ) -> BoxFuture<'a, AuthResult<Authorized>> {
        Box::pin(async move {
            let mut req = Authorized::new(method, self.url_of(key)?);
            let (token, generation) = match &self.source {
                TokenSource::None => return Ok(req),
                TokenSource::Fixed(t) => (t.clone(), 0),
                TokenSource::Command(c) => {
                    let c = c.clone();
                    let now = crate::time::now();
                    // The command blocks (up to its timeout): off the proxy's threads.
                    tokio::task::spawn_blocking(move || c.get(now))
                        .await
                        .map_err(|e| AuthError::Transient(format!("token command: {e}")))?
                        .map_err(|e| AuthError::NeedsPerson {
                            why: format!("{e:#}"),
                            fix: self.fix(),
                        })?
                }
            };
            let value = https_rules::authorization(self.auth, &self.login, &token)
                .map_err(|e| AuthError::Refused(e.to_string()))?;
            req.headers.insert(reqwest::header::AUTHORIZATION, value);
            req.generation = generation;
            Ok(req)
        })
    }

    fn presign_get<'a>(
        &'a self,
        _key: &'a str,
        _ttl: Duration,
    ) -> BoxFuture<'a, AuthResult<Option<Url>>> {
        Box::pin(async { Ok(None) })
    }

    fn state(&self) -> State {
        if let Some(why) = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return State::NeedsPerson {
                why,
                fix: self.fix(),
            };
        }
        match &self.source {
            TokenSource::Command(_) => State::Renews { until: None },
            _ => State::Valid { until: None },
        }
    }

    fn refused(&self, request: &Authorized) -> bool {
        match &self.source {
            TokenSource::Command(c) => {
                c.refused(request.generation);
                true
            }
            _ => {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some("the cache refused the stored token".into());
                false
            }
        }
    }
}

/// An HTTPS mount: the cache's credential and its own client (the cache's CA bundles; HTTPS
/// only for an `https://` cache, so that nothing downgrades to plain HTTP).
pub struct HttpsMount {
    pub auth: Arc<Https>,
    pub(super) client: Upstream,
    /// Mounted by a background proxy because config.toml records the cache on the proxy route
    /// (unmounted when it no longer does); else by a command's lease.
    pub(super) recorded: bool,
}

impl HttpsMount {
    /// The mount for `auth`, verifying the cache with the system's roots plus `ca_files`.
    pub fn new(
        auth: Arc<Https>,
        ca_files: &[std::path::PathBuf],
        recorded: bool,
    ) -> anyhow::Result<HttpsMount> {
        let tls = https_rules::tls_config(ca_files)?;
        let https_only = auth.base().scheme() == "https";
        Ok(HttpsMount {
            client: client(tls, https_only),
            auth,
            recorded,
        })
    }

    /// The mount of the recorded HTTPS cache `entry`, as its user: the token from the secret
    /// store (read now, unattended: a store that cannot answer makes a mount that needs a
    /// person) or its token command (run when first needed), the CA bundles Nix is given
    /// (`NIX_SSL_CERT_FILE`) and the cache's own.
    pub(super) fn recorded(
        entry: &crate::config::CacheEntry,
        cfg: &crate::config::Config,
        dirs: &crate::config::Dirs,
        recorded: bool,
    ) -> anyhow::Result<HttpsMount> {
        use anyhow::Context;
        let crate::cache::CacheKind::Https { url } = &entry.kind else {
            anyhow::bail!("{} is not an HTTPS cache", entry.name);
        };
        let mut problem = None;
        let source = if let Some(line) = &entry.https.token_command {
            let cmd = crate::token_command::TokenCommand::parse(line)
                .with_context(|| format!("caches.{}.token-command", entry.name))?;
            TokenSource::Command(Arc::new(CommandToken::new(cmd, entry.https.ttl())))
        } else if entry.has_token && entry.secret_store == crate::config::SecretStore::Keyring {
            let account = crate::secret::Account::CacheToken(&entry.name).to_string();
            let got = crate::secret::SecretStore::open(cfg, dirs, &crate::ui::Ui::silent())
                .and_then(|st| st.get(&account));
            match got {
                Ok(Some(t)) => TokenSource::Fixed(Token::new(t)?),
                Ok(None) => {
                    problem = Some("the secret store holds no token for it".to_string());
                    TokenSource::None
                }
                Err(e) => {
                    problem = Some(format!("the secret store cannot be read: {e:#}"));
                    TokenSource::None
                }
            }
        } else {
            TokenSource::None
        };
        let mut auth = Https::new(&entry.name, url, entry.https.auth, &entry.login, source);
        if let Some(why) = problem {
            auth = auth.needing(why);
        }
        let nix_bundle = std::env::var_os("NIX_SSL_CERT_FILE").map(std::path::PathBuf::from);
        let files = https_rules::ca_files(nix_bundle.as_deref(), entry.https.ca_file.as_deref());
        HttpsMount::new(Arc::new(auth), &files, recorded)
    }
}

/// Mounts the recorded HTTPS caches `names` for a command's lease (read from config.toml and
/// the secret store as the proxy's user, which is the command's). A cache already mounted
/// keeps its mount (and its command's token), unless it needs a person: then it is mounted
/// afresh (a new token may be stored now), and if that works its URL moves on
/// (`background::moved_on`). The error names the cache, never a token.
pub(super) fn mount_for_lease(state: &super::state::State, names: &[String]) -> Result<(), String> {
    let dirs = &state.dirs;
    let cfg = crate::config::Config::load(&dirs.config_file()).map_err(|e| format!("{e:#}"))?;
    let stuck = |m: &HttpsMount| matches!(m.auth.state(), State::NeedsPerson { .. });
    let mut recovered = Vec::new();
    for name in names {
        let was_stuck = match state
            .https
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            Some(m) if !stuck(m) => continue,
            Some(_) => true,
            None => false,
        };
        let entry = cfg
            .cache(name)
            .map_err(|e| format!("{e:#}"))?
            .ok_or_else(|| format!("config.toml records no cache {name:?}"))?;
        let m = HttpsMount::recorded(&entry, &cfg, dirs, false)
            .map_err(|e| format!("{name}: {e:#}"))?;
        log(format!(
            "mounted {name} ({}) for a command",
            entry.kind.url()
        ));
        if was_stuck && !stuck(&m) {
            recovered.push(name.clone());
        }
        state
            .https
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), Arc::new(m));
    }
    super::background::moved_on(state, dirs, &recovered);
    Ok(())
}

/// Serves a routed request to an HTTPS mount: forwarded with the credential, or, when only a
/// person can give the cache a working one, answered by the rule every kind follows
/// (`credential.rs`: misses the daemon forgets once the cache works again under a new URL).
pub(super) async fn serve(
    state: &Arc<super::state::State>,
    t: super::route::HttpsTarget,
    req: Request<Incoming>,
    guard: InFlight,
) -> Response<Body> {
    let method = req.method().clone();
    let what = format!("{method} {}/{}", t.name, t.key);
    let without = |why: String| {
        let standing = super::credential::Standing::NeedsPerson { why };
        super::route::answer_without(
            state,
            &standing,
            &t.name,
            &method,
            &t.key,
            &t.mount.auth.fix(),
        )
    };
    if let State::NeedsPerson { why, .. } = t.mount.auth.state() {
        return without(why);
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
        Forwarded::NeedsPerson(why) => {
            // Told once: the mount answers without asking the cache from now on.
            super::notice::tell(&state.dirs, &t.name, &why, None, &t.mount.auth.fix());
            without(why)
        }
    }
}

/// The pooled client of one HTTPS cache: HTTP/1.1, redirects never followed by the client (the
/// proxy decides each: `https_rules::redirect`).
pub(super) fn client(tls: rustls::ClientConfig, https_only: bool) -> Upstream {
    use hyper_util::client::legacy::connect::HttpConnector;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let tls = if https_only {
        builder.https_only().enable_http1().wrap_connector(http)
    } else {
        builder.https_or_http().enable_http1().wrap_connector(http)
    };
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .http1_max_buf_size(upstream::UPSTREAM_READ_BUF)
        .build(tls)
}

/// What a forwarded request came to.
pub(super) enum Forwarded {
    /// The answer for Nix.
    Answer(Response<Body>),
    /// The cache refused the credential and only a person can fix it: why (no secret). The
    /// caller answers by the background service's rule for a credential that needs a person.
    NeedsPerson(String),
}

/// Forwards `req` for `key` to the cache with the credential added: follows redirects within
/// the cache's origin (with the credential), hands others on to Nix (without it), asks once
/// more with a fresh token when a command's token was refused, and maps the cache's statuses
/// so that a 401/403 never reaches Nix as 401/403/404. `what` names the request in the log.
pub(super) async fn forward(
    mount: &HttpsMount,
    what: &str,
    key: &str,
    req: Request<Incoming>,
    guard: InFlight,
    verbose: bool,
) -> Forwarded {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let write = method == Method::PUT;
    let progress = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    // An upload's body can be sent once: a PUT is never asked again.
    let mut body = if write {
        let progress = progress.clone();
        Some(
            body.map_err(|e| Box::new(e) as BoxError)
                .map_frame(move |f| {
                    *progress.lock().unwrap_or_else(|e| e.into_inner()) =
                        tokio::time::Instant::now();
                    f
                })
                .boxed_unsync(),
        )
    } else {
        None
    };
    let fail = |status: StatusCode, log_line: String, msg: &str| {
        log(format!("{what}: {log_line} ({})", status.as_u16()));
        Forwarded::Answer(text(status, msg))
    };
    let mut retried = false;
    'fresh: loop {
        let authorized = match mount.auth.authorize(method.clone(), key).await {
            Ok(a) => a,
            Err(AuthError::NeedsPerson { why, .. }) => {
                mount.auth.needs_person(&why);
                return Forwarded::NeedsPerson(why);
            }
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
        let mut url = authorized.url.clone();
        let mut hops = 0;
        loop {
            let mut up = Request::builder()
                .method(method.clone())
                .uri(url.as_str())
                .header(header::USER_AGENT, super::state::USER_AGENT);
            for (k, v) in &authorized.headers {
                up = up.header(k, v);
            }
            for h in upstream::REQUEST_HEADERS {
                if let Some(v) = parts.headers.get(h) {
                    up = up.header(h, v);
                }
            }
            let up_body = body.take().unwrap_or_else(empty);
            let up = match up.body(up_body) {
                Ok(r) => r,
                Err(e) => {
                    return fail(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot build the request: {e}"),
                        "cannot build the upstream request",
                    );
                }
            };
            *progress.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
            let resp = match upstream::send_in_time(&mount.client, up, &progress, "cache").await {
                Ok(r) => r,
                Err((logged, shown)) => return fail(StatusCode::BAD_GATEWAY, logged, &shown),
            };
            let status = resp.status().as_u16();
            if https_rules::is_redirect(status) {
                let location = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                drop(resp);
                match https_rules::redirect(mount.auth.base(), &url, &location, hops) {
                    https_rules::Redirect::Follow(next) if !write => {
                        if verbose {
                            log(format!(
                                "{what}: {status} within the cache's origin, followed"
                            ));
                        }
                        url = next;
                        hops += 1;
                        continue;
                    }
                    https_rules::Redirect::PassOn(next) if !write => {
                        if verbose {
                            log(format!(
                                "{what}: {status} to another origin, passed on to Nix"
                            ));
                        }
                        return match HeaderValue::from_str(next.as_str()) {
                            Ok(v) => Forwarded::Answer(redirect(v)),
                            Err(_) => fail(
                                StatusCode::BAD_GATEWAY,
                                "a redirect that is no header".into(),
                                "the cache redirected badly",
                            ),
                        };
                    }
                    https_rules::Redirect::Refuse(why) => {
                        return fail(StatusCode::BAD_GATEWAY, why.into(), why);
                    }
                    _ => {
                        return fail(
                            StatusCode::BAD_GATEWAY,
                            format!("the cache answered an upload with {status}"),
                            "the cache redirected an upload",
                        );
                    }
                }
            }
            let renewable = matches!(status, 401 | 403) && mount.auth.refused(&authorized);
            match https_rules::outcome(status, renewable, retried || write, write) {
                https_rules::Outcome::Pass => {
                    if verbose {
                        log(format!("{what}: {status}"));
                    }
                    return Forwarded::Answer(upstream::pass(resp, guard));
                }
                https_rules::Outcome::RetryFresh => {
                    drop(resp);
                    log(format!(
                        "{what}: the cache refused the token ({status}); running the token command again"
                    ));
                    retried = true;
                    continue 'fresh;
                }
                https_rules::Outcome::NeedsPerson => {
                    drop(resp);
                    let why = format!("the cache refused the credential ({status})");
                    log(format!("{what}: {why}"));
                    mount.auth.needs_person(&why);
                    return Forwarded::NeedsPerson(why);
                }
                https_rules::Outcome::Status(s) => {
                    let detail = upstream::read_limited(resp, 1024).await;
                    let shown = super::log::clean(detail.trim(), 200);
                    let s = StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY);
                    return fail(
                        s,
                        format!("the cache answered {status}: {shown}"),
                        &format!("the cache answered {status}; see the proxy log"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_command::TokenCommand;

    fn token(s: &str) -> Token {
        Token::new(zeroize::Zeroizing::new(s.into())).unwrap()
    }

    #[tokio::test]
    async fn requests_get_the_header_and_a_refusal_renews_a_command_once() {
        let url = Url::parse("https://cache.example.org/sub").unwrap();
        let fixed = Https::new("c", &url, Auth::Bearer, "", TokenSource::Fixed(token("T1")));
        let r = fixed
            .authorize(Method::GET, "nix-cache-info")
            .await
            .unwrap();
        assert_eq!(
            r.url.as_str(),
            "https://cache.example.org/sub/nix-cache-info"
        );
        assert_eq!(r.headers["authorization"], "Bearer T1");
        assert!(!format!("{r:?}").contains("T1"));
        assert_eq!(fixed.state(), State::Valid { until: None });
        // A fixed token refused: only a person helps.
        assert!(!fixed.refused(&r));
        assert!(
            matches!(fixed.state(), State::NeedsPerson { fix, .. } if fix.contains("secret set c"))
        );

        let public = Https::new("p", &url, Auth::Basic, "x", TokenSource::None);
        let r = public.authorize(Method::HEAD, "a.narinfo").await.unwrap();
        assert!(r.headers.is_empty());

        // A command: each refusal of the latest token runs it once more.
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("n");
        let cmd = TokenCommand::parse(&format!(
            "sh -c 'n=$(cat {0} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {0}; echo tok$n'",
            count.display()
        ))
        .unwrap();
        let c = Arc::new(CommandToken::new(cmd, 300));
        let https = Https::new(
            "c",
            &url,
            Auth::Basic,
            "me",
            TokenSource::Command(c.clone()),
        );
        let a = https.authorize(Method::GET, "x").await.unwrap();
        let b = https.authorize(Method::GET, "y").await.unwrap();
        assert_eq!(c.runs(), 1);
        assert!(https.refused(&a) && https.refused(&b));
        let d = https.authorize(Method::GET, "z").await.unwrap();
        assert_eq!(c.runs(), 2);
        // Basic me:tok2
        assert_eq!(d.headers["authorization"], "Basic bWU6dG9rMg==");
        assert_eq!(https.state(), State::Renews { until: None });
        assert!(
            https
                .presign_get("x", Duration::from_secs(1))
                .await
                .unwrap()
                .is_none()
        );
    }
}
