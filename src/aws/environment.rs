//! The environment a session meets and leaves: credentials already there (CI, `aws sso`
//! exports, an outer `exec`), the guard against a `credential_process` that calls us for its
//! own profile, and the exact variables a child gets set and unset ([`EnvDelta`]).

use anyhow::{Result, bail};
use zeroize::Zeroizing;

use super::Credentials;
use super::profile::Plan;
use super::request::{Origin, Renewal, Session, Target};
use crate::ui::Ui;

/// Marker set in `exec`'s child: the profile whose session the environment holds.
pub const MARKER: &str = "NIXSTORE_AUTH_PROFILE";
/// Profiles being resolved by an outer nixstore-auth (colon separated): a profile whose own
/// `credential_process` calls us for itself would otherwise recurse forever.
pub const RESOLVING: &str = "NIXSTORE_AUTH_RESOLVING";
/// Variables `exec` always removes from the child's environment.
pub const UNSET_VARS: &[&str] = &["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"];

pub(super) fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

pub(super) fn env_region() -> Option<String> {
    env_nonempty("AWS_REGION").or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
}

pub(super) fn sts_endpoint(plan: Option<&Plan>) -> Option<String> {
    env_nonempty("AWS_ENDPOINT_URL_STS")
        .or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
        .or_else(|| plan.and_then(|p| p.endpoint_url.clone()))
}

/// Credentials from the environment, when they apply to this target.
pub(super) fn from_environment(t: &Target, ui: &Ui) -> Option<Session> {
    let akid = env_nonempty("AWS_ACCESS_KEY_ID")?;
    let secret = Zeroizing::new(env_nonempty("AWS_SECRET_ACCESS_KEY")?);
    let marker = env_nonempty(MARKER);
    if t.explicit && marker.as_deref() != Some(t.profile.as_str()) {
        ui.debug(format!(
            "ignoring AWS credentials in the environment: profile {:?} was asked for",
            t.profile
        ));
        return None;
    }
    let expiration =
        env_nonempty("AWS_CREDENTIAL_EXPIRATION").and_then(|s| crate::time::parse_rfc3339(&s));
    if expiration.is_some_and(|e| e <= crate::time::now()) {
        ui.debug("the AWS credentials in the environment have expired; not using them");
        return None;
    }
    ui.debug(format!(
        "using AWS credentials from the environment ({akid})"
    ));
    Some(Session {
        credentials: Credentials {
            access_key_id: akid,
            secret_access_key: secret,
            session_token: env_nonempty("AWS_SESSION_TOKEN")
                .or_else(|| env_nonempty("AWS_SECURITY_TOKEN"))
                .map(Zeroizing::new),
            expiration,
        },
        profile: marker,
        region: t.region.clone().or_else(env_region),
        origin: Origin::Environment,
        sts_endpoint: sts_endpoint(None),
        renewal: Renewal::Fixed,
    })
}

/// Web identity as CI jobs have it: `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` (and
/// optionally `AWS_ROLE_SESSION_NAME`), with no AWS config files needed.
pub(super) struct WebIdentityEnv {
    pub(super) role_arn: String,
    pub(super) token_file: std::path::PathBuf,
    pub(super) session_name: Option<String>,
}

pub(super) fn web_identity_env() -> Option<WebIdentityEnv> {
    Some(WebIdentityEnv {
        role_arn: env_nonempty("AWS_ROLE_ARN")?,
        token_file: env_nonempty("AWS_WEB_IDENTITY_TOKEN_FILE")?.into(),
        session_name: env_nonempty("AWS_ROLE_SESSION_NAME"),
    })
}

/// Profiles this process marked in [`RESOLVING`] itself: resolving them again (a refresh while
/// a command runs) is no recursion.
fn marked_here() -> &'static std::sync::Mutex<std::collections::HashSet<String>> {
    static MARKED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    MARKED.get_or_init(Default::default)
}

pub(super) fn check_recursion(profile: &str) -> Result<()> {
    let ours = marked_here()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(profile);
    if !ours
        && let Some(list) = env_nonempty(RESOLVING)
        && list.split(':').any(|p| p == profile)
    {
        bail!(
            "profile {profile:?} is already being resolved by an outer nixstore-auth: its \
             credential_process calls nixstore-auth for the same profile. Point \
             credential_process at the profile that holds the role (e.g. `--profile {profile}-base`)"
        );
    }
    Ok(())
}

pub(super) fn mark_resolving(profile: &str) {
    if !marked_here()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(profile.to_string())
    {
        // Marked at the command's start already: no second set_var once threads run.
        return;
    }
    let value = match env_nonempty(RESOLVING) {
        Some(list) => format!("{list}:{profile}"),
        None => profile.to_string(),
    };
    // SAFETY: called before any thread is started in this process: the profile loader ran on a
    // driverless current-thread runtime, and neither the keyring nor an I/O runtime exists yet.
    unsafe { std::env::set_var(RESOLVING, value) };
}

/// What a child's environment gets for a session: the variables to set, and those to remove.
/// The one place that decides both, so that they cannot disagree: no name is in both lists.
pub struct EnvDelta {
    pub set: Vec<(String, Zeroizing<String>)>,
    pub unset: Vec<&'static str>,
}

impl EnvDelta {
    /// Sets `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, the token, expiry and region the
    /// session has, and the profile marker; removes the profile selectors (the credentials are
    /// explicit now) and whatever an outer session set that this one does not replace.
    pub fn for_session(s: &Session) -> EnvDelta {
        let c = &s.credentials;
        let mut set = vec![
            (
                "AWS_ACCESS_KEY_ID".to_string(),
                Zeroizing::new(c.access_key_id.clone()),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                c.secret_access_key.clone(),
            ),
        ];
        if let Some(t) = &c.session_token {
            set.push(("AWS_SESSION_TOKEN".to_string(), t.clone()));
        }
        if let Some(e) = c.expiration {
            set.push((
                "AWS_CREDENTIAL_EXPIRATION".to_string(),
                Zeroizing::new(crate::time::rfc3339(e)),
            ));
        }
        if let Some(r) = &s.region {
            set.push(("AWS_REGION".to_string(), Zeroizing::new(r.clone())));
            set.push(("AWS_DEFAULT_REGION".to_string(), Zeroizing::new(r.clone())));
        }
        if let Some(p) = &s.profile {
            set.push((MARKER.to_string(), Zeroizing::new(p.clone())));
        }

        let mut unset = UNSET_VARS.to_vec();
        if s.credentials.session_token.is_none() {
            unset.push("AWS_SESSION_TOKEN");
        }
        if s.credentials.expiration.is_none() {
            unset.push("AWS_CREDENTIAL_EXPIRATION");
        }
        if s.profile.is_none() {
            unset.push(MARKER);
        }
        EnvDelta { set, unset }
    }

    /// Gives `cmd` this delta: every variable set and every one removed, in one call.
    pub fn apply(&self, cmd: &mut std::process::Command) {
        for name in &self.unset {
            cmd.env_remove(name);
        }
        for (k, v) in &self.set {
            cmd.env(k, v.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(token: bool, profile: Option<&str>) -> Session {
        Session {
            credentials: Credentials {
                access_key_id: "AKIA".into(),
                secret_access_key: Zeroizing::new("sec".into()),
                session_token: token.then(|| Zeroizing::new("tok".into())),
                expiration: token.then_some(60),
            },
            profile: profile.map(String::from),
            region: Some("eu-west-1".into()),
            origin: Origin::Profile,
            sts_endpoint: None,
            renewal: Renewal::Fixed,
        }
    }

    #[test]
    fn env_lists_and_unsets() {
        let s = session(false, Some("work"));
        let d = EnvDelta::for_session(&s);
        let names: Vec<_> = d.set.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
                MARKER
            ]
        );
        assert!(d.unset.contains(&"AWS_SESSION_TOKEN"));
        assert!(d.unset.contains(&"AWS_PROFILE"));
        assert!(!format!("{s:?}").contains("sec\""));
    }

    #[test]
    fn no_variable_is_both_set_and_unset_and_selectors_always_go() {
        for (token, profile) in [
            (false, None),
            (false, Some("p")),
            (true, None),
            (true, Some("p")),
        ] {
            let d = EnvDelta::for_session(&session(token, profile));
            for (k, _) in &d.set {
                assert!(!d.unset.contains(&k.as_str()), "{k} set and unset");
            }
            for v in UNSET_VARS {
                assert!(d.unset.contains(v), "{v} kept");
            }
            let set = |k: &str| d.set.iter().any(|(n, _)| n == k);
            // Every credential variable is either ours or removed: never an outer session's.
            for k in ["AWS_SESSION_TOKEN", "AWS_CREDENTIAL_EXPIRATION", MARKER] {
                assert!(
                    set(k) ^ d.unset.contains(&k),
                    "{k}: token {token}, profile {profile:?}"
                );
            }
        }
    }
}
