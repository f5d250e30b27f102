//! An S3 cache: the profile, the AWS session (as exec would get it, never prompting, never
//! calling STS), the bucket, the proxy. Gather ([`gather`]: files, session cache, one signed
//! GET, the proxy's status) → decide ([`decide`], pure, table-tested) → apply (the report).

use super::*;
use crate::aws::profile::MfaRoute;
use crate::aws::session::{Outlook, Renewal, RouteInfo};
use crate::proxy::Probe;

/// The AWS session of an S3 cache (never prompting), a signed GET with it, and whether the
/// daemon will accept the proxy's URL.
pub(super) fn s3_checks(
    r: &mut Report,
    section: &str,
    c: &CacheEntry,
    s3: &crate::cache::S3Ref,
    setup: &NixSetup,
    ctx: session::Ctx,
) {
    let facts = gather(c, s3, setup, ctx);
    for (status, summary, fix) in decide(&facts, crate::time::now()) {
        r.add(section, status, summary, fix);
    }
}

/// How the profile reads from the AWS files.
#[derive(Debug, Clone, PartialEq)]
enum ProfileFacts {
    /// Its role and MFA device, if any.
    Planned {
        role: Option<String>,
        mfa: Option<String>,
    },
    /// Not in the files; credentials in the environment (`AWS_ACCESS_KEY_ID`).
    EnvironmentKeys,
    /// Not in the files; web identity in the environment.
    WebIdentity,
    /// Unreadable or unknown: why.
    Broken(String),
}

/// The session as exec would get it, without the secret parts.
#[derive(Debug, Clone, PartialEq)]
enum SessionFacts {
    Ready {
        expiration: Option<i64>,
        origin: &'static str,
        renewal: Renewal,
    },
    WithoutPrompt(String),
    NeedsLogin(String),
    Failed(String),
}

/// Whether the nix-daemon takes the proxy's URL from an untrusted user.
#[derive(Debug, Clone, PartialEq)]
struct DaemonFacts {
    /// The administrator lists the URL in `trusted-substituters` (in a file we can read).
    listed: bool,
    /// The running proxy has seen the daemon fetch through it.
    used: bool,
    /// System files only root can read (the URL may be listed there).
    unreadable: Vec<String>,
}

#[derive(Debug, Clone)]
struct Facts {
    name: String,
    profile: String,
    peer_check: bool,
    access: String,
    plan: ProfileFacts,
    route: Option<RouteInfo>,
    session: SessionFacts,
    /// The signed GET, made when a session was at hand.
    probe: Option<Probe>,
    /// Only for an untrusted user of a daemon.
    daemon: Option<DaemonFacts>,
}

fn gather(c: &CacheEntry, s3: &crate::cache::S3Ref, setup: &NixSetup, ctx: session::Ctx) -> Facts {
    let req = crate::aws::session::SessionRequest::new(None, Some(c.name.clone()));
    let quiet = Ui::silent();
    // The profile exec would use: one rule (`--profile`, `profile=`, AWS_PROFILE, default).
    let profile = session::profile_name(&req, ctx)
        .unwrap_or_else(|_| s3.profile.clone().unwrap_or_else(|| "default".into()));
    let env = |k: &str| std::env::var_os(k).is_some();
    let plan = match crate::aws::profile::load_profiles()
        .and_then(|set| crate::aws::profile::plan(&set, &profile))
    {
        Ok(p) => ProfileFacts::Planned {
            role: p.role_arn().map(String::from),
            mfa: p.mfa_serial().map(String::from),
        },
        // CI: credentials in the environment or web identity, no AWS files at all.
        Err(_) if env("AWS_ACCESS_KEY_ID") => ProfileFacts::EnvironmentKeys,
        Err(_) if env("AWS_ROLE_ARN") && env("AWS_WEB_IDENTITY_TOKEN_FILE") => {
            ProfileFacts::WebIdentity
        }
        Err(e) => ProfileFacts::Broken(format!("{e:#}")),
    };
    let mut facts = Facts {
        name: c.name.clone(),
        profile,
        peer_check: crate::proxy::PEER_CHECK,
        access: crate::proxy::access_summary(),
        plan,
        route: None,
        session: SessionFacts::Failed(String::new()),
        probe: None,
        daemon: None,
    };
    if matches!(
        facts.plan,
        ProfileFacts::WebIdentity | ProfileFacts::Broken(_)
    ) {
        return facts;
    }
    facts.route = session::route_info(&req, ctx, &quiet).ok().flatten();
    // What exec would do, decided as exec decides it, without STS or a prompt.
    let credentials = match session::outlook(&req, ctx, &quiet) {
        Ok(Outlook::Ready(s)) => {
            facts.session = SessionFacts::Ready {
                expiration: s.credentials.expiration,
                origin: s.origin.as_str(),
                renewal: s.renewal,
            };
            s.credentials
        }
        Ok(Outlook::WithoutPrompt(how)) => {
            facts.session = SessionFacts::WithoutPrompt(how);
            return facts;
        }
        Ok(Outlook::NeedsLogin(why)) => {
            facts.session = SessionFacts::NeedsLogin(why);
            return facts;
        }
        Err(e) => {
            facts.session = SessionFacts::Failed(format!("{e:#}"));
            return facts;
        }
    };
    facts.probe = Some(crate::proxy::probe(&credentials, s3));
    if setup.daemon && setup.trust == Trust::Untrusted {
        let Ok(layout) = crate::proxy::Layout::new(ctx.dirs, ctx.cfg) else {
            return facts;
        };
        let listed = crate::proxy::stable_url_for(&layout, &c.name).is_ok_and(|u| {
            setup
                .system
                .list("trusted-substituters")
                .iter()
                .any(|t| crate::cache::same_url(t, &u))
        });
        // The administrator may have listed the URL in a file only root reads (so that it is
        // in no world-readable file): then only the proxy can tell whether the daemon uses it.
        let used = crate::proxy::status(&layout)
            .ok()
            .flatten()
            .is_some_and(|st| st.mounts.iter().any(|m| m.name == c.name && m.daemon_used));
        facts.daemon = Some(DaemonFacts {
            listed,
            used,
            unreadable: setup
                .system
                .unreadable
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        });
    }
    facts
}

/// One line of the report: status, summary, fix.
type Line = (Status, String, Option<String>);

/// The report's lines for the facts, at time `now`. Pure.
fn decide(f: &Facts, now: i64) -> Vec<Line> {
    let login = format!("nixstore-auth login {}", f.name);
    let profile = &f.profile;
    let mut out: Vec<Line> = vec![(
        if f.peer_check {
            Status::Info
        } else {
            Status::Warn
        },
        format!("proxy access: {}", f.access),
        None,
    )];
    match &f.plan {
        ProfileFacts::Planned { role, mfa } => {
            let mfa = mfa
                .as_ref()
                .map(|m| format!(", MFA device {m}"))
                .unwrap_or_default();
            let role = role
                .as_ref()
                .map(|a| format!(", role {a}"))
                .unwrap_or_default();
            out.push((
                Status::Info,
                format!("AWS profile {profile}{role}{mfa}"),
                None,
            ));
        }
        ProfileFacts::EnvironmentKeys => out.push((
            Status::Info,
            format!(
                "AWS profile {profile} is not in the AWS files: using the credentials in the environment (AWS_ACCESS_KEY_ID); nixstore-auth cannot renew them"
            ),
            None,
        )),
        ProfileFacts::WebIdentity => {
            out.push((
                Status::Info,
                "web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE): each command gets a session with AssumeRoleWithWebIdentity and renews it by itself, reading the token file again".into(),
                None,
            ));
            return out;
        }
        ProfileFacts::Broken(why) => {
            out.push((
                Status::Fail,
                why.clone(),
                Some("fix ~/.aws/config, or record the cache with the right profile=".into()),
            ));
            return out;
        }
    }
    if let Some(info) = &f.route {
        out.push((Status::Info, route_line(info, now), None));
    }
    match &f.session {
        SessionFacts::Ready {
            expiration,
            origin,
            renewal,
        } => out.push(session_line(*expiration, origin, *renewal, now, &login)),
        SessionFacts::WithoutPrompt(how) => {
            out.push((
                Status::Info,
                format!(
                    "no AWS session at hand; a command makes one without a prompt: {how} (the bucket is checked once one exists)"
                ),
                None,
            ));
            return out;
        }
        SessionFacts::NeedsLogin(why) => {
            out.push((
                Status::Fail,
                format!("no valid AWS session is cached (never logged in, or it expired): {why}"),
                Some(login),
            ));
            return out;
        }
        SessionFacts::Failed(why) => {
            out.push((Status::Fail, why.clone(), Some(login)));
            return out;
        }
    }
    if let Some(p) = &f.probe {
        out.push(probe_line(p, &f.name, profile, &login));
    }
    if let Some(d) = &f.daemon {
        out.extend(daemon_line(d, &f.name));
    }
    out
}

fn route_line(info: &RouteInfo, now: i64) -> String {
    let role = match info.role_secs {
        Some(s) => crate::time::human_secs(s.into()),
        None => "1 h (STS's default)".into(),
    };
    let base = match (info.base_secs, info.base_expires) {
        (Some(secs), Some(e)) if e > now => format!(
            "; the base session lasts {} (mfa-session-duration), the cached one until {}",
            crate::time::human_secs(secs.into()),
            crate::time::rfc3339(e)
        ),
        (Some(secs), _) => format!(
            "; the base session lasts {} (mfa-session-duration), none is cached",
            crate::time::human_secs(secs.into())
        ),
        _ => String::new(),
    };
    let sessions =
        if matches!(info.route, MfaRoute::NoMfa) && info.role_secs.is_none() && base.is_empty() {
            String::new()
        } else {
            format!("; role sessions last {role}{base}")
        };
    format!(
        "session route of profile {}: {}{sessions}",
        info.profile,
        info.route.describe()
    )
}

fn session_line(
    expiration: Option<i64>,
    origin: &str,
    renewal: Renewal,
    now: i64,
    login: &str,
) -> Line {
    let Some(exp) = expiration else {
        return (
            Status::Ok,
            format!("long-term AWS keys from {origin}"),
            None,
        );
    };
    let left = exp - now;
    let status = if left < 300 { Status::Warn } else { Status::Ok };
    let renews = match renewal {
        Renewal::Unattended { until: Some(u) } => format!(
            "; renews by itself while a command runs, until {} (then {login})",
            crate::time::rfc3339(u)
        ),
        Renewal::Unattended { until: None } => "; renews by itself while a command runs".into(),
        Renewal::Login => format!("; renewing it needs {login}"),
        Renewal::Fixed => "; from the environment: nixstore-auth cannot renew it".into(),
    };
    (
        status,
        format!(
            "AWS session from {origin}: {} min left{renews}",
            left.max(0) / 60
        ),
        (status == Status::Warn).then(|| login.to_string()),
    )
}

fn probe_line(p: &Probe, name: &str, profile: &str, login: &str) -> Line {
    match p {
        Probe::Ok => (
            Status::Ok,
            "bucket reachable with the session (signed GET nix-cache-info)".into(),
            None,
        ),
        Probe::Empty => (
            Status::Warn,
            "bucket reachable with the session, but it has no nix-cache-info yet".into(),
            Some(format!("upload something: nixstore-auth push {name} PATH")),
        ),
        Probe::Refused(code) => (
            Status::Fail,
            format!("S3 refused the session ({code})"),
            Some(format!(
                "nixstore-auth logout --profile {profile} && {login}"
            )),
        ),
        Probe::Upstream(status, code) => (
            Status::Fail,
            format!("S3 answered {status} {code}"),
            Some("check the bucket name, region and endpoint in the cache URL".into()),
        ),
        Probe::Unreachable(why) => (
            Status::Fail,
            format!("S3 endpoint unreachable: {why}"),
            Some("check the endpoint and the network".into()),
        ),
    }
}

fn daemon_line(d: &DaemonFacts, name: &str) -> Option<Line> {
    if d.listed {
        return None;
    }
    Some(if d.used {
        (
            Status::Ok,
            "the nix-daemon fetches through the proxy URL (seen by the running proxy)".into(),
            None,
        )
    } else if !d.unreadable.is_empty() {
        (
            Status::Info,
            format!(
                "whether the nix-daemon accepts the proxy URL cannot be checked from your side: {} is readable only by root",
                d.unreadable.join(", ")
            ),
            Some(format!(
                "run `nixstore-auth exec -- nix-store -r PATH` once, then `nixstore-auth doctor {name}` again: the proxy sees the daemon's requests"
            )),
        )
    } else {
        (
            Status::Fail,
            "the nix-daemon will ignore the proxy URL `exec` forwards (untrusted user)".into(),
            Some(format!(
                "nixstore-auth use {name} --mode print (for your administrator)"
            )),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn facts() -> Facts {
        Facts {
            name: "bkt".into(),
            profile: "work".into(),
            peer_check: true,
            access: "only uid 1000".into(),
            plan: ProfileFacts::Planned {
                role: Some("arn:aws:iam::1:role/r".into()),
                mfa: None,
            },
            route: None,
            session: SessionFacts::Ready {
                expiration: Some(NOW + 3600),
                origin: "cache",
                renewal: Renewal::Login,
            },
            probe: Some(Probe::Ok),
            daemon: None,
        }
    }

    /// The statuses and the start of each summary.
    fn shape(lines: &[Line]) -> Vec<(Status, String)> {
        lines
            .iter()
            .map(|(s, m, _)| (*s, m.chars().take(24).collect()))
            .collect()
    }

    #[test]
    fn the_report_follows_profile_session_bucket_and_daemon() {
        use Status::*;
        let change = |f: &dyn Fn(&mut Facts)| {
            let mut x = facts();
            f(&mut x);
            x
        };
        let head = |rest: &[(Status, &str)]| -> Vec<(Status, String)> {
            let mut v = vec![
                (Info, "proxy access: only uid 1".to_string()),
                (Info, "AWS profile work, role a".to_string()),
            ];
            v.extend(rest.iter().map(|(s, m)| (*s, m.to_string())));
            v
        };
        let table: Vec<(Facts, Vec<(Status, String)>)> = vec![
            (
                facts(),
                head(&[
                    (Ok, "AWS session from cache: "),
                    (Ok, "bucket reachable with th"),
                ]),
            ),
            // Five minutes or less: renew now.
            (
                change(&|f| {
                    f.session = SessionFacts::Ready {
                        expiration: Some(NOW + 120),
                        origin: "cache",
                        renewal: Renewal::Login,
                    }
                }),
                head(&[
                    (Warn, "AWS session from cache: "),
                    (Ok, "bucket reachable with th"),
                ]),
            ),
            (
                change(&|f| {
                    f.session = SessionFacts::Ready {
                        expiration: None,
                        origin: "profile",
                        renewal: Renewal::Unattended { until: None },
                    }
                }),
                head(&[
                    (Ok, "long-term AWS keys from "),
                    (Ok, "bucket reachable with th"),
                ]),
            ),
            // exec would get one without a person: not a failure, and no bucket check.
            (
                change(&|f| {
                    f.session = SessionFacts::WithoutPrompt("STS".into());
                    f.probe = None;
                }),
                head(&[(Info, "no AWS session at hand; ")]),
            ),
            (
                change(&|f| {
                    f.session = SessionFacts::NeedsLogin("MFA".into());
                    f.probe = None;
                }),
                head(&[(Fail, "no valid AWS session is ")]),
            ),
            (
                change(&|f| f.probe = Some(Probe::Refused("ExpiredToken".into()))),
                head(&[
                    (Ok, "AWS session from cache: "),
                    (Fail, "S3 refused the session ("),
                ]),
            ),
            (
                change(&|f| f.plan = ProfileFacts::Broken("no profile".into())),
                vec![
                    (Info, "proxy access: only uid 1".into()),
                    (Fail, "no profile".into()),
                ],
            ),
            (
                change(&|f| {
                    f.daemon = Some(DaemonFacts {
                        listed: false,
                        used: false,
                        unreadable: vec![],
                    })
                }),
                head(&[
                    (Ok, "AWS session from cache: "),
                    (Ok, "bucket reachable with th"),
                    (Fail, "the nix-daemon will igno"),
                ]),
            ),
            (
                change(&|f| {
                    f.daemon = Some(DaemonFacts {
                        listed: false,
                        used: true,
                        unreadable: vec!["/etc/nix/secret.conf".into()],
                    })
                }),
                head(&[
                    (Ok, "AWS session from cache: "),
                    (Ok, "bucket reachable with th"),
                    (Ok, "the nix-daemon fetches t"),
                ]),
            ),
            (
                change(&|f| {
                    f.daemon = Some(DaemonFacts {
                        listed: false,
                        used: false,
                        unreadable: vec!["/etc/nix/secret.conf".into()],
                    })
                }),
                head(&[
                    (Ok, "AWS session from cache: "),
                    (Ok, "bucket reachable with th"),
                    (Info, "whether the nix-daemon a"),
                ]),
            ),
            (
                change(&|f| {
                    f.daemon = Some(DaemonFacts {
                        listed: true,
                        used: false,
                        unreadable: vec![],
                    })
                }),
                head(&[
                    (Ok, "AWS session from cache: "),
                    (Ok, "bucket reachable with th"),
                ]),
            ),
        ];
        for (f, want) in table {
            assert_eq!(shape(&decide(&f, NOW)), want, "{f:#?}");
        }
        // The fix of a session that needs a person names the login command.
        let f = change(&|f| f.session = SessionFacts::NeedsLogin("MFA".into()));
        let lines = decide(&f, NOW);
        assert_eq!(lines[2].2.as_deref(), Some("nixstore-auth login bkt"));
    }
}
