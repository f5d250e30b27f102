//! The background service's chain, for `doctor`: units present and enabled, the proxy up and a
//! background one, the include line and the private include file, the nix-daemon fetching
//! through each URL, and each cache's credential with when it needs a person. The facts come
//! from `service::status` (what `service status` reports too).

use super::{Report, Status};
use crate::config::{Config, Dirs};
use crate::proxy::Standing;

pub(super) fn service_checks(report: &mut Report, cfg: &Config, dirs: &Dirs) {
    const S: &str = "background service";
    let r = match crate::service::status::gather(dirs, cfg, true) {
        Ok(r) => r,
        Err(e) => {
            report.add(S, Status::Warn, format!("cannot tell: {e:#}"), None);
            return;
        }
    };
    let Some(route) = r.route else {
        if !r.caches.is_empty() {
            report.add(
                S,
                Status::Info,
                "not installed: plain nix commands (direnv, editors, scripts) miss your S3 caches; only `nixstore-auth exec` reaches them",
                Some("nixstore-auth service install".into()),
            );
        }
        return;
    };
    let fix_of = |what: &str| {
        r.problems
            .iter()
            .find(|p| p.what.contains(what))
            .map(|p| p.fix.clone())
    };
    report.add(
        S,
        Status::Ok,
        format!("installed: {}", route.as_str()),
        None,
    );
    for u in &r.units {
        let (status, what) = match (u.present, u.current) {
            (true, true) => (Status::Ok, "present"),
            (true, false) => (Status::Warn, "names another binary or port"),
            (false, _) => (Status::Fail, "missing"),
        };
        let fix = (status != Status::Ok).then(|| "nixstore-auth service install".to_string());
        report.add(S, status, format!("{}: {what}", u.path.display()), fix);
    }
    if let Some(enabled) = &r.socket_enabled {
        let ok = enabled == "enabled";
        report.add(
            S,
            if ok { Status::Ok } else { Status::Fail },
            format!(
                "socket unit {enabled}, {}",
                r.socket_active.as_deref().unwrap_or("state unknown")
            ),
            (!ok).then(|| fix_of("socket unit").unwrap_or_default()),
        );
    }
    match r.proxy.pid {
        Some(pid) if r.proxy.background => report.add(
            S,
            Status::Ok,
            format!(
                "proxy up: pid {pid} on 127.0.0.1:{}{}",
                r.proxy.port,
                if r.proxy.activated {
                    ", socket-activated"
                } else {
                    ", persistent"
                }
            ),
            None,
        ),
        Some(pid) => report.add(
            S,
            Status::Warn,
            format!("the running proxy (pid {pid}) is a command's: it exits when idle"),
            Some("nixstore-auth proxy start --persistent".into()),
        ),
        None => report.add(
            S,
            Status::Fail,
            "the proxy is down: plain nix commands go on without your S3 caches (builds from source)",
            fix_of("the proxy is down"),
        ),
    }
    if let Some(i) = &r.include {
        report.add(
            S,
            if i.line { Status::Ok } else { Status::Fail },
            format!(
                "{} {} {}",
                i.nix_conf.display(),
                if i.line {
                    "includes"
                } else {
                    "does not include"
                },
                crate::nix::include::FILE_NAME
            ),
            (!i.line).then(|| fix_of("does not include").unwrap_or_default()),
        );
        let (status, what) = match (i.present, i.private, i.current) {
            (false, _, _) => (Status::Fail, "missing".to_string()),
            (true, false, _) => (Status::Fail, "readable by other users".to_string()),
            (true, true, false) => (
                Status::Warn,
                "private, but it does not list every recorded S3 cache at its current URL"
                    .to_string(),
            ),
            (true, true, true) => (
                Status::Ok,
                "private (0600), lists every recorded S3 cache".to_string(),
            ),
        };
        let fix = match status {
            Status::Ok => None,
            _ if i.present && !i.private => fix_of("can be read by other users"),
            _ => Some("nixstore-auth service install".into()),
        };
        report.add(S, status, format!("{}: {what}", i.file.display()), fix);
    }
    let now = crate::time::now();
    for c in &r.caches {
        let (status, what, fix) = match &c.standing {
            None => (
                Status::Fail,
                "not served by the proxy".to_string(),
                Some("nixstore-auth proxy start --persistent".to_string()),
            ),
            Some(Standing::NeedsPerson { why }) => (
                Status::Fail,
                format!("needs you: {why}; plain nix commands go on without it"),
                c.fix.clone(),
            ),
            Some(Standing::Unavailable { why }) => (Status::Fail, why.clone(), None),
            Some(Standing::Renews { until: Some(u), .. }) if *u > now => (
                Status::Ok,
                format!(
                    "renews by itself until {} (in {}), then it needs `{}`",
                    crate::time::rfc3339(*u),
                    crate::time::human_secs(u - now),
                    crate::proxy::login_command(&c.name)
                ),
                None,
            ),
            Some(Standing::Renews { .. }) => (Status::Ok, "renews by itself".to_string(), None),
            Some(Standing::Valid { expires: Some(e) }) => (
                Status::Warn,
                format!(
                    "valid until {}, then it needs `{}`",
                    crate::time::rfc3339(*e),
                    crate::proxy::login_command(&c.name)
                ),
                None,
            ),
            Some(Standing::Valid { expires: None }) => {
                (Status::Ok, "valid (no end)".to_string(), None)
            }
        };
        report.add(S, status, format!("cache {}: {what}", c.name), fix);
        if c.standing.is_some() {
            report.add(
                S,
                if c.daemon_used {
                    Status::Ok
                } else {
                    Status::Info
                },
                format!(
                    "cache {}: {}",
                    c.name,
                    if c.daemon_used {
                        "the nix-daemon fetched nix-cache-info through its URL"
                    } else {
                        "the nix-daemon has not fetched through its URL since the proxy started"
                    }
                ),
                None,
            );
        }
    }
    if r.needs_admin {
        report.add(
            S,
            Status::Fail,
            "the nix-daemon does not allow your proxy's URLs (you are not a trusted user)",
            fix_of("does not trust you"),
        );
    }
}
