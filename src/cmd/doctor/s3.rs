//! An S3 cache: the profile, the cached AWS session (never prompting), the bucket, the proxy.

use super::*;

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
    use crate::proxy::Probe;
    let req = crate::aws::session::SessionRequest::new(None, Some(c.name.clone()));
    // The profile exec would use: one rule (`--profile`, `profile=`, AWS_PROFILE, default).
    let profile = session::profile_name(&req, ctx)
        .unwrap_or_else(|_| s3.profile.clone().unwrap_or_else(|| "default".into()));
    let login = format!("nixstore-auth login {}", c.name);
    r.add(
        section,
        if crate::proxy::PEER_CHECK {
            Status::Info
        } else {
            Status::Warn
        },
        format!("proxy access: {}", crate::proxy::access_summary()),
        None,
    );
    match crate::aws::profile::load_profiles()
        .and_then(|set| crate::aws::profile::plan(&set, &profile))
    {
        Ok(p) => {
            let mfa = p
                .mfa_serial()
                .map(|m| format!(", MFA device {m}"))
                .unwrap_or_default();
            let role = p
                .role_arn()
                .map(|a| format!(", role {a}"))
                .unwrap_or_default();
            r.add(
                section,
                Status::Info,
                format!("AWS profile {profile}{role}{mfa}"),
                None,
            );
        }
        // CI: credentials in the environment or web identity, no AWS files at all.
        Err(_) if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() => r.add(
            section,
            Status::Info,
            format!(
                "AWS profile {profile} is not in the AWS files: using the credentials in the environment (AWS_ACCESS_KEY_ID); nixstore-auth cannot renew them"
            ),
            None,
        ),
        Err(_)
            if std::env::var_os("AWS_ROLE_ARN").is_some()
                && std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() =>
        {
            r.add(
                section,
                Status::Info,
                "web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE): each command gets a session with AssumeRoleWithWebIdentity and renews it by itself, reading the token file again",
                None,
            );
            return;
        }
        Err(e) => {
            r.add(
                section,
                Status::Fail,
                format!("{e:#}"),
                Some("fix ~/.aws/config, or record the cache with the right profile=".into()),
            );
            return;
        }
    }
    let quiet = Ui::silent();
    if let Ok(Some(info)) = session::route_info(&req, ctx, &quiet) {
        let role = match info.role_secs {
            Some(s) => crate::time::human_secs(s.into()),
            None => "1 h (STS's default)".into(),
        };
        let base = match (info.base_secs, info.base_expires) {
            (Some(secs), Some(e)) if e > crate::time::now() => format!(
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
        let sessions = if matches!(info.route, crate::aws::profile::MfaRoute::NoMfa)
            && info.role_secs.is_none()
            && base.is_empty()
        {
            String::new()
        } else {
            format!("; role sessions last {role}{base}")
        };
        r.add(
            section,
            Status::Info,
            format!(
                "session route of profile {}: {}{sessions}",
                info.profile,
                info.route.describe()
            ),
            None,
        );
    }
    // What exec would do, decided as exec decides it, without STS or a prompt.
    let session = match session::outlook(&req, ctx, &quiet) {
        Ok(session::Outlook::Ready(s)) => s,
        Ok(session::Outlook::WithoutPrompt(how)) => {
            r.add(
                section,
                Status::Info,
                format!(
                    "no AWS session at hand; a command makes one without a prompt: {how} (the bucket is checked once one exists)"
                ),
                None,
            );
            return;
        }
        Ok(session::Outlook::NeedsLogin(why)) => {
            r.add(
                section,
                Status::Fail,
                format!("no valid AWS session is cached (never logged in, or it expired): {why}"),
                Some(login),
            );
            return;
        }
        Err(e) => {
            r.add(section, Status::Fail, format!("{e:#}"), Some(login));
            return;
        }
    };
    match session.credentials.expiration {
        Some(exp) => {
            let left = exp - crate::time::now();
            let status = if left < 300 { Status::Warn } else { Status::Ok };
            let renews = match session.renewal {
                session::Renewal::Unattended { until: Some(u) } => format!(
                    "; renews by itself while a command runs, until {} (then {login})",
                    crate::time::rfc3339(u)
                ),
                session::Renewal::Unattended { until: None } => {
                    "; renews by itself while a command runs".into()
                }
                session::Renewal::Login => format!("; renewing it needs {login}"),
                session::Renewal::Fixed => {
                    "; from the environment: nixstore-auth cannot renew it".into()
                }
            };
            r.add(
                section,
                status,
                format!(
                    "AWS session from {}: {} min left{renews}",
                    session.origin.as_str(),
                    left.max(0) / 60
                ),
                (status == Status::Warn).then(|| login.clone()),
            );
        }
        None => r.add(
            section,
            Status::Ok,
            format!("long-term AWS keys from {}", session.origin.as_str()),
            None,
        ),
    }
    match crate::proxy::probe(&session.credentials, s3) {
        Probe::Ok => r.add(
            section,
            Status::Ok,
            "bucket reachable with the session (signed GET nix-cache-info)",
            None,
        ),
        Probe::Empty => r.add(
            section,
            Status::Warn,
            "bucket reachable with the session, but it has no nix-cache-info yet",
            Some(format!(
                "upload something: nixstore-auth push {} PATH",
                c.name
            )),
        ),
        Probe::Refused(code) => r.add(
            section,
            Status::Fail,
            format!("S3 refused the session ({code})"),
            Some(format!(
                "nixstore-auth logout --profile {profile} && {login}"
            )),
        ),
        Probe::Upstream(status, code) => r.add(
            section,
            Status::Fail,
            format!("S3 answered {status} {code}"),
            Some("check the bucket name, region and endpoint in the cache URL".into()),
        ),
        Probe::Unreachable(why) => r.add(
            section,
            Status::Fail,
            format!("S3 endpoint unreachable: {why}"),
            Some("check the endpoint and the network".into()),
        ),
    }
    if setup.daemon && setup.trust == Trust::Untrusted {
        let Ok(layout) = crate::proxy::Layout::new(ctx.dirs, ctx.cfg) else {
            return;
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
        if !listed && used {
            r.add(
                section,
                Status::Ok,
                "the nix-daemon fetches through the proxy URL (seen by the running proxy)",
                None,
            );
        } else if !listed && !setup.system.unreadable.is_empty() {
            let files: Vec<String> = setup
                .system
                .unreadable
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            r.add(
                section,
                Status::Info,
                format!(
                    "whether the nix-daemon accepts the proxy URL cannot be checked from your side: {} is readable only by root",
                    files.join(", ")
                ),
                Some(format!(
                    "run `nixstore-auth exec -- nix-store -r PATH` once, then `nixstore-auth doctor {}` again: the proxy sees the daemon's requests",
                    c.name
                )),
            );
        } else if !listed {
            r.add(
                section,
                Status::Fail,
                "the nix-daemon will ignore the proxy URL `exec` forwards (untrusted user)",
                Some(format!(
                    "nixstore-auth use {} --mode print (for your administrator)",
                    c.name
                )),
            );
        }
    }
}
