//! `watch-store CACHE`: upload every path that becomes valid in the store to CACHE until
//! stopped. Ctrl-C (or SIGTERM) finishes the queue and exits; a second one stops at once,
//! leaving the rest queued for the next run. What a previous run left queued goes first.
//! The machinery (shared with `exec --push`) is in `crate::push`.

use anyhow::Result;
use std::time::Duration;

use super::{Run, WatchStoreArgs};
use crate::config::{Config, Dirs};
use crate::push::interrupt::Counting;
use crate::push::pusher::{Lane, Pusher};
use crate::push::queue::Spool;
use crate::push::setup::{self, Setup};
use crate::ui::Ui;

impl Run for WatchStoreArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        let entry = cfg
            .find(&self.cache)?
            .ok_or_else(|| cfg.unknown_cache(&self.cache))?;
        let Setup {
            target,
            lease,
            key: _key,
        } = setup::setup(&entry, &self.upload.options(), &cfg, &dirs, ui)?;
        let spool = Spool::open(&dirs.state, &entry.name)?;
        let signals = Counting::start();
        let env = lease
            .as_ref()
            .map(|(_, s, _)| crate::aws::session::EnvDelta::for_session(s));
        let pusher = Pusher::start(vec![Lane { target, spool }], true, env, *ui)?;
        let left = pusher.queued();
        ui.info(format!(
            "watching {} for new paths to push to {} (Ctrl-C: finish the queue and stop; again: stop at once){}",
            crate::push::store_dir(),
            entry.name,
            if left > 0 {
                format!("; {left} path(s) queued earlier go first")
            } else {
                String::new()
            }
        ));
        // The session is kept fresh for as long as it watches (refresh.rs).
        let mut kept = setup::kept(lease, &entry);
        let ctx = crate::aws::session::Ctx::new(&cfg, &dirs);
        let out = crate::refresh::while_running(&mut kept, ctx, ui, || {
            while signals.count() == 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            ui.info("finishing the queue (Ctrl-C again stops at once and leaves the rest queued)");
            pusher.drain(&signals, 2, setup::progress_wanted(ui))
        });
        drop(kept);
        let ok = setup::report(&out, ui);
        Ok(if out.aborted {
            crate::error::EXIT_INTERRUPTED
        } else if ok {
            0
        } else {
            crate::error::EXIT_ERROR
        })
    }
}
