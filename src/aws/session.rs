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

use anyhow::{Result, bail};

use super::environment::{
    check_recursion, env_region, from_environment, mark_resolving, sts_endpoint,
};
use super::keys::{base_credentials, lazy_store, static_keys, stored_key};
use super::mfa::{CodeSource, MfaCodes};
use super::profile::{self, Base, Plan};
use super::session_cache;
use super::sts::{StsFailure, io_runtime, run_sts};
use crate::secret::SecretStore;
use crate::ui::Ui;

pub use super::environment::{EnvDelta, MARKER, RESOLVING, UNSET_VARS};
pub use super::request::{Ctx, Origin, Session, SessionRequest};
use super::request::{Target, target};
pub use super::sts::{Identity, caller_identity};

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
