//! The one setup every way to a session shares ([`super::session::resolve`] for commands,
//! [`super::outlook`] for doctor and `secret status`): the target, credentials already in the
//! environment, the recursion guard, web identity, the profile's plan, and what the session
//! cache holds; then the facts the decision ([`super::decide`]) takes. No network, no prompt.

use anyhow::Result;

use super::Credentials;
use super::decide::{Facts, Route};
use super::environment::{
    WebIdentityEnv, check_recursion, env_region, from_environment, sts_endpoint, web_identity_env,
};
use super::keys::starts_with_long_term_key;
use super::profile::{self, MfaRoute, Plan};
use super::request::{Ctx, NeedsLogin, Origin, Renewal, Session, SessionRequest, Target, target};
use super::session_cache;
use crate::secret::SecretStore;
use crate::ui::Ui;

/// The target's plan, and the region and STS endpoint in force for it.
pub(super) fn planned(
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
pub(super) fn web_identity_applies(set: &aws_config::profile::ProfileSet, t: &Target) -> bool {
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

/// The MFA route of a plan (its first credentials decide whether a base session can be had).
pub(super) fn route_of(
    set: &aws_config::profile::ProfileSet,
    plan: &Plan,
    store: &SecretStore,
    ctx: Ctx,
) -> Result<MfaRoute> {
    let key = starts_with_long_term_key(set, plan, store)?;
    Ok(profile::mfa_route(plan, key, ctx.mfa_base_session()?))
}

/// The cache account of a route's base session.
pub(super) fn base_account(route: &MfaRoute) -> Option<String> {
    match route {
        MfaRoute::BaseSession {
            serial,
            keys_profile,
        } => Some(session_cache::account(keys_profile, None, Some(serial))),
        _ => None,
    }
}

/// The one setup every entry point shares ([`resolve`], [`outlook`]): the target, credentials
/// already in the environment, the recursion guard, web identity, the profile's plan.
pub(super) enum Start {
    /// Credentials already in the environment.
    Environment(Session),
    /// `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` stand in for the profile.
    WebIdentity(Target, WebIdentityEnv),
    /// A profile of the AWS files.
    Profile(Box<Profiled>),
}

pub(super) struct Profiled {
    pub(super) t: Target,
    pub(super) set: aws_config::profile::ProfileSet,
    pub(super) plan: Plan,
    pub(super) region: Option<String>,
    pub(super) endpoint: Option<String>,
}

pub(super) fn start(req: &SessionRequest, ctx: Ctx, ui: &Ui) -> Result<Start> {
    let t = target(req, ctx.cfg)?;
    if !req.force_refresh
        && let Some(s) = from_environment(&t, ui)
    {
        return Ok(Start::Environment(s));
    }
    check_recursion(&t.profile)?;
    let set = profile::load_profiles()?;
    if web_identity_applies(&set, &t)
        && let Some(w) = web_identity_env()
    {
        return Ok(Start::WebIdentity(t, w));
    }
    let (plan, region, endpoint) = planned(&set, &t)?;
    Ok(Start::Profile(Box::new(Profiled {
        t,
        set,
        plan,
        region,
        endpoint,
    })))
}

/// What the session cache holds for a plan that needs STS, read without network or prompt.
pub(super) struct Known {
    pub(super) route: MfaRoute,
    pub(super) account: String,
    /// The profile's cached session with more than the margin left (not looked up for `login`).
    pub(super) cached: Option<session_cache::Cached>,
    /// The MFA base session with more than the margin left (base-session route).
    pub(super) base: Option<session_cache::Cached>,
    pub(super) margin: i64,
}

impl Profiled {
    pub(super) fn session(
        &self,
        credentials: Credentials,
        origin: Origin,
        region: Option<String>,
        renewal: Renewal,
    ) -> Session {
        Session {
            credentials,
            profile: Some(self.t.profile.clone()),
            region,
            origin,
            sts_endpoint: self.endpoint.clone(),
            renewal,
        }
    }

    pub(super) fn known(
        &self,
        req: &SessionRequest,
        store: &SecretStore,
        ctx: Ctx,
        ui: &Ui,
    ) -> Result<Known> {
        let plan = &self.plan;
        let route = route_of(&self.set, plan, store, ctx)?;
        let account = session_cache::account(&plan.profile, plan.role_arn(), plan.mfa_serial());
        let margin = ctx.margin();
        let now = crate::time::now();
        let cached = if req.force_refresh {
            None
        } else {
            session_cache::lookup(store, &account, now, margin, ui)?
        };
        let base = match base_account(&route) {
            Some(a) => session_cache::lookup(store, &a, now, margin, ui)?,
            None => None,
        };
        Ok(Known {
            route,
            account,
            cached,
            base,
            margin,
        })
    }
}

/// The facts [`decide`] takes; without `known`, the plan needs no STS.
pub(super) fn facts(
    plan: &Plan,
    req: &SessionRequest,
    unattended: bool,
    known: Option<&Known>,
) -> Facts {
    Facts {
        needs_sts: plan.needs_sts(),
        force_refresh: req.force_refresh,
        unattended,
        new_base_asked: req.mfa_code.is_some() || req.mfa_session_duration.is_some(),
        cached_fresh: known.is_some_and(|k| k.cached.is_some()),
        route: known.map_or(Route::NoMfa, |k| Route::from(&k.route)),
        base_fresh: known.is_some_and(|k| k.base.is_some()),
    }
}

/// How a session of this route is renewed, given the cached base session's expiry.
pub(super) fn renewal_of(route: &MfaRoute, base_expires: Option<i64>, margin: i64) -> Renewal {
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

pub(super) fn needs_login(plan: &Plan, route: &MfaRoute) -> anyhow::Error {
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
