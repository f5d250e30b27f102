//! The durable upload queue of one cache: a spool directory under the state directory, one
//! file per store path waiting for upload, and per-path claim locks that keep concurrent
//! pushers (two `watch-store`s, an `exec --push` beside a `watch-store`) from uploading a path
//! twice.
//!
//! ```text
//! ~/.local/state/nixstore-auth/push/CACHE/      0700
//!     queue/HASH-NAME     one entry per queued path (its full store path inside); created
//!                         with O_EXCL and fsynced, removed only after the upload succeeded
//!     locks/HASH          a path's upload lock (flock), held while it is checked and uploaded
//! ```
//! Crash safety: an entry exists from the moment a path is seen until its upload is done, so
//! `kill -9` or a reboot loses nothing; the worst case is a path uploaded by the crashed
//! process whose entry is still there, which the next pusher finds in the cache (its narinfo)
//! and drops without uploading it again.
//!
//! Locks are `flock`s on files that are unlinked when released. A waiter may have opened the
//! file before it was unlinked, so after taking a lock it checks that the name still leads to
//! the inode it locked, and starts over if not.

use anyhow::{Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::StorePath;

/// One cache's spool.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A queued path, in the order it was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: StorePath,
    queued: (SystemTime, String),
}

impl Spool {
    /// The spool of cache `name` below the state directory (`state/push/NAME`), created 0700.
    pub fn open(state: &Path, name: &str) -> Result<Spool> {
        crate::cache::validate_name(name)?;
        let push = state.join("push");
        crate::fs::private_dir(state)?;
        crate::fs::private_dir(&push)?;
        let dir = push.join(name);
        crate::fs::private_dir(&dir)?;
        crate::fs::private_dir(&dir.join("queue"))?;
        crate::fs::private_dir(&dir.join("locks"))?;
        Ok(Spool { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_file(&self, p: &StorePath) -> PathBuf {
        self.dir.join("queue").join(p.base_name())
    }

    /// Queues `paths` (already queued ones are left as they are); returns how many are new.
    /// Durable when it returns: the entries and the directory are fsynced.
    pub fn enqueue(&self, paths: &[StorePath]) -> Result<usize> {
        let mut new = 0;
        for p in paths {
            let file = self.entry_file(p);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
            {
                Ok(mut f) => {
                    f.write_all(p.as_str().as_bytes())
                        .and_then(|()| f.sync_all())
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    new += 1;
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", file.display()));
                }
            }
        }
        if new > 0 {
            sync_dir(&self.dir.join("queue"));
        }
        Ok(new)
    }

    /// Every queued path, oldest first. Entries that do not name a store path (put there by
    /// hand) are skipped.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let dir = self.dir.join("queue");
        let mut out = Vec::new();
        let rd = fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(text) = fs::read_to_string(ent.path()) else {
                continue;
            };
            let Ok(path) = StorePath::parse(text.trim()) else {
                continue;
            };
            if path.base_name() != name {
                continue;
            }
            let mtime = ent
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(Entry {
                path,
                queued: (mtime, name),
            });
        }
        out.sort_by(|a, b| a.queued.cmp(&b.queued));
        Ok(out)
    }

    /// Whether `p` is queued.
    pub fn contains(&self, p: &StorePath) -> bool {
        self.entry_file(p).exists()
    }

    /// Takes `entry` for processing unless another pusher has it (or it is gone): `None` then.
    pub fn try_claim(&self, entry: &Entry) -> Result<Option<Claim>> {
        let file = self.entry_file(&entry.path);
        Ok(try_lock_existing(&file)?.map(|lock| Claim { lock, file }))
    }

    /// The upload lock of `p`, waiting for whoever holds it. While it is held nobody else checks
    /// or uploads `p` for this cache.
    pub fn lock_path(&self, p: &StorePath) -> Result<PathLock> {
        let file = self.dir.join("locks").join(p.hash_part());
        loop {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            f.lock()
                .with_context(|| format!("cannot lock {}", file.display()))?;
            if same_inode(&f, &file) {
                return Ok(PathLock {
                    _f: f,
                    file: file.clone(),
                });
            }
        }
    }
}

/// A queue entry this process works on. [`Claim::done`] removes it; dropping it leaves it
/// queued (for a retry, or for the next pusher).
#[derive(Debug)]
pub struct Claim {
    lock: File,
    file: PathBuf,
}

impl Claim {
    /// The path was uploaded (or the cache has it): the entry goes.
    pub fn done(self) -> Result<()> {
        match fs::remove_file(&self.file) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove {}", self.file.display()));
            }
        }
        if let Some(dir) = self.file.parent() {
            sync_dir(dir);
        }
        drop(self.lock);
        Ok(())
    }
}

/// The upload lock of one path; released (and its file removed) on drop.
#[derive(Debug)]
pub struct PathLock {
    _f: File,
    file: PathBuf,
}

impl Drop for PathLock {
    fn drop(&mut self) {
        // Unlinked while still held: a waiter that opened the old file sees the inode change.
        let _ = fs::remove_file(&self.file);
    }
}

/// Locks an existing file unless someone holds it. `None` when the file is gone or held.
fn try_lock_existing(file: &Path) -> Result<Option<File>> {
    let f = match OpenOptions::new().read(true).open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", file.display())),
    };
    match f.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(None),
        Err(fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", file.display()));
        }
    }
    if !same_inode(&f, file) {
        return Ok(None);
    }
    Ok(Some(f))
}

fn same_inode(f: &File, path: &Path) -> bool {
    match (f.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Mutex};

    fn sp(name: &str) -> StorePath {
        StorePath::parse(&format!("/nix/store/{name}")).unwrap()
    }

    const A: &str = "0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a";
    const B: &str = "0bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b";
    const C: &str = "0ccccccccccccccccccccccccccccccc-c";

    #[test]
    fn entries_survive_reopening_in_queue_order_and_the_spool_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let spool = Spool::open(&state, "c").unwrap();
        assert_eq!(spool.enqueue(&[sp(B)]).unwrap(), 1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(spool.enqueue(&[sp(A), sp(B)]).unwrap(), 1);
        // A second process (or the next run after a crash) sees the same queue.
        let again = Spool::open(&state, "c").unwrap();
        let order: Vec<String> = again
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.path.base_name().to_string())
            .collect();
        assert_eq!(order, [B, A]);
        for d in [state.join("push"), spool.dir().to_path_buf()] {
            let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        // A stray file in the queue is not a path to upload.
        fs::write(spool.dir().join("queue/junk"), "/etc/passwd").unwrap();
        assert_eq!(again.entries().unwrap().len(), 2);
    }

    #[test]
    fn a_claimed_entry_is_not_claimed_twice_and_done_removes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path(), "c").unwrap();
        spool.enqueue(&[sp(A)]).unwrap();
        let e = spool.entries().unwrap().remove(0);
        let claim = spool.try_claim(&e).unwrap().expect("first claim");
        assert!(spool.try_claim(&e).unwrap().is_none(), "claimed twice");
        // Dropped without done: still queued, claimable again.
        drop(claim);
        let claim = spool
            .try_claim(&e)
            .unwrap()
            .expect("claim after a failed try");
        claim.done().unwrap();
        assert!(!spool.contains(&sp(A)));
        assert!(spool.try_claim(&e).unwrap().is_none(), "claimed after done");
        assert!(spool.entries().unwrap().is_empty());
    }

    #[test]
    fn a_claim_on_a_replaced_entry_fails_instead_of_taking_the_new_one_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path(), "c").unwrap();
        spool.enqueue(&[sp(A)]).unwrap();
        let file = spool.dir().join("queue").join(A);
        let old = File::open(&file).unwrap();
        old.lock().unwrap();
        // Someone else finished it and it was queued again (a new inode).
        fs::remove_file(&file).unwrap();
        spool.enqueue(&[sp(A)]).unwrap();
        assert!(!same_inode(&old, &file));
        let e = spool.entries().unwrap().remove(0);
        assert!(spool.try_claim(&e).unwrap().is_some());
    }

    #[test]
    fn concurrent_workers_process_each_path_once() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().to_path_buf();
        let paths: Vec<StorePath> = (0..40).map(|i| sp(&format!("{:032}-p{i}", i))).collect();
        Spool::open(&state, "c").unwrap().enqueue(&paths).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (state, seen) = (state.clone(), seen.clone());
                std::thread::spawn(move || {
                    // Each worker opens the spool itself, as another process would.
                    let spool = Spool::open(&state, "c").unwrap();
                    for e in spool.entries().unwrap() {
                        let Some(claim) = spool.try_claim(&e).unwrap() else {
                            continue;
                        };
                        let _lock = spool.lock_path(&e.path).unwrap();
                        seen.lock().unwrap().push(e.path.clone());
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        claim.done().unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let mut seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 40, "a path was processed twice or not at all");
        seen.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        seen.dedup();
        assert_eq!(seen.len(), 40);
    }

    #[test]
    fn path_locks_exclude_each_other_and_leave_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path(), "c").unwrap();
        let lock = spool.lock_path(&sp(C)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = spool.clone();
        let t = std::thread::spawn(move || {
            let _l = s2.lock_path(&sp(C)).unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "a second holder got the lock"
        );
        drop(lock);
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("the waiter got the lock once released");
        t.join().unwrap();
        assert_eq!(fs::read_dir(spool.dir().join("locks")).unwrap().count(), 0);
    }
}
