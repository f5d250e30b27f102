//! `exec -- CMD`: run CMD so that both the Nix client and the nix-daemon reach private caches.
//!
//! - Nothing to do (no `--profile`, no `--cache`, no recorded S3 or keyring cache, or an outer
//!   `exec` already set everything up): replace this process with CMD at once. config.toml is
//!   read, nothing else: no Nix probe, no async runtime, no keyring.
//! - AWS session wanted: resolve it (MFA prompt before anything starts) and put it in CMD's
//!   environment for client-side work.
//! - S3 caches: make the loopback signing proxy serve them and forward its URLs to the daemon.
//! - HTTPS caches whose token is in the keyring: write an ephemeral netrc and forward it.
//! - Forwarded settings travel in `NIX_CONFIG` (and, the non-secret ones, as `--option` on a Nix
//!   command line). While a proxy lease or an ephemeral file must live, CMD runs as a child and
//!   its status is passed on; otherwise this process becomes CMD.

use anyhow::{Context, Result, bail};
use std::cell::OnceCell;
use std::collections::BTreeSet;
use zeroize::Zeroizing;

use super::{ExecArgs, Run, Via};
use crate::aws::session::{self, Session, SessionRequest};
use crate::cache_plan;
use crate::config::{CacheEntry, Config, Dirs};
use crate::ephemeral::EphemeralFile;
use crate::launch::{EXEC_MARKER, Launch};
use crate::nix::conf::NixConf;
use crate::nix::forward::{self, Setting};
use crate::nix::netrc::Netrc;
use crate::nix::setup::{self, ProbeCache};
use crate::proxy;
use crate::refresh;
use crate::secret::{SecretStore, Token};
use crate::ui::Ui;

/// One AWS session per profile in play, with the request that made it (for renewal).
type Sessions = Vec<(Option<String>, Session, SessionRequest)>;

impl Run for ExecArgs {
    /// Gather (config, caches, sessions, Nix) → decide ([`forwarding`]) → apply (proxies,
    /// ephemeral netrc, uploads, the child).
    fn run(self, ui: &Ui) -> Result<i32> {
        let mut launch = Launch::new(self.command.clone());
        // Marks the child as running under exec: nested wrappers (a wrapped nix-shell running a
        // wrapped nix) see it and reuse what the outer exec set up.
        launch
            .set
            .push((EXEC_MARKER.into(), Zeroizing::new("1".into())));
        let nested = std::env::var_os(EXEC_MARKER).is_some();
        if nested && self.caches.is_empty() && self.profile.is_none() && self.push.is_empty() {
            ui.debug("inside an outer `nixstore-auth exec`: reusing its session and settings");
            return Ok(launch.replace(ui));
        }
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        let caches = selected_caches(&self, &cfg)?;
        let service = crate::proxy::https_rules::service_installed(&dirs);
        let plan = cache_plan::plan(&caches, self.profile.as_deref(), service);
        if plan.is_empty() && self.push.is_empty() {
            return Ok(launch.replace(ui));
        }

        // Prompts happen here, before anything starts.
        let sessions = self.sessions(&plan, &cfg, &dirs, ui)?;
        if let Some((_, s, _)) = sessions.first() {
            let delta = session::EnvDelta::for_session(s);
            launch.set.extend(delta.set);
            launch.unset = delta.unset.into_iter().map(String::from).collect();
        }
        if !plan.s3.is_empty() && self.via == Via::Env {
            bail!(
                "--via env: no installed Nix has a setting that forwards environment variables to the nix-daemon; use --via proxy (the default picks it)"
            );
        }
        let builder_env = match (self.builder_env, sessions.first()) {
            (false, _) => None,
            (true, None) => {
                bail!("--builder-env needs an AWS session: pass --profile or record an S3 cache")
            }
            (true, Some((_, s, _))) => Some(
                session::EnvDelta::for_session(s)
                    .set
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("AWS_"))
                    .map(|(k, v)| format!("{k}={}", v.as_str()))
                    .collect(),
            ),
        };
        // What the installed Nix is and knows: probed when first needed, at most once per
        // command (and answered from the probe cache while nothing changed).
        let nix_cell = OnceCell::new();
        let nix = || {
            nix_cell
                .get_or_init(|| {
                    setup::probe(ProbeCache::ReadWrite)
                        .map_err(|e| ui.debug(format!("cannot probe the installed Nix: {e:#}")))
                        .ok()
                })
                .as_ref()
        };

        // S3 caches through the proxy.
        let (mut leases, proxy_urls) = if plan.s3.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            // A Nix client that opens the proxy's URL itself (single-user, `nix copy`) records
            // it, secret included, in its cache database: private before the URL exists.
            crate::nix::client_cache::protect()?;
            serve_s3(&plan, &sessions, &cfg, &dirs, ui)?
        };
        // HTTPS caches on the proxy route: the proxy mounts them and adds their credential.
        let mut proxy_urls = proxy_urls;
        let https_lease = if plan.https_proxy.is_empty() {
            None
        } else {
            crate::nix::client_cache::protect()?;
            let layout = proxy::Layout::new(&dirs, &cfg)?;
            let names: Vec<String> = plan.https_proxy.iter().map(|c| c.name.clone()).collect();
            let lease = proxy::ensure_running_https(&layout, &names, ui)?;
            proxy_urls.extend(names.iter().map(|n| lease.url_for(n)));
            Some(lease)
        };
        if let (false, Some(nix)) = (proxy_urls.is_empty(), nix()) {
            let urls: Vec<Setting> = proxy_urls
                .iter()
                .map(|u| Setting::new("extra-substituters", u.clone(), true))
                .collect();
            warn_if_daemon_ignores(&urls, nix, ui);
        }
        // HTTPS caches whose token lives in the keyring: an ephemeral netrc.
        let netrc_file = if plan.keyring.is_empty() {
            None
        } else {
            let store = SecretStore::open(&cfg, &dirs, ui)?;
            let text = ephemeral_netrc(&store, &plan.keyring, ui)?;
            let file = EphemeralFile::create(&dirs, "netrc", text.as_bytes())?;
            let system_netrc = match nix() {
                Some(nix) => nix.system_netrc(),
                None => setup::daemon_netrc(),
            };
            if system_netrc.exists() {
                ui.warn(format!(
                    "forwarding a netrc-file hides {} for this command: caches configured only there lose their credentials",
                    system_netrc.display()
                ));
            }
            Some(file)
        };

        // Remote builders: what the one decision (nix/forward.rs) forwards for them when a
        // private cache is in play.
        let builders = match nix() {
            Some(nix) if !proxy_urls.is_empty() || netrc_file.is_some() => {
                let in_force = crate::nix::builders::for_command(nix, &launch.argv);
                let facts =
                    forward::BuilderFacts::new(true, nix.user_settings_honoured(), &in_force);
                let decision = forward::builder_decision(&facts);
                if decision != forward::BuilderDecision::NotInPlay {
                    ui.debug(decision.describe());
                }
                decision.settings()
            }
            _ => Vec::new(),
        };
        let decided = forwarding(&ForwardFacts {
            proxy_urls: &proxy_urls,
            builders,
            s3_keys: plan
                .s3
                .iter()
                .chain(&plan.https_proxy)
                .flat_map(|c| c.public_keys.clone())
                .collect(),
            netrc_file: netrc_file.as_ref().map(|f| f.path().display().to_string()),
            builder_env,
            known: nix().and_then(|n| n.known_settings.as_ref()),
            version: nix().and_then(|n| n.version).map(|v| v.to_string()),
        })?;
        for w in &decided.warnings {
            ui.warn(w);
        }
        if decided.known_unlisted {
            ui.debug("cannot list the settings Nix knows; forwarding all");
        }
        let settings = decided.settings;
        if !settings.is_empty() {
            let existing = std::env::var("NIX_CONFIG").ok();
            launch.set.push((
                "NIX_CONFIG".into(),
                Zeroizing::new(forward::nix_config(existing.as_deref(), &settings)),
            ));
            launch.argv = forward::with_options(&launch.argv, &settings);
            ui.debug(format!("forwarding {settings:?}"));
        }

        // --push: watching and uploading start before CMD, and finish after it.
        let pushing = if self.push.is_empty() {
            None
        } else {
            let targets: Vec<CacheEntry> = caches
                .iter()
                .filter(|c| self.push.iter().any(|p| named(c, p, &cfg)))
                .cloned()
                .collect();
            Some(crate::push::setup::start_for_exec(
                &targets,
                leases.first(),
                self.no_sign,
                &cfg,
                &dirs,
                ui,
            )?)
        };
        if leases.is_empty() && netrc_file.is_none() && pushing.is_none() && https_lease.is_none() {
            return Ok(launch.replace(ui));
        }
        let ctx = session::Ctx::new(&cfg, &dirs);
        let code = refresh::while_running(&mut leases, ctx, ui, || launch.run_supervised(ui));
        let code = match pushing {
            Some(p) => p.finish(code, self.push_strict, ui),
            None => code,
        };
        if code != 0 && !leases.is_empty() {
            explain_proxy_failure(&proxy::Layout::new(&dirs, &cfg)?, ui);
        }
        drop(netrc_file);
        drop(leases);
        drop(https_lease);
        Ok(code)
    }
}

impl ExecArgs {
    /// One AWS session per profile the plan names (prompting for MFA where needed).
    fn sessions(
        &self,
        plan: &cache_plan::CachePlan,
        cfg: &Config,
        dirs: &Dirs,
        ui: &Ui,
    ) -> Result<Sessions> {
        let mut sessions = Vec::new();
        for profile in plan.profiles.clone() {
            let req = SessionRequest::new(
                profile.clone().or_else(|| self.profile.clone()),
                plan.s3.first().map(|c| c.name.clone()),
            )
            .mfa_code(self.mfa_code.clone());
            let s = session::resolve(&req, session::Ctx::new(cfg, dirs), ui)?;
            ui.debug(format!(
                "session of profile {:?} from {}",
                s.profile.as_deref().unwrap_or("-"),
                s.origin.as_str()
            ));
            sessions.push((profile, s, req));
        }
        Ok(sessions)
    }
}

/// Makes the proxy serve each profile's S3 caches with that profile's session: the leases
/// (kept fresh while CMD runs, refresh.rs) and the URLs to forward, one per cache.
fn serve_s3(
    plan: &cache_plan::CachePlan,
    sessions: &Sessions,
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<(Vec<refresh::Kept>, Vec<String>)> {
    let layout = proxy::Layout::new(dirs, cfg)?;
    let (mut leases, mut urls) = (Vec::new(), Vec::new());
    for (profile, group) in &plan.groups {
        let mounts: Vec<proxy::Mount> = group
            .iter()
            .map(|(name, s3)| proxy::Mount {
                name: name.clone(),
                s3: s3.clone(),
            })
            .collect();
        // The plan names a profile for every S3 group, and a session was resolved for each.
        let Some((_, session, req)) = sessions
            .iter()
            .find(|(p, _, _)| p == profile)
            .or(sessions.first())
        else {
            bail!("no AWS session for the caches of profile {profile:?}");
        };
        let lease = proxy::ensure_running_for(
            &layout,
            &session.credentials,
            Some(refresh::info_of(session)),
            &mounts,
            ui,
        )?;
        urls.extend(mounts.iter().map(|m| lease.url_for(&m.name)));
        let login = mounts[0].name.clone();
        leases.push(refresh::Kept::new(
            lease,
            req.clone(),
            session.clone(),
            login,
        ));
    }
    Ok((leases, urls))
}

/// What [`forwarding`] decides from.
struct ForwardFacts<'a> {
    /// The proxy's URL for each S3 cache (they hold its secret).
    proxy_urls: &'a [String],
    /// The S3 caches' public keys.
    s3_keys: Vec<String>,
    /// The ephemeral netrc with the keyring tokens.
    netrc_file: Option<String>,
    /// What the remote-builder decision forwards (nix/forward.rs).
    builders: Vec<Setting>,
    /// `--builder-env`: the session's `AWS_*` pairs for fixed-output builders.
    builder_env: Option<Vec<String>>,
    /// The settings the installed Nix knows (`None`: it cannot be probed or cannot list them).
    known: Option<&'a BTreeSet<String>>,
    version: Option<String>,
}

#[derive(Debug, PartialEq)]
struct Forwarding {
    settings: Vec<Setting>,
    warnings: Vec<String>,
    /// Nix's settings could not be listed: everything is forwarded.
    known_unlisted: bool,
}

/// The settings CMD's Nix gets (in `NIX_CONFIG`, the public ones also as `--option`), and what
/// to warn about. Pure.
fn forwarding(f: &ForwardFacts) -> Result<Forwarding> {
    let mut settings: Vec<Setting> = f
        .proxy_urls
        .iter()
        .map(|u| Setting::new("extra-substituters", u.clone(), true))
        .collect();
    if !f.s3_keys.is_empty() {
        settings.push(Setting::new(
            "extra-trusted-public-keys",
            f.s3_keys.join(" "),
            false,
        ));
    }
    if let Some(path) = &f.netrc_file {
        settings.push(Setting::new("netrc-file", path.clone(), false));
    }
    if !settings.is_empty() {
        settings.extend(f.builders.iter().cloned());
    }
    if let Some(pairs) = &f.builder_env {
        // impure-env is gated behind an experimental feature.
        settings.push(Setting::new(
            "extra-experimental-features",
            "configurable-impure-env",
            false,
        ));
        settings.push(Setting::new("impure-env", pairs.join(" "), true));
    }
    let mut out = Forwarding {
        settings: Vec::new(),
        warnings: Vec::new(),
        known_unlisted: false,
    };
    if settings.is_empty() {
        return Ok(out);
    }
    // Misses remembered from attempts without credentials must not block this one.
    settings.push(Setting::new("narinfo-cache-negative-ttl", "0", false));
    let Some(known) = f.known else {
        out.known_unlisted = true;
        out.settings = settings;
        return Ok(out);
    };
    let (keep, dropped) = forward::known_only(settings, known);
    if dropped.iter().any(|d| d == "impure-env") {
        bail!(
            "--builder-env needs Nix >= 2.19 with the experimental feature configurable-impure-env; the installed Nix{} does not know `impure-env`",
            f.version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default()
        );
    }
    out.settings = keep;
    out.warnings = dropped
        .iter()
        .map(|d| format!("the installed Nix does not know the setting {d}; not forwarded"))
        .collect();
    Ok(out)
}

/// `--cache` names (all must be recorded), or every recorded S3 or keyring cache; and the
/// `--push` caches.
fn selected_caches(args: &ExecArgs, cfg: &Config) -> Result<Vec<CacheEntry>> {
    let find = |name: &String| {
        cfg.find(name)?.ok_or_else(|| {
            crate::error::usage(format!(
                "no cache named {name:?} is recorded: see `nixstore-auth list`"
            ))
        })
    };
    let mut out: Vec<CacheEntry> = if args.caches.is_empty() {
        cfg.caches()?
            .into_iter()
            .filter(cache_plan::needs_exec)
            .collect()
    } else {
        args.caches.iter().map(find).collect::<Result<_>>()?
    };
    for name in &args.push {
        let c = find(name)?;
        if !out.iter().any(|o| o.name == c.name) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Whether `arg` (a `--push` name or URL) names the recorded cache `c`.
fn named(c: &CacheEntry, arg: &str, cfg: &Config) -> bool {
    cfg.find(arg)
        .ok()
        .flatten()
        .is_some_and(|f| f.name == c.name)
}

/// The user's own netrc entries (from the netrc-file their nix.conf names) plus the keyring
/// tokens.
fn ephemeral_netrc(
    store: &SecretStore,
    caches: &[&CacheEntry],
    ui: &Ui,
) -> Result<Zeroizing<String>> {
    let own = crate::fs::read_optional(&setup::user_conf()?)
        .ok()
        .flatten()
        .and_then(|t| NixConf::parse(&t).ok())
        .and_then(|c| c.get("netrc-file"))
        .and_then(|p| {
            crate::fs::read_optional(std::path::Path::new(&p))
                .ok()
                .flatten()
        })
        .unwrap_or_default();
    let mut netrc = Netrc::parse(&own).unwrap_or_else(|e| {
        ui.warn(format!(
            "your netrc file cannot be read ({e}); using only the keyring tokens"
        ));
        Netrc::default()
    });
    for c in caches {
        let Some(machine) = c.kind.netrc_machine() else {
            continue;
        };
        match store.get(&crate::secret::Account::CacheToken(&c.name).to_string())? {
            Some(token) => {
                // What `use` and `secret set` store passes; anything else was put there by hand.
                let token = Token::new(token).with_context(|| {
                    format!("cache {}: the token in {}", c.name, store.describe())
                })?;
                netrc
                    .upsert(&machine, &c.login, token.as_str())
                    .map_err(|e| anyhow::anyhow!("cache {}: {e}", c.name))?;
            }
            None => ui.warn(format!(
                "no token for cache {} in {}; set one with `nixstore-auth secret set {}`",
                c.name,
                store.describe(),
                c.name
            )),
        }
    }
    Ok(Zeroizing::new(netrc.to_text()))
}

/// An untrusted user's forwarded substituters reach the daemon only when the administrator
/// listed them in `trusted-substituters`: say so up front instead of letting Nix print
/// "ignoring untrusted substituter" deep in its output.
fn warn_if_daemon_ignores(settings: &[Setting], setup: &setup::NixSetup, ui: &Ui) {
    if setup.user_settings_honoured() {
        return;
    }
    let trusted = setup.system.list("trusted-substituters");
    let ignored = settings
        .iter()
        .filter(|s| s.name == "extra-substituters")
        .any(|s| !trusted.iter().any(|t| crate::cache::same_url(t, &s.value)));
    // The URL may be listed in a file only root reads (the administrator keeps it out of
    // world-readable files): then the client cannot tell, and a warning would be wrong.
    if ignored && !setup.system.unreadable.is_empty() {
        ui.debug(format!(
            "cannot check whether the nix-daemon accepts the proxy's URL: {} is readable only by root",
            setup
                .system
                .unreadable
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else if ignored {
        ui.warn(
            "the nix-daemon does not trust you and will ignore the proxy's URL; `nixstore-auth use CACHE --mode print` shows what your administrator can add",
        );
    }
}

/// After a failed command: if the proxy could not authenticate, say so (Nix itself only saw a
/// 503 and reports a missing path).
fn explain_proxy_failure(layout: &proxy::Layout, ui: &Ui) {
    let Ok(Some(status)) = proxy::status(layout) else {
        return;
    };
    for m in status.mounts {
        if m.session == "expired" || m.session == "refused" || m.session == "none" {
            ui.warn(format!(
                "the S3 proxy could not use your AWS session for cache {} (session {}): run `nixstore-auth login` and try again",
                m.name, m.session
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_settings_follow_caches_builder_env_and_what_nix_knows() {
        let urls = ["http://127.0.0.1:1/SECRET/bkt".to_string()];
        let old: BTreeSet<String> = [
            "substituters",
            "trusted-public-keys",
            "netrc-file",
            "narinfo-cache-negative-ttl",
            "experimental-features",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut new = old.clone();
        new.insert("impure-env".into());
        fn facts<'a>(
            urls: &'a [String],
            keys: &[&str],
            netrc: bool,
            builder: bool,
            known: Option<&'a BTreeSet<String>>,
        ) -> ForwardFacts<'a> {
            ForwardFacts {
                proxy_urls: urls,
                s3_keys: keys.iter().map(|k| k.to_string()).collect(),
                netrc_file: netrc.then(|| "/run/user/1/nixstore-auth/netrc".to_string()),
                builders: Vec::new(),
                builder_env: builder.then(|| vec!["AWS_ACCESS_KEY_ID=AKIA".to_string()]),
                known,
                version: Some("2.8.0".into()),
            }
        }
        let urls = &urls[..];
        let names = |f: &Forwarding| -> Vec<(String, bool)> {
            f.settings
                .iter()
                .map(|s| (s.name.clone(), s.secret))
                .collect()
        };
        let s = |n: &str, secret: bool| (n.to_string(), secret);
        // (facts, settings by name and secrecy, warnings, unlisted) or an error.
        type Want = std::result::Result<(Vec<(String, bool)>, usize, bool), &'static str>;
        let table: Vec<(ForwardFacts, Want)> = vec![
            (
                facts(&[], &[], false, false, Some(&old)),
                Ok((vec![], 0, false)),
            ),
            (
                facts(urls, &["k-1:x"], false, false, Some(&old)),
                Ok((
                    vec![
                        s("extra-substituters", true),
                        s("extra-trusted-public-keys", false),
                        s("narinfo-cache-negative-ttl", false),
                    ],
                    0,
                    false,
                )),
            ),
            (
                facts(&[], &[], true, false, Some(&old)),
                Ok((
                    vec![
                        s("netrc-file", false),
                        s("narinfo-cache-negative-ttl", false),
                    ],
                    0,
                    false,
                )),
            ),
            // Nix cannot list its settings: all go, unfiltered.
            (
                facts(urls, &[], true, false, None),
                Ok((
                    vec![
                        s("extra-substituters", true),
                        s("netrc-file", false),
                        s("narinfo-cache-negative-ttl", false),
                    ],
                    0,
                    true,
                )),
            ),
            (
                facts(urls, &[], false, true, Some(&new)),
                Ok((
                    vec![
                        s("extra-substituters", true),
                        s("extra-experimental-features", false),
                        s("impure-env", true),
                        s("narinfo-cache-negative-ttl", false),
                    ],
                    0,
                    false,
                )),
            ),
            (
                facts(urls, &[], false, true, Some(&old)),
                Err("does not know `impure-env`"),
            ),
        ];
        for (f, want) in table {
            match (forwarding(&f), want) {
                (Ok(got), Ok((settings, warnings, unlisted))) => {
                    assert_eq!(names(&got), settings);
                    assert_eq!(got.warnings.len(), warnings);
                    assert_eq!(got.known_unlisted, unlisted);
                }
                (Err(e), Err(needle)) => assert!(format!("{e:#}").contains(needle), "{e:#}"),
                (got, want) => panic!("got {got:?}, want {want:?}"),
            }
        }
        // A setting this Nix does not know is dropped with a warning.
        let mut no_ttl = old.clone();
        no_ttl.remove("narinfo-cache-negative-ttl");
        let got = forwarding(&facts(&[], &[], true, false, Some(&no_ttl))).unwrap();
        assert_eq!(names(&got), vec![s("netrc-file", false)]);
        assert_eq!(
            got.warnings,
            vec![
                "the installed Nix does not know the setting narinfo-cache-negative-ttl; not forwarded"
            ]
        );
    }
}
