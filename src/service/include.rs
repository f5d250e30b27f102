//! The include file (`nix/include.rs` renders it) from what is recorded now: every S3 cache of
//! config.toml at its current URL. Written when the service is installed, by `service install`
//! and after every change of what it must say (`use`, `remove`, `proxy rotate-secret`, and the
//! proxy itself when a URL moves to a new generation). Without a service manager the URLs go
//! to a file in the runtime directory that only the running background proxy keeps
//! ([`sync_runtime`], [`clear_runtime`]).

use anyhow::{Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::marker::{self, Installed};
use super::plan::Route;
use crate::config::{Config, Dirs};
use crate::nix::include::{Served, Urls, includable, render, render_runtime};
use crate::ui::Ui;

/// The runtime file with the URLs (route without a service manager).
pub fn runtime_file(dirs: &Dirs) -> PathBuf {
    crate::proxy::runtime_dir_of(dirs).join("nix.conf")
}

/// Every recorded cache the proxy serves (S3, HTTPS on the proxy route) at its current URL. `fixed`: URLs at generation 0 (an
/// administrator listed them).
fn served(dirs: &Dirs, cfg: &Config, fixed: bool) -> Result<Vec<Served>> {
    let layout = crate::proxy::Layout::new(dirs, cfg)?;
    let caches: Vec<_> = cfg
        .caches()?
        .into_iter()
        .filter(|c| c.served_by_proxy(true))
        .collect();
    let names: Vec<String> = caches.iter().map(|c| c.name.clone()).collect();
    let urls = crate::proxy::current_urls(&layout, &names, fixed)?;
    Ok(caches
        .into_iter()
        .zip(urls)
        .map(|(c, url)| Served {
            url,
            public_keys: c.public_keys,
        })
        .collect())
}

/// What the remote-builder decision forwards for plain Nix commands, decided as `exec` decides
/// it (`forward::builder_decision`) for the builders in force without a command line. Nothing
/// when no private cache is served or Nix cannot be probed. Reads the probe cache, never writes
/// it: a `--dry-run` writes nothing.
fn builder_settings(served: &[Served]) -> Vec<crate::nix::forward::Setting> {
    if served.is_empty() {
        return Vec::new();
    }
    let Ok(setup) = crate::nix::setup::probe(crate::nix::setup::ProbeCache::ReadOnly) else {
        return Vec::new();
    };
    let in_force = crate::nix::builders::for_command(&setup, &[]);
    let facts =
        crate::nix::forward::BuilderFacts::new(true, setup.user_settings_honoured(), &in_force);
    crate::nix::forward::builder_decision(&facts).settings()
}

/// The include file's text for what config.toml records now, for the way `m` installed it.
pub fn desired(dirs: &Dirs, cfg: &Config, m: &Installed) -> Result<String> {
    let served = served(dirs, cfg, m.fixed_urls)?;
    if m.route.socket_activated() {
        return Ok(render(&served, Urls::Here, &builder_settings(&served)));
    }
    let rt = runtime_file(dirs);
    if !includable(&rt) {
        bail!(
            "the runtime directory {} cannot be named in nix.conf (spaces or `#`); set XDG_RUNTIME_DIR to a plain path",
            rt.display()
        );
    }
    Ok(render(
        &served,
        Urls::Runtime(&rt),
        &builder_settings(&served),
    ))
}

/// The runtime file's text now (the route without a service manager), kept by proxy `pid`.
pub fn desired_runtime(dirs: &Dirs, cfg: &Config, m: &Installed, pid: u32) -> Result<String> {
    Ok(render_runtime(&served(dirs, cfg, m.fixed_urls)?, pid))
}

/// Rewrites the include file when the service is installed. `Some(path)` when it changed.
pub fn sync(dirs: &Dirs) -> Result<Option<PathBuf>> {
    let Some(m) = marker::load(dirs)? else {
        return Ok(None);
    };
    let cfg = Config::load(&dirs.config_file())?;
    let text = desired(dirs, &cfg, &m)?;
    Ok(write(&m.include, &text)?.then_some(m.include))
}

/// For the running background proxy without a service manager: writes the runtime file with
/// the URLs (when the service is installed that way). `Some(path)` when it changed.
pub fn sync_runtime(dirs: &Dirs) -> Result<Option<PathBuf>> {
    let Some(m) = marker::load(dirs)?.filter(|m| m.route == Route::Persistent) else {
        return Ok(None);
    };
    let cfg = Config::load(&dirs.config_file())?;
    let text = desired_runtime(dirs, &cfg, &m, std::process::id())?;
    let path = runtime_file(dirs);
    Ok(write(&path, &text)?.then_some(path))
}

/// When the background proxy `pid` exits: its URLs go with it (a newer proxy's stay).
pub fn clear_runtime(path: &Path, pid: u32) {
    let owner = crate::nix::include::runtime_owner_line(pid);
    if crate::fs::read_optional(path)
        .ok()
        .flatten()
        .is_some_and(|t| t.starts_with(&owner))
    {
        let _ = std::fs::remove_file(path);
    }
}

/// Writes `text` to `path` atomically, 0600 (a file someone widened is narrowed before the
/// secret goes in). Returns whether it changed.
pub fn write(path: &Path, text: &str) -> Result<bool> {
    let _lock = crate::fs::lock(path)?;
    if crate::fs::read_optional(path)?.as_deref() == Some(text) {
        return Ok(false);
    }
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.is_file()
        && meta.permissions().mode() & 0o077 != 0
    {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    crate::fs::atomic_write(path, text.as_bytes(), 0o600)?;
    Ok(true)
}

/// After `use`, `remove` or `proxy rotate-secret` changed what the include file must say: the
/// file, and a running proxy (a background one mounts the recorded caches again and rewrites
/// its runtime file).
pub fn after_change(dirs: &Dirs, ui: &Ui) {
    match sync(dirs) {
        Ok(Some(p)) => ui.info(format!(
            "updated {} (the background service's include file)",
            p.display()
        )),
        Ok(None) => {}
        Err(e) => ui.warn(format!(
            "cannot update the background service's include file: {e:#}"
        )),
    }
    let layout =
        Config::load(&dirs.config_file()).and_then(|cfg| crate::proxy::Layout::new(dirs, &cfg));
    match layout.and_then(|l| crate::proxy::reload(&l)) {
        Ok(Some(st)) if st.background => ui.debug("the background proxy read config.toml again"),
        Ok(_) => {}
        Err(e) => ui.warn(format!("cannot tell the running proxy: {e:#}")),
    }
}
