//! `service install|uninstall|status`: the proxy kept running in the background (systemd user
//! units with socket activation, a macOS LaunchAgent, or a detached persistent proxy), and the
//! user's nix.conf pointed at it with one `!include` line, so that plain Nix commands (direnv,
//! editors, scripts, cron) reach private S3 caches with no wrapper.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

use super::{OutputFormat, Run, ServiceAction, ServiceArgs};
use crate::config::{CacheEntry, Config, Dirs};
use crate::nix::include;
use crate::nix::setup::{self, ProbeCache};
use crate::nix::snippet::{Format, PrivateFile, Snippet};
use crate::plan::Plan;
use crate::proxy;
use crate::service::plan::{self, Conf, ConfAction, Decision, Facts, Note, Route};
use crate::service::status::{self, Report};
use crate::service::{manager, marker, units};
use crate::ui::Ui;

impl Run for ServiceArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        match self.action {
            ServiceAction::Install { dry_run } => install(&dirs, &cfg, dry_run, ui),
            ServiceAction::Uninstall { dry_run } => uninstall(&dirs, &cfg, dry_run, ui),
            ServiceAction::Status { format } => {
                let report = status::gather(&dirs, &cfg, true)?;
                print_status(&report, format, ui)?;
                Ok(report.exit)
            }
        }
    }
}

/// The recorded S3 caches (and GCS and Azure ones: the proxy serves them alike).
fn s3_caches(cfg: &Config) -> Result<Vec<CacheEntry>> {
    Ok(cfg
        .caches()?
        .into_iter()
        .filter(|c| c.kind.is_object_store())
        .collect())
}

/// `$XDG_CONFIG_HOME` (our config directory's parent).
/// The HTTPS caches whose route follows the service (a keyring token under `--route auto`),
/// by the nix.conf `use` wrote them to: their URL leaves nix.conf on install (the proxy serves
/// them) and comes back on uninstall (`exec`'s temporary netrc again).
fn moving_https(cfg: &Config) -> Result<std::collections::BTreeMap<PathBuf, Vec<String>>> {
    let mut out: std::collections::BTreeMap<PathBuf, Vec<String>> = Default::default();
    for c in cfg.caches()? {
        if let (Some(conf), Some(without), Some(with)) =
            (&c.nix_conf, c.https_route(false), c.https_route(true))
            && without.0 != with.0
        {
            out.entry(conf.clone()).or_default().push(c.kind.url());
        }
    }
    Ok(out)
}

/// Adds the route moves of [`moving_https`] to `files`; the edit of `nix_conf` (if any) goes
/// with them in one step.
fn move_https<'a>(
    files: &mut Plan<'a>,
    moves: std::collections::BTreeMap<PathBuf, Vec<String>>,
    route: crate::nix::https_route::Route,
    nix_conf: &Path,
    nix_conf_edit: Option<fn(&str) -> Result<String>>,
) {
    let mut own = nix_conf_edit;
    for (conf, urls) in moves {
        let first = if conf == nix_conf { own.take() } else { None };
        files.edit(&conf, 0o644, false, move |text| {
            let text = match first {
                Some(f) => f(text)?,
                None => text.to_string(),
            };
            let mut c = crate::nix::conf::NixConf::parse(&text)?;
            for u in &urls {
                crate::nix::https_route::edit_conf(&mut c, route, u)?;
            }
            Ok(c.to_text())
        });
    }
    if let Some(f) = own {
        files.edit(nix_conf, 0o644, false, f);
    }
}

fn config_home(dirs: &Dirs) -> PathBuf {
    dirs.config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dirs.config.clone())
}

fn home() -> Result<PathBuf> {
    directories::BaseDirs::new()
        .map(|b| b.home_dir().to_path_buf())
        .context("cannot find the home directory (is HOME set?)")
}

/// The unit files for `route` (written for every route on Linux: a later service manager can
/// take them over), with their text.
fn unit_files(
    dirs: &Dirs,
    route: Route,
    bin: &Path,
    port: u16,
    log: &Path,
) -> Result<Vec<(PathBuf, String)>> {
    Ok(match route {
        Route::Launchd => vec![(
            units::launch_agent(&home()?),
            units::launchd_plist(bin, port, log),
        )],
        Route::Systemd | Route::Persistent => {
            let dir = units::systemd_dir(&config_home(dirs));
            vec![
                (dir.join(units::SOCKET_UNIT), units::systemd_socket(port)),
                (dir.join(units::SERVICE_UNIT), units::systemd_service(bin)),
            ]
        }
    })
}

/// A unit file a NixOS or home-manager module provides: a symlink where ours would go, or the
/// same unit in `/etc/systemd/user`. `install` leaves those alone (and `uninstall` too).
fn managed_elsewhere(path: &Path) -> bool {
    let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let system_wide = path
        .file_name()
        .is_some_and(|n| Path::new("/etc/systemd/user").join(n).exists());
    symlink || system_wide
}

/// The secret in `text` replaced, for diffs and messages.
fn masked(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "<secret>"),
        _ => text.to_string(),
    }
}

fn install(dirs: &Dirs, cfg: &Config, dry_run: bool, ui: &Ui) -> Result<i32> {
    let mut layout = proxy::Layout::new(dirs, cfg)?;
    let running = proxy::status(&layout)?;
    if dry_run {
        layout.port = layout.port_to_settle(running.as_ref().map(|s| s.port));
    } else {
        // The units and the include file name the port: fix it for good now.
        layout.settle_port(running.as_ref().map(|s| s.port))?;
    }
    let nix = setup::probe(ProbeCache::ReadOnly)?;
    let nix_conf = nix.user_conf.clone();
    let include_file = include::path_for(&nix_conf);
    let s3 = s3_caches(cfg)?;
    let conf_text = crate::fs::read_optional(&nix_conf)?;
    let conf = if include::is_included(conf_text.as_deref().unwrap_or(""), &include_file) {
        Conf::Included
    } else if let Some(why) = crate::fs::edit_blocker(&nix_conf) {
        Conf::Blocked(why)
    } else {
        Conf::Writable
    };
    let facts = Facts {
        macos: cfg!(target_os = "macos"),
        user_manager: manager::user_manager_answers(),
        trust: status::trust_now(&layout, &s3, running.as_ref()),
        conf,
        s3_caches: s3.len(),
    };
    let d = plan::decide(&facts);
    let bin = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the nixstore-auth executable")?;
    let (units, managed): (Vec<_>, Vec<_>) =
        unit_files(dirs, d.route, &bin, layout.port, &layout.log_file())?
            .into_iter()
            .partition(|(p, _)| !managed_elsewhere(p));
    for (p, _) in &managed {
        ui.info(format!(
            "{} comes from your configuration (a NixOS or home-manager module): left as it is",
            p.display()
        ));
    }
    let previous = marker::load(dirs)?;
    let line_added = match &d.conf {
        ConfAction::AddLine => true,
        // An earlier install's line stays ours to remove.
        _ => previous.as_ref().is_some_and(|m| m.line_added),
    };
    let created_nix_conf = match &d.conf {
        ConfAction::AddLine => conf_text.is_none(),
        _ => previous.as_ref().is_some_and(|m| m.created_nix_conf),
    };
    let installed = marker::Installed {
        route: d.route,
        nix_conf: nix_conf.clone(),
        include: include_file.clone(),
        line_added,
        created_nix_conf,
        fixed_urls: d.fixed_urls,
        units: units.iter().map(|(p, _)| p.clone()).collect(),
    };
    let include_text = if dry_run
        && (layout.port_origin == proxy::PortOrigin::Default || !layout.secret_file().exists())
    {
        // Nothing is written by a dry run, not even the remembered port or a new secret.
        None
    } else {
        Some(crate::service::include::desired(dirs, cfg, &installed)?)
    };
    let mut files = Plan::new();
    for (path, text) in &units {
        let text = text.clone();
        files.edit(path, 0o644, false, move |_| Ok(text.clone()));
    }
    move_https(
        &mut files,
        moving_https(cfg)?,
        crate::nix::https_route::Route::Proxy,
        &nix_conf,
        (d.conf == ConfAction::AddLine).then_some(include::add_line as fn(&str) -> Result<String>),
    );
    let marker_text = marker::to_text(&installed)?;
    files.edit(&marker::path(dirs), 0o600, false, move |_| {
        Ok(marker_text.clone())
    });

    if dry_run {
        let secret = crate::fs::read_optional(&layout.secret_file())?;
        let secret = secret.as_deref().map(str::trim);
        ui.out(files.preview()?)?;
        let old = crate::fs::read_optional(&include_file)?.unwrap_or_default();
        match &include_text {
            Some(t) => ui.out(masked(
                &crate::fs::unified_diff(&include_file, &old, t),
                secret,
            ))?,
            None => ui.outln(format_args!(
                "{}: would list {} S3 cache(s) at the proxy's URL (mode 0600)",
                include_file.display(),
                s3.len()
            ))?,
        }
        if d.route == Route::Persistent {
            ui.outln(format_args!(
                "{}: the URLs, written by the running background proxy and removed when it exits",
                crate::service::include::runtime_file(dirs).display()
            ))?;
        }
        for line in start_commands(d.route) {
            ui.outln(format_args!("would run: {line}"))?;
        }
        if let ConfAction::PrintLine(why) = &d.conf {
            ui.warn(format!(
                "would not edit {}: {why}; add `{}` to it",
                nix_conf.display(),
                include::line()
            ));
        }
        ui.info("dry run: nothing was changed");
        return Ok(d.exit);
    }

    // A command's proxy holds the port the service manager's socket needs.
    if d.route.socket_activated()
        && let Some(st) = &running
        && !st.activated
    {
        proxy::stop(&layout)?;
        ui.info(format!(
            "stopped the running proxy (pid {}): the service manager listens on its port now",
            st.pid
        ));
    }
    if let Some(text) = &include_text {
        crate::service::include::write(&include_file, text)?;
    }
    for p in files.apply()? {
        ui.info(format!("wrote {}", p.display()));
    }
    let flag = marker::persistent_flag(dirs);
    if d.route == Route::Persistent {
        crate::fs::atomic_write(&flag, b"", 0o600)?;
    } else {
        let _ = std::fs::remove_file(&flag);
    }
    // Nix records the URLs it opens in its own cache database: keep that private.
    if let Err(e) = crate::nix::client_cache::protect() {
        ui.warn(format!("{e:#}"));
    }
    start(d.route, &units, &layout, ui)?;
    report_install(&d, &nix_conf, &include_file, &s3, &layout, &nix, ui)?;
    Ok(d.exit)
}

/// The service manager's commands for a route, as shown by `--dry-run`.
fn start_commands(route: Route) -> Vec<String> {
    match route {
        Route::Systemd => manager::INSTALL_CALLS
            .iter()
            .map(|c| format!("systemctl --user {}", c.join(" ")))
            .collect(),
        Route::Launchd => vec![format!(
            "launchctl bootstrap gui/UID ~/Library/LaunchAgents/{}.plist",
            units::LAUNCHD_LABEL
        )],
        Route::Persistent => vec!["nixstore-auth proxy start --persistent".into()],
    }
}

fn start(route: Route, units: &[(PathBuf, String)], layout: &proxy::Layout, ui: &Ui) -> Result<()> {
    match route {
        Route::Systemd => {
            manager::systemd_enable()?;
            ui.info(format!(
                "enabled and started {} (systemd starts the proxy on the first connection)",
                units::SOCKET_UNIT
            ));
        }
        Route::Launchd => {
            if let Some((plist, _)) = units.first() {
                manager::launchd_load(plist)?;
            }
            ui.info("loaded the LaunchAgent (launchd starts the proxy on the first connection)");
        }
        Route::Persistent => match proxy::start(layout, true, ui)? {
            proxy::Started::New(pid) => ui.info(format!(
                "no user service manager answers (`systemctl --user`): started a detached background proxy (pid {pid})"
            )),
            proxy::Started::Running(pid) => ui.info(format!(
                "no user service manager answers (`systemctl --user`): the background proxy runs already (pid {pid})"
            )),
        },
    }
    Ok(())
}

fn report_install(
    d: &Decision,
    nix_conf: &Path,
    include_file: &Path,
    s3: &[CacheEntry],
    layout: &proxy::Layout,
    nix: &setup::NixSetup,
    ui: &Ui,
) -> Result<()> {
    match &d.conf {
        ConfAction::AddLine => ui.info(format!(
            "{} includes {} now: plain nix commands use the proxy",
            nix_conf.display(),
            include_file.display()
        )),
        ConfAction::Keep => ui.info(format!(
            "{} includes {} already",
            nix_conf.display(),
            include::FILE_NAME
        )),
        ConfAction::PrintLine(why) => {
            ui.warn(format!(
                "{} was not changed: {why}. Add this line to the configuration that generates it (home-manager: `nix.extraOptions`; the flake's module does it):",
                nix_conf.display()
            ));
            ui.outln(include::line())?;
        }
    }
    for note in &d.notes {
        match note {
            Note::NothingRecorded => ui.info(
                "no S3 cache is recorded yet: nothing is served until `nixstore-auth use s3://...`",
            ),
            Note::StartAtLogin => ui.info(
                "to start it at login, add `nixstore-auth proxy start --persistent` to your shell profile (~/.profile) or a `@reboot nixstore-auth proxy start --persistent` line to your crontab",
            ),
            Note::FixedUrls => ui.info(
                "the nix-daemon takes your proxy's URLs because an administrator allowed them: they never change, so after a `nixstore-auth login` the daemon may remember misses of the last hour",
            ),
            Note::AdminSnippet => admin_snippet(s3, layout, nix, ui)?,
        }
    }
    Ok(())
}

/// An untrusted user's S3 caches: what an administrator adds, as `use` prints it, saying that
/// the background service makes it permanent.
fn admin_snippet(
    s3: &[CacheEntry],
    layout: &proxy::Layout,
    nix: &setup::NixSetup,
    ui: &Ui,
) -> Result<()> {
    ui.warn(format!(
        "the nix-daemon does not trust user {:?} and does not allow your proxy's URLs yet: an administrator must add the lines below (then restart the nix-daemon). The background service is installed, so from then on plain nix commands use these caches, with no wrapper and for good.",
        nix.user
    ));
    let conf_dir = nix.system_conf.parent().unwrap_or(Path::new("/etc/nix"));
    for c in s3 {
        let url = proxy::stable_url_for(layout, &c.name)?;
        let private = conf_dir.join(format!(
            "nixstore-auth-{}-{}.conf",
            crate::cache::sanitize_name(&nix.user),
            c.name
        ));
        let mut snippet = Snippet {
            private: Some(PrivateFile {
                path: private.display().to_string(),
                settings: vec![("extra-trusted-substituters".to_string(), vec![url])],
            }),
            ..Snippet::default()
        };
        snippet.push("extra-trusted-public-keys", c.public_keys.clone());
        ui.out(snippet.render(Format::NixConf.on_nixos(nix.nixos)))?;
    }
    Ok(())
}

fn uninstall(dirs: &Dirs, cfg: &Config, dry_run: bool, ui: &Ui) -> Result<i32> {
    let layout = proxy::Layout::new(dirs, cfg)?;
    let Some(m) = marker::load(dirs)? else {
        ui.info("the background service is not installed; nothing to undo");
        return Ok(0);
    };
    let mut files = Plan::new();
    let conf_text = crate::fs::read_optional(&m.nix_conf)?;
    let blocked = crate::fs::edit_blocker(&m.nix_conf);
    let mut remove_conf = false;
    let mut line_edit: Option<fn(&str) -> Result<String>> = None;
    if m.line_added
        && let Some(text) = &conf_text
        && blocked.is_none()
    {
        let after = include::remove_line(text)?;
        if m.created_nix_conf && after.is_empty() {
            remove_conf = true;
        } else {
            line_edit = Some(include::remove_line);
        }
    }
    move_https(
        &mut files,
        moving_https(cfg)?,
        crate::nix::https_route::Route::Netrc,
        &m.nix_conf,
        line_edit,
    );
    let mut gone: Vec<PathBuf> = m.units.clone();
    gone.push(m.include.clone());
    gone.push(marker::path(dirs));
    gone.push(marker::persistent_flag(dirs));
    gone.push(crate::service::include::runtime_file(dirs));
    if remove_conf {
        gone.push(m.nix_conf.clone());
    }
    gone.retain(|p| std::fs::symlink_metadata(p).is_ok());
    if dry_run {
        ui.out(files.preview()?)?;
        for p in &gone {
            ui.outln(format_args!("would remove {}", p.display()))?;
        }
        match m.route {
            Route::Systemd => {
                for c in manager::UNINSTALL_CALLS {
                    ui.outln(format_args!("would run: systemctl --user {}", c.join(" ")))?;
                }
                ui.outln("would run: systemctl --user daemon-reload")?;
            }
            Route::Launchd => ui.outln(format_args!(
                "would run: launchctl bootout gui/UID/{}",
                units::LAUNCHD_LABEL
            ))?,
            Route::Persistent => {}
        }
        ui.outln("would stop the running proxy")?;
        ui.info("dry run: nothing was changed");
        return Ok(0);
    }
    let problems = match m.route {
        Route::Systemd => manager::systemd_disable(),
        Route::Launchd => manager::launchd_unload(),
        Route::Persistent => Vec::new(),
    };
    for p in problems {
        ui.warn(p);
    }
    if proxy::stop(&layout)? {
        ui.info("stopped the proxy");
    }
    for p in files.apply()? {
        ui.info(format!("updated {}", p.display()));
    }
    for p in &gone {
        match std::fs::remove_file(p) {
            Ok(()) => ui.info(format!("removed {}", p.display())),
            // The proxy took its own file with it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove {}", p.display()));
            }
        }
    }
    if m.route == Route::Systemd
        && let Err(e) = manager::systemd_reload()
    {
        ui.warn(format!("{e:#}"));
    }
    if let Some(why) = blocked.filter(|_| m.line_added) {
        ui.warn(format!(
            "{} was not changed: {why}. Remove the line `{}` from the configuration that generates it",
            m.nix_conf.display(),
            include::line()
        ));
    }
    let notice = proxy::notice_file(&proxy::runtime_dir_of(dirs));
    let _ = std::fs::remove_file(&notice);
    let _ = std::fs::remove_file(notice.with_file_name("notice.seen"));
    ui.info(
        "the background service is uninstalled: S3 caches work through `nixstore-auth exec` again",
    );
    Ok(0)
}

fn print_status(r: &Report, format: OutputFormat, ui: &Ui) -> Result<()> {
    if format == OutputFormat::Json {
        return ui.outln(serde_json::to_string_pretty(r)?);
    }
    let now = crate::time::now();
    match r.route {
        Some(route) => ui.outln(format_args!(
            "service: installed, {}{}",
            route.as_str(),
            match (&r.socket_enabled, &r.socket_active) {
                (Some(e), Some(a)) => format!("; socket unit {e}, {a}"),
                _ => String::new(),
            }
        ))?,
        None => ui.outln("service: not installed")?,
    }
    let p = &r.proxy;
    match p.pid {
        Some(pid) => ui.outln(format_args!(
            "proxy:   running, pid {pid}, port {}{}{}",
            p.port,
            if p.background {
                ", background"
            } else {
                ", a command's (exits when idle)"
            },
            if p.activated {
                ", socket-activated"
            } else {
                ""
            }
        ))?,
        None => ui.outln(format_args!("proxy:   down (port {})", p.port))?,
    }
    if let Some(i) = &r.include {
        ui.outln(format_args!(
            "include: {} {} {} ({})",
            i.nix_conf.display(),
            if i.line {
                "includes"
            } else {
                "does NOT include"
            },
            i.file.display(),
            match (i.present, i.private, i.current) {
                (false, _, _) => "missing".to_string(),
                (true, private, current) => format!(
                    "{}, {}",
                    if private {
                        "0600"
                    } else {
                        "readable by others"
                    },
                    if current { "current" } else { "out of date" }
                ),
            }
        ))?;
    }
    for c in &r.caches {
        let what = match &c.standing {
            None => "not mounted".to_string(),
            Some(proxy::Standing::Valid { expires: Some(e) }) => {
                format!("valid until {}", crate::time::rfc3339(*e))
            }
            Some(proxy::Standing::Valid { expires: None }) => "valid".into(),
            Some(proxy::Standing::Renews { until, .. }) => match until {
                Some(u) if *u > now => format!(
                    "renews by itself until {} (then `{}`)",
                    crate::time::rfc3339(*u),
                    proxy::login_command(&c.name)
                ),
                _ => "renews by itself".into(),
            },
            Some(proxy::Standing::NeedsPerson { why }) => {
                format!("needs you: {why}; run `{}`", proxy::login_command(&c.name))
            }
            Some(proxy::Standing::Unavailable { why }) => format!("unavailable: {why}"),
        };
        ui.outln(format_args!(
            "cache:   {} {what}{}",
            c.name,
            if c.daemon_used {
                "; used by the nix-daemon"
            } else {
                ""
            }
        ))?;
    }
    for pr in &r.problems {
        ui.outln(format_args!("problem: {}\n  fix:   {}", pr.what, pr.fix))?;
    }
    Ok(())
}
