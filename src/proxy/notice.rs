//! Telling the user, once, that only a person can give a cache a working credential: the log,
//! the notice file the `shell-init` hook shows before the next prompt, and a desktop
//! notification where a notification service answers. Shared by every mount kind (the
//! background renewer for S3, the HTTPS kind's forwarding).

use std::path::{Path, PathBuf};

use super::log::log;
use crate::config::Dirs;

/// The notice the `shell-init` hook shows once (then it writes `notice.seen`).
pub fn notice_file(rundir: &Path) -> PathBuf {
    rundir.join("notice")
}

/// Tells the user that `name` needs them: `why`, until when it still works (`expires`), and
/// the command that fixes it.
pub(super) fn tell(dirs: &Dirs, name: &str, why: &str, expires: Option<i64>, fix: &str) {
    let now = crate::time::now();
    let when = match expires {
        Some(e) if e > now => format!(
            "it works until {} (in {})",
            crate::time::rfc3339(e),
            crate::time::human_secs(e - now)
        ),
        _ => "it does not work now".to_string(),
    };
    let line = format!(
        "cache {name} needs you: {why}; {when}, then plain Nix commands go on without it. Run `{fix}`"
    );
    log(&line);
    let rundir = super::paths::runtime_dir_of(dirs);
    let notice = notice_file(&rundir);
    let _ = std::fs::remove_file(rundir.join("notice.seen"));
    if let Err(e) = crate::fs::atomic_write(&notice, format!("{line}\n").as_bytes(), 0o600) {
        log(format!("cannot write {}: {e:#}", notice.display()));
    }
    let summary = format!("nixstore-auth: cache {name} needs you");
    let body = format!("Run `{fix}`. {when}; then Nix goes on without the cache.");
    std::thread::spawn(move || match super::desktop::notify(&summary, &body) {
        Ok(true) => log("sent a desktop notification"),
        Ok(false) => {}
        Err(e) => log(format!("no desktop notification: {e:#}")),
    });
}
