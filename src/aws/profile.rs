//! Reading AWS profiles (through aws-config's own parser) into a plan: where the first
//! credentials come from, then which roles to assume, and whether an MFA code is needed.

use anyhow::{Context, Result, bail};
use aws_config::profile::{Profile, ProfileSet};
use std::collections::HashSet;

/// Where the first credentials of a chain come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `aws_access_key_id` / `aws_secret_access_key` in the profile (values are read later,
    /// from the profile set, so that the plan itself holds no secret).
    StaticKeys { profile: String },
    /// No keys in the files: the key stored by `aws add-key` in the secret store, if any,
    /// else aws-config's own chain for this profile (SSO, credential_process, web identity).
    Delegated { profile: String },
}

/// One `AssumeRole` hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleHop {
    /// The profile that names the role.
    pub profile: String,
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub duration_seconds: Option<u32>,
    pub mfa_serial: Option<String>,
}

/// What it takes to get a session for one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The profile asked for.
    pub profile: String,
    pub base: Base,
    /// Roles to assume in order, the last one being the profile's own.
    pub hops: Vec<RoleHop>,
    /// `GetSessionToken` with this MFA device (a profile with `mfa_serial` and no role).
    pub session_token_mfa: Option<String>,
    pub duration_seconds: Option<u32>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// A command that prints the MFA code (aws-vault's `mfa_process`).
    pub mfa_process: Option<String>,
}

impl Plan {
    /// Whether STS is needed at all (otherwise the base credentials are the session).
    pub fn needs_sts(&self) -> bool {
        !self.hops.is_empty() || self.session_token_mfa.is_some()
    }

    /// The MFA serial the user is asked a code for, if any.
    pub fn mfa_serial(&self) -> Option<&str> {
        self.session_token_mfa
            .as_deref()
            .or_else(|| self.hops.iter().rev().find_map(|h| h.mfa_serial.as_deref()))
    }

    /// The role the session ends up in.
    pub fn role_arn(&self) -> Option<&str> {
        self.hops.last().map(|h| h.role_arn.as_str())
    }
}

/// How an MFA code becomes a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MfaRoute {
    /// No MFA device in the chain.
    NoMfa,
    /// The code goes to `GetSessionToken` for the long-term key of `keys_profile`: a base
    /// session (cached, `mfa-session-duration` long) whose MFA context lets the roles be
    /// assumed, and re-assumed on refresh, without a code (aws-vault's way).
    BaseSession {
        serial: String,
        keys_profile: String,
    },
    /// The code goes to the call itself: `AssumeRole` with `SerialNumber`/`TokenCode`, or the
    /// `GetSessionToken` of a profile without a role.
    Direct { serial: String },
}

impl MfaRoute {
    /// A sentence for `doctor`.
    pub fn describe(&self) -> String {
        match self {
            MfaRoute::NoMfa => "no MFA".into(),
            MfaRoute::BaseSession {
                serial,
                keys_profile,
            } => format!(
                "MFA base session: one code for device {serial} opens a GetSessionToken session                  of profile {keys_profile:?}'s key, the role is assumed (and renewed) from it                  without a code"
            ),
            MfaRoute::Direct { serial } => {
                format!("MFA code for device {serial} with each new session")
            }
        }
    }
}

/// The route a plan's MFA takes. The base session needs the MFA device's hop to be the first
/// (its source holds the key: GetSessionToken takes no role session), a long-term key as the
/// chain's first credentials (not SSO, credential_process or a session token), and
/// `mfa-base-session` not switched off.
pub fn mfa_route(plan: &Plan, base_is_long_term_key: bool, base_session_enabled: bool) -> MfaRoute {
    let Some(serial) = plan.mfa_serial().map(str::to_string) else {
        return MfaRoute::NoMfa;
    };
    if plan.session_token_mfa.is_some() {
        return MfaRoute::Direct { serial };
    }
    let first_hop_only = plan.hops.iter().rposition(|h| h.mfa_serial.is_some()) == Some(0);
    let keys_profile = match &plan.base {
        Base::StaticKeys { profile } | Base::Delegated { profile } => profile.clone(),
    };
    if first_hop_only && base_is_long_term_key && base_session_enabled {
        MfaRoute::BaseSession {
            serial,
            keys_profile,
        }
    } else {
        MfaRoute::Direct { serial }
    }
}

/// Loads `~/.aws/config` and `~/.aws/credentials` (or AWS_CONFIG_FILE /
/// AWS_SHARED_CREDENTIALS_FILE) with aws-config's parser.
pub fn load_profiles() -> Result<ProfileSet> {
    // The loader is async but does plain file I/O: a bare current-thread runtime (no I/O or
    // timer drivers) runs it in microseconds.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the async runtime")?;
    let fs = aws_types::os_shim_internal::Fs::real();
    let env = aws_types::os_shim_internal::Env::real();
    #[allow(deprecated)] // the loader still takes this alias
    let files = aws_config::profile::profile_file::ProfileFiles::default();
    rt.block_on(aws_config::profile::load(&fs, &env, &files, None))
        .context("cannot read the AWS config files (~/.aws/config, ~/.aws/credentials)")
}

/// Follows `source_profile` links from `name` and builds the plan.
pub fn plan(set: &ProfileSet, name: &str) -> Result<Plan> {
    let top = set.get_profile(name).with_context(|| {
        format!(
            "AWS profile {name:?} is not in {} or {}: add it, or pick another with --profile",
            config_file_label(),
            credentials_file_label()
        )
    })?;
    let mut hops = Vec::new();
    let mut seen = HashSet::new();
    let mut order = vec![name.to_string()];
    let mut current: &Profile = top;
    seen.insert(name.to_string());
    let base = loop {
        let pname = current.name().to_string();
        match current.get("role_arn") {
            None => {
                if current.get("credential_source").is_some() {
                    bail!(
                        "profile {pname:?} uses credential_source, which nixstore-auth does not \
                         support: use source_profile instead"
                    );
                }
                break base_of(current);
            }
            Some(role) => {
                hops.push(role_hop(current, role)?);
                let Some(src) = current.get("source_profile") else {
                    if current.get("web_identity_token_file").is_some()
                        || current.get("credential_source").is_some()
                    {
                        // aws-config assumes this role itself (web identity, EC2/ECS sources).
                        hops.pop();
                        break Base::Delegated { profile: pname };
                    }
                    bail!(
                        "profile {pname:?} has role_arn but no source_profile: add \
                         `source_profile = NAME` naming the profile with the keys"
                    );
                };
                if src == pname {
                    // A profile may name itself: its own keys assume its own role.
                    break base_of(current);
                }
                if !seen.insert(src.to_string()) {
                    order.push(src.to_string());
                    bail!(
                        "the source_profile chain loops: {}; break the cycle in {}",
                        order.join(" -> "),
                        config_file_label()
                    );
                }
                order.push(src.to_string());
                current = set.get_profile(src).with_context(|| {
                    format!("profile {pname:?} names source_profile {src:?}, which does not exist")
                })?;
            }
        }
    };
    hops.reverse();
    let session_token_mfa = if hops.is_empty() {
        top.get("mfa_serial").map(str::to_string)
    } else {
        None
    };
    if session_token_mfa.is_some() && !matches!(base, Base::StaticKeys { .. }) {
        // GetSessionToken needs long-term keys; aws-config's chain (SSO, ...) has none.
        if top.get("aws_access_key_id").is_none() && top.get("credential_process").is_some() {
            bail!(
                "profile {name:?} has mfa_serial and credential_process: MFA with \
                 GetSessionToken needs long-term keys (aws_access_key_id)"
            );
        }
    }
    Ok(Plan {
        profile: name.to_string(),
        base,
        hops,
        session_token_mfa,
        duration_seconds: parse_u32(top, "duration_seconds")?,
        region: top.get("region").map(str::to_string),
        endpoint_url: top.get("endpoint_url").map(str::to_string),
        mfa_process: top.get("mfa_process").map(str::to_string),
    })
}

fn base_of(p: &Profile) -> Base {
    let profile = p.name().to_string();
    if p.get("aws_access_key_id").is_some() && p.get("aws_secret_access_key").is_some() {
        Base::StaticKeys { profile }
    } else {
        Base::Delegated { profile }
    }
}

fn role_hop(p: &Profile, role: &str) -> Result<RoleHop> {
    Ok(RoleHop {
        profile: p.name().to_string(),
        role_arn: role.to_string(),
        external_id: p.get("external_id").map(str::to_string),
        session_name: p.get("role_session_name").map(str::to_string),
        duration_seconds: parse_u32(p, "duration_seconds")?,
        mfa_serial: p.get("mfa_serial").map(str::to_string),
    })
}

fn parse_u32(p: &Profile, key: &str) -> Result<Option<u32>> {
    p.get(key)
        .map(|v| {
            v.trim().parse::<u32>().with_context(|| {
                format!(
                    "profile {:?}: {key} = {v:?} is not a number of seconds",
                    p.name()
                )
            })
        })
        .transpose()
}

fn config_file_label() -> String {
    std::env::var("AWS_CONFIG_FILE").unwrap_or_else(|_| "~/.aws/config".into())
}

fn credentials_file_label() -> String {
    std::env::var("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|_| "~/.aws/credentials".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mfa_route_table() {
        let hop = |mfa: bool| RoleHop {
            profile: "p".into(),
            role_arn: "arn:r".into(),
            external_id: None,
            session_name: None,
            duration_seconds: None,
            mfa_serial: mfa.then(|| "arn:mfa".to_string()),
        };
        let plan = |hops: Vec<RoleHop>, gst: bool| Plan {
            profile: "work".into(),
            base: Base::StaticKeys {
                profile: "keys".into(),
            },
            hops,
            session_token_mfa: gst.then(|| "arn:mfa".to_string()),
            duration_seconds: None,
            region: None,
            endpoint_url: None,
            mfa_process: None,
        };
        let base = MfaRoute::BaseSession {
            serial: "arn:mfa".into(),
            keys_profile: "keys".into(),
        };
        let direct = MfaRoute::Direct {
            serial: "arn:mfa".into(),
        };
        // (plan, long-term key, enabled) -> route
        let rows = [
            (plan(vec![hop(false)], false), true, true, MfaRoute::NoMfa),
            (plan(vec![hop(true)], false), true, true, base.clone()),
            (plan(vec![hop(true)], false), true, false, direct.clone()),
            (plan(vec![hop(true)], false), false, true, direct.clone()),
            // The device is on a role whose source is itself a role.
            (
                plan(vec![hop(false), hop(true)], false),
                true,
                true,
                direct.clone(),
            ),
            (plan(vec![hop(true), hop(false)], false), true, true, base),
            // mfa_serial without a role: its own GetSessionToken.
            (plan(vec![], true), true, true, direct),
        ];
        for (i, (p, key, enabled, want)) in rows.into_iter().enumerate() {
            assert_eq!(mfa_route(&p, key, enabled), want, "row {i}");
        }
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;
    use aws_types::os_shim_internal::{Env, Fs};

    fn set(config: &str, creds: &str) -> ProfileSet {
        let fs = Fs::from_slice(&[("/c/config", config), ("/c/credentials", creds)]);
        let env = Env::from_slice(&[
            ("AWS_CONFIG_FILE", "/c/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/c/credentials"),
        ]);
        #[allow(deprecated)]
        let files = aws_config::profile::profile_file::ProfileFiles::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(aws_config::profile::load(&fs, &env, &files, None))
            .unwrap()
    }

    #[test]
    fn role_chain_with_mfa() {
        let s = set(
            "[profile work]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = mid\n\
             mfa_serial = arn:aws:iam::1:mfa/u\nregion = eu-west-1\nduration_seconds = 900\n\
             external_id = x\n\
             [profile mid]\nrole_arn = arn:aws:iam::1:role/m\nsource_profile = keys\n",
            "[keys]\naws_access_key_id = AKIA\naws_secret_access_key = s\n",
        );
        let p = plan(&s, "work").unwrap();
        assert_eq!(
            p.base,
            Base::StaticKeys {
                profile: "keys".into()
            }
        );
        let roles: Vec<_> = p.hops.iter().map(|h| h.role_arn.as_str()).collect();
        assert_eq!(roles, ["arn:aws:iam::1:role/m", "arn:aws:iam::1:role/r"]);
        assert_eq!(p.mfa_serial(), Some("arn:aws:iam::1:mfa/u"));
        assert_eq!(p.role_arn(), Some("arn:aws:iam::1:role/r"));
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
        assert_eq!(p.duration_seconds, Some(900));
        assert_eq!(p.hops[1].external_id.as_deref(), Some("x"));
        assert!(p.session_token_mfa.is_none());
        assert!(p.needs_sts());
    }

    #[test]
    fn cycles_and_missing_sources_are_named() {
        let s = set(
            "[profile a]\nrole_arn = arn:r\nsource_profile = b\n\
             [profile b]\nrole_arn = arn:r2\nsource_profile = a\n\
             [profile c]\nrole_arn = arn:r3\nsource_profile = nope\n\
             [profile d]\nrole_arn = arn:r4\n",
            "",
        );
        let e = format!("{:#}", plan(&s, "a").unwrap_err());
        assert!(e.contains("loops: a -> b -> a"), "{e}");
        let e = format!("{:#}", plan(&s, "c").unwrap_err());
        assert!(e.contains("\"nope\""), "{e}");
        let e = format!("{:#}", plan(&s, "d").unwrap_err());
        assert!(e.contains("source_profile"), "{e}");
        let e = format!("{:#}", plan(&s, "zzz").unwrap_err());
        assert!(e.contains("--profile"), "{e}");
    }

    #[test]
    fn mfa_without_role_uses_session_token_and_plain_keys_need_no_sts() {
        let s = set(
            "[profile m]\nmfa_serial = arn:mfa\n[profile plain]\n[profile sso]\nsso_session = x\n",
            "[m]\naws_access_key_id = A\naws_secret_access_key = s\n\
             [plain]\naws_access_key_id = A\naws_secret_access_key = s\n",
        );
        let m = plan(&s, "m").unwrap();
        assert_eq!(m.session_token_mfa.as_deref(), Some("arn:mfa"));
        assert!(m.needs_sts());
        assert!(!plan(&s, "plain").unwrap().needs_sts());
        assert_eq!(
            plan(&s, "sso").unwrap().base,
            Base::Delegated {
                profile: "sso".into()
            }
        );
    }
}
