//! Which way a profile's session comes: the one decision that `resolve` (exec, push, login,
//! the refresh) and `outlook` (doctor, `secret status`) share, so that they cannot disagree.
//! Pure: what is known without network or prompt in, the step out.

use super::profile::MfaRoute;

/// What is known before deciding (gathered by `session::Profiled::facts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Facts {
    /// The chain has a role or an MFA device: STS makes the session.
    pub needs_sts: bool,
    /// A new session is wanted even if a cached one is good (`login`).
    pub force_refresh: bool,
    /// No person may be asked (the refresh while a command runs, doctor).
    pub unattended: bool,
    /// `login` was given a code or a base-session length: a new MFA base session is wanted.
    pub new_base_asked: bool,
    /// A cached session of this profile has more than the refresh margin left.
    pub cached_fresh: bool,
    pub route: Route,
    /// A cached MFA base session (base-session route) has more than the margin left.
    pub base_fresh: bool,
}

/// [`MfaRoute`] without its names: what the decision needs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    NoMfa,
    BaseSession,
    Direct,
}

impl From<&MfaRoute> for Route {
    fn from(r: &MfaRoute) -> Route {
        match r {
            MfaRoute::NoMfa => Route::NoMfa,
            MfaRoute::BaseSession { .. } => Route::BaseSession,
            MfaRoute::Direct { .. } => Route::Direct,
        }
    }
}

/// How the session is had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// No STS: long-term keys (files, keyring) or aws-config's providers.
    FirstCredentials,
    /// The cached session.
    Cached,
    /// A role session from the cached MFA base session: STS, no code.
    FromBase,
    /// A new MFA base session (a code), then the role.
    NewBase,
    /// STS with a code on the call itself.
    DirectMfa,
    /// STS without MFA.
    Sts,
    /// Only a person can make it (a new MFA code), and none may be asked.
    NeedsLogin,
}

pub(super) fn decide(f: Facts) -> Step {
    if !f.needs_sts {
        return Step::FirstCredentials;
    }
    if !f.force_refresh && f.cached_fresh {
        return Step::Cached;
    }
    match f.route {
        Route::NoMfa => Step::Sts,
        Route::BaseSession if f.base_fresh && !(f.force_refresh && f.new_base_asked) => {
            Step::FromBase
        }
        Route::BaseSession | Route::Direct if f.unattended => Step::NeedsLogin,
        Route::BaseSession => Step::NewBase,
        Route::Direct => Step::DirectMfa,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_follows_route_cache_and_request() {
        let base = Facts {
            needs_sts: true,
            force_refresh: false,
            unattended: false,
            new_base_asked: false,
            cached_fresh: false,
            route: Route::NoMfa,
            base_fresh: false,
        };
        let f = |change: &dyn Fn(&mut Facts)| {
            let mut f = base;
            change(&mut f);
            f
        };
        use Route::*;
        let table: Vec<(Facts, Step)> = vec![
            (f(&|f| f.needs_sts = false), Step::FirstCredentials),
            (f(&|f| f.needs_sts = false), Step::FirstCredentials),
            (f(&|f| f.cached_fresh = true), Step::Cached),
            // `login` wants a new one even when one is cached.
            (
                f(&|f| {
                    f.cached_fresh = true;
                    f.force_refresh = true
                }),
                Step::Sts,
            ),
            (f(&|_| {}), Step::Sts),
            (f(&|f| f.unattended = true), Step::Sts),
            (f(&|f| f.route = Direct), Step::DirectMfa),
            (
                f(&|f| {
                    f.route = Direct;
                    f.unattended = true
                }),
                Step::NeedsLogin,
            ),
            (
                f(&|f| {
                    f.route = Direct;
                    f.cached_fresh = true;
                    f.unattended = true
                }),
                Step::Cached,
            ),
            (f(&|f| f.route = BaseSession), Step::NewBase),
            (
                f(&|f| {
                    f.route = BaseSession;
                    f.base_fresh = true
                }),
                Step::FromBase,
            ),
            (
                f(&|f| {
                    f.route = BaseSession;
                    f.base_fresh = true;
                    f.unattended = true
                }),
                Step::FromBase,
            ),
            (
                f(&|f| {
                    f.route = BaseSession;
                    f.unattended = true
                }),
                Step::NeedsLogin,
            ),
            // `login` without a code keeps the base session; with one (or a length) starts anew.
            (
                f(&|f| {
                    f.route = BaseSession;
                    f.base_fresh = true;
                    f.force_refresh = true
                }),
                Step::FromBase,
            ),
            (
                f(&|f| {
                    f.route = BaseSession;
                    f.base_fresh = true;
                    f.force_refresh = true;
                    f.new_base_asked = true
                }),
                Step::NewBase,
            ),
        ];
        for (facts, want) in table {
            assert_eq!(decide(facts), want, "{facts:?}");
            if facts.unattended {
                // No step that asks for a code.
                assert!(
                    !matches!(decide(facts), Step::NewBase | Step::DirectMfa),
                    "{facts:?}"
                );
            }
        }
    }
}
