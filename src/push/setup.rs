//! What an upload command sets up for a cache, shared by `push`, `watch-store` and
//! `exec --push`: the keys that sign, the S3 session with a proxy lease serving the cache, the
//! upload target (the proxy's URL for S3, the cache's own URL with its recorded credential for
//! HTTPS), the end-of-run report, and `exec --push`'s pushers around CMD.

use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::path::PathBuf;

use super::http::Endpoint;
use super::interrupt::Counting;
use super::nar::Codec;
use super::narinfo::Signer;
use super::pusher::{Lane, Outcome, Pusher};
use super::queue::Spool;
use super::signing::{self, KeyFile};
use super::upload::Target;
use crate::aws::session::{self, EnvDelta, SessionRequest};
use crate::cache::CacheKind;
use crate::config::{CacheEntry, Config, Dirs, SecretStore as Store};
use crate::proxy;
use crate::refresh::Kept;
use crate::s3_params::{Compression, S3Params};
use crate::secret::{CacheCredential, SecretStore};
use crate::ui::Ui;

/// How a command asked to upload (its flags).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--secret-key FILE`: wins over the recorded key.
    pub secret_key: Option<PathBuf>,
    pub no_sign: bool,
    /// `--profile`: the AWS profile for an S3 cache.
    pub profile: Option<String>,
    pub mfa_code: Option<String>,
    /// Paths uploaded at a time.
    pub jobs: usize,
}

/// What an upload command sets up for a cache. Fields drop in order: the target first, the
/// lease, the signing key's file last.
pub struct Setup {
    pub target: Target,
    pub lease: Option<S3Lease>,
    pub key: Option<KeyFile>,
}

/// An S3 lease with its session and request, ready to be kept fresh (refresh.rs).
pub type S3Lease = (proxy::Lease, session::Session, SessionRequest);

/// The signing key, the S3 lease (none for HTTPS caches) and the upload target for `entry`.
pub fn setup(
    entry: &CacheEntry,
    opts: &Options,
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<Setup> {
    let key = resolve_key(
        entry,
        opts.secret_key.as_deref(),
        opts.no_sign,
        cfg,
        dirs,
        ui,
    )?;
    let lease = match &entry.kind {
        CacheKind::S3(_) => Some(s3_lease(
            entry,
            opts.profile.clone(),
            opts.mfa_code.clone(),
            cfg,
            dirs,
            ui,
        )?),
        _ => None,
    };
    let target = target(
        entry,
        lease.as_ref().map(|(l, _, _)| l),
        lease.as_ref().map(|(_, s, _)| s),
        key.as_ref(),
        opts.jobs,
        cfg,
        dirs,
        ui,
    )?;
    Ok(Setup { target, lease, key })
}

/// The recorded (or `--secret-key`) signing key; a URL that names `secret-key` itself needs
/// none recorded.
fn resolve_key(
    entry: &CacheEntry,
    explicit: Option<&std::path::Path>,
    no_sign: bool,
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<Option<KeyFile>> {
    let url_keys = params(entry).secret_keys();
    if !url_keys.is_empty() && explicit.is_none() && cfg.signing_key(&entry.name)?.is_none() {
        return Ok(None);
    }
    signing::resolve(
        explicit,
        no_sign,
        &entry.name,
        &entry.public_keys,
        cfg,
        dirs,
        ui,
    )
}

fn params(entry: &CacheEntry) -> S3Params {
    match &entry.kind {
        CacheKind::S3(s3) => s3.params.clone(),
        _ => S3Params::default(),
    }
}

/// The lease of an S3 cache as [`Kept`], none for an HTTPS cache.
pub fn kept(lease: Option<S3Lease>, entry: &CacheEntry) -> Vec<Kept> {
    lease
        .into_iter()
        .map(|(l, s, req)| Kept::new(l, req, s, entry.name.clone()))
        .collect()
}

/// The AWS session for an S3 cache and a proxy lease serving it.
pub fn s3_lease(
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
    // A Nix client that opens the proxy's URL records it (with its secret) in Nix's cache
    // database: keep that private, as before any command that hands Nix the URL.
    crate::nix::client_cache::protect()?;
    Ok((lease, s, req))
}

/// Where uploads to `entry` go: the proxy's URL (from `lease`) for S3, the cache's URL with
/// its credential for HTTPS; signed with `key` and the keys the URL names.
#[allow(clippy::too_many_arguments)]
pub fn target(
    entry: &CacheEntry,
    lease: Option<&proxy::Lease>,
    session: Option<&session::Session>,
    key: Option<&KeyFile>,
    jobs: usize,
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<Target> {
    let p = params(entry);
    let mut signers = Vec::new();
    if let Some(k) = key {
        signers.push(Signer::from_file(std::path::Path::new(&k.path))?);
    }
    for path in p.secret_keys() {
        let s = Signer::from_file(std::path::Path::new(&path))
            .with_context(|| format!("the secret-key of {}'s URL", entry.name))?;
        signers.push(s);
    }
    let codec = Codec {
        compression: p.compression(),
        level: p.compression_level(),
        parallel: p.parallel_compression(),
    };
    // GCS, Azure and proxy-route HTTPS caches: PUTs go through a proxy this upload leases,
    // which adds the credential as it does for the daemon's GETs.
    let leased = |https: bool| -> Result<Endpoint> {
        let layout = proxy::Layout::new(dirs, cfg)?;
        let lease = proxy::ensure_running_https(&layout, std::slice::from_ref(&entry.name), ui)?;
        Ok(Endpoint::via_proxy(
            lease.url_for(&entry.name),
            entry.kind.url(),
            https,
            Some(std::sync::Arc::new(lease)),
        ))
    };
    let endpoint = match &entry.kind {
        CacheKind::S3(_) => {
            let lease = lease.context("an S3 cache needs the proxy")?;
            Endpoint::via_proxy(lease.url_for(&entry.name), entry.kind.url(), false, None)
        }
        // The proxy uploads with the credential it loads from our environment
        // (object_upload.rs).
        CacheKind::Gcs(_) | CacheKind::Azure(_) => {
            let endpoint = leased(false)?;
            crate::nix::client_cache::protect()?;
            endpoint
        }
        // Basic or Bearer, a stored token or a token command.
        CacheKind::Https { .. }
            if entry.served_by_proxy(crate::proxy::https_rules::service_installed(dirs)) =>
        {
            leased(true)?
        }
        CacheKind::Https { .. } => {
            let store = match entry.secret_store {
                Store::Keyring => Some(SecretStore::open(cfg, dirs, ui)?),
                Store::Netrc => None,
            };
            let cred = CacheCredential::of(entry, store.as_ref())?;
            let auth = match &cred.token {
                Some(token) => Some((cred.login.clone(), token.clone())),
                None => {
                    if entry.has_token {
                        ui.warn(format!(
                            "the credential of {} ({}) cannot be read: uploading without one",
                            entry.name, cred.place
                        ));
                    }
                    None
                }
            };
            let url = entry.kind.url();
            Endpoint {
                base: url.clone(),
                auth,
                https: true,
                secrets: Vec::new(),
                shown: url,
                hold: None,
            }
        }
    };
    Ok(Target {
        name: entry.name.clone(),
        endpoint,
        env: session.map(EnvDelta::for_session),
        signers,
        codec,
        narinfo_compression: match entry.kind {
            CacheKind::S3(_) => p.narinfo_compression(),
            _ => Compression::None,
        },
        jobs: jobs.max(1),
    })
}

/// Prints how a drain ended; `true` when every path got up.
pub fn report(out: &Outcome, ui: &Ui) -> bool {
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

/// A progress bar only on a terminal, and not with `--quiet`.
pub fn progress_wanted(ui: &Ui) -> bool {
    !ui.quiet && std::io::stderr().is_terminal()
}

/// `exec --push`: the pushers started before CMD, and what they need to live.
pub struct ExecPush {
    pusher: Pusher,
    signals: Counting,
    _keys: Vec<KeyFile>,
}

/// Starts watching and uploading to `caches` (the recorded entries named by `--push`) before
/// CMD starts; S3 caches through `kept` (exec's proxy lease, which serves them, and its
/// session, whose variables our children get).
pub fn start_for_exec(
    caches: &[CacheEntry],
    kept: Option<&Kept>,
    no_sign: bool,
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<ExecPush> {
    let jobs = super::upload::jobs_from_env()?;
    let mut lanes = Vec::new();
    let mut keys = Vec::new();
    for entry in caches {
        let key = resolve_key(entry, None, no_sign, cfg, dirs, ui)?;
        let s3 = matches!(entry.kind, CacheKind::S3(_));
        let target = target(
            entry,
            kept.map(|k| &k.lease),
            kept.filter(|_| s3).map(|k| &k.session),
            key.as_ref(),
            jobs,
            cfg,
            dirs,
            ui,
        )?;
        keys.extend(key);
        lanes.push(Lane {
            target,
            spool: Spool::open(&dirs.state, &entry.name)?,
        });
    }
    let signals = Counting::start();
    let env = kept.map(|k| EnvDelta::for_session(&k.session));
    let pusher = Pusher::start(lanes, true, env, *ui)?;
    let left = pusher.queued();
    if left > 0 {
        ui.info(format!(
            "{left} path(s) queued by an earlier run are uploaded first"
        ));
    }
    Ok(ExecPush {
        pusher,
        signals,
        _keys: keys,
    })
}

impl ExecPush {
    /// After CMD ended with `code`: finishes the queues (a Ctrl-C stops at once: 130) and
    /// returns exec's status: CMD's, or with `strict` 1 when CMD succeeded but an upload failed.
    pub fn finish(self, code: i32, strict: bool, ui: &Ui) -> i32 {
        let already = self.signals.count();
        let queued = self.pusher.queued();
        if queued > 0 {
            ui.info(format!(
                "uploading {queued} queued path(s) (Ctrl-C stops at once and leaves them queued)"
            ));
        }
        let out = self
            .pusher
            .drain(&self.signals, already + 1, progress_wanted(ui));
        let ok = report(&out, ui);
        if out.aborted {
            crate::error::EXIT_INTERRUPTED
        } else if code != 0 || !strict || ok {
            code
        } else {
            crate::error::EXIT_ERROR
        }
    }
}
