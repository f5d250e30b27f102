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
            secret_store: self.secret_store,
            nix_conf: None,
            netrc: None,
            added_netrc_line: false,
            has_token: recorded.as_ref().is_some_and(|r| r.has_token),
        };
        // Checked now, not when netrc is written: a keyring cache records it for `exec`.
        cache::validate_login(&entry.login)?;
        if entry.secret_store == SecretStore::Keyring && matches!(entry.kind, CacheKind::S3(_)) {
            bail!(
                "--secret-store applies to HTTPS caches; S3 caches use your AWS session (see `nixstore-auth aws add-key`)"
            );
        }
        match entry.kind {
            CacheKind::Https { .. } => {
                let was_keyring = recorded
                    .as_ref()
                    .is_some_and(|r| r.secret_store == SecretStore::Keyring);
                use_https(&self, entry, was_keyring, &config_path, ui)
            }
            CacheKind::S3(_) => {
                let layout = crate::proxy::Layout::new(&dirs, &config)?;
                use_s3(&self, entry, &config_path, &layout, ui)
            }
        }
    }
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

fn use_https(
    args: &UseArgs,
    mut entry: CacheEntry,
    recorded_keyring: bool,
    config_path: &Path,
    ui: &Ui,
) -> Result<i32> {
    let url = entry.kind.url();
    let machine = entry
        .kind
        .netrc_machine()
        .context("the cache URL has no host")?;
    let setup = setup::probe(ProbeCache::ReadOnly)?;
    ui.debug(format!(
        "nix {}; daemon: {}; root: {}; trust: {:?}; user file {}; system file {}",
        setup
            .version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "not found".into()),
        setup.daemon,
        setup.is_root,
        setup.trust,
        setup.user_conf.display(),
        setup.system_conf.display()
    ));
    let target = target::decide(args.edit.mode, &setup, &url, args.edit.nix_conf.as_ref());
    let (conf_path, system, substituter_only) = match target {
        Target::Print => {
            ui.out(format_args!(
                "{}",
                https_snippet(&entry, &setup, &machine, false).render(args.format)
            ))?;
            return Ok(0);
        }
        Target::NixosModule => {
            ui.warn(format!(
                "{} is generated by NixOS; add this to your configuration instead:",
                setup.system_conf.display()
            ));
            ui.out(format_args!(
                "{}",
                https_snippet(&entry, &setup, &machine, false).render(args.format.on_nixos(true))
            ))?;
            return Ok(EXIT_NEEDS_ADMIN);
        }
        Target::NeedsAdmin => {
            explain_untrusted(ui, &setup, &url);
            ui.out(format_args!(
                "{}",
                https_snippet(&entry, &setup, &machine, true).render(args.format)
            ))?;
            return Ok(EXIT_NEEDS_ADMIN);
        }
        Target::Write { conf, system } => (conf, system, false),
        Target::SubstituterOnly { conf } => (conf, false, true),
    };
    if let Some(why) = crate::fs::edit_blocker(&conf_path) {
        ui.warn(format!("cannot edit {}: {why}", conf_path.display()));
        ui.info("Add this to the configuration that generates it:");
        ui.out(format_args!(
            "{}",
            https_snippet(&entry, &setup, &machine, false)
                .render(args.format.on_nixos(setup.nixos))
        ))?;
        return Ok(EXIT_NEEDS_ADMIN);
    }
    let conf_text = crate::fs::read_optional(&conf_path)?.unwrap_or_default();
    let conf =
        NixConf::parse(&conf_text).map_err(|e| anyhow::anyhow!("{}: {e}", conf_path.display()))?;
    report_includes(ui, &conf, &conf_path, &url);

    // Which netrc file Nix will read, and whether nix.conf must point to it.
    let system_netrc = setup.system_netrc();
    let configured = conf.get("netrc-file").map(PathBuf::from);
    let target = credential_plan::netrc_target(credential_plan::NetrcFacts {
        substituter_only,
        system,
        system_netrc: &system_netrc,
        conf_path: &conf_path,
        configured: configured.as_deref(),
        wanted: args.edit.netrc.as_deref(),
    })?;
    let netrc_path = target.path;

    let existing: Option<Zeroizing<String>> = netrc_path
        .as_deref()
        .and_then(|p| crate::nix::read_netrc(p).ok().flatten())
        .and_then(|n| n.password(&machine));
    let keyring = entry.secret_store == SecretStore::Keyring;
    // A token kept in the keyring so far (a cache moving back to netrc takes it along).
    let config = Config::load(config_path)?;
    let store = if keyring || recorded_keyring {
        Some(crate::secret::SecretStore::open(
            &config,
            &Dirs::new()?,
            ui,
        )?)
    } else {
        None
    };
    let account = crate::secret::Account::CacheToken(&entry.name).to_string();
    let in_keyring = match &store {
        Some(st) if recorded_keyring => st.get(&account)?,
        _ => None,
    };
    let given = if netrc_path.is_some() || keyring {
        read_token(args, &machine, existing.is_some() || in_keyring.is_some())?
    } else {
        None
    };
    let tp = credential_plan::token_plan(credential_plan::TokenFacts {
        keyring,
        recorded_keyring,
        given: given.is_some(),
        in_netrc: existing.is_some(),
        in_keyring: in_keyring.is_some(),
        netrc_file: netrc_path.is_some(),
    });
    // A moved token must pass the same rule as a given one, or `exec` would refuse it later.
    let token = match tp.source {
        Some(TokenSource::Given) => given,
        Some(TokenSource::FromNetrc) => Some(
            Token::new(existing.clone().unwrap_or_default())
                .context("cannot move the netrc entry's token into the keyring")?,
        ),
        Some(TokenSource::FromKeyring) => Some(
            Token::new(in_keyring.clone().unwrap_or_default())
                .context("cannot move the keyring's token into netrc")?,
        ),
        None => None,
    };
    let netrc_line = target.line.filter(|_| tp.keep_netrc_line);
    if netrc_line.is_some() && !system && system_netrc.exists() {
        confirm_hiding(args, ui, &system_netrc)?;
    }

    // Moving the last token out of a netrc whose `netrc-file` line `use` added: the line goes
    // too, or it would keep hiding /etc/nix/netrc for nothing.
    let drop_netrc_line = match &netrc_path {
        Some(path) if tp.remove_netrc_entry => {
            let ours = config
                .cache(&entry.name)?
                .is_some_and(|c| c.added_netrc_line);
            let shared = config
                .caches()?
                .iter()
                .any(|c| c.name != entry.name && c.netrc.as_ref() == Some(path));
            let emptied = crate::nix::read_netrc(path)?.is_some_and(|mut n| {
                n.remove(&machine);
                n.entries().is_empty()
            });
            credential_plan::drop_netrc_line(&tp, ours, shared, emptied)
        }
        _ => false,
    };
    let mut plan = Plan::new();
    {
        let url = url.clone();
        let dropped = netrc_path.clone().filter(|_| drop_netrc_line);
        let keys = if substituter_only {
            Vec::new()
        } else {
            entry.public_keys.clone()
        };
        let netrc_line = netrc_line.clone();
        plan.edit(&conf_path, 0o644, false, move |text| {
            let mut c = NixConf::parse(text)?;
            c.add_value("substituters", &url)?;
            for k in &keys {
                c.add_value("trusted-public-keys", k)?;
            }
            if let Some(p) = &netrc_line {
                c.set("netrc-file", &p.display().to_string())?;
            }
            if let Some(p) = &dropped
                && c.get("netrc-file").map(PathBuf::from).as_ref() == Some(p)
            {
                c.unset("netrc-file");
            }
            Ok(c.to_text())
        });
    }
    if let (Some(path), Some(token), true) = (&netrc_path, &token, tp.write_netrc) {
        let machine = machine.clone();
        let login = entry.login.clone();
        let token = token.clone();
        plan.edit(path, 0o600, true, move |text| {
            let mut n = Netrc::parse(text)?;
            n.upsert(&machine, &login, token.as_str())?;
            Ok(n.to_text())
        });
    }
    if let (Some(path), true) = (&netrc_path, tp.remove_netrc_entry) {
        let machine = machine.clone();
        plan.edit(path, 0o600, true, move |text| {
            let mut n = Netrc::parse(text)?;
            n.remove(&machine);
            Ok(n.to_text())
        });
    }
    entry.nix_conf = Some(conf_path.clone());
    entry.netrc = netrc_path.clone().filter(|_| tp.keep_netrc_line);
    entry.has_token = tp.has_token;
    let netrc_line_change = if drop_netrc_line {
        Some(false)
    } else {
        netrc_line.is_some().then_some(true)
    };
    record(&mut plan, config_path, &entry, netrc_line_change);

    if args.edit.dry_run {
        ui.out(format_args!("{}", plan.preview()?))?;
        if tp.store_in_keyring {
            ui.info(format!(
                "would store the token for {machine} in the keyring"
            ));
        }
        ui.info("dry run: nothing was changed");
        return Ok(0);
    }
    // The secret goes first: if the keyring refuses it, no file has changed yet.
    if let (Some(st), Some(t), true) = (&store, &token, tp.store_in_keyring) {
        st.set(&account, t.as_str())?;
        ui.info(format!(
            "stored the token for {machine} in {}",
            st.describe()
        ));
    }
    let changed = plan.apply()?;
    if let (Some(st), true) = (&store, tp.delete_from_keyring) {
        st.delete(&account)?;
    }
    if let (true, Some(st)) = (tp.remove_netrc_entry, &store) {
        ui.info(format!(
            "moved the token for {machine} out of the plaintext netrc into {}",
            st.describe()
        ));
    }
    if keyring {
        ui.info("plain `nix` cannot read the keyring: run Nix through `nixstore-auth exec -- nix ...` or the shell wrappers (`nixstore-auth shell-init`)");
    }
    if changed.is_empty() {
        ui.info(format!(
            "{} is already configured for {url}; nothing changed",
            conf_path.display()
        ));
    } else {
        for p in &changed {
            ui.info(format!("updated {}", p.display()));
        }
    }
    if substituter_only {
        ui.info(format!(
            "your administrator lists {url} as a trusted substituter; its key and credential come from the daemon's own configuration"
        ));
    }
    if system && !changed.is_empty() {
        after_system_write(args, ui)?;
    }
    if !system && !setup.user_settings_honoured() && !substituter_only {
        ui.warn("the nix-daemon does not trust you: settings in your own nix.conf will not reach it (see `nixstore-auth doctor`)");
    }
    Ok(0)
}

fn use_s3(
    args: &UseArgs,
    mut entry: CacheEntry,
    config_path: &Path,
    layout: &crate::proxy::Layout,
    ui: &Ui,
) -> Result<i32> {
    if args.token_stdin || args.token_env.is_some() {
        bail!(
            "S3 caches take no token: credentials come from your AWS session (see `nixstore-auth login`)"
        );
    }
    let setup = setup::probe(ProbeCache::ReadOnly)?;
    let url = entry.kind.url();
    // The daemon sees the proxy's stable URL, not the s3:// one.
    let proxy_url = crate::proxy::stable_url_for(layout, &entry.name)?;
    let target = target::decide(
        args.edit.mode,
        &setup,
        &proxy_url,
        args.edit.nix_conf.as_ref(),
    );
    let mut plan = Plan::new();
    match target {
        Target::Write { conf, .. } if !entry.public_keys.is_empty() => {
            if let Some(why) = crate::fs::edit_blocker(&conf) {
                bail!("cannot edit {}: {why}", conf.display());
            }
            let keys = entry.public_keys.clone();
            plan.edit(&conf, 0o644, false, move |text| {
                let mut c = NixConf::parse(text)?;
                for k in &keys {
                    c.add_value("trusted-public-keys", k)?;
                }
                Ok(c.to_text())
            });
            entry.nix_conf = Some(conf);
        }
        Target::Write { .. } | Target::SubstituterOnly { .. } => {}
        Target::Print | Target::NeedsAdmin | Target::NixosModule => {
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
                        vec![proxy_url.clone()],
                    )],
                }),
                ..Snippet::default()
            };
            snippet.push("extra-trusted-public-keys", entry.public_keys.clone());
            let format = args.format.on_nixos(target == Target::NixosModule);
            if target == Target::NeedsAdmin && daemon_uses_proxy(layout, &entry.name) {
                // Listed in a file we cannot read, and the running proxy has seen the daemon.
                ui.info(format!(
                    "the nix-daemon already fetches {url} through your proxy's URL (an administrator listed it in a file only root reads)"
                ));
                record(&mut plan, config_path, &entry, None);
                if !args.edit.dry_run {
                    plan.apply()?;
                }
                return Ok(0);
            }
            if target == Target::NeedsAdmin {
                // Not explain_untrusted: for S3 the cache is recorded, and no later `use`
                // edits the user's nix.conf (exec forwards the URL).
                ui.warn(format!(
                    "the nix-daemon does not trust user {:?}: it ignores the substituters that `exec` forwards to it",
                    setup.user
                ));
                let recorded = if args.edit.dry_run {
                    "dry run: the cache was not recorded"
                } else {
                    "the cache is recorded"
                };
                ui.info(format!(
                    "{recorded}. An administrator can either allow your proxy's URL without trusting you (the lines below, then restart the nix-daemon; afterwards `nixstore-auth exec -- nix build ...` substitutes from it), or add you to `trusted-users` (which makes you effectively root).",
                ));
                if !setup.system.unreadable.is_empty() {
                    ui.info(format!(
                        "{} cannot be read by you, so whether it already lists your proxy's URL cannot be checked from here; after a first `nixstore-auth exec`, `nixstore-auth doctor {}` tells",
                        setup.system.unreadable.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                        entry.name
                    ));
                }
            }
            ui.warn(format!(
                "the URL below contains your proxy's secret: keep it in {} (root-only, 0600) as shown, never in {}, which is readable by every local user (who could then read the bucket through your proxy while it runs). Rotate it with `nixstore-auth proxy rotate-secret` if it leaks.",
                private.display(),
                setup.system_conf.display()
            ));
            ui.out(format_args!("{}", snippet.render(format)))?;
            if target != Target::Print {
                // Record the cache anyway so that `exec` serves it once the administrator acted.
                record(&mut plan, config_path, &entry, None);
                if !args.edit.dry_run {
                    plan.apply()?;
                }
                return Ok(EXIT_NEEDS_ADMIN);
            }
            return Ok(0);
        }
    }
    record(&mut plan, config_path, &entry, None);
    if args.edit.dry_run {
        ui.out(format_args!("{}", plan.preview()?))?;
        ui.info("dry run: nothing was changed");
        return Ok(0);
    }
    for p in plan.apply()? {
        ui.info(format!("updated {}", p.display()));
    }
    ui.info(format!(
        "recorded {} as {:?}. No s3:// substituter was added to nix.conf: the nix-daemon cannot sign requests with your session. Run Nix through `nixstore-auth exec -- nix build ...` (or `eval \"$(nixstore-auth shell-init bash)\"`) to use it.",
        url, entry.name
    ));
    Ok(0)
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
        cfg.upsert_cache(&e);
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

/// Whether the running proxy has seen root (the nix-daemon) fetch this cache through its URL.
fn daemon_uses_proxy(layout: &crate::proxy::Layout, name: &str) -> bool {
    crate::proxy::status(layout)
        .ok()
        .flatten()
        .is_some_and(|st| st.mounts.iter().any(|m| m.name == name && m.daemon_used))
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
