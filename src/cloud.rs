//! What every cloud credential (GCS, Azure) offers the proxy, whatever its kind: authorise a
//! request for an object key, presign a GET where the credential can, and say where it stands
//! (valid, renews by itself until T, needs a person and which command fixes it).
//!
//! The kinds live in `gcp/` and `azure/`; this file holds only what they share: the surface
//! ([`ObjectAuth`]), the credential state, the error classes, and the one renewal rule for
//! tokens we cache ourselves ([`renew_due`], [`TokenCache`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Mutex;
use url::Url;
use zeroize::Zeroizing;

/// A boxed future, so that [`ObjectAuth`] can be used as `dyn` by the proxy.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a credential stands, for the proxy's renewal and for `doctor` / `proxy status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Works as it is and never changes by itself (an account key; a SAS until `until`).
    Valid { until: Option<i64> },
    /// Renews itself without anyone (refresh token, key, workload identity, managed identity);
    /// `until` is when that ends, if it ever does (a SAS-bound or token-file-bound source).
    Renews { until: Option<i64> },
    /// Cannot go on without a person: why, and the command that fixes it.
    NeedsPerson { why: String, fix: String },
}

/// Why authorising failed, in the classes the proxy answers differently.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A person must act (log in again, replace a revoked key); `fix` is the command.
    #[error("{why} (fix: {fix})")]
    NeedsPerson { why: String, fix: String },
    /// The credential is malformed or was refused outright (wrong key, bad SAS).
    #[error("{0}")]
    Refused(String),
    /// Network or server trouble: worth a retry later.
    #[error("{0}")]
    Transient(String),
}

impl AuthError {
    pub fn state(&self) -> Option<State> {
        match self {
            AuthError::NeedsPerson { why, fix } => Some(State::NeedsPerson {
                why: why.clone(),
                fix: fix.clone(),
            }),
            _ => None,
        }
    }
}

pub type AuthResult<T> = std::result::Result<T, AuthError>;

/// A request ready to send: the URL (with any SAS or signature in its query) and the headers
/// that authorise it. Header values that carry secrets are marked sensitive.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    /// Which credential it used (a kind's own count), for [`ObjectAuth::refused`].
    pub generation: u64,
}

impl Authorized {
    pub fn new(method: Method, url: Url) -> Authorized {
        Authorized {
            method,
            url,
            headers: HeaderMap::new(),
            generation: 0,
        }
    }

    /// Adds a header; `secret` marks it sensitive (never printed by `Debug`).
    pub fn header(&mut self, name: &'static str, value: &str, secret: bool) -> AuthResult<()> {
        let mut v = HeaderValue::from_str(value)
            .map_err(|_| AuthError::Refused(format!("invalid characters in the {name} header")))?;
        v.set_sensitive(secret);
        self.headers.insert(HeaderName::from_static(name), v);
        Ok(())
    }

    /// A reqwest request builder for this request on `client`.
    pub fn build(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
    }
}

/// The surface a proxy upstream kind calls. `key` is the object's key below the cache's
/// prefix (`nix-cache-info`, `abc.narinfo`, `nar/xyz.nar.zst`), never URL-encoded.
pub trait ObjectAuth: Send + Sync {
    /// Which credential this is, for people ("authorized_user from /home/a/.config/...").
    fn describe(&self) -> String;
    /// Authorises `method` on `key` (GET, HEAD, PUT).
    fn authorize<'a>(
        &'a self,
        method: Method,
        key: &'a str,
    ) -> BoxFuture<'a, AuthResult<Authorized>>;
    /// A URL that anyone holding it may GET for `ttl`, or `None` where this credential cannot
    /// sign (then the proxy streams).
    fn presign_get<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, AuthResult<Option<Url>>>;
    /// Where the credential stands now (from the last renewal; no network).
    fn state(&self) -> State;
    /// The store refused `request` (401/403 for its credential): drop the credential it used,
    /// so that the next [`ObjectAuth::authorize`] gets a new one where one can come without a
    /// person; once, however many requests saw that credential refused. Returns whether a new
    /// one may come (then the proxy asks once more). Default: nothing to renew.
    fn refused(&self, _request: &Authorized) -> bool {
        false
    }
}

/// Whether a token valid from `issued` to `expires` (epoch seconds) should be renewed at `now`:
/// in its last fifth, and at least five minutes before its end when it lives long enough. A
/// token of seconds thus renews mid-life instead of on every request or after it expired.
pub fn renew_due(issued: i64, expires: i64, now: i64) -> bool {
    let lifetime = (expires - issued).max(0);
    let margin = (lifetime / 5).max(lifetime.min(300));
    // A margin of the whole lifetime would renew on every request: keep at least half of it.
    let margin = margin.min(lifetime / 2);
    now >= expires - margin
}

/// A token we hold ourselves (not one a crate caches for us), with its life.
#[derive(Clone)]
pub struct Held {
    pub secret: Arc<Zeroizing<String>>,
    pub issued: i64,
    pub expires: i64,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("issued", &self.issued)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// One cached token, renewed by [`renew_due`]; concurrent callers wait for one renewal.
/// A failed renewal keeps the old token while it is still valid.
#[derive(Default)]
pub struct TokenCache {
    held: Mutex<Option<Held>>,
    last_error: std::sync::Mutex<Option<State>>,
}

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// The cached token, renewed first by `fetch` when due.
    pub async fn get<F, Fut>(&self, now: impl Fn() -> i64, fetch: F) -> AuthResult<Held>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = AuthResult<Held>>,
    {
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_ref()
            && !renew_due(h.issued, h.expires, now())
        {
            return Ok(h.clone());
        }
        match fetch().await {
            Ok(h) => {
                *held = Some(h.clone());
                self.set_error(None);
                Ok(h)
            }
            Err(e) => {
                self.set_error(e.state());
                match held.as_ref() {
                    Some(h) if h.expires > now() => Ok(h.clone()),
                    _ => Err(e),
                }
            }
        }
    }

    /// Drops the cached token (after the server refused it).
    pub async fn forget(&self) {
        *self.held.lock().await = None;
    }

    /// [`TokenCache::forget`] without waiting: a renewal under way brings a new token anyway.
    pub fn forget_now(&self) {
        if let Ok(mut held) = self.held.try_lock() {
            *held = None;
        }
    }

    /// The last renewal's verdict when it needed a person, else `None`.
    pub fn needs_person(&self) -> Option<State> {
        self.last_error.lock().map(|g| g.clone()).unwrap_or(None)
    }

    /// The expiry of the held token, if any (no waiting: `None` while a renewal runs).
    pub fn expires(&self) -> Option<i64> {
        self.held
            .try_lock()
            .ok()
            .and_then(|h| h.as_ref().map(|h| h.expires))
    }

    fn set_error(&self, state: Option<State>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = state;
        }
    }
}

/// Seconds from now to `secs`, for `ttl`-style values (0 when past).
pub fn secs_until(secs: i64, now: i64) -> Duration {
    Duration::from_secs((secs - now).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    #[test]
    fn renewal_rule_table() {
        // (issued, expires, now, due)
        let cases = [
            // An hour's token: renewed in its last 12 minutes (a fifth beats five minutes).
            (0, 3600, 0, false),
            (0, 3600, 2879, false),
            (0, 3600, 2880, true),
            // Ten minutes: five minutes before the end (the floor of 300 s).
            (0, 600, 299, false),
            (0, 600, 300, true),
            // Seconds: mid-life, never on every request.
            (0, 6, 2, false),
            (0, 6, 3, true),
            (100, 104, 101, false),
            (100, 104, 102, true),
            // Expired: due.
            (0, 60, 61, true),
            // A token without life (issued == expires): due at once.
            (5, 5, 5, true),
            // A day's token: its last fifth (4.8 h) before the end.
            (0, 86400, 69119, false),
            (0, 86400, 69120, true),
        ];
        for (issued, expires, now, due) in cases {
            assert_eq!(
                renew_due(issued, expires, now),
                due,
                "issued {issued} expires {expires} now {now}"
            );
        }
    }

    fn held(tag: &str, issued: i64, expires: i64) -> Held {
        Held {
            secret: Arc::new(Zeroizing::new(tag.to_string())),
            issued,
            expires,
        }
    }

    #[tokio::test]
    async fn cache_renews_when_due_and_keeps_a_valid_token_on_failure() {
        let clock = AtomicI64::new(0);
        let fetches = AtomicUsize::new(0);
        let cache = TokenCache::new();
        let now = || clock.load(Ordering::SeqCst);
        let ok = |tag: &'static str| {
            let issued = clock.load(Ordering::SeqCst);
            fetches.fetch_add(1, Ordering::SeqCst);
            async move { Ok(held(tag, issued, issued + 10)) }
        };
        assert_eq!(
            cache.get(now, || ok("a")).await.unwrap().secret.as_str(),
            "a"
        );
        // Not due yet: cached, no fetch.
        clock.store(4, Ordering::SeqCst);
        assert_eq!(
            cache.get(now, || ok("b")).await.unwrap().secret.as_str(),
            "a"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Due (mid-life): renewed.
        clock.store(5, Ordering::SeqCst);
        assert_eq!(
            cache.get(now, || ok("b")).await.unwrap().secret.as_str(),
            "b"
        );
        assert_eq!(cache.expires(), Some(15));
        // Due, renewal fails, old token still valid: kept, and the verdict remembered.
        clock.store(12, Ordering::SeqCst);
        let fail = || async {
            Err(AuthError::NeedsPerson {
                why: "refresh token revoked".into(),
                fix: "gcloud auth application-default login".into(),
            })
        };
        assert_eq!(cache.get(now, fail).await.unwrap().secret.as_str(), "b");
        assert!(matches!(
            cache.needs_person(),
            Some(State::NeedsPerson { fix, .. }) if fix == "gcloud auth application-default login"
        ));
        // Expired and failing: the error comes through.
        clock.store(15, Ordering::SeqCst);
        assert!(matches!(
            cache.get(now, fail).await,
            Err(AuthError::NeedsPerson { .. })
        ));
        // A success clears the verdict.
        assert_eq!(
            cache.get(now, || ok("c")).await.unwrap().secret.as_str(),
            "c"
        );
        assert_eq!(cache.needs_person(), None);
        // forget() makes the next call fetch even when not due.
        cache.forget().await;
        assert_eq!(
            cache.get(now, || ok("d")).await.unwrap().secret.as_str(),
            "d"
        );
    }
}
