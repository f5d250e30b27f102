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
use zeroize::Zeroizing;

use super::{ExecArgs, Run, Via};
use crate::aws::session::{self, Session, SessionRequest};
use crate::cache_plan;
use crate::config::{CacheEntry, Config, Dirs};
use crate::ephemeral::EphemeralFile;
use crate::launch::Launch;
use crate::nix::conf::NixConf;
use crate::nix::forward::{self, Setting};
use crate::nix::netrc::Netrc;
use crate::nix::setup::{self, ProbeCache};
use crate::proxy;
use crate::refresh;
use crate::secret::{SecretStore, Token};
use crate::ui::Ui;

/// Set in the environment of every command `exec` runs.
pub const EXEC_MARKER: &str = "NIXSTORE_AUTH_EXEC";

impl Run for ExecArgs {
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
            return Ok(launch.replace());
        }
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        let caches = selected_caches(&self, &cfg)?;
        let plan = cache_plan::plan(&caches, self.profile.as_deref());
        if plan.is_empty() && self.push.is_empty() {
            return Ok(launch.replace());
        }
        let (s3, keyring) = (&plan.s3, &plan.keyring);

        // 1. AWS sessions, one per profile in play; prompts happen here, before anything starts.
        let mut sessions: Vec<(Option<String>, Session, SessionRequest)> = Vec::new();
        for profile in plan.profiles.clone() {
            let req = SessionRequest::new(
                profile.clone().or_else(|| self.profile.clone()),
                s3.first().map(|c| c.name.clone()),
            )
            .mfa_code(self.mfa_code.clone());
            let s = session::resolve(&req, session::Ctx::new(&cfg, &dirs), ui)?;
            ui.debug(format!(
                "session of profile {:?} from {}",
                s.profile.as_deref().unwrap_or("-"),
                s.origin.as_str()
            ));
            sessions.push((profile, s, req));
        }
        if let Some((_, s, _)) = sessions.first() {
            let delta = session::EnvDelta::for_session(s);
            launch.set.extend(delta.set);
            launch.unset = delta.unset.into_iter().map(String::from).collect();
        }

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

        let mut settings: Vec<Setting> = Vec::new();
        // 2. S3 caches through the proxy.
        let mut leases = Vec::new();
        if !s3.is_empty() {
            if self.via == Via::Env {
                bail!(
                    "--via env: no installed Nix has a setting that forwards environment variables to the nix-daemon; use --via proxy (the default picks it)"
                );
            }
            let layout = proxy::Layout::new(&dirs, &cfg)?;
            for (profile, group) in &plan.groups {
                let mounts: Vec<proxy::Mount> = group
                    .iter()
                    .map(|(name, s3)| proxy::Mount {
                        name: name.clone(),
                        s3: s3.clone(),
                    })
                    .collect();
                let (_, session, req) = sessions
                    .iter()
                    .find(|(p, _, _)| p == profile)
                    .or(sessions.first())
                    .expect("a session was resolved for every S3 profile");
                let lease = proxy::ensure_running_for(
                    &layout,
                    &session.credentials,
                    Some(refresh::info_of(session)),
                    &mounts,
                    ui,
                )?;
                for m in &mounts {
                    settings.push(Setting::new(
                        "extra-substituters",
                        lease.url_for(&m.name),
                        true,
                    ));
                }
                // Kept fresh while CMD runs (refresh.rs).
                let login = mounts[0].name.clone();
                leases.push(refresh::Kept::new(
                    lease,
                    req.clone(),
                    session.clone(),
                    login,
                ));
            }
            // A Nix client that opens the proxy's URL itself (single-user, `nix copy`)
            // records it, secret included, in its cache database: keep that private.
            if let Err(e) = crate::nix::client_cache::protect() {
                ui.warn(format!("{e:#}"));
            }
            if let Some(nix) = nix() {
                warn_if_daemon_ignores(&settings, nix, ui);
            }
            let keys: Vec<String> = s3.iter().flat_map(|c| c.public_keys.clone()).collect();
            if !keys.is_empty() {
                settings.push(Setting::new(
                    "extra-trusted-public-keys",
                    keys.join(" "),
                    false,
                ));
            }
        }

        // 3. HTTPS caches whose token lives in the keyring: an ephemeral netrc.
        let mut netrc_file = None;
        if !keyring.is_empty() {
            let store = SecretStore::open(&cfg, &dirs, ui)?;
            let text = ephemeral_netrc(&store, keyring, ui)?;
            let file = EphemeralFile::create(&dirs, "netrc", text.as_bytes())?;
            settings.push(Setting::new(
                "netrc-file",
                file.path().display().to_string(),
                false,
            ));
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
            netrc_file = Some(file);
        }

        // 4. Builders' environment (fixed-output derivations) through impure-env.
        if self.builder_env {
            let Some((_, s, _)) = sessions.first() else {
                bail!("--builder-env needs an AWS session: pass --profile or record an S3 cache");
            };
            let pairs: Vec<String> = session::EnvDelta::for_session(s)
                .set
                .into_iter()
                .filter(|(k, _)| k.starts_with("AWS_"))
                .map(|(k, v)| format!("{k}={}", v.as_str()))
                .collect();
            // impure-env is gated behind an experimental feature.
            settings.push(Setting::new(
                "extra-experimental-features",
                "configurable-impure-env",
                false,
            ));
            settings.push(Setting::new("impure-env", pairs.join(" "), true));
        }

        if !settings.is_empty() {
            // Remote builders: what the one decision (nix/forward.rs) forwards for them.
            let private = settings
                .iter()
                .any(|s| s.name == "extra-substituters" || s.name == "netrc-file");
            if let Some(nix) = nix().filter(|_| private) {
                let in_force = crate::nix::builders::for_command(nix, &launch.argv);
                let facts =
                    forward::BuilderFacts::new(true, nix.user_settings_honoured(), &in_force);
                let decision = forward::builder_decision(&facts);
                if decision != forward::BuilderDecision::NotInPlay {
                    ui.debug(decision.describe());
                }
                settings.extend(decision.settings());
            }
            // Misses remembered from attempts without credentials must not block this one.
            settings.push(Setting::new("narinfo-cache-negative-ttl", "0", false));
            let version = nix().and_then(|n| n.version);
            match nix().and_then(|n| n.known_settings.as_ref()) {
                Some(known) => {
                    let (keep, dropped) = forward::known_only(settings, known);
                    if dropped.iter().any(|d| d == "impure-env") {
                        bail!(
                            "--builder-env needs Nix >= 2.19 with the experimental feature configurable-impure-env; the installed Nix{} does not know `impure-env`",
                            version.map(|v| format!(" {v}")).unwrap_or_default()
                        );
                    }
                    for d in &dropped {
                        ui.warn(format!(
                            "the installed Nix does not know the setting {d}; not forwarded"
                        ));
                    }
                    settings = keep;
                }
                None => ui.debug("cannot list the settings Nix knows; forwarding all"),
            }
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
            Some(super::watch_store::start_for_exec(
                &targets,
                leases.first().map(|k| &k.lease),
                self.no_sign,
                &cfg,
                &dirs,
                ui,
            )?)
        };
        if leases.is_empty() && netrc_file.is_none() && pushing.is_none() {
            return Ok(launch.replace());
        }
        let ctx = session::Ctx::new(&cfg, &dirs);
        let code = refresh::while_running(&mut leases, ctx, ui, || launch.run_supervised());
        let code = match pushing {
            Some(p) => p.finish(code, self.push_strict, ui),
            None => code,
        };
        if code != 0 && !leases.is_empty() {
            explain_proxy_failure(&proxy::Layout::new(&dirs, &cfg)?, ui);
        }
        drop(netrc_file);
        drop(leases);
        Ok(code)
    }
}

/// `nixstore-auth exec -- CMD...` with no option at all, when no credential work can be needed
/// (no NIXSTORE_AUTH_AWS_PROFILE, no S3 or keyring cache recorded, or an outer exec already set
/// everything up): replace this process with CMD before clap builds the whole command tree,
/// which is most of our start-up time. `None` means "take the normal path" (any other argv, or
/// an unreadable config, which the normal path reports).
pub(super) fn fast_path() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "exec" || args.next()? != "--" {
        return None;
    }
    let argv: Vec<std::ffi::OsString> = args.collect();
    if argv.is_empty() || std::env::var_os("NIXSTORE_AUTH_AWS_PROFILE").is_some() {
        return None;
    }
    let mut launch = Launch::new(argv);
    launch
        .set
        .push((EXEC_MARKER.into(), Zeroizing::new("1".into())));
    if std::env::var_os(EXEC_MARKER).is_none() {
        let dirs = Dirs::new().ok()?;
        let cfg = Config::load(&dirs.config_file()).ok()?;
        let needs_work = cfg.caches().ok()?.iter().any(cache_plan::needs_exec);
        if needs_work {
            return None;
        }
    }
    Some(launch.replace())
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
