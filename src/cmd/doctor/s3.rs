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
    let profile = s3
        .profile
        .clone()
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
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
    let req = crate::aws::session::SessionRequest::new(None, Some(c.name.clone()));
    let quiet = Ui::silent();
    let session = match session::cached_only(&req, ctx, &quiet) {
        Ok(Some(s)) => s,
        Ok(None) => {
            r.add(
                section,
                Status::Fail,
                "no valid AWS session is cached (never logged in, or it expired)",
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
            r.add(
                section,
                status,
                format!(
                    "AWS session from {}: {} min left",
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
