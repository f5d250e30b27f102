//! What every kind of cache shares in the proxy: a credential source that renews without a
//! person, where each mount's credential stands, and what a request gets when there is no
//! usable credential. Kind specifics (an AWS session for S3) live in their own files
//! (`aws_source.rs`); the proxy's loop, `proxy status`, `service status` and `doctor` only
//! ask these types.

use serde::{Deserialize, Serialize};

/// What a client says about the session it hands over (no secret).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// The AWS profile, if the session has one.
    #[serde(default)]
    pub profile: Option<String>,
    /// Where it came from: "cache", "fresh", "profile", "environment", "web identity".
    #[serde(default)]
    pub origin: String,
    /// "auto" (renewed without a person, by the client holding the lease), "login" (needs
    /// `nixstore-auth login`), "fixed" (the caller's environment's credentials).
    #[serde(default)]
    pub renewal: String,
    /// For "auto": until when (then a login is needed), if bounded.
    #[serde(default)]
    pub renew_until: Option<i64>,
}

/// A credential a source brought, by kind.
pub enum Credential {
    /// An AWS session, for S3 caches.
    Aws(crate::aws::Credentials),
}

impl Credential {
    /// When it stops working (`None`: it does not expire).
    pub fn expiration(&self) -> Option<i64> {
        match self {
            Credential::Aws(c) => c.expiration,
        }
    }
}

/// What one unattended renewal gave.
pub enum Renewal {
    /// A credential, with what it says about itself (origin, how it renews) and, when the
    /// source fetched it, the cache's `nix-cache-info` (kept to answer while a person is needed).
    Fresh {
        credential: Credential,
        info: SessionInfo,
        cache_info: Option<Vec<u8>>,
    },
    /// Only a person can get a new one: why, in a sentence.
    NeedsPerson(String),
    /// It failed for another reason (network, configuration): why. Tried again later.
    Failed(String),
}

/// A mount's way to new credentials without a person. One per mount; it never prompts.
pub trait Source: Send {
    /// The cache it is for (named in `nixstore-auth login CACHE`).
    fn cache(&self) -> &str;
    /// Gets a credential now, unattended.
    fn renew(&mut self) -> Renewal;
}

/// Where a mount's credential stands, for status displays and for what requests get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Standing {
    /// Usable until `expires` (`None`: no end); not renewed without a person (or not by the
    /// proxy: a command's lease may bring a newer one).
    Valid { expires: Option<i64> },
    /// Usable until `expires`, and renewed without a person until `until` (`None`: for as long
    /// as its source works).
    Renews {
        expires: Option<i64>,
        until: Option<i64>,
    },
    /// Nothing usable, and only a person can change that: `nixstore-auth login CACHE`.
    #[serde(rename = "needs-login")]
    NeedsPerson { why: String },
    /// Nothing usable for now (starting, a network failure, refused by the store); the proxy
    /// or a command's lease tries again.
    Unavailable { why: String },
}

impl Standing {
    /// Whether requests can be served with it now.
    pub fn usable(&self) -> bool {
        matches!(self, Standing::Valid { .. } | Standing::Renews { .. })
    }

    /// The short word for displays and JSON: valid, renews, needs-login, unavailable.
    pub fn word(&self) -> &'static str {
        match self {
            Standing::Valid { .. } => "valid",
            Standing::Renews { .. } => "renews",
            Standing::NeedsPerson { .. } => "needs-login",
            Standing::Unavailable { .. } => "unavailable",
        }
    }
}

/// The command that gives a person's credential to a cache.
pub fn login_command(cache: &str) -> String {
    format!("nixstore-auth login {cache}")
}

/// What a request gets when its mount has no usable credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutCredential {
    /// The cache's `nix-cache-info` as last seen (or a minimal one): Nix keeps the cache.
    CacheInfo,
    /// A miss (404): Nix goes on without the cache (other caches, or a build from source).
    /// The daemon remembers it under this URL only; the URL moves on once the cache works.
    Miss,
    /// 503: a failure Nix does not remember (uploads; credentials that may come back by
    /// themselves).
    Unavailable,
}

/// The answer for a request (`read`: GET or HEAD; `cache_info`: it asks for `nix-cache-info`)
/// to a mount that stands `standing` without a usable credential. Only a person can end
/// `NeedsPerson`, so plain Nix commands must not fail meanwhile: reads become misses.
/// Anything that may come back by itself stays a 503, which Nix does not remember.
pub fn without_credential(standing: &Standing, read: bool, cache_info: bool) -> WithoutCredential {
    match (standing, read, cache_info) {
        (Standing::NeedsPerson { .. }, true, true) => WithoutCredential::CacheInfo,
        (Standing::NeedsPerson { .. }, true, false) => WithoutCredential::Miss,
        _ => WithoutCredential::Unavailable,
    }
}

/// The `nix-cache-info` served while a person is needed and none was seen yet.
pub const MINIMAL_CACHE_INFO: &str = "StoreDir: /nix/store\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_without_a_credential() {
        use WithoutCredential::*;
        let person = Standing::NeedsPerson { why: "x".into() };
        let waiting = Standing::Unavailable { why: "x".into() };
        // (standing, read, nix-cache-info) -> answer
        let rows = [
            (&person, true, true, CacheInfo),
            (&person, true, false, Miss),
            (&person, false, false, Unavailable),
            (&person, false, true, Unavailable),
            (&waiting, true, true, Unavailable),
            (&waiting, true, false, Unavailable),
            (&waiting, false, false, Unavailable),
        ];
        for (i, (s, read, info, want)) in rows.into_iter().enumerate() {
            assert_eq!(without_credential(s, read, info), want, "row {i}");
        }
    }

    #[test]
    fn standings_read_as_words_and_usability() {
        let v = Standing::Renews {
            expires: Some(5),
            until: None,
        };
        assert!(v.usable() && Standing::Valid { expires: None }.usable());
        assert!(!Standing::NeedsPerson { why: "".into() }.usable());
        assert_eq!(v.word(), "renews");
        let json = serde_json::to_value(Standing::NeedsPerson { why: "w".into() }).unwrap();
        assert_eq!(json["state"], "needs-login");
        assert_eq!(login_command("c"), "nixstore-auth login c");
    }
}
