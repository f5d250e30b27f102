//! Uploading the closure of some paths to one cache, in this process: what Nix records
//! (`closure`), a narinfo check per path (what the cache has, including what came from it, is
//! skipped), a per-path lock shared with every other pusher of this cache, then the NAR
//! (exported, checked, compressed: `nar`) and its signed narinfo, PUT to the cache's URL
//! (`http`), retried.
//!
//! Several paths go up at a time (`Target::jobs`), but a path only once every path it
//! references is in the cache, and its narinfo last: a cache never holds a narinfo whose
//! references are missing. `nix-cache-info` is written first when the cache has none, as
//! `nix copy` does.

use anyhow::{Context, Result, bail};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use super::StorePath;
use super::closure;
use super::http::{Conn, Endpoint, explain};
use super::nar::{self, Body, Codec};
use super::narinfo::{self, PathInfo, Signer};
use super::queue::Spool;
use crate::aws::session::EnvDelta;
use crate::s3_params::Compression;

/// Where uploads go and how: the cache's URL, the session's environment for our children,
/// the keys that sign, the codec, how many paths at a time.
pub struct Target {
    /// The recorded cache name (for messages and the spool).
    pub name: String,
    pub endpoint: Endpoint,
    /// The AWS variables our children (nix, nix-store) get; `None` for HTTPS caches.
    pub env: Option<EnvDelta>,
    pub signers: Vec<Signer>,
    pub codec: Codec,
    pub narinfo_compression: Compression,
    /// Paths uploaded at a time (at least 1).
    pub jobs: usize,
}

impl Target {
    /// `text` with every secret replaced by the cache's public URL.
    pub fn redact(&self, text: &str) -> String {
        self.endpoint.redact(text)
    }
}

/// What became of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Uploaded, with its NAR size.
    Uploaded(u64),
    /// The cache had it already.
    Present,
}

/// An upload that did not succeed: the path and the reason (no secret in it).
#[derive(Debug, Clone)]
pub struct Failure {
    pub path: StorePath,
    pub reason: String,
}

/// What is called for each path done.
pub type Each<'a> = dyn FnMut(&StorePath, &Done) + Send + 'a;

/// The default number of paths uploaded at a time (`--jobs`, `NIXSTORE_AUTH_PUSH_JOBS`).
pub const DEFAULT_JOBS: usize = 8;

/// Uploads for one target.
pub struct Uploader<'a> {
    pub target: &'a Target,
    spool: &'a Spool,
    /// Attempts per path (first try included).
    pub attempts: u32,
    /// Waits between attempts.
    pub backoff: Vec<Duration>,
    /// Whether `nix-cache-info` was found or written in this run.
    cache_info: OnceLock<()>,
    tmp: PathBuf,
    conn: Conn,
}

/// The scheduler's state: which paths wait for which, which are ready.
struct Sched {
    waiting: Vec<usize>,
    ready: VecDeque<usize>,
    running: usize,
    failed: Option<Failure>,
}

impl<'a> Uploader<'a> {
    pub fn new(target: &'a Target, spool: &'a Spool) -> Result<Uploader<'a>> {
        // Compressed NARs too big for memory wait here (unlinked, 0600, in a 0700 directory).
        let tmp = spool.dir().join("tmp");
        crate::fs::private_dir(&tmp)?;
        Ok(Uploader {
            target,
            spool,
            attempts: 3,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(3)],
            cache_info: OnceLock::new(),
            tmp,
            conn: Conn::new()?,
        })
    }

    /// Uploads what the cache lacks of `paths`' closure, references first, `jobs` at a time;
    /// after the first failure starts no new path. `stop` aborts. Calls `each` per path done.
    pub fn push_closure(
        &self,
        paths: &[StorePath],
        stop: &AtomicBool,
        each: &mut Each<'_>,
    ) -> Result<(), Failure> {
        let Some(first) = paths.first().cloned() else {
            return Ok(());
        };
        let infos = closure::closure(paths, self.target.env.as_ref()).map_err(|e| Failure {
            path: first.clone(),
            reason: format!("{e:#}"),
        })?;
        let deps = closure::dependencies(&infos);
        let mut dependents = vec![Vec::new(); infos.len()];
        for (i, d) in deps.iter().enumerate() {
            for &j in d {
                dependents[j].push(i);
            }
        }
        let sched = Mutex::new(Sched {
            waiting: deps.iter().map(Vec::len).collect(),
            ready: (0..infos.len()).filter(|&i| deps[i].is_empty()).collect(),
            running: 0,
            failed: None,
        });
        let cv = Condvar::new();
        let each = Mutex::new(each);
        let workers = self.target.jobs.clamp(1, infos.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| self.worker(&infos, &dependents, &sched, &cv, &each, stop));
            }
        });
        let s = sched.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = s.failed {
            return Err(f);
        }
        if stop.load(Ordering::SeqCst) {
            return Err(Failure {
                path: first,
                reason: "stopped".into(),
            });
        }
        Ok(())
    }

    fn worker(
        &self,
        infos: &[PathInfo],
        dependents: &[Vec<usize>],
        sched: &Mutex<Sched>,
        cv: &Condvar,
        each: &Mutex<&mut Each<'_>>,
        stop: &AtomicBool,
    ) {
        let conn = &self.conn;
        loop {
            let i = {
                let mut s = sched.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if s.failed.is_some() || stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Some(i) = s.ready.pop_front() {
                        s.running += 1;
                        break i;
                    }
                    if s.running == 0 {
                        return;
                    }
                    s = cv
                        .wait_timeout(s, Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            };
            let result = self
                .ensure_cache_info(conn)
                .map_err(|e| format!("{e:#}"))
                .and_then(|()| self.push_one(conn, &infos[i], stop));
            let mut s = sched.lock().unwrap_or_else(|e| e.into_inner());
            s.running -= 1;
            match result {
                Ok(done) => {
                    (each.lock().unwrap_or_else(|e| e.into_inner()))(&infos[i].path, &done);
                    for &d in &dependents[i] {
                        s.waiting[d] -= 1;
                        if s.waiting[d] == 0 {
                            s.ready.push_back(d);
                        }
                    }
                }
                Err(reason) => {
                    s.failed.get_or_insert(Failure {
                        path: infos[i].path.clone(),
                        reason,
                    });
                }
            }
            cv.notify_all();
        }
    }

    /// Makes sure the cache has a `nix-cache-info` for this store (once per run).
    fn ensure_cache_info(&self, conn: &Conn) -> Result<()> {
        if self.cache_info.get().is_some() {
            return Ok(());
        }
        let ep = &self.target.endpoint;
        let store = super::store_dir();
        match conn
            .get_small(ep, "nix-cache-info")
            .with_context(|| format!("cannot read nix-cache-info of {}", self.target.name))?
        {
            Some(text) => {
                let dir = text
                    .lines()
                    .find_map(|l| l.strip_prefix("StoreDir:"))
                    .map(str::trim);
                if let Some(d) = dir
                    && d != store
                {
                    bail!(
                        "{} is a cache for the store {d}, not {store}",
                        self.target.name
                    );
                }
            }
            None => {
                let body = Body::Memory(bytes::Bytes::from(format!("StoreDir: {store}\n")));
                conn.put(
                    ep,
                    "nix-cache-info",
                    &body,
                    "text/x-nix-cache-info",
                    None,
                    &AtomicBool::new(false),
                )
                .map_err(|e| anyhow::anyhow!("{}", explain(&e, ep.https)))
                .with_context(|| format!("cannot write nix-cache-info to {}", self.target.name))?;
            }
        }
        let _ = self.cache_info.set(());
        Ok(())
    }

    /// Whether the cache has `p` (its narinfo answers 2xx).
    pub fn has(&self, conn: &Conn, p: &StorePath) -> Result<bool> {
        let name = &self.target.name;
        let status = conn
            .head(&self.target.endpoint, &format!("{}.narinfo", p.hash_part()))
            .with_context(|| format!("cannot ask {name} for {p}"))?;
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            401 | 403 => bail!(
                "{name} refused the credential (HTTP {status} for a narinfo); `nixstore-auth doctor {name}` checks it"
            ),
            s => bail!("{name} answered HTTP {s} for the narinfo of {p}"),
        }
    }

    /// One path, under its lock: checked, then uploaded with retries.
    fn push_one(&self, conn: &Conn, info: &PathInfo, stop: &AtomicBool) -> Result<Done, String> {
        let p = &info.path;
        let _lock = self.spool.lock_path(p).map_err(|e| format!("{e:#}"))?;
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                let wait = self
                    .backoff
                    .get(attempt as usize - 1)
                    .or(self.backoff.last())
                    .copied()
                    .unwrap_or_default();
                if sleep_unless(stop, wait) {
                    return Err("stopped".into());
                }
            }
            match self.has(conn, p) {
                Ok(true) => return Ok(Done::Present),
                Ok(false) => {}
                Err(e) => {
                    last = format!("{e:#}");
                    continue;
                }
            }
            match self.upload(conn, info, stop) {
                Ok(()) => return Ok(Done::Uploaded(info.nar_size)),
                Err(_) if stop.load(Ordering::SeqCst) => return Err("stopped".into()),
                Err((reason, retry)) => {
                    last = reason;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// The NAR, then the narinfo. On failure: why, and whether trying again may help (a
    /// refusal, 4xx, will not).
    fn upload(
        &self,
        conn: &Conn,
        info: &PathInfo,
        stop: &AtomicBool,
    ) -> Result<(), (String, bool)> {
        let t = self.target;
        let ep = &t.endpoint;
        let prepared = nar::prepare(info, t.codec, &self.tmp, t.env.as_ref(), stop)
            .map_err(|e| (t.redact(&format!("{e:#}")), true))?;
        let refused = |e: &super::http::PutError| {
            let retry = !matches!(e.status, Some(400..=499)) || matches!(e.status, Some(408 | 429));
            (explain(e, ep.https), retry)
        };
        conn.put(
            ep,
            &prepared.file.url,
            &prepared.body,
            "application/x-nix-nar",
            None,
            stop,
        )
        .map_err(|e| refused(&e))?;
        let mut sigs = info.signatures.clone();
        for s in &t.signers {
            let sig = s.sign(info);
            if !sigs.contains(&sig) {
                sigs.push(sig);
            }
        }
        let text = narinfo::render(info, &prepared.file, &sigs);
        let (bytes, encoding) = match t.narinfo_compression {
            Compression::None => (text.into_bytes(), None),
            c => (
                nar::compress_small(text.as_bytes(), c).map_err(|e| (format!("{e:#}"), false))?,
                Some(c.name()),
            ),
        };
        conn.put(
            ep,
            &format!("{}.narinfo", info.path.hash_part()),
            &Body::Memory(bytes::Bytes::from(bytes)),
            "text/x-nix-narinfo",
            encoding,
            stop,
        )
        .map_err(|e| refused(&e))
    }
}

/// Sleeps `d` unless `stop` is set first; true when stopped.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.load(Ordering::SeqCst)
}

/// The number of paths at a time from `NIXSTORE_AUTH_PUSH_JOBS`, else the default.
pub fn jobs_from_env() -> Result<usize> {
    match std::env::var("NIXSTORE_AUTH_PUSH_JOBS") {
        Ok(v) if !v.trim().is_empty() => parse_jobs(&v),
        _ => Ok(DEFAULT_JOBS),
    }
}

/// A job count: 1 to 64.
pub fn parse_jobs(v: &str) -> Result<usize> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => bail!("the number of parallel uploads must be 1 to 64, not {v:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_counts_are_checked() {
        assert_eq!(parse_jobs("8").unwrap(), 8);
        assert!(parse_jobs("0").is_err());
        assert!(parse_jobs("65").is_err());
        assert!(parse_jobs("x").is_err());
    }
}
