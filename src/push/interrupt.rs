//! Ctrl-C (and SIGTERM, SIGHUP) counted instead of obeyed, while uploads must end cleanly: the
//! first asks to finish the queue, the second to stop at once. Uploads run in their own
//! process group, so a Ctrl-C at the terminal reaches them only through us.

use std::sync::atomic::{AtomicUsize, Ordering};

static COUNT: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count(_sig: libc::c_int) {
    COUNT.fetch_add(1, Ordering::SeqCst);
}

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Counts the signals above until dropped (then the previous actions are back).
pub struct Counting {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl Counting {
    pub fn start() -> Counting {
        COUNT.store(0, Ordering::SeqCst);
        let mut old = Vec::new();
        for sig in SIGNALS {
            // SAFETY: a zeroed sigaction is valid; the handler only touches an atomic.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = count as *const () as usize;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
        }
        Counting { old }
    }

    /// How many have arrived since [`Counting::start`].
    pub fn count(&self) -> usize {
        COUNT.load(Ordering::SeqCst)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        for (sig, prev) in self.old.drain(..) {
            // SAFETY: restoring an action previously returned by sigaction.
            unsafe {
                libc::sigaction(sig, &prev, std::ptr::null_mut());
            }
        }
    }
}
