//! The proxy's log: one sanitised line per event, capped in size while the proxy runs, and
//! rate-limited for what other users can trigger at will (refused connections and requests).
//!
//! The log is the proxy's stderr (the spawning client opens it, so that a proxy that dies at
//! start still explains why). Everything that reaches it goes through [`line`]: control
//! characters are escaped and lines bounded, so nothing a client sends (a method, a path, an
//! upstream's error text) can forge log lines or drive a terminal that shows the log.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The log is started afresh (the old one kept as `proxy.log.1`) past this size, also while
/// the proxy runs: a flood of refused requests cannot fill the disk.
pub const CAP: u64 = 4 << 20;
/// The longest line written; the rest is cut.
const MAX_LINE: usize = 1024;
/// Refusals of one kind are logged at most this often (the count of the others follows).
const REFUSAL_EVERY: Duration = Duration::from_secs(10);

struct Sink {
    path: Option<PathBuf>,
    written: u64,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    path: None,
    written: 0,
});

/// Makes the log rotate at [`CAP`]: `path` is the file stderr was opened on.
pub fn cap_at(path: &Path) {
    let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    sink.path = Some(path.to_path_buf());
    sink.written = size;
}

/// Opens `path` for appending, 0600, without following a symlink, creating it if missing.
pub fn open(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// `s` safe for one log line: control characters escaped (`\n` becomes `\x0a`), at most
/// `max` characters.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for (count, c) in s.chars().enumerate() {
        if count >= max {
            out.push_str("...");
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}') {
            out.push_str(&format!("\\x{:02x}", c as u32 & 0xff));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes one line: a timestamp, then `msg` cleaned.
pub fn line(msg: &str) {
    let ts = crate::time::now_rfc3339();
    let text = format!("{ts} {}\n", clean(msg, MAX_LINE));
    let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let _ = std::io::stderr().write_all(text.as_bytes());
    sink.written += text.len() as u64;
    if sink.written > CAP
        && let Some(path) = sink.path.clone()
    {
        rotate(&path);
        sink.written = 0;
    }
}

/// One line in the proxy's log (its stderr), sanitised. Callers never pass secrets or request
/// paths (the path starts with the URL secret); they pass `NAME/KEY`.
pub fn log(msg: impl AsRef<str>) {
    line(msg.as_ref());
}

/// Moves the full log aside and points stderr at a new file.
fn rotate(path: &Path) {
    let _ = fs::rename(path, path.with_extension("log.1"));
    if let Ok(f) = open(path) {
        // SAFETY: dup2 onto stderr with a descriptor we own; the File closes its copy.
        unsafe {
            libc::dup2(f.as_raw_fd(), libc::STDERR_FILENO);
        }
    }
}

/// Logs one kind of refusal at most every [`REFUSAL_EVERY`], with the count of those not
/// logged since: other local users can make refusals as fast as they like.
pub struct Refusals {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Refusals {
    pub const fn new() -> Refusals {
        Refusals {
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one refusal; logs `msg` (with the count of unlogged ones) when due.
    pub fn note(&self, msg: impl FnOnce() -> String) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if st
            .0
            .is_some_and(|at| now.duration_since(at) < REFUSAL_EVERY)
        {
            st.1 += 1;
            return;
        }
        let skipped = std::mem::take(&mut st.1);
        st.0 = Some(now);
        drop(st);
        let more = if skipped > 0 {
            format!(" ({skipped} more like it not logged)")
        } else {
            String::new()
        };
        line(&format!("{}{more}", msg()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_lines_bounded() {
        assert_eq!(clean("GET a/b", 100), "GET a/b");
        assert_eq!(
            clean("x\n2026-01-01 forged\r\x1b[2J", 100),
            "x\\x0a2026-01-01 forged\\x0d\\x1b[2J"
        );
        assert_eq!(clean("abcdef", 3), "abc...");
        assert!(!clean("\u{202e}evil", 10).contains('\u{202e}'));
    }

    #[test]
    fn refusals_are_rate_limited() {
        let r = Refusals::new();
        let mut logged = 0;
        for _ in 0..100 {
            r.note(|| {
                logged += 1;
                "refused".into()
            });
        }
        assert_eq!(logged, 1);
        assert_eq!(r.state.lock().unwrap().1, 99);
    }

    #[test]
    fn open_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "").unwrap();
        let link = dir.path().join("proxy.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open(&link).is_err());
        assert!(open(&dir.path().join("real.log")).is_ok());
    }
}
