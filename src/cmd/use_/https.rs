//! `use` for an HTTPS cache: substituter, keys and the token in netrc or the keyring.
//! Gather ([`gather`]: the Nix setup, nix.conf, netrc, keyring, the token) → decide
//! ([`decide`], pure, table-tested) → apply ([`apply`]: one plan of file edits, the keyring).

use super::*;
use crate::config::HttpsSettings;
use crate::error::usage;
use crate::nix::credential_plan::{NetrcTarget, TokenPlan};
use crate::nix::https_route::{self, Route, RouteChoice, Why};

/// The HTTPS settings `use` records (flags over what was recorded) and the secret store, with
/// the contradictions `https_route::check_flags` names as usage errors.
pub(super) fn settings(
    args: &UseArgs,
    kind: &CacheKind,
    recorded: Option<&CacheEntry>,
) -> Result<(HttpsSettings, SecretStore)> {
    let typed = args.route.is_some()
        || args.auth.is_some()
        || args.token_command.is_some()
        || args.ca_file.is_some();
    if kind.is_object_store() {
        if typed {
            return Err(usage(
                "--route, --auth, --token-command and --ca-file apply to HTTPS caches",
            ));
        }
        return Ok((
            HttpsSettings::default(),
            args.secret_store.unwrap_or_default(),
        ));
    }
    let old = recorded.map(|r| r.https.clone()).unwrap_or_default();
    if let Some(line) = &args.token_command {
        crate::token_command::split(line).map_err(|e| usage(format!("--token-command: {e:#}")))?;
    }
    // A token given now replaces a recorded command, and --no-token both.
    let token_command = if args.token_stdin || args.token_env.is_some() || args.no_token {
        None
    } else {
        args.token_command.clone().or(old.token_command)
    };
    let auth = args.auth.unwrap_or(old.auth);
    let route = args.route.unwrap_or(old.route);
    https_route::check_flags(https_route::Flags {
        route: Some(route),
        auth: Some(auth),
        token_command: token_command.is_some(),
        login: args.login.is_some(),
        netrc_store: args.secret_store == Some(SecretStore::Netrc),
    })
    .map_err(|e| usage(e.to_string()))?;
    let ca_file = match &args.ca_file {
        Some(p) => {
            let p = std::path::absolute(p).with_context(|| format!("--ca-file {}", p.display()))?;
            crate::config::check_ca_file(&p).map_err(|e| usage(format!("--ca-file: {e:#}")))?;
            // Read now, so that a wrong file fails here and not in the proxy.
            crate::proxy::https_rules::tls_config(std::slice::from_ref(&p)).context("--ca-file")?;
            Some(p)
        }
        None => old.ca_file,
    };
    // A token that must not be in a netrc lives in the keyring unless asked otherwise (which
    // check_flags refused above).
    let proxy_bound =
        route == RouteChoice::Proxy || auth == https_route::Auth::Bearer || token_command.is_some();
    let store = args.secret_store.unwrap_or(if proxy_bound {
        SecretStore::Keyring
    } else {
        SecretStore::Netrc
    });
    Ok((
        HttpsSettings {
            route,
            auth,
            token_command,
            ca_file,
            token_ttl: old.token_ttl,
        },
        store,
    ))
}

pub(super) fn use_https(
    args: &UseArgs,
    entry: CacheEntry,
    recorded_keyring: bool,
    config_path: &Path,
    ui: &Ui,
) -> Result<i32> {
    let g = match gather(args, &entry, recorded_keyring, config_path, ui)? {
        Gathered::Done(code) => return Ok(code),
        Gathered::Facts(g) => *g,
    };
    let d = decide(&g.decide_facts())?;
    ui.debug(format!(
        "route {}: {}",
        g.route.as_str(),
        g.why.text(g.route)
    ));
    if d.netrc_line.is_some() && !g.system && g.system_netrc.exists() {
        confirm_hiding(args, ui, &g.system_netrc)?;
    }
    apply(args, entry, &g, d, config_path, ui)
}

/// What `use` learnt before deciding; `Done` when it printed a snippet instead.
enum Gathered {
    Done(i32),
    Facts(Box<Facts>),
}

struct Facts {
    setup: NixSetup,
    url: String,
    machine: String,
    conf_path: PathBuf,
    /// Writing the system nix.conf (root).
    system: bool,
    /// The administrator lists the cache as a trusted substituter.
    substituter_only: bool,
    system_netrc: PathBuf,
    target: NetrcTarget,
    keyring: bool,
    recorded_keyring: bool,
    /// The netrc entry's token for the machine, if any.
    existing: Option<Zeroizing<String>>,
    store: Option<crate::secret::SecretStore>,
    account: String,
    /// The keyring's token (looked up when it held the token so far).
    in_keyring: Option<Zeroizing<String>>,
    given: Option<Token>,
    /// `use` added the `netrc-file` line for this cache; another cache uses the same netrc;
    /// the netrc would be empty without this machine's entry.
    ours: bool,
    shared: bool,
    emptied: bool,
    /// The route the daemon takes to the cache, and why.
    route: Route,
    why: Why,
    /// The token comes from a command.
    command: bool,
    /// An untrusted user on the proxy route: the administrator must list the proxy's URL.
    admin: bool,
}

/// Whether an untrusted user's cache takes the proxy route (assuming it has a token: one
/// without takes no credential route at all).
fn proxy_route_untrusted(entry: &CacheEntry) -> Result<bool> {
    let (route, _) = https_route::route(https_route::RouteFacts {
        asked: entry.https.route,
        auth: entry.https.auth,
        command: entry.https.token_command.is_some(),
        keyring: entry.secret_store == SecretStore::Keyring,
        token: true,
        service: crate::proxy::https_rules::service_installed(&Dirs::new()?),
    });
    Ok(route == Route::Proxy)
}

/// An untrusted user's cache on the proxy route, recorded: what the administrator adds (the
/// proxy's URL in a root-only file, as for S3). Exit 3.
fn print_admin_snippet(args: &UseArgs, entry: &CacheEntry, g: &Facts, ui: &Ui) -> Result<i32> {
    let dirs = Dirs::new()?;
    let cfg = Config::load(&dirs.config_file())?;
    let layout = crate::proxy::Layout::new(&dirs, &cfg)?;
    let proxy_url = crate::proxy::stable_url_for(&layout, &entry.name)?;
    ui.warn(format!(
        "the nix-daemon does not trust user {:?}: it ignores the substituters that `exec` forwards to it",
        g.setup.user
    ));
    ui.info("the cache is recorded. An administrator can either allow your proxy's URL without trusting you (the lines below, then restart the nix-daemon; afterwards `nixstore-auth exec -- nix build ...` substitutes from it), or add you to `trusted-users` (which makes you effectively root).");
    let (snippet, private) = proxy_admin_snippet(&g.setup, entry, &proxy_url);
    warn_proxy_url_secret(ui, &g.setup, &private, "use the cache with your credential");
    ui.out(format_args!("{}", snippet.render(args.format)))?;
    Ok(EXIT_NEEDS_ADMIN)
}

fn gather(
    args: &UseArgs,
    entry: &CacheEntry,
    recorded_keyring: bool,
    config_path: &Path,
    ui: &Ui,
) -> Result<Gathered> {
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
    let target_needs_admin = target == Target::NeedsAdmin;
    let (conf_path, system, substituter_only) = match target {
        Target::Print => {
            ui.out(format_args!(
                "{}",
                https_snippet(entry, &setup, &machine, false).render(args.format)
            ))?;
            return Ok(Gathered::Done(0));
        }
        Target::NixosModule => {
            ui.warn(format!(
                "{} is generated by NixOS; add this to your configuration instead:",
                setup.system_conf.display()
            ));
            ui.out(format_args!(
                "{}",
                https_snippet(entry, &setup, &machine, false).render(args.format.on_nixos(true))
            ))?;
            return Ok(Gathered::Done(EXIT_NEEDS_ADMIN));
        }
        Target::NeedsAdmin if proxy_route_untrusted(entry)? => {
            // As for S3: the cache is recorded (the token in the keyring, the keys in the
            // user's nix.conf), and the administrator lists the proxy's URL in a root-only file.
            (setup.user_conf.clone(), false, false)
        }
        Target::NeedsAdmin => {
            explain_untrusted(ui, &setup, &url);
            ui.out(format_args!(
                "{}",
                https_snippet(entry, &setup, &machine, true).render(args.format)
            ))?;
            return Ok(Gathered::Done(EXIT_NEEDS_ADMIN));
        }
        Target::Write { conf, system } => (conf, system, false),
        Target::SubstituterOnly { conf } => (conf, false, true),
    };
    if let Some(why) = crate::fs::edit_blocker(&conf_path) {
        ui.warn(format!("cannot edit {}: {why}", conf_path.display()));
        ui.info("Add this to the configuration that generates it:");
        ui.out(format_args!(
            "{}",
            https_snippet(entry, &setup, &machine, false).render(args.format.on_nixos(setup.nixos))
        ))?;
        return Ok(Gathered::Done(EXIT_NEEDS_ADMIN));
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
    let netrc = target
        .path
        .as_deref()
        .and_then(|p| crate::nix::read_netrc(p).ok().flatten());
    let existing: Option<Zeroizing<String>> = netrc.as_ref().and_then(|n| n.password(&machine));
    let emptied = netrc.is_some_and(|mut n| {
        n.remove(&machine);
        n.entries().is_empty()
    });
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
    let command = entry.https.token_command.is_some();
    let given = if !command && (target.path.is_some() || keyring) {
        read_token(args, &machine, existing.is_some() || in_keyring.is_some())?
    } else {
        None
    };
    let ours = config
        .cache(&entry.name)?
        .is_some_and(|c| c.added_netrc_line);
    let shared = config.caches()?.iter().any(|c| {
        c.name != entry.name && c.netrc.is_some() && c.netrc.as_deref() == target.path.as_deref()
    });
    let (route, why) = https_route::route(https_route::RouteFacts {
        asked: entry.https.route,
        auth: entry.https.auth,
        command,
        keyring,
        token: command
            || given.is_some()
            || existing.is_some()
            || in_keyring.is_some()
            || (entry.has_token && keyring),
        service: crate::proxy::https_rules::service_installed(&Dirs::new()?),
    });
    let admin = target_needs_admin && route == Route::Proxy;
    Ok(Gathered::Facts(Box::new(Facts {
        admin,
        route,
        why,
        command,
        setup,
        url,
        machine,
        conf_path,
        system,
        substituter_only,
        system_netrc,
        target,
        keyring,
        recorded_keyring,
        existing,
        store,
        account,
        in_keyring,
        given,
        ours,
        shared,
        emptied,
    })))
}

/// What [`decide`] takes.
#[derive(Clone)]
struct DecideFacts {
    keyring: bool,
    recorded_keyring: bool,
    netrc_file: bool,
    netrc_line: Option<PathBuf>,
    given: Option<Token>,
    existing: Option<Zeroizing<String>>,
    in_keyring: Option<Zeroizing<String>>,
    ours: bool,
    shared: bool,
    emptied: bool,
    route: Route,
    command: bool,
}

impl Facts {
    fn decide_facts(&self) -> DecideFacts {
        DecideFacts {
            keyring: self.keyring,
            recorded_keyring: self.recorded_keyring,
            netrc_file: self.target.path.is_some(),
            netrc_line: self.target.line.clone(),
            given: self.given.clone(),
            existing: self.existing.clone(),
            in_keyring: self.in_keyring.clone(),
            ours: self.ours,
            shared: self.shared,
            emptied: self.emptied,
            route: self.route,
            command: self.command,
        }
    }
}

/// Where the token goes and what happens to the `netrc-file` line.
#[derive(Debug)]
struct Decision {
    tp: TokenPlan,
    /// The token to write or store (given now, or moved).
    token: Option<Token>,
    /// The `netrc-file` line nix.conf gets.
    netrc_line: Option<PathBuf>,
    /// The `netrc-file` line `use` added goes: the token moved out of the last entry.
    drop_netrc_line: bool,
}

/// Pure: the token plan, the token it moves, and the `netrc-file` line.
fn decide(f: &DecideFacts) -> Result<Decision> {
    let tp = credential_plan::token_plan_on(
        f.route,
        f.command,
        credential_plan::TokenFacts {
            keyring: f.keyring,
            recorded_keyring: f.recorded_keyring,
            given: f.given.is_some(),
            in_netrc: f.existing.is_some(),
            in_keyring: f.in_keyring.is_some(),
            netrc_file: f.netrc_file,
        },
    );
    // A moved token must pass the same rule as a given one, or `exec` would refuse it later.
    let token = match tp.source {
        Some(TokenSource::Given) => f.given.clone(),
        Some(TokenSource::FromNetrc) => Some(
            Token::new(f.existing.clone().unwrap_or_default())
                .context("cannot move the netrc entry's token into the keyring")?,
        ),
        Some(TokenSource::FromKeyring) => Some(
            Token::new(f.in_keyring.clone().unwrap_or_default())
                .context("cannot move the keyring's token into netrc")?,
        ),
        None => None,
    };
    let netrc_line = f.netrc_line.clone().filter(|_| tp.keep_netrc_line);
    // Moving the last token out of a netrc whose `netrc-file` line `use` added: the line goes
    // too, or it would keep hiding /etc/nix/netrc for nothing.
    let drop_netrc_line =
        f.netrc_file && credential_plan::drop_netrc_line(&tp, f.ours, f.shared, f.emptied);
    Ok(Decision {
        tp,
        token,
        netrc_line,
        drop_netrc_line,
    })
}

/// The file edits (one plan), the keyring, config.toml's record, and what to tell.
fn apply(
    args: &UseArgs,
    mut entry: CacheEntry,
    g: &Facts,
    d: Decision,
    config_path: &Path,
    ui: &Ui,
) -> Result<i32> {
    let (url, machine, conf_path) = (&g.url, &g.machine, &g.conf_path);
    let (tp, netrc_path) = (&d.tp, &g.target.path);
    let mut plan = Plan::new();
    {
        let url = url.clone();
        let dropped = netrc_path.clone().filter(|_| d.drop_netrc_line);
        let keys = if g.substituter_only {
            Vec::new()
        } else {
            entry.public_keys.clone()
        };
        let netrc_line = d.netrc_line.clone();
        let route = g.route;
        plan.edit(conf_path, 0o644, false, move |text| {
            let mut c = NixConf::parse(text)?;
            https_route::edit_conf(&mut c, route, &url)?;
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
    if let (Some(path), Some(token), true) = (netrc_path, &d.token, tp.write_netrc) {
        let machine = machine.clone();
        let login = entry.login.clone();
        let token = token.clone();
        plan.edit(path, 0o600, true, move |text| {
            let mut n = Netrc::parse(text)?;
            n.upsert(&machine, &login, token.as_str())?;
            Ok(n.to_text())
        });
    }
    if let (Some(path), true) = (netrc_path, tp.remove_netrc_entry) {
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
    let netrc_line_change = if d.drop_netrc_line {
        Some(false)
    } else {
        d.netrc_line.is_some().then_some(true)
    };
    record(&mut plan, config_path, &entry, netrc_line_change);

    let route_line = format!(
        "route {} for {url}: {}",
        g.route.as_str(),
        g.why.text(g.route)
    );
    if args.edit.dry_run {
        ui.out(format_args!("{}", plan.preview()?))?;
        ui.info(&route_line);
        if tp.store_in_keyring {
            ui.info(format!(
                "would store the token for {machine} in the keyring"
            ));
        }
        ui.info("dry run: nothing was changed");
        return Ok(0);
    }
    let store = &g.store;
    // The secret goes first: if the keyring refuses it, no file has changed yet.
    if let (Some(st), Some(t), true) = (store, &d.token, tp.store_in_keyring) {
        st.set(&g.account, t.as_str())?;
        ui.info(format!(
            "stored the token for {machine} in {}",
            st.describe()
        ));
    }
    let changed = plan.apply()?;
    if let (Some(st), true) = (store, tp.delete_from_keyring) {
        st.delete(&g.account)?;
    }
    // The background service's include file and proxy follow the cache's route (and a new
    // token): the proxy mounts it again.
    crate::service::include::after_change(&Dirs::new()?, ui);
    if let (true, Some(st)) = (tp.remove_netrc_entry, store) {
        ui.info(format!(
            "moved the token for {machine} out of the plaintext netrc into {}",
            st.describe()
        ));
    }
    ui.info(&route_line);
    if g.admin {
        return print_admin_snippet(args, &entry, g, ui);
    }
    if g.route == Route::Proxy {
        ui.info("the nix-daemon reaches the cache through your loopback proxy, which adds the credential: run Nix through `nixstore-auth exec -- nix ...`");
    } else if g.keyring {
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
    if g.substituter_only {
        ui.info(format!(
            "your administrator lists {url} as a trusted substituter; its key and credential come from the daemon's own configuration"
        ));
    }
    if g.system && !changed.is_empty() {
        after_system_write(args, ui)?;
    }
    if !g.system && !g.setup.user_settings_honoured() && !g.substituter_only {
        ui.warn("the nix-daemon does not trust you: settings in your own nix.conf will not reach it (see `nixstore-auth doctor`)");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> Option<Zeroizing<String>> {
        Some(Zeroizing::new(s.to_string()))
    }

    #[test]
    fn the_token_and_the_netrc_line_follow_store_and_what_is_there() {
        let line = Some(PathBuf::from("/h/.config/nix/netrc"));
        let base = DecideFacts {
            keyring: false,
            recorded_keyring: false,
            netrc_file: true,
            netrc_line: line.clone(),
            given: None,
            existing: None,
            in_keyring: None,
            ours: true,
            shared: false,
            emptied: true,
            route: Route::Netrc,
            command: false,
        };
        let with = |f: &dyn Fn(&mut DecideFacts)| {
            let mut x = base.clone();
            f(&mut x);
            x
        };
        let given = Token::new(Zeroizing::new("t1".into())).ok();
        // (facts) -> (token written/stored, netrc line kept, line dropped, write netrc, to keyring)
        type Row<'a> = (DecideFacts, Option<&'a str>, bool, bool, bool, bool);
        let table: Vec<Row> = vec![
            // A new token into netrc: the line is kept.
            (
                with(&|f| f.given = given.clone()),
                Some("t1"),
                true,
                false,
                true,
                false,
            ),
            // Nothing given, nothing there: no token, no line to point at nothing.
            (with(&|_| {}), None, false, false, false, false),
            // Moving to the keyring: the netrc token moves, the entry and our line go.
            (
                with(&|f| {
                    f.keyring = true;
                    f.existing = tok("old");
                }),
                Some("old"),
                false,
                true,
                false,
                true,
            ),
            // ... but the line stays while another cache uses that netrc.
            (
                with(&|f| {
                    f.keyring = true;
                    f.existing = tok("old");
                    f.shared = true;
                }),
                Some("old"),
                false,
                false,
                false,
                true,
            ),
            // Back from the keyring into netrc.
            (
                with(&|f| {
                    f.recorded_keyring = true;
                    f.in_keyring = tok("kept");
                }),
                Some("kept"),
                true,
                false,
                true,
                false,
            ),
            // A substituter the administrator lists: no netrc at all.
            (
                with(&|f| {
                    f.netrc_file = false;
                    f.netrc_line = None;
                    f.given = given.clone();
                }),
                Some("t1"),
                false,
                false,
                false,
                false,
            ),
        ];
        for (f, token, keep_line, drop_line, write_netrc, to_keyring) in table {
            let d = decide(&f).unwrap();
            let shown = (
                d.token.as_ref().map(|t| t.as_str().to_string()),
                d.netrc_line.is_some(),
                d.drop_netrc_line,
                d.tp.write_netrc,
                d.tp.store_in_keyring,
            );
            assert_eq!(
                shown,
                (
                    token.map(String::from),
                    keep_line,
                    drop_line,
                    write_netrc,
                    to_keyring
                ),
                "{:?}",
                d.tp
            );
        }
        // A token netrc cannot hold is not moved into it silently.
        let bad = with(&|f| {
            f.recorded_keyring = true;
            f.in_keyring = tok("a b");
        });
        let err = format!("{:#}", decide(&bad).unwrap_err());
        assert!(
            err.contains("cannot move the keyring's token into netrc"),
            "{err}"
        );
    }
}
