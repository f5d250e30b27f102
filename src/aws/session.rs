//! The AWS session of a command: resolve it, cache it, hand it to a child.
//!
//! # API for other commands (exec, push, doctor)
//!
//! - [`resolve`]`(&SessionRequest, Ctx, &Ui) -> Result<Session>`: the session to use now. Order:
//!   1. credentials already in the environment (`AWS_ACCESS_KEY_ID`, ...), unless an explicit
//!      profile (`--profile` or the cache ref's `profile=`) differs from the marker
//!      `NIXSTORE_AUTH_PROFILE` an outer `exec` left (so a nested `exec` reuses the outer session);
//!   2. the profile (`--profile`, else the S3 cache ref's `profile=`, else `AWS_PROFILE`, else
//!      `default`) read from the AWS config files: long-term keys are used as they are; a role
//!      chain or `mfa_serial` needs STS, whose result is cached in the secret store (keyring,
//!      else 0600 files) and reused until `session-refresh-margin` seconds (default 300) remain.
//!      The MFA code is obtained before any STS client exists. SSO, `credential_process` and web
//!      identity are delegated to aws-config's profile provider.
//!
//!   STS is reached at `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the profile's
//!   `endpoint_url`. A tokio runtime is created only for STS/SSO work, never on a cache hit.
//! - [`cached_only`]: the same, but never prompts and never calls STS (for `doctor`): `None`
//!   when a fresh login would be needed.
//! - [`EnvDelta::for_session`]: the variables to set (`AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_CREDENTIAL_EXPIRATION`, `AWS_REGION`,
//!   `AWS_DEFAULT_REGION`, `NIXSTORE_AUTH_PROFILE`) and to remove (`AWS_PROFILE`,
//!   `AWS_DEFAULT_PROFILE`, `AWS_SECURITY_TOKEN`, plus token/expiry when the session has none)
//!   in a child's environment, decided together (`environment.rs`).
//! - [`caller_identity`]: GetCallerIdentity with a session (for `login` and `doctor`).
//!
//! STS calls live in `sts.rs`, the chain's first credentials in `keys.rs`.
//!
//! Nothing here prints or logs a secret: messages carry profile names, ARNs and key ids only.

use anyhow::{Context, Result, bail};

use super::Credentials;
use super::environment::{
    check_recursion, env_region, from_environment, mark_resolving, sts_endpoint,
};
use super::keys::{base_credentials, lazy_store, static_keys, stored_key};
use super::mfa::{CodeSource, MfaCodes};
use super::profile::{self, Base, Plan};
use super::session_cache;
use super::sts::{StsFailure, io_runtime, run_sts};
use crate::config::{Config, Dirs};
use crate::secret::SecretStore;
use crate::ui::Ui;

pub use super::environment::{EnvDelta, MARKER, RESOLVING, UNSET_VARS};
pub use super::sts::{Identity, caller_identity};

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
}

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
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Environment => "environment",
            Origin::Cache => "cache",
            Origin::Fresh => "fresh",
            Origin::Profile => "profile",
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
}

/// Which profile and region a request means.
pub(super) struct Target {
    pub(super) profile: String,
    /// Named by `--profile` or a cache ref (not just `AWS_PROFILE` or the default).
    pub(super) explicit: bool,
    pub(super) region: Option<String>,
}

fn target(req: &SessionRequest, cfg: &Config) -> Result<Target> {
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

    fn margin(&self) -> i64 {
        self.cfg
            .get_int(None, "session-refresh-margin")
            .unwrap_or(session_cache::DEFAULT_REFRESH_MARGIN)
    }
}

/// The profiles, the target's plan, and the region and STS endpoint in force for it.
fn planned(
    t: &Target,
) -> Result<(
    aws_config::profile::ProfileSet,
    Plan,
    Option<String>,
    Option<String>,
)> {
    let set = profile::load_profiles()?;
    let plan = profile::plan(&set, &t.profile)?;
    let region = t
        .region
        .clone()
        .or_else(|| plan.region.clone())
        .or_else(env_region);
    let endpoint = sts_endpoint(Some(&plan));
    Ok((set, plan, region, endpoint))
}

/// The session to use now: environment, cache, or a fresh STS session (prompting for MFA).
pub fn resolve(req: &SessionRequest, ctx: Ctx, ui: &Ui) -> Result<Session> {
    let t = target(req, ctx.cfg)?;
    if !req.force_refresh
        && let Some(s) = from_environment(&t, ui)
    {
        return Ok(s);
    }
    check_recursion(&t.profile)?;
    let (set, plan, region, endpoint) = planned(&t)?;
    if matches!(plan.base, Base::Delegated { .. }) {
        mark_resolving(&t.profile);
    }

    if !plan.needs_sts() {
        let store = lazy_store(ctx, ui);
        let creds = base_credentials(&set, &plan, &store, region.as_deref(), ui)?;
        return Ok(Session {
            credentials: creds,
            profile: Some(t.profile),
            region,
            origin: Origin::Profile,
            sts_endpoint: endpoint,
        });
    }

    let store = SecretStore::open(ctx.cfg, ctx.dirs, ui)?;
    let account = session_cache::account(&plan.profile, plan.role_arn(), plan.mfa_serial());
    if !req.force_refresh
        && let Some(hit) =
            session_cache::lookup(&store, &account, crate::time::now(), ctx.margin(), ui)?
    {
        ui.debug(format!(
            "using the cached session of profile {:?} ({})",
            plan.profile,
            store.describe()
        ));
        return Ok(Session {
            credentials: hit.credentials,
            profile: Some(t.profile),
            region: region.or(hit.region),
            origin: Origin::Cache,
            sts_endpoint: endpoint,
        });
    }

    // The code first: no SDK client (and no load timeout) exists while the user types.
    let mut codes = plan.mfa_serial().map(|serial| {
        MfaCodes::new(
            serial,
            &plan.profile,
            req.mfa_code.as_deref(),
            plan.mfa_process.as_deref(),
            ui,
        )
    });
    let mut code = match codes.as_mut() {
        Some(c) => Some(c.first()?),
        None => None,
    };
    let base = base_credentials(&set, &plan, &Some(store.clone()), region.as_deref(), ui)?;
    let rt = io_runtime()?;
    let sts_region = region.clone().unwrap_or_else(|| "us-east-1".to_string());
    let creds = loop {
        let attempt = rt.block_on(run_sts(
            &plan,
            &base,
            code.as_ref().map(|(c, _)| c.as_str()),
            req.duration,
            &sts_region,
            endpoint.as_deref(),
            ui,
        ));
        match attempt {
            Ok(c) => break c,
            Err(StsFailure::MfaRefused(msg)) => {
                let serial = plan.mfa_serial().unwrap_or("?");
                let last = code
                    .as_ref()
                    .map(|(_, s)| *s)
                    .unwrap_or(CodeSource::Argument);
                let next = match codes.as_mut() {
                    Some(c) if c.can_retry(last) => {
                        ui.warn(format!("STS refused the MFA code ({msg}); try again"));
                        c.retry(last)?
                    }
                    _ => None,
                };
                match next {
                    Some(n) => code = Some(n),
                    None => bail!(
                        "STS refused the MFA code for {serial} (profile {:?}): {msg}. Use the \
                         current code from the device (each code works once) and check the \
                         device's clock; nothing was cached",
                        plan.profile
                    ),
                }
            }
            Err(StsFailure::Other(e)) => return Err(e),
        }
    };
    session_cache::save(
        &store,
        &account,
        &plan.profile,
        plan.role_arn(),
        plan.mfa_serial(),
        region.as_deref(),
        &creds,
    )?;
    ui.debug(format!(
        "new session for profile {:?} ({}), cached in {}",
        plan.profile,
        creds.access_key_id,
        store.describe()
    ));
    Ok(Session {
        credentials: creds,
        profile: Some(t.profile),
        region,
        origin: Origin::Fresh,
        sts_endpoint: endpoint,
    })
}

/// A session without prompting, STS or SSO: the environment, long-term keys, or a cached
/// session that has not expired. `None` when only a login would give one.
pub fn cached_only(req: &SessionRequest, ctx: Ctx, ui: &Ui) -> Result<Option<Session>> {
    let t = target(req, ctx.cfg)?;
    if let Some(s) = from_environment(&t, ui) {
        return Ok(Some(s));
    }
    let (set, plan, region, endpoint) = planned(&t)?;
    let store = SecretStore::open(ctx.cfg, ctx.dirs, ui)?;
    if !plan.needs_sts() {
        // Long-term keys from the credentials file or the keyring (`aws add-key`); SSO and
        // credential_process would need the network or a prompt, so they count as "no session".
        let credentials = match plan.base {
            Base::StaticKeys { ref profile } => Some(static_keys(&set, profile)?),
            Base::Delegated { ref profile } => stored_key(&store, profile)?,
        };
        return Ok(credentials.map(|credentials| Session {
            credentials,
            profile: Some(t.profile),
            region,
            origin: Origin::Profile,
            sts_endpoint: endpoint,
        }));
    }
    let account = session_cache::account(&plan.profile, plan.role_arn(), plan.mfa_serial());
    Ok(
        session_cache::lookup(&store, &account, crate::time::now(), 0, ui)?.map(|hit| Session {
            credentials: hit.credentials,
            profile: Some(t.profile),
            region: region.or(hit.region),
            origin: Origin::Cache,
            sts_endpoint: endpoint,
        }),
    )
}
