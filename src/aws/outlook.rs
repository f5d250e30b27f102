//! What a command would get now, without prompting, STS or SSO (for `doctor` and `secret
//! status`): the same setup ([`super::setup`]) and decision ([`super::decide`]) as
//! [`super::session::resolve`], unattended, so that doctor and exec cannot disagree.

use anyhow::Result;

use super::decide::{Step, decide};
use super::keys::{static_keys, stored_key};
use super::profile::{self, Base, MfaRoute};
use super::request::{Ctx, Origin, Renewal, Session, SessionRequest, target};
use super::session_cache;
use super::setup::{Known, Start, base_account, facts, needs_login, renewal_of, route_of, start};
use crate::secret::SecretStore;
use crate::ui::Ui;

/// What a command would get now, found without prompting, STS or SSO (for `doctor` and
/// `secret status`): the same setup and decision as [`resolve`], unattended.
pub enum Outlook {
    /// A session to use now: the environment, long-term keys, or a cached session.
    Ready(Session),
    /// None is at hand, but a command gets one without a person: how.
    WithoutPrompt(String),
    /// Only a person can make one (`nixstore-auth login`): why.
    NeedsLogin(String),
}

pub fn outlook(req: &SessionRequest, ctx: Ctx, ui: &Ui) -> Result<Outlook> {
    let p = match start(req, ctx, ui)? {
        Start::Environment(s) => return Ok(Outlook::Ready(s)),
        Start::WebIdentity(..) => {
            return Ok(Outlook::WithoutPrompt(
                "web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE): AssumeRoleWithWebIdentity with the token file".into(),
            ));
        }
        Start::Profile(p) => p,
    };
    let store = SecretStore::open(ctx.cfg, ctx.dirs, ui)?;
    let known = if p.plan.needs_sts() {
        Some(p.known(req, &store, ctx, ui)?)
    } else {
        None
    };
    let step = decide(facts(&p.plan, req, true, known.as_ref()));
    let unattended = |how: &str| Ok(Outlook::WithoutPrompt(how.to_string()));
    match (step, known) {
        (Step::FirstCredentials, _) => {
            // Long-term keys from the credentials file or the keyring (`aws add-key`); SSO and
            // credential_process are aws-config's to run when a command needs them.
            let credentials = match p.plan.base {
                Base::StaticKeys { ref profile } => Some(static_keys(&p.set, profile)?),
                Base::Delegated { ref profile } => stored_key(&store, profile)?,
            };
            match credentials {
                Some(c) => Ok(Outlook::Ready(p.session(
                    c,
                    Origin::Profile,
                    p.region.clone(),
                    Renewal::Unattended { until: None },
                ))),
                None => unattended("aws-config's SSO or credential_process, run by the command"),
            }
        }
        (
            Step::Cached,
            Some(Known {
                route,
                cached: Some(hit),
                base,
                margin,
                ..
            }),
        ) => {
            let renewal = renewal_of(
                &route,
                base.as_ref().and_then(|b| b.credentials.expiration),
                margin,
            );
            Ok(Outlook::Ready(p.session(
                hit.credentials,
                Origin::Cache,
                p.region.clone().or(hit.region),
                renewal,
            )))
        }
        (Step::FromBase, _) => {
            unattended("a role session from the cached MFA base session (STS, no code)")
        }
        (Step::Sts, _) => unattended("STS with the profile's keys (no MFA)"),
        (_, Some(k)) => Ok(Outlook::NeedsLogin(
            needs_login(&p.plan, &k.route).to_string(),
        )),
        (_, None) => Ok(Outlook::NeedsLogin(format!(
            "profile {:?} needs a person",
            p.plan.profile
        ))),
    }
}

/// A session without prompting, STS or SSO: `None` when none is at hand ([`outlook`]).
pub fn cached_only(req: &SessionRequest, ctx: Ctx, ui: &Ui) -> Result<Option<Session>> {
    Ok(match outlook(req, ctx, ui)? {
        Outlook::Ready(s) => Some(s),
        Outlook::WithoutPrompt(_) | Outlook::NeedsLogin(_) => None,
    })
}

/// The AWS profile a request means, as [`resolve`] reads it (`--profile`, the cache's
/// `profile=`, `AWS_PROFILE`, `default`).
pub fn profile_name(req: &SessionRequest, ctx: Ctx) -> Result<String> {
    Ok(target(req, ctx.cfg)?.profile)
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
    let Start::Profile(p) = start(req, ctx, ui)? else {
        return Ok(None);
    };
    let plan = p.plan;
    let store = SecretStore::open(ctx.cfg, ctx.dirs, ui)?;
    let route = route_of(&p.set, &plan, &store, ctx)?;
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
