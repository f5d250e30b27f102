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
//!   MFA: a role profile whose device is on its first role over a long-term key takes the
//!   code into `GetSessionToken` (an MFA base session, `mfa-session-duration`, default 12 h,
//!   cached like other sessions); its roles are assumed from the base session without a code,
//!   also on refresh. Elsewhere (a source that is a role, SSO, `mfa-base-session = false`)
//!   the code goes to AssumeRole directly. `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`
//!   (CI) are used when the profile is not in the files (or, not named, has no credentials).
//!   With [`SessionRequest::unattended`] nothing prompts: a session only a person can renew
//!   fails with [`NeedsLogin`] (the refresh while a command runs, `refresh.rs`).
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
    check_recursion, env_region, from_environment, mark_resolving, sts_endpoint, web_identity_env,
};
use super::keys::{
    base_credentials, lazy_store, starts_with_long_term_key, static_keys, stored_key,
};
use super::mfa::{CodeSource, MfaCodes};
use super::profile::{self, Base, MfaRoute, Plan};
use super::session_cache;
use super::sts::{
    StsFailure, assume_hops, assume_role_with_web_identity, get_session_token, io_runtime, run_sts,
};
use crate::secret::SecretStore;
use crate::ui::Ui;

pub use super::environment::{EnvDelta, MARKER, RESOLVING, UNSET_VARS};
pub use super::request::{Ctx, NeedsLogin, Origin, Renewal, Session, SessionRequest};
use super::request::{Target, target};
pub use super::sts::{Identity, caller_identity};

/// The target's plan, and the region and STS endpoint in force for it.
fn planned(
    set: &aws_config::profile::ProfileSet,
    t: &Target,
) -> Result<(Plan, Option<String>, Option<String>)> {
    let plan = profile::plan(set, &t.profile)?;
    let region = t
        .region
        .clone()
        .or_else(|| plan.region.clone())
        .or_else(env_region);
    let endpoint = sts_endpoint(Some(&plan));
    Ok((plan, region, endpoint))
}

/// Whether web identity from the environment (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`)
/// stands in for the profile: it is not in the files, or was not named and holds no way to
/// credentials (a `[default]` with only a region, as CI images have).
fn web_identity_applies(set: &aws_config::profile::ProfileSet, t: &Target) -> bool {
    match set.get_profile(&t.profile) {
        None => true,
        Some(_) if t.explicit => false,
        Some(p) => [
            "aws_access_key_id",
            "role_arn",
            "credential_process",
            "sso_session",
            "sso_start_url",
            "web_identity_token_file",
            "credential_source",
        ]
        .iter()
        .all(|k| p.get(k).is_none()),
    }
}

/// A session from `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`: the token file is read on
/// every call (CI rotates it), the session is not cached.
fn web_identity(t: &Target, ui: &Ui) -> Result<Option<Session>> {
    let Some(w) = web_identity_env() else {
        return Ok(None);
    };
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(&w.token_file)
            .with_context(|| {
                format!(
                    "cannot read the web identity token file {} (AWS_WEB_IDENTITY_TOKEN_FILE)",
                    w.token_file.display()
                )
            })?
            .trim()
            .to_string(),
    );
    if token.is_empty() {
        bail!(
            "the web identity token file {} (AWS_WEB_IDENTITY_TOKEN_FILE) is empty",
            w.token_file.display()
        );
    }
    let region = t.region.clone().or_else(env_region);
    let endpoint = sts_endpoint(None);
    let name = w
        .session_name
        .clone()
        .unwrap_or_else(|| format!("nixstore-auth-{}", crate::time::now()));
    ui.debug(format!(
        "AssumeRoleWithWebIdentity {} with the token in {}",
        w.role_arn,
        w.token_file.display()
    ));
    let rt = io_runtime()?;
    let creds = rt.block_on(assume_role_with_web_identity(
        &w.role_arn,
        &name,
        &token,
        None,
        region.as_deref().unwrap_or("us-east-1"),
        endpoint.as_deref(),
    ))?;
    Ok(Some(Session {
        credentials: creds,
        profile: None,
        region,
        origin: Origin::WebIdentity,
        sts_endpoint: endpoint,
        renewal: Renewal::Unattended { until: None },
    }))
}

/// The MFA route of a plan (its first credentials decide whether a base session can be had).
fn route_of(
    set: &aws_config::profile::ProfileSet,
    plan: &Plan,
    store: &SecretStore,
    ctx: Ctx,
) -> Result<MfaRoute> {
    let key = starts_with_long_term_key(set, plan, store)?;
    Ok(profile::mfa_route(plan, key, ctx.mfa_base_session()?))
}

/// The cache account of a route's base session.
fn base_account(route: &MfaRoute) -> Option<String> {
    match route {
        MfaRoute::BaseSession {
            serial,
            keys_profile,
        } => Some(session_cache::account(keys_profile, None, Some(serial))),
        _ => None,
    }
}

/// How a session of this route is renewed, given the cached base session's expiry.
fn renewal_of(route: &MfaRoute, base_expires: Option<i64>, margin: i64) -> Renewal {
    match route {
        MfaRoute::NoMfa => Renewal::Unattended { until: None },
        MfaRoute::Direct { .. } => Renewal::Login,
        MfaRoute::BaseSession { .. } => match base_expires {
            Some(e) => Renewal::Unattended {
                until: Some(e - margin),
            },
            None => Renewal::Login,
        },
    }
}

fn needs_login(plan: &Plan, route: &MfaRoute) -> anyhow::Error {
    let serial = plan.mfa_serial().unwrap_or("?");
    let why = match route {
        MfaRoute::BaseSession { .. } => "its MFA base session has ended",
        _ => "each of its sessions takes a new MFA code",
    };
    NeedsLogin(format!(
        "profile {:?} needs a new MFA code (device {serial}): {why}",
        plan.profile
    ))
    .into()
}

/// Gets MFA codes (first one before `prepare` builds anything) and runs `call` until STS takes
/// a code, asking again only where the code came from the terminal.
fn with_codes<P>(
    plan: &Plan,
    req: &SessionRequest,
    ui: &Ui,
    prepare: impl FnOnce() -> Result<P>,
    mut call: impl FnMut(&P, Option<&str>) -> std::result::Result<Credentials, StsFailure>,
) -> Result<Credentials> {
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
    let ready = prepare()?;
    loop {
        match call(&ready, code.as_ref().map(|(c, _)| c.as_str())) {
            Ok(c) => return Ok(c),
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
    }
}

fn no_mfa(r: std::result::Result<Credentials, StsFailure>) -> Result<Credentials> {
    r.map_err(|e| match e {
        StsFailure::MfaRefused(msg) => anyhow::anyhow!("STS refused the session: {msg}"),
        StsFailure::Other(e) => e,
    })
}

/// The session to use now: environment, cache, or a fresh STS session (prompting for MFA
/// unless the request is unattended).
pub fn resolve(req: &SessionRequest, ctx: Ctx, ui: &Ui) -> Result<Session> {
    let t = target(req, ctx.cfg)?;
    if !req.force_refresh
        && let Some(s) = from_environment(&t, ui)
    {
        return Ok(s);
    }
    check_recursion(&t.profile)?;
    let set = profile::load_profiles()?;
    if web_identity_applies(&set, &t)
        && let Some(s) = web_identity(&t, ui)?
    {
        return Ok(s);
    }
    let (plan, region, endpoint) = planned(&set, &t)?;
    if matches!(plan.base, Base::Delegated { .. }) {
        mark_resolving(&t.profile);
    }
    let session = |credentials, origin, region, renewal| Session {
        credentials,
        profile: Some(t.profile.clone()),
        region,
        origin,
        sts_endpoint: endpoint.clone(),
        renewal,
    };

    if !plan.needs_sts() {
        let store = lazy_store(ctx, ui);
        let creds = base_credentials(&set, &plan, &store, region.as_deref(), ui)?;
        return Ok(session(
            creds,
            Origin::Profile,
            region.clone(),
            Renewal::Unattended { until: None },
        ));
    }

    let store = SecretStore::open(ctx.cfg, ctx.dirs, ui)?;
    let route = route_of(&set, &plan, &store, ctx)?;
    let account = session_cache::account(&plan.profile, plan.role_arn(), plan.mfa_serial());
    let base_acct = base_account(&route);
    let margin = ctx.margin();
    let now = crate::time::now();
    let base_expiry = || -> Result<Option<i64>> {
        Ok(match &base_acct {
            Some(a) => session_cache::expiry_of(&store, a)?.filter(|e| e - margin > now),
            None => None,
        })
    };
    if !req.force_refresh
        && let Some(hit) = session_cache::lookup(&store, &account, now, margin, ui)?
    {
        ui.debug(format!(
            "using the cached session of profile {:?} ({})",
            plan.profile,
            store.describe()
        ));
        let renewal = renewal_of(&route, base_expiry()?, margin);
        return Ok(session(
            hit.credentials,
            Origin::Cache,
            region.clone().or(hit.region),
            renewal,
        ));
    }
    let sts_region = region.clone().unwrap_or_else(|| "us-east-1".to_string());
    let ep = endpoint.as_deref();
    let keys = || base_credentials(&set, &plan, &Some(store.clone()), region.as_deref(), ui);

    let (creds, renewal) = match &route {
        MfaRoute::BaseSession {
            serial,
            keys_profile,
        } => {
            let base_acct = &session_cache::account(keys_profile, None, Some(serial));
            // A code or a length given to `login` asks for a new base session.
            let new_base =
                req.force_refresh && (req.mfa_code.is_some() || req.mfa_session_duration.is_some());
            let cached = if new_base {
                None
            } else {
                session_cache::lookup(&store, base_acct, now, margin, ui)?
            };
            let base = match cached {
                Some(hit) => {
                    ui.debug(format!(
                        "assuming the role from the cached MFA base session of profile {keys_profile:?}"
                    ));
                    hit.credentials
                }
                None if req.unattended => return Err(needs_login(&plan, &route)),
                None => {
                    let secs = match req.mfa_session_duration {
                        Some(s) => s,
                        None => ctx.mfa_session_duration()?,
                    };
                    let base = with_codes(
                        &plan,
                        req,
                        ui,
                        || Ok((keys()?, io_runtime()?)),
                        |(k, rt), code| {
                            rt.block_on(get_session_token(
                                k,
                                serial,
                                code,
                                Some(secs),
                                &sts_region,
                                ep,
                                ui,
                            ))
                        },
                    )?;
                    session_cache::save(
                        &store,
                        base_acct,
                        keys_profile,
                        None,
                        Some(serial),
                        region.as_deref(),
                        &base,
                    )?;
                    ui.debug(format!(
                        "new MFA base session of profile {keys_profile:?} for {secs} s, cached in {}",
                        store.describe()
                    ));
                    base
                }
            };
            let rt = io_runtime()?;
            let creds = no_mfa(rt.block_on(assume_hops(
                &plan,
                &base,
                None,
                req.duration,
                &sts_region,
                ep,
                ui,
            )))?;
            (creds, renewal_of(&route, base.expiration, margin))
        }
        MfaRoute::Direct { .. } => {
            if req.unattended {
                return Err(needs_login(&plan, &route));
            }
            let creds = with_codes(
                &plan,
                req,
                ui,
                || Ok((keys()?, io_runtime()?)),
                |(k, rt), code| {
                    rt.block_on(run_sts(&plan, k, code, req.duration, &sts_region, ep, ui))
                },
            )?;
            (creds, Renewal::Login)
        }
        MfaRoute::NoMfa => {
            let k = keys()?;
            let rt = io_runtime()?;
            let creds =
                no_mfa(rt.block_on(run_sts(&plan, &k, None, req.duration, &sts_region, ep, ui)))?;
            (creds, Renewal::Unattended { until: None })
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
    Ok(session(creds, Origin::Fresh, region.clone(), renewal))
}

/// A session without prompting, STS or SSO: the environment, long-term keys, or a cached
/// session that has not expired. `None` when only a login would give one.
pub fn cached_only(req: &SessionRequest, ctx: Ctx, ui: &Ui) -> Result<Option<Session>> {
    let t = target(req, ctx.cfg)?;
    if let Some(s) = from_environment(&t, ui) {
        return Ok(Some(s));
    }
    let set = profile::load_profiles()?;
    if web_identity_applies(&set, &t) && web_identity_env().is_some() {
        // A web identity session is made each time from the token file (network).
        return Ok(None);
    }
    let (plan, region, endpoint) = planned(&set, &t)?;
    let store = SecretStore::open(ctx.cfg, ctx.dirs, ui)?;
    let session = |credentials, origin, region, renewal| Session {
        credentials,
        profile: Some(t.profile.clone()),
        region,
        origin,
        sts_endpoint: endpoint.clone(),
        renewal,
    };
    if !plan.needs_sts() {
        // Long-term keys from the credentials file or the keyring (`aws add-key`); SSO and
        // credential_process would need the network or a prompt, so they count as "no session".
        let credentials = match plan.base {
            Base::StaticKeys { ref profile } => Some(static_keys(&set, profile)?),
            Base::Delegated { ref profile } => stored_key(&store, profile)?,
        };
        return Ok(credentials.map(|c| {
            session(
                c,
                Origin::Profile,
                region.clone(),
                Renewal::Unattended { until: None },
            )
        }));
    }
    let route = route_of(&set, &plan, &store, ctx)?;
    let margin = ctx.margin();
    let now = crate::time::now();
    let base_expires = match base_account(&route) {
        Some(a) => session_cache::expiry_of(&store, &a)?.filter(|e| e - margin > now),
        None => None,
    };
    let account = session_cache::account(&plan.profile, plan.role_arn(), plan.mfa_serial());
    Ok(
        session_cache::lookup(&store, &account, now, 0, ui)?.map(|hit| {
            session(
                hit.credentials,
                Origin::Cache,
                region.clone().or(hit.region),
                renewal_of(&route, base_expires, margin),
            )
        }),
    )
}

/// Which way a profile's sessions are made, and how long each lasts (for `doctor`).
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub profile: String,
    pub route: MfaRoute,
    /// The role session's length asked for (`None`: STS's default, one hour).
    pub role_secs: Option<u32>,
    /// The MFA base session's length (`mfa-session-duration`), for the base-session route.
    pub base_secs: Option<u32>,
    /// When the cached MFA base session ends, if one is cached.
    pub base_expires: Option<i64>,
}

/// The route of the profile a request means; `None` when no profile plan applies (credentials
/// in the environment, or web identity).
pub fn route_info(req: &SessionRequest, ctx: Ctx, ui: &Ui) -> Result<Option<RouteInfo>> {
    let t = target(req, ctx.cfg)?;
    let set = profile::load_profiles()?;
    if web_identity_applies(&set, &t) && web_identity_env().is_some() {
        return Ok(None);
    }
    let (plan, _, _) = planned(&set, &t)?;
    let store = SecretStore::open(ctx.cfg, ctx.dirs, ui)?;
    let route = route_of(&set, &plan, &store, ctx)?;
    let base_expires = match base_account(&route) {
        Some(a) => session_cache::expiry_of(&store, &a)?,
        None => None,
    };
    let base_secs = match route {
        MfaRoute::BaseSession { .. } => Some(ctx.mfa_session_duration()?),
        _ => None,
    };
    Ok(Some(RouteInfo {
        profile: plan.profile.clone(),
        role_secs: plan
            .hops
            .last()
            .and_then(|h| h.duration_seconds)
            .or(plan.duration_seconds),
        route,
        base_secs,
        base_expires,
    }))
}

/// The cache accounts of a profile's MFA base session, for `logout --profile`.
pub fn base_session_account(profile_name: &str, ctx: Ctx, ui: &Ui) -> Result<Option<String>> {
    let set = profile::load_profiles()?;
    let Ok(plan) = profile::plan(&set, profile_name) else {
        return Ok(None);
    };
    let store = SecretStore::open(ctx.cfg, ctx.dirs, ui)?;
    Ok(base_account(&route_of(&set, &plan, &store, ctx)?))
}
