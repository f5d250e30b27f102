//! The private control channel: one JSON object per line over the Unix socket.
//!
//! A client sends a request line and reads one reply line. A `lease` connection then stays open:
//! the proxy counts it as a client until it closes (also when the client is killed), and further
//! `lease` lines on it hand fresher credentials. Credentials travel only here, never in argv,
//! the proxy's environment or files.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

pub use super::credential::SessionInfo;

/// Longest request line the proxy reads (credentials and mounts fit easily).
pub const MAX_LINE: u64 = 256 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request<'a> {
    Lease {
        #[serde(borrow)]
        creds: WireCreds<'a>,
        mounts: Vec<WireMount>,
        /// Where the session came from and how it renews (for `proxy status`).
        #[serde(default)]
        info: Option<SessionInfo>,
    },
    /// A newer session from `login`, without a lease: it replaces the session of every mount
    /// named in `caches` or whose session is of `info.profile`, where it is fresher.
    Renew {
        #[serde(borrow)]
        creds: WireCreds<'a>,
        info: SessionInfo,
        #[serde(default)]
        caches: Vec<String>,
    },
    Status,
    Stop,
    ReloadSecret,
    /// A command's lease for recorded HTTPS caches on the proxy route: the proxy mounts them
    /// from config.toml and the user's secret store itself (no token crosses the socket).
    LeaseHttps {
        caches: Vec<String>,
        /// The command's environment for GCS and Azure credentials (`cloud_cache::VARS`).
        #[serde(default)]
        env: crate::cloud_cache::EnvSnapshot,
    },
    /// `use`, `remove` and `service install` changed config.toml: a background proxy mounts
    /// every recorded S3 cache again (and unmounts what is gone).
    Reload,
}

/// Credentials on the wire. `Cow` lets the client serialise borrowed secrets without copies.
#[derive(Serialize, Deserialize)]
pub struct WireCreds<'a> {
    #[serde(borrow)]
    pub access_key_id: Cow<'a, str>,
    #[serde(borrow)]
    pub secret_access_key: Cow<'a, str>,
    #[serde(borrow, default)]
    pub session_token: Option<Cow<'a, str>>,
    #[serde(default)]
    pub expiration: Option<i64>,
}

impl std::fmt::Debug for WireCreds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireCreds")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl WireCreds<'_> {
    pub fn into_credentials(self) -> crate::aws::Credentials {
        use zeroize::Zeroizing;
        crate::aws::Credentials {
            access_key_id: self.access_key_id.into_owned(),
            secret_access_key: Zeroizing::new(self.secret_access_key.into_owned()),
            session_token: self.session_token.map(|t| Zeroizing::new(t.into_owned())),
            expiration: self.expiration,
        }
    }
}

impl<'a> From<&'a crate::aws::Credentials> for WireCreds<'a> {
    fn from(c: &'a crate::aws::Credentials) -> Self {
        WireCreds {
            access_key_id: Cow::Borrowed(&c.access_key_id),
            secret_access_key: Cow::Borrowed(c.secret_access_key.as_str()),
            session_token: c.session_token.as_ref().map(|t| Cow::Borrowed(t.as_str())),
            expiration: c.expiration,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireMount {
    pub name: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The URL's other parameters (multipart, addressing, storage class: `s3_params.rs`).
    #[serde(default)]
    pub params: crate::s3_params::S3Params,
}

impl WireMount {
    pub fn from_s3(name: &str, s3: &crate::cache::S3Ref) -> WireMount {
        WireMount {
            name: name.to_string(),
            bucket: s3.bucket.clone(),
            prefix: s3.prefix.clone(),
            region: s3.region.clone(),
            endpoint: s3.endpoint.clone(),
            params: s3.params.clone(),
        }
    }

    pub fn s3(&self) -> crate::cache::S3Ref {
        crate::cache::S3Ref {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            profile: None,
            params: self.params.clone(),
        }
    }
}

/// The proxy's answer to any request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub leases: usize,
    /// For `renew`: how many mounts took the session.
    #[serde(default)]
    pub renewed: usize,
    #[serde(default)]
    pub mounts: Vec<MountStatus>,
    /// A background proxy: it mounts every recorded cache, renews sessions itself and does not
    /// exit when idle.
    #[serde(default)]
    pub background: bool,
    /// The service manager handed it its socket (systemd, launchd).
    #[serde(default)]
    pub activated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountStatus {
    pub name: String,
    pub url: String,
    /// "valid", "expired", "refused" or "none".
    pub session: String,
    #[serde(default)]
    pub expiration: Option<i64>,
    /// How NARs reach Nix: "redirect" (presigned URLs), "stream", or "untried" before the first.
    #[serde(default)]
    pub nars: String,
    /// Whether root (the nix-daemon) has fetched the cache's `nix-cache-info` through the URL.
    #[serde(default)]
    pub daemon_used: bool,
    /// What the client said about the session in use.
    #[serde(default)]
    pub info: Option<SessionInfo>,
    /// The URL's generation (`NAME~N` from 1 on; see `urls.rs`).
    #[serde(default)]
    pub generation: u32,
    /// Where the credential stands (valid, renews by itself until, needs a person).
    #[serde(default)]
    pub standing: Option<super::credential::Standing>,
    /// Mounted by a background proxy because config.toml records it.
    #[serde(default)]
    pub recorded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_round_trips_and_debug_hides_the_secret() {
        let c = crate::aws::Credentials {
            access_key_id: "AKIA".into(),
            secret_access_key: zeroize::Zeroizing::new("very-secret".into()),
            session_token: Some(zeroize::Zeroizing::new("tok\"en".into())),
            expiration: Some(5),
        };
        let line = serde_json::to_string(&Request::Lease {
            creds: (&c).into(),
            mounts: vec![],
            info: None,
        })
        .unwrap();
        let Request::Lease { creds, .. } = serde_json::from_str(&line).unwrap() else {
            panic!("not a lease");
        };
        assert!(!format!("{creds:?}").contains("very-secret"));
        let back = creds.into_credentials();
        assert_eq!(back.secret_access_key.as_str(), "very-secret");
        assert_eq!(back.session_token.unwrap().as_str(), "tok\"en");
    }
}
