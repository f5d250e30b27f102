//! What a session is asked for and what comes back: the request, the resolved session with its
//! origin, the profile and region a request means, and the context resolving needs.

use anyhow::{Context, Result, bail};

use super::Credentials;
use super::session_cache;
use crate::config::{Config, Dirs};

/// What the caller wants a session for.
#[derive(Debug, Clone, Default)]
pub struct SessionRequest {
    /// `--profile`.
    pub profile: Option<String>,
    /// A recorded cache name or an `s3://` URL whose `profile=` and `region=` apply.
    pub cache: Option<String>,
    /// `--mfa-code` / NIXSTORE_AUTH_MFA_CODE.
    pub mfa_code: Option<String>,
    /// `--duration`: session length in seconds.
    pub duration: Option<u32>,
    /// Get a new session even if a cached one is still good (`login`).
    pub force_refresh: bool,
    /// Never ask a person (a refresh while a command runs): a session that needs an MFA code
    /// fails with [`NeedsLogin`] instead.
    pub unattended: bool,
    /// `login --mfa-session-duration`: the MFA base session's length in seconds.
    pub mfa_session_duration: Option<u32>,
}

/// A session that only a person can renew (a new MFA code): the error of an unattended
/// request, for the refresh to tell apart from a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NeedsLogin(pub String);

impl SessionRequest {
    /// A session for `profile` if one is named (it wins), else for the S3 cache `cache` (its
    /// `profile=` and `region=` apply), else for `AWS_PROFILE` or `default`.
    pub fn new(profile: Option<String>, cache: Option<String>) -> SessionRequest {
        SessionRequest {
            cache: if profile.is_some() { None } else { cache },
            profile,
            ..SessionRequest::default()
        }
    }

    /// The MFA code to use instead of asking (`--mfa-code`, NIXSTORE_AUTH_MFA_CODE).
    pub fn mfa_code(mut self, code: Option<String>) -> SessionRequest {
        self.mfa_code = code;
        self
    }

    /// The role session's length in seconds (`login --duration`).
    pub fn duration(mut self, seconds: Option<u32>) -> SessionRequest {
        self.duration = seconds;
        self
    }

    /// A new session even if the cached one is still good (`login`).
    pub fn force_refresh(mut self) -> SessionRequest {
        self.force_refresh = true;
        self
    }

    /// The MFA base session's length in seconds (`login --mfa-session-duration`).
    pub fn mfa_session_duration(mut self, seconds: Option<u32>) -> SessionRequest {
        self.mfa_session_duration = seconds;
        self
    }

    /// The same request for a refresh while a command runs: no prompt, no one-time code (it
    /// was used), not from the caller's environment's marker-less credentials again.
    pub fn unattended(&self) -> SessionRequest {
        SessionRequest {
            mfa_code: None,
            force_refresh: false,
            unattended: true,
            ..self.clone()
        }
    }
}

/// Where a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The caller's environment (CI, `aws sso` exports, an outer `exec`).
    Environment,
    /// The session cache.
    Cache,
    /// A new STS session, now cached.
    Fresh,
    /// The profile's own credentials: long-term keys or aws-config's chain (not cached by us).
    Profile,
    /// AssumeRoleWithWebIdentity with the token file in `AWS_WEB_IDENTITY_TOKEN_FILE` (CI).
    WebIdentity,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Environment => "environment",
            Origin::Cache => "cache",
            Origin::Fresh => "fresh",
            Origin::Profile => "profile",
            Origin::WebIdentity => "web identity",
        }
    }
}

/// A resolved session. `Debug` shows no secret (see [`Credentials`]).
#[derive(Debug, Clone)]
pub struct Session {
    pub credentials: Credentials,
    /// The profile, `None` for credentials taken from the environment without a marker.
    pub profile: Option<String>,
    pub region: Option<String>,
    pub origin: Origin,
    /// The STS endpoint override in force, if any.
    pub sts_endpoint: Option<String>,
    /// Whether a new session can be had without a person.
    pub renewal: Renewal,
}

/// How a session is renewed when it nears its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Without a person (long-term keys, an SSO token, web identity, credential_process, an
    /// MFA base session), until `until` when that is bounded (the base session's end).
    Unattended { until: Option<i64> },
    /// Only with a person: a new MFA code (`nixstore-auth login`).
    Login,
    /// Never by us: credentials the caller's environment holds.
    Fixed,
}

impl Renewal {
    /// Whether the session can be renewed without a person at `at` (epoch seconds).
    pub fn unattended_at(self, at: i64) -> bool {
        match self {
            Renewal::Unattended { until } => until.is_none_or(|u| u > at),
            Renewal::Login | Renewal::Fixed => false,
        }
    }

    /// A short word for status displays: "auto", "login" or "fixed".
    pub fn as_str(self) -> &'static str {
        match self {
            Renewal::Unattended { .. } => "auto",
            Renewal::Login => "login",
            Renewal::Fixed => "fixed",
        }
    }
}

/// Which profile and region a request means.
pub(super) struct Target {
    pub(super) profile: String,
    /// Named by `--profile` or a cache ref (not just `AWS_PROFILE` or the default).
    pub(super) explicit: bool,
    pub(super) region: Option<String>,
}

pub(super) fn target(req: &SessionRequest, cfg: &Config) -> Result<Target> {
    let mut region = None;
    let mut cache_profile = None;
    if let Some(c) = &req.cache {
        let kind = if crate::cache::looks_like_url(c) {
            crate::cache::parse_url(c)?
        } else {
            cfg.find(c)?
                .with_context(|| {
                    format!("no cache named {c:?} is recorded: see `nixstore-auth list`")
                })?
                .kind
        };
        let crate::cache::CacheKind::S3(s3) = kind else {
            bail!("{c:?} is not an S3 cache: AWS sessions are for s3:// caches");
        };
        region = s3.region;
        cache_profile = s3.profile;
    }
    if let Some(p) = req.profile.clone().or(cache_profile) {
        return Ok(Target {
            profile: p,
            explicit: true,
            region,
        });
    }
    let profile = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Ok(Target {
        profile,
        explicit: false,
        region,
    })
}

/// Default `mfa-session-duration`: one MFA code a workday.
pub const DEFAULT_MFA_SESSION_SECS: u32 = 43_200;

/// Everything resolving needs besides the request: our config (the secret store's backend,
/// `session-refresh-margin`) and directories. The command loads them, once.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub dirs: &'a Dirs,
}

impl<'a> Ctx<'a> {
    pub fn new(cfg: &'a Config, dirs: &'a Dirs) -> Ctx<'a> {
        Ctx { cfg, dirs }
    }

    /// `session-refresh-margin`: renew a session this many seconds before it ends.
    pub fn margin(&self) -> i64 {
        self.cfg
            .get_int(None, "session-refresh-margin")
            .unwrap_or(session_cache::DEFAULT_REFRESH_MARGIN)
    }

    /// `mfa-session-duration`: the MFA base session's length (default 43200 s, 12 hours).
    pub(super) fn mfa_session_duration(&self) -> Result<u32> {
        match self.cfg.get_int(None, "mfa-session-duration") {
            None => Ok(DEFAULT_MFA_SESSION_SECS),
            Some(n) if (900..=129_600).contains(&n) => Ok(n as u32),
            Some(n) => {
                bail!("mfa-session-duration = {n} in config.toml: STS takes 900 to 129600 seconds")
            }
        }
    }

    /// `mfa-base-session` (default true): MFA profiles with a role take one code a workday.
    pub(super) fn mfa_base_session(&self) -> Result<bool> {
        Ok(self.cfg.get_top_bool("mfa-base-session")?.unwrap_or(true))
    }
}
