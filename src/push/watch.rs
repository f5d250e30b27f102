//! Seeing new store paths without root, on every Nix: inotify on the store directory.
//!
//! Nix (the daemon, or a single-user Nix) holds `/nix/store/HASH-NAME.lock` while it builds,
//! substitutes or adds a path, registers the path as valid, then deletes the lock file. So the
//! deletion of a `.lock` file names a path that has just become valid, or whose build failed;
//! a validity check through Nix (`nix-store --check-validity`) tells which. cachix and attic
//! watch the store the same way. `.drv` files are never queued: only outputs and what they
//! reference are uploaded.
//!
//! The store directory is world-readable, so any user may watch it. What this cannot see:
//! paths that became valid while no watcher ran, and, when the kernel's event queue overflows
//! (`fs.inotify.max_queued_events`), a burst of events (reported as a warning).

use anyhow::{Context, Result, bail};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::StorePath;

/// An inotify watch on the store directory.
pub struct StoreWatcher {
    fd: OwnedFd,
    store: String,
    /// Set when the kernel dropped events since the last read.
    pub overflowed: bool,
}

impl StoreWatcher {
    pub fn new(store: &str) -> Result<StoreWatcher> {
        // SAFETY: inotify_init1 has no memory preconditions; the fd is owned from here on.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("inotify_init1");
        }
        // SAFETY: raw is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c = CString::new(store).context("the store directory holds a NUL byte")?;
        // SAFETY: fd is valid and c a NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                c.as_ptr(),
                libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_ONLYDIR,
            )
        };
        if wd < 0 {
            let e = std::io::Error::last_os_error();
            bail!("cannot watch {store} for new paths (inotify): {e}");
        }
        Ok(StoreWatcher {
            fd,
            store: store.to_string(),
            overflowed: false,
        })
    }

    /// The paths whose lock files went away, waiting up to `timeout` for the first event.
    /// Possibly empty; not yet checked for validity.
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<StorePath>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(e).context("poll on the store watch");
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: buf is writable for its length.
            let len =
                unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if len <= 0 {
                break;
            }
            let (names, overflow) = parse_events(&buf[..len as usize]);
            self.overflowed |= overflow;
            for name in names {
                if let Some(base) = unlocked_path(&name)
                    && let Ok(p) = StorePath::parse(&format!("{}/{base}", self.store))
                {
                    out.push(p);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// The base name of the path a removed store entry `name` unlocked: `HASH-NAME` for
/// `HASH-NAME.lock`, nothing for a `.drv`'s lock or any other entry.
pub fn unlocked_path(name: &str) -> Option<&str> {
    let base = name.strip_suffix(".lock")?;
    (!base.ends_with(".drv") && !base.is_empty()).then_some(base)
}

/// The names in a buffer of inotify events, and whether the kernel reported an overflow.
fn parse_events(buf: &[u8]) -> (Vec<String>, bool) {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let (mut names, mut overflow) = (Vec::new(), false);
    let mut i = 0;
    while i + HEADER <= buf.len() {
        let mask = u32::from_ne_bytes(buf[i + 4..i + 8].try_into().unwrap_or_default());
        let len = u32::from_ne_bytes(buf[i + 12..i + 16].try_into().unwrap_or_default()) as usize;
        let name_bytes = &buf[(i + HEADER).min(buf.len())..(i + HEADER + len).min(buf.len())];
        if mask & libc::IN_Q_OVERFLOW != 0 {
            overflow = true;
        }
        let name = name_bytes.split(|&b| b == 0).next().unwrap_or_default();
        if !name.is_empty() {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
        i += HEADER + len;
    }
    (names, overflow)
}

/// The paths among `paths` that are valid in the store, asked through Nix (the daemon on a
/// multi-user install): a lock file also goes away after a failed build. `env`: the session's
/// variables for the child (`super::command`).
pub fn valid_paths(
    paths: &[StorePath],
    env: Option<&crate::aws::session::EnvDelta>,
) -> Result<Vec<StorePath>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let out = super::command("nix-store", env)
        .arg("--check-validity")
        .arg("--print-invalid")
        .args(paths.iter().map(StorePath::as_str))
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run nix-store --check-validity")?;
    if !out.status.success() {
        bail!(
            "nix-store --check-validity failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let invalid: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap_or_default()
        .lines()
        .collect();
    Ok(paths
        .iter()
        .filter(|p| !invalid.contains(&p.as_str()))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_removal_of_an_output_lock_names_a_new_path() {
        let h = "mmlv50f8bzmabr3mc6fy8lx942nmzxn9";
        assert_eq!(
            unlocked_path(&format!("{h}-hello-2.12.lock")),
            Some(format!("{h}-hello-2.12").as_str())
        );
        assert_eq!(unlocked_path(&format!("{h}-hello.drv.lock")), None);
        assert_eq!(unlocked_path(&format!("{h}-hello")), None);
        assert_eq!(unlocked_path(".lock"), None);
    }

    #[test]
    fn events_are_parsed_with_their_padding_and_overflow() {
        fn event(mask: u32, name: &str) -> Vec<u8> {
            let mut padded = name.as_bytes().to_vec();
            padded.resize(name.len().div_ceil(16) * 16 + 16, 0);
            let mut v = Vec::new();
            v.extend_from_slice(&1i32.to_ne_bytes());
            v.extend_from_slice(&mask.to_ne_bytes());
            v.extend_from_slice(&0u32.to_ne_bytes());
            v.extend_from_slice(&(padded.len() as u32).to_ne_bytes());
            v.extend_from_slice(&padded);
            v
        }
        let mut buf = event(libc::IN_DELETE, "a.lock");
        buf.extend(event(libc::IN_Q_OVERFLOW, ""));
        buf.extend(event(libc::IN_DELETE, "b"));
        let (names, overflow) = parse_events(&buf);
        assert_eq!(names, ["a.lock", "b"]);
        assert!(overflow);
    }

    #[test]
    fn a_lock_file_deleted_in_a_watched_directory_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().to_str().unwrap().to_string();
        let mut w = StoreWatcher::new(&store).unwrap();
        let base = "mmlv50f8bzmabr3mc6fy8lx942nmzxn9-x";
        for name in [format!("{base}.lock"), "y.drv.lock".to_string()] {
            std::fs::write(tmp.path().join(&name), "").unwrap();
            std::fs::remove_file(tmp.path().join(&name)).unwrap();
        }
        let seen = w.wait(Duration::from_secs(5)).unwrap();
        assert_eq!(
            seen,
            [StorePath::parse(&format!("{store}/{base}")).unwrap()]
        );
        assert!(w.wait(Duration::from_millis(10)).unwrap().is_empty());
    }
}
