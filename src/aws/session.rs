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
//! - [`outlook`] (and [`cached_only`]): what [`resolve`] would do, found with the same setup
//!   (`setup.rs`) and decision (`decide.rs`) but never prompting nor calling STS (for `doctor`
//!   and `secret status`): a session at hand, one a command gets without a person, or `login`.
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
use super::decide::{Step, decide};
use super::environment::{WebIdentityEnv, env_region, mark_resolving, sts_endpoint};
use super::keys::{base_credentials, lazy_store};
use super::mfa::{CodeSource, MfaCodes};
use super::profile::{Base, MfaRoute, Plan};
use super::session_cache;
use super::setup::{Known, Profiled, Start, facts, needs_login, renewal_of, start};
use super::sts::{
    StsFailure, assume_hops, assume_role_with_web_identity, get_session_token, io_runtime, run_sts,
};
use crate::secret::SecretStore;
use crate::ui::Ui;

pub use super::environment::{EnvDelta, MARKER, RESOLVING, UNSET_VARS};
pub use super::outlook::{
    Outlook, RouteInfo, base_session_account, cached_only, outlook, profile_name, route_info,
};
use super::request::Target;
pub use super::request::{Ctx, NeedsLogin, Origin, Renewal, Session, SessionRequest};
pub use super::sts::{Identity, caller_identity};

/// A session from `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`: the token file is read on
/// every call (CI rotates it), the session is not cached.
fn web_identity(t: &Target, w: &WebIdentityEnv, ui: &Ui) -> Result<Session> {
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
    Ok(Session {
        credentials: creds,
        profile: None,
        region,
        origin: Origin::WebIdentity,
        sts_endpoint: endpoint,
        renewal: Renewal::Unattended { until: None },
    })
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
/// unless the request is unattended). Gather ([`start`], [`Profiled::known`]) → decide
/// ([`decide`]) → apply (here).
pub fn resolve(req: &SessionRequest, ctx: Ctx, ui: &Ui) -> Result<Session> {
    let p = match start(req, ctx, ui)? {
        Start::Environment(s) => return Ok(s),
        Start::WebIdentity(t, w) => return web_identity(&t, &w, ui),
        Start::Profile(p) => p,
    };
    if matches!(p.plan.base, Base::Delegated { .. }) {
        mark_resolving(&p.t.profile);
    }
    // A plan without STS needs no session cache (and maybe no secret store at all).
    let (store, known) = if p.plan.needs_sts() {
        let store = SecretStore::open(ctx.cfg, ctx.dirs, ui)?;
        let known = p.known(req, &store, ctx, ui)?;
        (Some(store), Some(known))
    } else {
        (lazy_store(ctx, ui), None)
    };
    let step = decide(facts(&p.plan, req, req.unattended, known.as_ref()));
    let (Some(store), Some(k)) = (store.clone(), known) else {
        // Invariant of `decide`: no STS means FirstCredentials.
        let creds = base_credentials(&p.set, &p.plan, &store, p.region.as_deref(), ui)?;
        return Ok(p.session(
            creds,
            Origin::Profile,
            p.region.clone(),
            Renewal::Unattended { until: None },
        ));
    };
    apply(&p, req, ctx, ui, &store, k, step)
}

/// Makes the session `step` says (STS, MFA codes, the cache) and records it.
fn apply(
    p: &Profiled,
    req: &SessionRequest,
    ctx: Ctx,
    ui: &Ui,
    store: &SecretStore,
    k: Known,
    step: Step,
) -> Result<Session> {
    let plan = &p.plan;
    let region = &p.region;
    let Known {
        route,
        account,
        cached,
        base,
        margin,
    } = k;
    let base_expires = base.as_ref().and_then(|b| b.credentials.expiration);
    let sts_region = region.clone().unwrap_or_else(|| "us-east-1".to_string());
    let ep = p.endpoint.as_deref();
    let keys = || base_credentials(&p.set, plan, &Some(store.clone()), region.as_deref(), ui);
    let (creds, renewal) = match (step, &route, cached, base) {
        (Step::Cached, _, Some(hit), _) => {
            ui.debug(format!(
                "using the cached session of profile {:?} ({})",
                plan.profile,
                store.describe()
            ));
            let renewal = renewal_of(&route, base_expires, margin);
            return Ok(p.session(
                hit.credentials,
                Origin::Cache,
                region.clone().or(hit.region),
                renewal,
            ));
        }
        (Step::NeedsLogin, ..) => return Err(needs_login(plan, &route)),
        (
            Step::FromBase | Step::NewBase,
            MfaRoute::BaseSession {
                serial,
                keys_profile,
            },
            _,
            base,
        ) => {
            let base = match (step, base) {
                (Step::FromBase, Some(hit)) => {
                    ui.debug(format!(
                        "assuming the role from the cached MFA base session of profile {keys_profile:?}"
                    ));
                    hit.credentials
                }
                _ => new_base_session(p, req, ctx, ui, store, serial, keys_profile, &keys)?,
            };
            let rt = io_runtime()?;
            let creds = no_mfa(rt.block_on(assume_hops(
                plan,
                &base,
                None,
                req.duration,
                &sts_region,
                ep,
                ui,
            )))?;
            (creds, renewal_of(&route, base.expiration, margin))
        }
        (Step::DirectMfa, ..) => {
            let creds = with_codes(
                plan,
                req,
                ui,
                || Ok((keys()?, io_runtime()?)),
                |(k, rt), code| {
                    rt.block_on(run_sts(plan, k, code, req.duration, &sts_region, ep, ui))
                },
            )?;
            (creds, Renewal::Login)
        }
        (step, ..) => {
            // Step::Sts; `decide` gives no other step to a plan that needs STS.
            debug_assert_eq!(step, Step::Sts);
            let k = keys()?;
            let rt = io_runtime()?;
            let creds =
                no_mfa(rt.block_on(run_sts(plan, &k, None, req.duration, &sts_region, ep, ui)))?;
            (creds, Renewal::Unattended { until: None })
        }
    };
    session_cache::save(
        store,
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
    Ok(p.session(creds, Origin::Fresh, region.clone(), renewal))
}

/// A new MFA base session (`GetSessionToken` with a code) for the long-term key of
/// `keys_profile`, cached.
#[allow(clippy::too_many_arguments)]
fn new_base_session(
    p: &Profiled,
    req: &SessionRequest,
    ctx: Ctx,
    ui: &Ui,
    store: &SecretStore,
    serial: &str,
    keys_profile: &str,
    keys: &dyn Fn() -> Result<Credentials>,
) -> Result<Credentials> {
    let secs = match req.mfa_session_duration {
        Some(s) => s,
        None => ctx.mfa_session_duration()?,
    };
    let sts_region = p.region.clone().unwrap_or_else(|| "us-east-1".to_string());
    let base = with_codes(
        &p.plan,
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
                p.endpoint.as_deref(),
                ui,
            ))
        },
    )?;
    let base_acct = session_cache::account(keys_profile, None, Some(serial));
    session_cache::save(
        store,
        &base_acct,
        keys_profile,
        None,
        Some(serial),
        p.region.as_deref(),
        &base,
    )?;
    ui.debug(format!(
        "new MFA base session of profile {keys_profile:?} for {secs} s, cached in {}",
        store.describe()
    ));
    Ok(base)
}
