//! `doctor`: explain the confusing cases (daemon trust, hidden netrc, credentials the daemon
//! cannot see, ...) with a concrete fix for each. Never prompts and never prints a secret.

use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

use super::{DoctorArgs, Run};
use crate::aws::session;
use crate::cache::CacheKind;
use crate::config::{CacheEntry, Config, Dirs, SecretStore};
use crate::nix::setup::{self, NixSetup, ProbeCache, SettingsView, Trust, Version};
use crate::ui::Ui;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub section: String,
    pub status: Status,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(
        &mut self,
        section: &str,
        status: Status,
        summary: impl Into<String>,
        fix: Option<String>,
    ) {
        self.checks.push(Check {
            section: section.to_string(),
            status,
            summary: summary.into(),
            fix,
        });
    }
}

impl Run for DoctorArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let mut report = Report::default();
        let config = match Config::load(&dirs.config_file()) {
            Ok(c) => c,
            Err(e) => {
                report.add(
                    "config",
                    Status::Fail,
                    format!("{e:#}"),
                    Some("fix or move the file".into()),
                );
                Config::default()
            }
        };
        let setup = setup::probe(ProbeCache::Off)?;
        let user_view = setup::load_view(&setup.user_conf);
        nix_checks(&mut report, &setup, &user_view);
        let caches: Vec<CacheEntry> = config
            .caches()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                self.cache
                    .as_ref()
                    .is_none_or(|n| &c.name == n || c.kind.url() == *n)
            })
            .collect();
        if let Some(n) = &self.cache
            && caches.is_empty()
        {
            report.add(
                "caches",
                Status::Fail,
                format!("no recorded cache named {n:?}"),
                Some("see `nixstore-auth list`".into()),
            );
        }
        let spinner = spinner(self.json);
        for c in &caches {
            if let Some(s) = &spinner {
                s.set_message(format!("checking {}", c.name));
            }
            cache_checks(
                &mut report,
                c,
                &setup,
                &user_view,
                session::Ctx::new(&config, &dirs),
            );
        }
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        trap_checks(&mut report, &setup, &user_view, &caches);

        let failed = report.checks.iter().any(|c| c.status == Status::Fail);
        if self.json {
            ui.outln(format_args!(
                "{}",
                serde_json::to_string_pretty(&report.checks)?
            ))?;
        } else {
            print_report(&report, ui)?;
        }
        Ok(if failed { 1 } else { 0 })
    }
}

fn spinner(json: bool) -> Option<indicatif::ProgressBar> {
    if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.enable_steady_tick(Duration::from_millis(100));
    Some(pb)
}

fn print_report(report: &Report, ui: &Ui) -> Result<()> {
    let mut section = "";
    for c in &report.checks {
        if c.section != section {
            section = &c.section;
            ui.outln(format_args!(
                "{}",
                ui.paint_out(section, console::Color::White)
            ))?;
        }
        let mark = match c.status {
            Status::Ok => ui.paint_out("  ok  ", console::Color::Green),
            Status::Info => ui.paint_out("  ..  ", console::Color::Cyan),
            Status::Warn => ui.paint_out("  warn", console::Color::Yellow),
            Status::Fail => ui.paint_out("  FAIL", console::Color::Red),
        };
        ui.outln(format_args!("{mark} {}", c.summary))?;
        if let Some(fix) = &c.fix {
            ui.outln(format_args!("        fix: {fix}"))?;
        }
    }
    Ok(())
}

fn nix_checks(r: &mut Report, setup: &NixSetup, user_view: &SettingsView) {
    match setup.version {
        Some(v) => r.add(
            "nix",
            Status::Info,
            format!(
                "Nix {v}, {}",
                if setup.daemon {
                    "multi-user (through the nix-daemon)"
                } else {
                    "single-user or root (no daemon in between)"
                }
            ),
            None,
        ),
        None => r.add(
            "nix",
            Status::Fail,
            "`nix` was not found on PATH",
            Some("install Nix, or fix PATH".into()),
        ),
    }
    if setup.daemon {
        match setup.trust {
            Trust::Trusted => r.add("nix", Status::Ok, format!("the nix-daemon trusts {:?}: your nix.conf settings reach it", setup.user), None),
            Trust::Untrusted => r.add(
                "nix",
                Status::Warn,
                format!("the nix-daemon does not trust {:?}: it ignores substituters, keys and netrc-file from your nix.conf", setup.user),
                Some(format!("`nixstore-auth use CACHE` prints what an administrator must add to {}", setup.system_conf.display())),
            ),
        }
    }
    let mut files: Vec<String> = setup
        .system
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    files.extend(user_view.files.iter().map(|p| p.display().to_string()));
    // Readable only by root (the daemon reads them): listed, never a problem.
    files.extend(
        setup
            .system
            .unreadable
            .iter()
            .chain(&user_view.unreadable)
            .map(|p| format!("{} (only the nix-daemon can read it)", p.display())),
    );
    r.add(
        "nix",
        Status::Info,
        format!(
            "nix.conf files in force: {}",
            if files.is_empty() {
                "none".into()
            } else {
                files.join(", ")
            }
        ),
        None,
    );
    for p in setup.system.problems.iter().chain(&user_view.problems) {
        r.add(
            "nix",
            Status::Fail,
            p.clone(),
            Some("fix the file: Nix refuses to start with it".into()),
        );
    }
    for name in [
        "substituters",
        "trusted-public-keys",
        "trusted-substituters",
        "netrc-file",
        "trusted-users",
    ] {
        let sources: Vec<String> = setup
            .system
            .sources(name)
            .into_iter()
            .chain(user_view.sources(name))
            .map(|(f, v)| {
                format!(
                    "{} ({})",
                    f.display(),
                    if v.is_empty() {
                        "empty".into()
                    } else {
                        v.join(" ")
                    }
                )
            })
            .collect();
        if !sources.is_empty() {
            r.add(
                "nix",
                Status::Info,
                format!("{name}: {}", sources.join("; ")),
                None,
            );
        }
    }
}

fn cache_checks(
    r: &mut Report,
    c: &CacheEntry,
    setup: &NixSetup,
    user_view: &SettingsView,
    ctx: session::Ctx,
) {
    let section = format!("cache {} ({})", c.name, c.kind.url());
    let url = c.kind.url();
    // Public keys: those in the user's files count only when the downloader honours them.
    let system_keys = setup.system.list("trusted-public-keys");
    let user_keys = user_view.list("trusted-public-keys");
    let in_system = c.public_keys.iter().all(|k| system_keys.contains(k));
    let in_any = c
        .public_keys
        .iter()
        .all(|k| system_keys.contains(k) || user_keys.contains(k));
    if c.public_keys.is_empty() {
        r.add(
            &section,
            Status::Warn,
            "no public key recorded: Nix will refuse unsigned paths from it",
            Some(format!(
                "nixstore-auth use {} --public-key NAME:KEY",
                c.name
            )),
        );
    } else if in_system || (in_any && setup.user_settings_honoured()) {
        r.add(&section, Status::Ok, "public key present in nix.conf", None);
    } else if in_any {
        r.add(
            &section,
            Status::Fail,
            "public key only in your nix.conf, which the nix-daemon ignores (untrusted user)",
            Some(format!("nixstore-auth use {} --mode print", c.name)),
        );
    } else {
        r.add(
            &section,
            Status::Fail,
            "public key missing from nix.conf",
            Some(format!("nixstore-auth use {}", c.name)),
        );
    }
    match &c.kind {
        CacheKind::Https { .. } => {
            let listed_user = user_view
                .list("substituters")
                .iter()
                .any(|s| crate::cache::same_url(s, &url));
            let listed_sys = setup
                .system
                .list("substituters")
                .iter()
                .any(|s| crate::cache::same_url(s, &url));
            let trusted_sub = setup
                .system
                .list("trusted-substituters")
                .iter()
                .any(|s| crate::cache::same_url(s, &url));
            if c.secret_store == SecretStore::Keyring {
                r.add(&section, Status::Info, "token in the keyring: reached through `nixstore-auth exec` (or the shell wrappers)", None);
            } else if listed_sys || (listed_user && (setup.user_settings_honoured() || trusted_sub))
            {
                r.add(
                    &section,
                    Status::Ok,
                    "substituter visible to whoever downloads",
                    None,
                );
            } else if listed_user {
                r.add(&section, Status::Fail, "substituter is in your nix.conf but the nix-daemon ignores it (untrusted user)", Some(format!("nixstore-auth use {} --mode print", c.name)));
            } else {
                r.add(
                    &section,
                    Status::Fail,
                    "substituter not configured",
                    Some(format!("nixstore-auth use {}", c.name)),
                );
            }
            https_probe(
                r,
                &section,
                c,
                setup,
                nix_ca_file(setup, user_view).as_deref(),
                ctx,
            );
        }
        CacheKind::S3(s3) => s3_checks(r, &section, c, s3, setup, ctx),
    }
}

/// The AWS session of an S3 cache (never prompting), a signed GET with it, and whether the
/// daemon will accept the proxy's URL.
fn s3_checks(
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

/// The CA bundle Nix verifies HTTPS caches with, when it is not the system's: the
/// `ssl-cert-file` setting (newer Nix), else `NIX_SSL_CERT_FILE`, else `SSL_CERT_FILE`.
fn nix_ca_file(setup: &NixSetup, user_view: &SettingsView) -> Option<std::path::PathBuf> {
    let env = |name: &str| std::env::var(name).ok();
    user_view
        .scalar("ssl-cert-file")
        .or_else(|| setup.system.scalar("ssl-cert-file"))
        .or_else(|| env("NIX_SSL_CERT_FILE"))
        .or_else(|| env("SSL_CERT_FILE"))
        .filter(|p| !p.trim().is_empty())
        .map(std::path::PathBuf::from)
}

/// Only the roots in `path`, as Nix (curl's CAINFO) uses them; an error names the file.
fn load_roots(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)?;
    anyhow::ensure!(!certs.is_empty(), "no PEM certificate in it");
    Ok(certs)
}

/// GET nix-cache-info with the stored credential, trusting the CA bundle Nix would use.
fn https_probe(
    r: &mut Report,
    section: &str,
    c: &CacheEntry,
    setup: &NixSetup,
    ca_file: Option<&Path>,
    ctx: session::Ctx,
) {
    let url = format!("{}/nix-cache-info", c.kind.url());
    let machine = c.kind.netrc_machine().unwrap_or_default();
    // The keyring is asked for keyring caches: that is where `exec` takes the token from.
    let store = (c.secret_store == SecretStore::Keyring)
        .then(|| crate::secret::SecretStore::open(ctx.cfg, ctx.dirs, &Ui::silent()).ok())
        .flatten();
    let credential = crate::secret::CacheCredential::of(c, store.as_ref())
        .ok()
        .and_then(|cred| Some((cred.login, cred.token?)));
    if c.has_token && credential.is_none() && c.secret_store == SecretStore::Netrc {
        r.add(
            section,
            Status::Fail,
            format!("no netrc entry for {machine}"),
            Some(format!("nixstore-auth use {} --token-stdin", c.name)),
        );
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            r.add(
                section,
                Status::Fail,
                format!("cannot start the network check: {e}"),
                None,
            );
            return;
        }
    };
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = ca_file {
        match load_roots(ca) {
            Ok(certs) => builder = builder.tls_certs_only(certs),
            Err(e) => {
                r.add(
                    section,
                    Status::Fail,
                    format!("cannot use the CA bundle {}: {e:#}", ca.display()),
                    Some(
                        "point NIX_SSL_CERT_FILE (or ssl-cert-file) at a readable PEM bundle"
                            .into(),
                    ),
                );
                return;
            }
        }
    }
    let result = rt.block_on(async {
        let client = builder.build()?;
        let mut req = client.get(&url);
        if let Some((login, password)) = &credential {
            req = req.basic_auth(login, Some(password.as_str()));
        }
        req.send().await
    });
    match result {
        Ok(resp) if resp.status().is_success() => {
            let how = if credential.is_some() {
                "authenticated"
            } else {
                "without credentials"
            };
            r.add(
                section,
                Status::Ok,
                format!("reachable, {how} (GET nix-cache-info: {})", resp.status()),
                None,
            );
        }
        Ok(resp) if matches!(resp.status().as_u16(), 401 | 403) && credential.is_some() => r.add(
            section,
            Status::Fail,
            format!(
                "the cache refused the credential (GET nix-cache-info: {})",
                resp.status()
            ),
            Some(format!(
                "store a valid token: nixstore-auth use {} --token-stdin",
                c.name
            )),
        ),
        Ok(resp) if matches!(resp.status().as_u16(), 401 | 403) => {
            // No credential of ours: the daemon may hold one in its own netrc, which only root
            // reads (the untrusted-user setup). Then the login cannot be checked from here.
            let daemon_netrc = setup.system_netrc();
            if setup.daemon
                && !setup.is_root
                && daemon_netrc.exists()
                && std::fs::File::open(&daemon_netrc).is_err()
            {
                r.add(
                    section,
                    Status::Warn,
                    format!(
                        "the cache wants a login (GET nix-cache-info: {}); the nix-daemon's is in {}, which only root reads, so doctor cannot check it",
                        resp.status(),
                        daemon_netrc.display()
                    ),
                    Some(format!(
                        "if downloads fail, ask an administrator to check the `machine {machine}` entry in {}",
                        daemon_netrc.display()
                    )),
                );
            } else {
                r.add(
                    section,
                    Status::Fail,
                    format!(
                        "the cache wants a login and no token is recorded (GET nix-cache-info: {})",
                        resp.status()
                    ),
                    Some(format!("nixstore-auth use {} --token-stdin", c.name)),
                );
            }
        }
        Ok(resp) => r.add(
            section,
            Status::Fail,
            format!("GET nix-cache-info answered {}", resp.status()),
            Some("check the URL".into()),
        ),
        Err(e) => r.add(
            section,
            Status::Fail,
            format!("unreachable: {}", describe_reqwest(&e)),
            Some("check the URL, the network, and TLS (Nix reads NIX_SSL_CERT_FILE)".into()),
        ),
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    // The URL holds no secret (credentials travel in a header), but keep the message short.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

fn trap_checks(r: &mut Report, setup: &NixSetup, user_view: &SettingsView, caches: &[CacheEntry]) {
    let s = "traps";
    if setup.daemon
        && std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        && (caches.iter().any(|c| matches!(c.kind, CacheKind::S3(_)))
            || user_view
                .list("substituters")
                .iter()
                .any(|u| u.starts_with("s3://")))
    {
        r.add(
            s,
            Status::Warn,
            "AWS credentials are set in this shell, but the nix-daemon downloads and never sees them",
            Some("run Nix as `nixstore-auth exec -- nix ...` (or eval \"$(nixstore-auth shell-init bash)\")".into()),
        );
    }
    let system_netrc = setup.system_netrc();
    if let Some(user_netrc) = user_view.scalar("netrc-file")
        && Path::new(&user_netrc) != system_netrc
        && system_netrc.exists()
    {
        r.add(
            s,
            Status::Warn,
            format!("your nix.conf sets netrc-file = {user_netrc}, which hides {} for your commands", system_netrc.display()),
            Some(format!("copy the entries you need from {} into {user_netrc}, or use --secret-store keyring", system_netrc.display())),
        );
    }
    let builders = setup.system.scalar("builders").unwrap_or_default();
    let machines_file = Path::new("/etc/nix/machines");
    let has_builders = (!builders.trim().is_empty() && builders.trim() != "@/etc/nix/machines")
        || std::fs::read_to_string(machines_file).is_ok_and(|t| {
            t.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        });
    let bus = setup
        .system
        .scalar("builders-use-substitutes")
        .or(user_view.scalar("builders-use-substitutes"));
    if has_builders && bus.as_deref() == Some("true") && !caches.is_empty() {
        r.add(
            s,
            Status::Warn,
            "remote builders fetch from caches themselves (builders-use-substitutes = true) but hold none of your credentials",
            Some("set builders-use-substitutes = false so the local daemon substitutes and copies to the builder".into()),
        );
    }
    if setup.version == Some(Version(2, 34, 0)) {
        r.add(
            s,
            Status::Warn,
            "Nix 2.34.0's daemon ignores a forwarded netrc-file",
            Some("upgrade to Nix 2.34.1 or later".into()),
        );
    }
}
