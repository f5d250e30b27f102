//! `push CACHE PATH...`: upload store paths with their closure to a cache, signed. S3 caches go
//! through the signing proxy, so uploads work on every Nix, also one without S3 support; HTTPS
//! caches get a `PUT` per file with the recorded credential. See `crate::push` for what is
//! uploaded and how, and `crate::push::setup` for what `push`, `watch-store` and
//! `exec --push` set up alike.

use anyhow::{Result, bail};
use std::sync::atomic::AtomicBool;

use super::{PushArgs, Run, UploadFlags};
use crate::aws::session;
use crate::config::{Config, Dirs};
use crate::push::pusher::{Outcome, human_bytes};
use crate::push::queue::Spool;
use crate::push::setup::{self, Options, Setup};
use crate::push::upload::{Done, Uploader};
use crate::push::{StorePath, store_dir};
use crate::ui::Ui;

impl UploadFlags {
    /// The flags as the upload setup takes them.
    pub(super) fn options(&self) -> Options {
        Options {
            secret_key: self.secret_key.clone(),
            no_sign: self.no_sign,
            profile: self.profile.clone(),
            mfa_code: self.mfa_code.clone(),
            jobs: self.jobs,
        }
    }
}

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
        let Setup { target, lease, key } =
            setup::setup(&entry, &self.upload.options(), &cfg, &dirs, ui)?;
        let spool = Spool::open(&dirs.state, &entry.name)?;
        let up = Uploader::new(&target, &spool)?;
        ui.info(format!(
            "uploading {} path(s) and their closure to {}{}",
            paths.len(),
            entry.name,
            if key.is_some() || !target.signers.is_empty() {
                ", signing them"
            } else {
                ""
            }
        ));
        let mut out = Outcome::default();
        // The session is kept fresh while the uploads run (refresh.rs).
        let mut kept = setup::kept(lease, &entry);
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
