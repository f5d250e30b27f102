//! `watch-store CACHE`: upload every path that becomes valid in the store to CACHE until
//! stopped. Ctrl-C (or SIGTERM) finishes the queue and exits; a second one stops at once,
//! leaving the rest queued for the next run. What a previous run left queued goes first.
//! Also the `--push` part of `exec`: the same machinery around CMD.

use anyhow::Result;
use std::io::IsTerminal;
use std::time::Duration;

use super::{Run, WatchStoreArgs};
use crate::config::{CacheEntry, Config, Dirs};
use crate::proxy;
use crate::push::interrupt::Counting;
use crate::push::pusher::{Lane, Pusher};
use crate::push::queue::Spool;
use crate::push::signing::{self, KeyFile};
use crate::ui::Ui;

impl Run for WatchStoreArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        let entry = cfg
            .find(&self.cache)?
            .ok_or_else(|| cfg.unknown_cache(&self.cache))?;
        let super::push::Setup {
            target,
            keep: _keep,
            lease,
            key: _key,
        } = super::push::setup(&entry, &self.upload, &cfg, &dirs, ui)?;
        let spool = Spool::open(&dirs.state, &entry.name)?;
        let signals = Counting::start();
        let pusher = Pusher::start(vec![Lane { target, spool }], true, *ui)?;
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
        let mut kept = super::push::kept(lease, &entry);
        let ctx = crate::aws::session::Ctx::new(&cfg, &dirs);
        let out = crate::refresh::while_running(&mut kept, ctx, ui, || {
            while signals.count() == 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            ui.info("finishing the queue (Ctrl-C again stops at once and leaves the rest queued)");
            pusher.drain(&signals, 2, progress_wanted(ui))
        });
        drop(kept);
        let ok = super::push::report(&out, ui);
        Ok(if out.aborted {
            crate::error::EXIT_INTERRUPTED
        } else if ok {
            0
        } else {
            crate::error::EXIT_ERROR
        })
    }
}

/// A progress bar only on a terminal, and not with `--quiet`.
fn progress_wanted(ui: &Ui) -> bool {
    !ui.quiet && std::io::stderr().is_terminal()
}

/// `exec --push`: the pushers started before CMD, and what they need to live.
pub(super) struct ExecPush {
    pusher: Pusher,
    signals: Counting,
    _keys: Vec<KeyFile>,
    _keep: super::push::Keep,
}

/// Starts watching and uploading to `caches` (the recorded entries named by `--push`) before
/// CMD starts; S3 caches through `lease` (exec's proxy lease, which serves them).
pub(super) fn start_for_exec(
    caches: &[CacheEntry],
    lease: Option<&proxy::Lease>,
    no_sign: bool,
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<ExecPush> {
    let mut lanes = Vec::new();
    let mut keys = Vec::new();
    let mut keep = Vec::new();
    for entry in caches {
        let key = signing::resolve(
            None,
            no_sign,
            &entry.name,
            &entry.public_keys,
            cfg,
            dirs,
            ui,
        )?;
        let (target, k) = super::push::target(entry, lease, None, key.as_ref(), cfg, dirs, ui)?;
        keep.extend(k);
        keys.extend(key);
        lanes.push(Lane {
            target,
            spool: Spool::open(&dirs.state, &entry.name)?,
        });
    }
    let signals = Counting::start();
    let pusher = Pusher::start(lanes, true, *ui)?;
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
        _keep: keep,
    })
}

impl ExecPush {
    /// After CMD ended with `code`: finishes the queues (a Ctrl-C stops at once: 130) and
    /// returns exec's status: CMD's, or with `strict` 1 when CMD succeeded but an upload failed.
    pub(super) fn finish(self, code: i32, strict: bool, ui: &Ui) -> i32 {
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
        let ok = super::push::report(&out, ui);
        if out.aborted {
            crate::error::EXIT_INTERRUPTED
        } else if code != 0 || !strict || ok {
            code
        } else {
            crate::error::EXIT_ERROR
        }
    }
}
