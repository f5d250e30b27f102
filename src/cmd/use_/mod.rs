//! `use`: configure Nix for a cache (substituter, keys, credential), cachix-style but safely.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use super::{Run, UseArgs};
use crate::cache::{self, CacheKind};
use crate::config::{CacheEntry, Config, DEFAULT_LOGIN, Dirs, SecretStore};
use crate::error::EXIT_NEEDS_ADMIN;
use crate::nix::conf::NixConf;
use crate::nix::credential_plan::{self, TokenSource};
use crate::nix::netrc::Netrc;
use crate::nix::setup::{self, NixSetup, ProbeCache};
use crate::nix::snippet::{NetrcHint, PrivateFile, Snippet};
use crate::nix::target::{self, Target};
use crate::plan::Plan;
use crate::secret::Token;
use crate::ui::{self, Ui};

mod cloud;
mod https;
mod s3;

use https::use_https;
use s3::use_s3;

impl Run for UseArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let config_path = dirs.config_file();
        let config = Config::load(&config_path)?;
        let (kind, recorded) = resolve_cache(&config, &self.cache)?;
        let name = match (&self.name, &recorded) {
            (Some(n), _) => n.clone(),
            (None, Some(r)) => r.name.clone(),
            (None, None) => kind.default_name(),
        };
        cache::validate_name(&name)?;
        if let Some(other) = config.cache(&name)?
            && !crate::config::same_cache(&other.kind, &kind)
        {
            return Err(crate::ui::error_with_help(
                format!(
                    "a different cache is already recorded as {name:?} ({})",
                    other.kind.url()
                ),
                "choose another name with --name",
            ));
        }
        let mut public_keys = recorded
            .as_ref()
            .map(|r| r.public_keys.clone())
            .unwrap_or_default();
        for k in &self.public_keys {
            cache::validate_public_key(k)?;
            if !public_keys.contains(k) {
                public_keys.push(k.clone());
            }
        }
        if let CacheKind::Https { url } = &kind
            && url.scheme() == "http"
        {
            ui.warn(format!(
                "{} is plain HTTP: the token crosses the network unencrypted; prefer https://",
                kind.url()
            ));
        }
        let (https, secret_store) = https::settings(&self, &kind, recorded.as_ref())?;
        let entry = CacheEntry {
            name,
            kind,
            public_keys,
            // Re-running `use` (a migration, a new token) without --login keeps the login the
            // cache was set up with: the server checks it together with the token.
            login: self
                .login
                .clone()
                .or_else(|| recorded.as_ref().map(|r| r.login.clone()))
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| DEFAULT_LOGIN.to_string()),
            secret_store,
            nix_conf: None,
            netrc: None,
            added_netrc_line: false,
            https,
            has_token: recorded.as_ref().is_some_and(|r| r.has_token),
        };
        // Checked now, not when netrc is written: a keyring cache records it for `exec`.
        cache::validate_login(&entry.login)?;
        if entry.secret_store == SecretStore::Keyring && matches!(entry.kind, CacheKind::S3(_)) {
            bail!(
                "--secret-store applies to HTTPS caches; S3 caches use your AWS session (see `nixstore-auth aws add-key`)"
            );
        }
        // The signing key is checked before anything is written.
        let signing = match &self.secret_key {
            Some(p) => {
                let (path, info) = crate::push::signing::recordable(p)?;
                if let Some(w) =
                    crate::push::signing::mismatch_warning(&info, &entry.name, &entry.public_keys)
                {
                    ui.warn(w);
                }
                Some(path)
            }
            None => None,
        };
        let name = entry.name.clone();
        let code = match entry.kind {
            CacheKind::Https { .. } => {
                let was_keyring = recorded
                    .as_ref()
                    .is_some_and(|r| r.secret_store == SecretStore::Keyring);
                use_https(&self, entry, was_keyring, &config_path, ui)?
            }
            CacheKind::S3(_) => {
                let layout = crate::proxy::Layout::new(&dirs, &config)?;
                use_s3(&self, entry, &config_path, &layout, ui)?
            }
            CacheKind::Gcs(_) | CacheKind::Azure(_) => {
                let layout = crate::proxy::Layout::new(&dirs, &config)?;
                cloud::use_cloud(&self, entry, &config_path, &layout, ui)?
            }
        };
        if let Some(path) = signing
            && !self.edit.dry_run
        {
            record_signing_key(&config_path, &name, path, ui)?;
        }
        Ok(code)
    }
}

/// `use --secret-key FILE`: records where the cache's signing key is (its path, not the key).
fn record_signing_key(config_path: &Path, name: &str, key: PathBuf, ui: &Ui) -> Result<()> {
    let path = config_path.to_path_buf();
    let (name, shown) = (name.to_string(), key.display().to_string());
    let recorded = std::cell::Cell::new(false);
    let mut plan = Plan::new();
    plan.edit(config_path, 0o600, false, |text| {
        let mut cfg = Config::parse(text, &path)?;
        let key = crate::config::SigningKey::File(key.clone());
        recorded.set(cfg.set_signing_key(&name, Some(&key))?);
        Ok(cfg.to_text())
    });
    plan.apply()?;
    if recorded.get() {
        ui.info(format!("uploads to this cache are signed with {shown}"));
    }
    Ok(())
}

/// Finds the cache named on the command line: a URL (maybe already recorded) or a recorded name.
pub(crate) fn resolve_cache(config: &Config, arg: &str) -> Result<(CacheKind, Option<CacheEntry>)> {
    if cache::looks_like_url(arg) {
        let kind = cache::parse_url(arg)?;
        let recorded = config.find(arg)?;
        return Ok((kind, recorded));
    }
    match config.cache(arg)? {
        Some(e) => Ok((e.kind.clone(), Some(e))),
        None => Err(config.unknown_cache(arg)),
    }
}

/// Adds the config.toml update to the plan. `netrc_line`: `Some(true)` when this run added the
/// `netrc-file` line, `Some(false)` when it removed it, `None` to keep what was recorded.
fn record(plan: &mut Plan<'_>, config_path: &Path, entry: &CacheEntry, netrc_line: Option<bool>) {
    let entry = entry.clone();
    let path = config_path.to_path_buf();
    plan.edit(config_path, 0o600, false, move |text| {
        let mut cfg = Config::parse(text, &path)?;
        let mut e = entry.clone();
        if let Some(old) = cfg.cache(&e.name)? {
            // A later `use` without a token keeps what the first one recorded.
            e.has_token |= old.has_token;
            e.added_netrc_line |= old.added_netrc_line;
        }
        if let Some(added) = netrc_line {
            e.added_netrc_line = added;
        }
        cfg.upsert_cache(&e)?;
        Ok(cfg.to_text())
    });
}

fn read_token(args: &UseArgs, machine: &str, existing: bool) -> Result<Option<Token>> {
    if args.no_token {
        return Ok(None);
    }
    if args.token_stdin {
        let mut buf = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("cannot read the token from standard input")?;
        let token = Zeroizing::new(buf.trim_end_matches(['\n', '\r']).to_string());
        if token.is_empty() {
            bail!("--token-stdin: standard input was empty");
        }
        return Token::new(token).map(Some);
    }
    if let Some(var) = &args.token_env {
        let value = std::env::var(var)
            .with_context(|| format!("--token-env {var}: the variable is not set"))?;
        if value.is_empty() {
            bail!("--token-env {var}: the variable is empty");
        }
        return Token::new(Zeroizing::new(value)).map(Some);
    }
    if ui::has_tty() {
        let term = console::Term::stderr();
        let token = dialoguer::Password::new()
            .with_prompt(format!(
                "Token for {machine} (empty if the cache needs none)"
            ))
            .allow_empty_password(true)
            .interact_on(&term)
            .context("cannot read the token from the terminal")?;
        let token = Zeroizing::new(token);
        if token.is_empty() {
            return Ok(None);
        }
        return Token::new(token).map(Some);
    }
    if existing {
        return Ok(None);
    }
    bail!(
        "no token given and no terminal to ask on: pipe it with --token-stdin, name a variable with --token-env VAR, or pass --no-token for a cache that needs none"
    )
}

fn confirm_hiding(args: &UseArgs, ui: &Ui, hidden: &Path) -> Result<()> {
    let msg = format!(
        "{} exists: a netrc-file in your nix.conf replaces it for your commands, so caches an administrator set up there lose their credentials for you",
        hidden.display()
    );
    if args.edit.yes || args.edit.dry_run {
        ui.warn(msg);
        return Ok(());
    }
    if ui::has_tty() {
        ui.warn(&msg);
        let ok = dialoguer::Confirm::new()
            .with_prompt("Continue?")
            .default(false)
            .interact_on(&console::Term::stderr())
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        bail!("cancelled; nothing was changed");
    }
    bail!("{msg}. Pass --yes to accept, or --secret-store keyring to keep the token out of netrc")
}

fn report_includes(ui: &Ui, conf: &NixConf, path: &Path, url: &str) {
    for inc in conf.includes() {
        let target = path.parent().unwrap_or(Path::new("/")).join(&inc.path);
        let view = setup::load_view(&target);
        if view
            .list("substituters")
            .iter()
            .any(|s| crate::cache::same_url(s, url))
        {
            ui.info(format!(
                "{url} is already listed in {} (included from {}); that file is left alone",
                target.display(),
                path.display()
            ));
        }
    }
}

fn explain_untrusted(ui: &Ui, setup: &NixSetup, url: &str) {
    ui.warn(format!(
        "the nix-daemon does not trust user {:?}: it ignores substituters, keys and netrc files from your nix.conf. Nothing was written.",
        setup.user
    ));
    ui.info(format!(
        "An administrator can either allow this cache for everyone without trusting you (the lines below, in {}, then restart the nix-daemon; afterwards run this command again and it will add {url} to your own nix.conf), or add you to `trusted-users` (which makes you effectively root).",
        setup.system_conf.display()
    ));
}

/// What an administrator adds so that the daemon takes a cache from the user's proxy without
/// trusting the user (S3, and HTTPS on the proxy route): the proxy's URL, which holds its
/// secret, in a root-only file that the system nix.conf `!include`s; the keys in nix.conf.
fn proxy_admin_snippet(
    setup: &NixSetup,
    entry: &CacheEntry,
    proxy_url: &str,
) -> (Snippet, PathBuf) {
    let conf_dir = setup.system_conf.parent().unwrap_or(Path::new("/etc/nix"));
    let private = conf_dir.join(format!(
        "nixstore-auth-{}-{}.conf",
        crate::cache::sanitize_name(&setup.user),
        entry.name
    ));
    let mut snippet = Snippet {
        private: Some(PrivateFile {
            path: private.display().to_string(),
            settings: vec![(
                "extra-trusted-substituters".to_string(),
                vec![proxy_url.to_string()],
            )],
        }),
        ..Snippet::default()
    };
    snippet.push("extra-trusted-public-keys", entry.public_keys.clone());
    (snippet, private)
}

/// Warns that the snippet's URL holds the proxy's secret: `what` another user could do with it.
fn warn_proxy_url_secret(ui: &Ui, setup: &NixSetup, private: &Path, what: &str) {
    ui.warn(format!(
        "the URL below contains your proxy's secret: keep it in {} (root-only, 0600) as shown, never in {}, which is readable by every local user (who could then {what} through your proxy while it runs). Rotate it with `nixstore-auth proxy rotate-secret` if it leaks.",
        private.display(),
        setup.system_conf.display()
    ));
}

/// What an administrator (or the user with --mode print) must add.
fn https_snippet(entry: &CacheEntry, setup: &NixSetup, machine: &str, for_admin: bool) -> Snippet {
    let mut s = Snippet::default();
    let url = entry.kind.url();
    if for_admin {
        s.push("extra-trusted-substituters", vec![url]);
    } else {
        s.push("extra-substituters", vec![url]);
    }
    s.push("extra-trusted-public-keys", entry.public_keys.clone());
    let netrc = setup.system_netrc();
    s.netrc = Some(NetrcHint {
        file: netrc.display().to_string(),
        machine: machine.to_string(),
        login: entry.login.clone(),
    });
    s
}

fn after_system_write(args: &UseArgs, ui: &Ui) -> Result<()> {
    if !args.restart_daemon {
        ui.info("the nix-daemon reads nix.conf only when it starts: restart it (`systemctl restart nix-daemon`, or `--restart-daemon`)");
        return Ok(());
    }
    restart_daemon(ui)
}

pub(crate) fn restart_daemon(ui: &Ui) -> Result<()> {
    let status = if Path::new("/run/systemd/system").exists() {
        std::process::Command::new("systemctl")
            .args(["restart", "nix-daemon.service"])
            .status()
    } else if Path::new("/bin/launchctl").exists() {
        std::process::Command::new("/bin/launchctl")
            .args(["kickstart", "-k", "system/org.nixos.nix-daemon"])
            .status()
    } else {
        bail!("--restart-daemon: neither systemd nor launchd runs here; stop the nix-daemon and start it again yourself");
    }
    .context("cannot run the service manager")?;
    if !status.success() {
        bail!("restarting the nix-daemon failed ({status})");
    }
    ui.info("restarted the nix-daemon");
    Ok(())
}
