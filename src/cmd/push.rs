//! `push CACHE PATH...`: upload store paths with their closure to a cache, signed. Also the
//! steps `watch-store` and `exec --push` share: the S3 proxy lease, the upload target with its
//! credential, and the end-of-run report.
//!
//! S3 caches go through the signing proxy, so uploads work on every Nix, also one without S3
//! support; HTTPS caches get a `PUT` per file with the recorded credential (nginx with WebDAV,
//! a plain file server that takes uploads). See `crate::push` for what is uploaded and how.

use anyhow::{Context, Result, bail};
use std::sync::atomic::AtomicBool;
use zeroize::Zeroizing;

use super::{PushArgs, Run, UploadFlags};
use crate::aws::session::{self, SessionRequest};
use crate::cache::CacheKind;
use crate::config::{CacheEntry, Config, Dirs, SecretStore as Store};
use crate::ephemeral::EphemeralFile;
use crate::nix::netrc::Netrc;
use crate::proxy;
use crate::push::pusher::{Outcome, human_bytes};
use crate::push::queue::Spool;
use crate::push::signing::{self, KeyFile};
use crate::push::upload::{Done, Target, Uploader};
use crate::push::{StorePath, store_dir};
use crate::secret::{CacheCredential, SecretStore};
use crate::ui::Ui;

impl Run for PushArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        let entry = cfg
            .find(&self.cache)?
            .ok_or_else(|| cfg.unknown_cache(&self.cache))?;
        let store = store_dir();
        let paths = self
            .paths
            .iter()
            .map(|p| StorePath::containing(p, &store))
            .collect::<Result<Vec<_>>>()?;
        let Setup {
            target,
            keep: _keep,
            lease,
            key,
        } = setup(&entry, &self.upload, &cfg, &dirs, ui)?;
        let spool = Spool::open(&dirs.state, &entry.name)?;
        let up = Uploader::new(&target, &spool)?;
        ui.info(format!(
            "uploading {} path(s) and their closure to {}{}",
            paths.len(),
            entry.name,
            if key.is_some() { ", signing them" } else { "" }
        ));
        let mut out = Outcome::default();
        // The session is kept fresh while the uploads run (refresh.rs).
        let mut kept = kept(lease, &entry);
        let ctx = session::Ctx::new(&cfg, &dirs);
        let result = crate::refresh::while_running(&mut kept, ctx, ui, || {
            up.push_closure(&paths, &AtomicBool::new(false), &mut |p, done| match done {
                Done::Uploaded(n) => {
                    out.uploaded += 1;
                    out.bytes += n;
                    ui.debug(format!("uploaded {p} ({})", human_bytes(*n)));
                }
                Done::Present => {
                    out.present += 1;
                    ui.debug(format!("{} has {p} already", entry.name));
                }
            })
        });
        drop(kept);
        if let Err(f) = result {
            bail!("cannot upload {} to {}: {}", f.path, entry.name, f.reason);
        }
        ui.info(format!("{} to {}", out.summary(), entry.name));
        Ok(0)
    }
}

/// What an upload command sets up for a cache. Fields drop in order: the target and its files
/// first, the lease, the signing key's file last.
pub(super) struct Setup {
    pub target: Target,
    pub keep: Keep,
    pub lease: Option<S3Lease>,
    pub key: Option<KeyFile>,
}

/// The signing key, the S3 lease (none for HTTPS caches) and the upload target for `entry`.
pub(super) fn setup(
    entry: &CacheEntry,
    args: &UploadFlags,
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<Setup> {
    let key = signing::resolve(
        args.secret_key.as_deref(),
        args.no_sign,
        &entry.name,
        &entry.public_keys,
        cfg,
        dirs,
        ui,
    )?;
    let lease = match &entry.kind {
        CacheKind::S3(_) => Some(s3_lease(
            entry,
            args.profile.clone(),
            args.mfa_code.clone(),
            cfg,
            dirs,
            ui,
        )?),
        CacheKind::Https { .. } => None,
    };
    let (target, keep) = target(
        entry,
        lease.as_ref().map(|(l, _, _)| l),
        lease.as_ref().map(|(_, s, _)| s),
        key.as_ref(),
        cfg,
        dirs,
        ui,
    )?;
    Ok(Setup {
        target,
        keep,
        lease,
        key,
    })
}

/// An S3 lease with its session and request, ready to be kept fresh (refresh.rs).
pub(super) type S3Lease = (proxy::Lease, session::Session, SessionRequest);

/// The lease of an S3 cache as [`crate::refresh::Kept`], none for an HTTPS cache.
pub(super) fn kept(lease: Option<S3Lease>, entry: &CacheEntry) -> Vec<crate::refresh::Kept> {
    lease
        .into_iter()
        .map(|(l, s, req)| crate::refresh::Kept::new(l, req, s, entry.name.clone()))
        .collect()
}

/// The AWS session for an S3 cache and a proxy lease serving it.
pub(super) fn s3_lease(
    entry: &CacheEntry,
    profile: Option<String>,
    mfa_code: Option<String>,
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<S3Lease> {
    let CacheKind::S3(s3) = &entry.kind else {
        bail!("{} is not an S3 cache", entry.name);
    };
    let req = SessionRequest::new(profile, Some(entry.name.clone())).mfa_code(mfa_code);
    let s = session::resolve(&req, session::Ctx::new(cfg, dirs), ui)?;
    let lease = proxy::ensure_running_for(
        &proxy::Layout::new(dirs, cfg)?,
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
    Ok((lease, s, req))
}

/// Files that must live as long as the uploads (an ephemeral netrc).
pub(super) type Keep = Vec<EphemeralFile>;

/// Where uploads to `entry` go: the proxy's URL (from `lease`) for S3, the cache's URL with
/// its credential for HTTPS.
pub(super) fn target(
    entry: &CacheEntry,
    lease: Option<&proxy::Lease>,
    session: Option<&session::Session>,
    key: Option<&KeyFile>,
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<(Target, Keep)> {
    let mut keep = Vec::new();
    let secret_key = key.map(|k| k.path.clone());
    Ok(match &entry.kind {
        CacheKind::S3(_) => {
            let lease = lease.context("an S3 cache needs the proxy")?;
            let url = lease.url_for(&entry.name);
            let env = session
                .map(|s| session::EnvDelta::for_session(s).set)
                .unwrap_or_default();
            let shown = entry.kind.url();
            (
                Target {
                    name: entry.name.clone(),
                    store_url: url.clone(),
                    secret_key,
                    netrc_file: None,
                    auth: None,
                    https: false,
                    env,
                    secrets: vec![url],
                    shown_url: shown,
                },
                keep,
            )
        }
        CacheKind::Https { .. } => {
            let store = match entry.secret_store {
                Store::Keyring => Some(SecretStore::open(cfg, dirs, ui)?),
                Store::Netrc => None,
            };
            let cred = CacheCredential::of(entry, store.as_ref())?;
            let machine = entry
                .kind
                .netrc_machine()
                .context("the cache URL has no host")?;
            let (auth, netrc_file) = match (&cred.token, entry.secret_store, &entry.netrc) {
                (Some(token), Store::Netrc, Some(path)) => (
                    Some((cred.login.clone(), token.clone())),
                    Some(path.display().to_string()),
                ),
                (Some(token), _, _) => {
                    let mut n = Netrc::default();
                    n.upsert(&machine, &entry.login, token)
                        .map_err(|e| anyhow::anyhow!("cache {}: {e}", entry.name))?;
                    let file = EphemeralFile::create(dirs, "netrc", n.to_text().as_bytes())?;
                    let path = file.path().display().to_string();
                    keep.push(file);
                    (Some((entry.login.clone(), token.clone())), Some(path))
                }
                (None, _, _) => {
                    if entry.has_token {
                        ui.warn(format!(
                            "the credential of {} ({}) cannot be read: uploading without one",
                            entry.name, cred.place
                        ));
                    }
                    (None, None)
                }
            };
            let url = entry.kind.url();
            (
                Target {
                    name: entry.name.clone(),
                    store_url: url.clone(),
                    secret_key,
                    netrc_file,
                    auth: auth.map(|(l, t): (String, Zeroizing<String>)| (l, t)),
                    https: true,
                    env: Vec::new(),
                    secrets: Vec::new(),
                    shown_url: url,
                },
                keep,
            )
        }
    })
}

/// Prints how a drain ended; `true` when every path got up.
pub(super) fn report(out: &Outcome, ui: &Ui) -> bool {
    ui.info(out.summary());
    let left = out.left_total();
    if out.aborted && left > 0 {
        ui.warn(format!(
            "stopped: {left} path(s) stay queued; the next `nixstore-auth watch-store` or `exec --push` uploads them first"
        ));
    } else if !out.failures.is_empty() {
        ui.warn(format!(
            "{} path(s) could not be uploaded and stay queued; the next `nixstore-auth watch-store` or `exec --push` tries them again",
            out.failures.len()
        ));
    }
    for name in &out.broken {
        ui.warn(format!(
            "uploads to {name} stopped on an internal error; what is left stays queued"
        ));
    }
    out.failures.is_empty() && out.broken.is_empty() && !(out.aborted && left > 0)
}
