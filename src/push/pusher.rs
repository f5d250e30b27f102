//! The pushing machinery of one command: a store watcher thread that queues new valid paths
//! in every cache's spool, and one upload thread per cache working through its spool (oldest
//! entries first: what a crashed pusher left is uploaded before anything new). `drain` stops
//! watching and finishes the queues, with a progress bar on a terminal; a further Ctrl-C stops
//! at once and leaves the rest queued.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::StorePath;
use super::interrupt::Counting;
use super::queue::Spool;
use super::upload::{Done, Failure, Target, Uploader};
use super::watch::{self, StoreWatcher};
use crate::ui::Ui;

/// One cache to push to: where, and its queue.
pub struct Lane {
    pub target: Target,
    pub spool: Spool,
}

/// A failed path while watching is tried again after this long (a drain tries it once).
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub uploaded: usize,
    pub bytes: u64,
    pub present: usize,
    /// `(cache, failure)` for every path given up on.
    pub failures: Vec<(String, Failure)>,
    /// Stopped by a signal before the queues were done.
    pub aborted: bool,
    /// `(cache, entries still queued)` at the end.
    pub left: Vec<(String, usize)>,
    /// Caches whose upload thread failed (its message was printed).
    pub broken: Vec<String>,
}

struct Shared {
    ui: Ui,
    watching: AtomicBool,
    draining: AtomicBool,
    stop: AtomicBool,
    wake: Mutex<u64>,
    cv: Condvar,
    outcome: Mutex<Outcome>,
    bar: Mutex<Option<ProgressBar>>,
}

impl Shared {
    fn notify(&self) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cv.notify_all();
    }

    fn wait(&self, d: Duration) {
        let g = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.cv.wait_timeout(g, d);
    }

    /// A line for the user that does not tear the progress bar.
    fn say(&self, f: impl FnOnce(&Ui)) {
        let bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match bar.as_ref() {
            Some(b) => b.suspend(|| f(&self.ui)),
            None => f(&self.ui),
        }
    }
}

pub struct Pusher {
    shared: Arc<Shared>,
    workers: Vec<(String, Spool, JoinHandle<()>)>,
    watcher: Option<JoinHandle<()>>,
}

impl Pusher {
    /// Starts the upload threads, and with `watch` the store watcher (watching from the
    /// moment this returns; its `nix-store` gets `env`, the session's variables).
    pub fn start(
        lanes: Vec<Lane>,
        watch: bool,
        env: Option<crate::aws::session::EnvDelta>,
        ui: Ui,
    ) -> Result<Pusher> {
        let shared = Arc::new(Shared {
            ui,
            watching: AtomicBool::new(watch),
            draining: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake: Mutex::new(0),
            cv: Condvar::new(),
            outcome: Mutex::new(Outcome::default()),
            bar: Mutex::new(None),
        });
        let spools: Vec<Spool> = lanes.iter().map(|l| l.spool.clone()).collect();
        let watcher = if watch {
            let store = super::store_dir();
            let w = StoreWatcher::new(&store)?;
            let shared = shared.clone();
            Some(std::thread::spawn(move || {
                watch_loop(w, spools, env.as_ref(), &shared)
            }))
        } else {
            None
        };
        let mut workers = Vec::new();
        for lane in lanes {
            let name = lane.target.name.clone();
            let spool = lane.spool.clone();
            let shared = shared.clone();
            workers.push((
                name,
                spool,
                std::thread::spawn(move || upload_loop(lane, &shared)),
            ));
        }
        Ok(Pusher {
            shared,
            workers,
            watcher,
        })
    }

    /// Paths queued in all spools now.
    pub fn queued(&self) -> usize {
        self.workers
            .iter()
            .map(|(_, s, _)| s.entries().map(|e| e.len()).unwrap_or(0))
            .sum()
    }

    /// Stops watching (after queueing what was seen until now), finishes the queues and
    /// returns what happened. Stops at once, leaving the rest queued, when `signals` reaches
    /// `abort_at`. `progress`: a progress bar (paths and bytes) while it drains.
    pub fn drain(mut self, signals: &Counting, abort_at: usize, progress: bool) -> Outcome {
        self.shared.watching.store(false, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        if progress {
            let bar = ProgressBar::new(self.queued() as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} pushing [{bar:30}] {pos}/{len} paths {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            *self.shared.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
        }
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.notify();
        while !self.workers.iter().all(|(_, _, h)| h.is_finished()) {
            if signals.count() >= abort_at && !self.shared.stop.load(Ordering::SeqCst) {
                self.shared.stop.store(true, Ordering::SeqCst);
                self.shared.notify();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(bar) = self
            .shared
            .bar
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
        let mut out = self
            .shared
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.aborted = self.shared.stop.load(Ordering::SeqCst);
        for (name, spool, h) in self.workers.drain(..) {
            if h.join().is_err() {
                out.broken.push(name.clone());
            }
            let n = spool.entries().map(|e| e.len()).unwrap_or(0);
            out.left.push((name, n));
        }
        out
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        // Dropped without drain (an error on the way): stop at once, the queues stay.
        self.shared.watching.store(false, Ordering::SeqCst);
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.notify();
    }
}

fn watch_loop(
    mut w: StoreWatcher,
    spools: Vec<Spool>,
    env: Option<&crate::aws::session::EnvDelta>,
    shared: &Shared,
) {
    let mut told_overflow = false;
    loop {
        let last = !shared.watching.load(Ordering::SeqCst);
        let seen = match w.wait(if last {
            Duration::ZERO
        } else {
            Duration::from_millis(250)
        }) {
            Ok(s) => s,
            Err(e) => {
                shared.say(|ui| ui.warn(format!("watching the store failed: {e:#}")));
                return;
            }
        };
        if w.overflowed && !told_overflow {
            told_overflow = true;
            shared.say(|ui| {
                ui.warn("the kernel dropped store events (inotify queue overflow): some new paths may not be queued; push them with `nixstore-auth push`")
            });
        }
        if !seen.is_empty() {
            match watch::valid_paths(&seen, env) {
                Ok(valid) if !valid.is_empty() => {
                    for s in &spools {
                        if let Err(e) = s.enqueue(&valid) {
                            shared.say(|ui| ui.warn(format!("cannot queue new paths: {e:#}")));
                        }
                    }
                    for p in &valid {
                        shared.say(|ui| ui.debug(format!("queued {p}")));
                    }
                    shared.notify();
                }
                Ok(_) => {}
                Err(e) => shared.say(|ui| ui.warn(format!("cannot check new paths: {e:#}"))),
            }
        }
        if last {
            return;
        }
    }
}

fn upload_loop(lane: Lane, shared: &Shared) {
    let name = lane.target.name.clone();
    let up = match Uploader::new(&lane.target, &lane.spool) {
        Ok(u) => u,
        Err(e) => {
            shared.say(|ui| ui.warn(format!("cannot upload to {name}: {e:#}")));
            return;
        }
    };
    // Paths given up on in this run (failed, or another pusher has them), and when.
    let mut skipped: HashMap<StorePath, Instant> = HashMap::new();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let draining = shared.draining.load(Ordering::SeqCst);
        let entries = match lane.spool.entries() {
            Ok(e) => e,
            Err(e) => {
                shared.say(|ui| ui.warn(format!("cannot read the queue of {name}: {e:#}")));
                return;
            }
        };
        let todo: Vec<_> = entries
            .into_iter()
            .filter(|e| {
                skipped
                    .get(&e.path)
                    .is_none_or(|t| !draining && t.elapsed() > RETRY_FAILED_AFTER)
            })
            .collect();
        if todo.is_empty() {
            if draining {
                return;
            }
            shared.wait(Duration::from_millis(500));
            continue;
        }
        // Every entry that can be claimed goes up in one batch: its closures share paths, and
        // independent paths go up side by side (`Target::jobs`).
        let mut claims = Vec::new();
        for e in todo {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            match lane.spool.try_claim(&e) {
                Ok(Some(c)) => claims.push((e, c)),
                Ok(None) => {
                    // Another pusher works on it (or just finished it).
                    skipped.insert(e.path.clone(), Instant::now());
                }
                Err(err) => {
                    shared.say(|ui| ui.warn(format!("{err:#}")));
                    skipped.insert(e.path.clone(), Instant::now());
                }
            }
        }
        // A queued path that left the store since (garbage collected) cannot go up, and in a
        // batch it would fail the others: it leaves the queue, with a warning.
        if !claims.is_empty() {
            let all: Vec<StorePath> = claims.iter().map(|(e, _)| e.path.clone()).collect();
            if let Ok(valid) = watch::valid_paths(&all, lane.target.env.as_ref()) {
                let (keep, gone): (Vec<_>, Vec<_>) = claims
                    .into_iter()
                    .partition(|(e, _)| valid.contains(&e.path));
                claims = keep;
                for (e, claim) in gone {
                    if let Err(err) = claim.done() {
                        shared.say(|ui| ui.warn(format!("{err:#}")));
                    }
                    shared.say(|ui| {
                        ui.warn(format!(
                            "{} is no longer in the store: dropped from the queue of {name}",
                            e.path
                        ))
                    });
                }
            }
        }
        let progressed = !claims.is_empty();
        if progressed {
            let paths: Vec<StorePath> = claims.iter().map(|(e, _)| e.path.clone()).collect();
            let done_paths = Mutex::new(std::collections::HashSet::new());
            let mut each = |p: &StorePath, done: &Done| {
                done_paths
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p.clone());
                record(shared, &name, p, done);
            };
            let result = up.push_closure(&paths, &shared.stop, &mut each);
            if result.is_err() && shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let done_paths = done_paths.into_inner().unwrap_or_else(|e| e.into_inner());
            for (e, claim) in claims {
                if done_paths.contains(&e.path) {
                    if let Err(err) = claim.done() {
                        shared.say(|ui| ui.warn(format!("{err:#}")));
                    }
                    skipped.remove(&e.path);
                    bar_inc(shared);
                    continue;
                }
                let f = match &result {
                    Err(f) => f.clone(),
                    Ok(()) => Failure {
                        path: e.path.clone(),
                        reason: "not uploaded".into(),
                    },
                };
                let needed = if f.path == e.path {
                    String::new()
                } else {
                    format!(" (needed by {})", e.path)
                };
                shared.say(|ui| {
                    ui.warn(format!(
                        "cannot upload {}{needed} to {name}: {}; it stays queued",
                        f.path, f.reason
                    ))
                });
                skipped.insert(e.path.clone(), Instant::now());
                bar_inc(shared);
                shared
                    .outcome
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .failures
                    .push((name.clone(), f));
            }
        }
        if !progressed {
            if draining {
                return;
            }
            shared.wait(Duration::from_millis(500));
        }
    }
}

fn bar_inc(shared: &Shared) {
    if let Some(b) = shared
        .bar
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        b.inc(1);
    }
}

fn record(shared: &Shared, cache: &str, p: &StorePath, done: &Done) {
    let mut o = shared.outcome.lock().unwrap_or_else(|e| e.into_inner());
    match done {
        Done::Uploaded(size) => {
            o.uploaded += 1;
            o.bytes += size;
        }
        Done::Present => o.present += 1,
    }
    let msg = format!("{} uploaded, {}", o.uploaded, human_bytes(o.bytes));
    drop(o);
    if let Some(b) = shared
        .bar
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        b.set_message(msg);
    }
    let line = match done {
        Done::Uploaded(size) => format!("uploaded {p} to {cache} ({})", human_bytes(*size)),
        Done::Present => format!("{cache} has {p} already"),
    };
    shared.say(|ui| {
        if ui.verbose > 0 {
            ui.info(&line);
        }
    });
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Outcome {
    /// One line for the end of a command.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "pushed {} path(s) ({})",
            self.uploaded,
            human_bytes(self.bytes)
        );
        if self.present > 0 {
            s.push_str(&format!(", {} already in the cache", self.present));
        }
        if !self.failures.is_empty() {
            s.push_str(&format!(", {} failed", self.failures.len()));
        }
        s
    }

    /// Paths still queued, over all caches.
    pub fn left_total(&self) -> usize {
        self.left.iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn the_summary_says_what_happened() {
        let o = Outcome {
            uploaded: 2,
            bytes: 2048,
            present: 1,
            ..Outcome::default()
        };
        assert_eq!(
            o.summary(),
            "pushed 2 path(s) (2.0 KiB), 1 already in the cache"
        );
    }
}
