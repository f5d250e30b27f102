//! The include file (`nix/include.rs` renders it) from what is recorded now: every S3 cache of
//! config.toml at its current URL. Written when the service is installed, by `service install`
//! and after every change of what it must say (`use`, `remove`, `proxy rotate-secret`, and the
//! proxy itself when a URL moves to a new generation).

use anyhow::Result;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::marker;
use crate::cache::CacheKind;
use crate::config::{Config, Dirs};
use crate::nix::include::{Served, render};
use crate::ui::Ui;

/// The include file's text for what config.toml records now. `fixed`: URLs at generation 0
/// (an administrator listed them).
pub fn desired(dirs: &Dirs, cfg: &Config, fixed: bool) -> Result<String> {
    let layout = crate::proxy::Layout::new(dirs, cfg)?;
    let caches: Vec<_> = cfg
        .caches()?
        .into_iter()
        .filter(|c| matches!(c.kind, CacheKind::S3(_)))
        .collect();
    let names: Vec<String> = caches.iter().map(|c| c.name.clone()).collect();
    let urls = crate::proxy::current_urls(&layout, &names, fixed)?;
    let served: Vec<Served> = caches
        .into_iter()
        .zip(urls)
        .map(|(c, url)| Served {
            url,
            public_keys: c.public_keys,
        })
        .collect();
    Ok(render(&served))
}

/// Rewrites the include file when the service is installed. `Some(path)` when it changed.
pub fn sync(dirs: &Dirs) -> Result<Option<PathBuf>> {
    let Some(m) = marker::load(dirs)? else {
        return Ok(None);
    };
    let cfg = Config::load(&dirs.config_file())?;
    let text = desired(dirs, &cfg, m.fixed_urls)?;
    Ok(write(&m.include, &text)?.then_some(m.include))
}

/// Writes `text` to the include file atomically, 0600 (a file someone widened is narrowed
/// before the secret goes in). Returns whether it changed.
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
/// file, and a running proxy (a background one mounts the recorded caches again).
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
