//! `push CACHE PATH...`: upload store paths with their closure to an S3 cache through the
//! signing proxy, so it works on every Nix, also one without S3 support.
//!
//! The destination URL holds the proxy's secret, so it must not appear in argv: it is handed
//! to `nix copy --from auto` as the default `store` in `NIX_CONFIG` (Nix opens the default store
//! when `--to` is absent). `?secret-key=FILE` on it makes Nix sign each path as it uploads.

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use super::{PushArgs, Run};
use crate::aws::session::{self, SessionRequest};
use crate::cache::{CacheKind, reject_unsafe_chars};
use crate::config::{Config, Dirs};
use crate::launch::Launch;
use crate::nix::forward::{self, Setting};
use crate::proxy;
use crate::ui::Ui;

impl Run for PushArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        let entry = cfg
            .find(&self.cache)?
            .ok_or_else(|| cfg.unknown_cache(&self.cache))?;
        let CacheKind::S3(s3) = &entry.kind else {
            bail!(
                "{} is an HTTPS cache: upload with `nix copy --to {}` (its netrc credential applies)",
                entry.name,
                entry.kind.url()
            );
        };
        let key = match &self.secret_key {
            Some(p) => {
                let abs = std::fs::canonicalize(p)
                    .with_context(|| format!("--secret-key {}: cannot read it", p.display()))?;
                let s = abs
                    .to_str()
                    .context("--secret-key: the path is not UTF-8")?
                    .to_string();
                reject_unsafe_chars(&s, "secret key path")?;
                if s.contains(['?', '&']) {
                    bail!("--secret-key: the path may not contain '?' or '&'");
                }
                Some(s)
            }
            None => None,
        };
        let paths: Vec<String> = self
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let req = SessionRequest::new(self.profile.clone(), Some(entry.name.clone()))
            .mfa_code(self.mfa_code.clone());
        let s = session::resolve(&req, session::Ctx::new(&cfg, &dirs), ui)?;
        let lease = proxy::ensure_running_for(
            &proxy::Layout::new(&dirs, &cfg)?,
            &s.credentials,
            Some(crate::refresh::info_of(&s)),
            &[proxy::Mount {
                name: entry.name.clone(),
                s3: s3.clone(),
            }],
            ui,
        )?;
        // `nix copy` records the store URL (with the proxy's secret) in Nix's cache database.
        crate::nix::client_cache::protect()?;
        let mut store = lease.url_for(&entry.name);
        if let Some(k) = &key {
            store.push_str("?secret-key=");
            store.push_str(k);
        }
        let settings = vec![
            Setting::new("store", store, true),
            Setting::new("narinfo-cache-negative-ttl", "0", false),
        ];
        let existing = std::env::var("NIX_CONFIG").ok();
        let mut argv: Vec<std::ffi::OsString> = [
            "nix",
            "--extra-experimental-features",
            "nix-command",
            "copy",
            "--from",
            "auto",
        ]
        .iter()
        .map(Into::into)
        .collect();
        argv.extend(paths.iter().map(Into::into));
        let mut launch = Launch::new(argv);
        launch.set.push((
            "NIX_CONFIG".into(),
            Zeroizing::new(forward::nix_config(existing.as_deref(), &settings)),
        ));
        let delta = session::EnvDelta::for_session(&s);
        launch.set.extend(delta.set);
        launch.unset = delta.unset.into_iter().map(String::from).collect();
        ui.info(format!(
            "uploading {} path(s) and their closure to {}{}",
            paths.len(),
            entry.name,
            if key.is_some() { ", signing them" } else { "" }
        ));
        // The session is kept fresh while `nix copy` runs (refresh.rs).
        let mut kept = [crate::refresh::Kept::new(lease, req, s, entry.name.clone())];
        let ctx = session::Ctx::new(&cfg, &dirs);
        let code = crate::refresh::while_running(&mut kept, ctx, ui, || launch.run_supervised());
        drop(kept);
        if code != 0 {
            bail!(
                "`nix copy` failed (exit {code}); `nixstore-auth doctor {}` checks the session and the bucket",
                entry.name
            );
        }
        ui.info(format!("pushed to {}", entry.name));
        Ok(0)
    }
}
