//! Keeping the AWS sessions of a running command fresh (`exec`, `push`).
//!
//! While CMD runs, a watcher thread renews each proxy lease's session `session-refresh-margin`
//! seconds before it ends, or halfway through what is left of a session shorter than twice
//! the margin (a 15-minute STS session keeps the 5-minute default; a 10-second test session
//! is renewed after 5 s, not at once and then every few seconds): it resolves the same request again *unattended* (never a prompt,
//! never the one-time `--mfa-code`) and hands the new session over the lease; the proxy
//! switches atomically. A session only a person can renew (a new MFA code) gets one warning on
//! stderr naming `nixstore-auth login CACHE`, which hands its session to the running proxy
//! itself; the watcher also keeps trying, and picks up the session `login` cached. A failed
//! refresh never stops CMD: its status is returned as always.
//!
//! The `AWS_*` variables CMD got at start stay as they were (a running process's environment
//! is fixed); client-side tools should use `credential_process = nixstore-auth env --format
//! json --profile P`.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::aws::session::{self, Ctx, NeedsLogin, Renewal, Session, SessionRequest};
use crate::proxy::{Lease, SessionInfo};
use crate::ui::Ui;

/// How long to wait before trying again after a refresh that gave nothing newer.
pub const RETRY_SECS: i64 = 10;

/// One proxy lease and the session it serves, kept fresh while a command runs.
pub struct Kept {
    pub lease: Lease,
    /// The request the session was resolved with (made unattended for refreshes).
    pub request: SessionRequest,
    pub session: Session,
    /// The cache to name in `nixstore-auth login CACHE`.
    pub login_cache: String,
    next: Option<i64>,
    warned_login: bool,
    last_error: Option<String>,
}

impl Kept {
    pub fn new(
        lease: Lease,
        request: SessionRequest,
        session: Session,
        login_cache: String,
    ) -> Kept {
        Kept {
            lease,
            request: request.unattended(),
            next: None,
            warned_login: false,
            last_error: None,
            session,
            login_cache,
        }
    }
}

/// What the proxy is told about a session (for `proxy status`).
pub fn info_of(s: &Session) -> SessionInfo {
    SessionInfo {
        profile: s.profile.clone(),
        origin: s.origin.as_str().to_string(),
        renewal: s.renewal.as_str().to_string(),
        renew_until: match s.renewal {
            Renewal::Unattended { until } => until,
            _ => None,
        },
    }
}

/// The margin for a session with `left` seconds to run: the configured one, but at most half
/// of what is left, so that a short session is renewed halfway through.
pub fn margin_for(configured: i64, left: i64) -> i64 {
    configured.max(0).min(left.max(0) / 2)
}

/// When a session that ends at `expiration` is due for renewal, seen at `now`: the
/// [`margin_for`] it before its end; never for one without an end (long-term keys).
pub fn due(expiration: Option<i64>, margin: i64, now: i64) -> Option<i64> {
    expiration.map(|e| e - margin_for(margin, e - now))
}

/// How a renewal attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A newer session was handed to the proxy.
    Renewed,
    /// The source gave the same or an older session (an environment's, a cached one).
    NotNewer,
    /// Nothing came (a person is needed, or an error); tried again later.
    Failed,
}

/// When to look at a session next, after an attempt at `now` whose session now ends at
/// `expiration`: at its due time (never in the same second: no busy loop); after a fruitless
/// try, [`RETRY_SECS`] later, or sooner while a short session still runs (a quarter of what is
/// left, at least a second), so that a `login` or a recovered STS is picked up before it ends.
pub fn next_check(outcome: Outcome, expiration: Option<i64>, margin: i64, now: i64) -> Option<i64> {
    // Nothing to renew at all (long-term keys).
    let end = expiration?;
    let left = end - now;
    Some(match outcome {
        Outcome::Renewed => (end - margin_for(margin, left)).max(now + 1),
        Outcome::NotNewer | Outcome::Failed if left > 0 => now + RETRY_SECS.min((left / 4).max(1)),
        Outcome::NotNewer | Outcome::Failed => now + RETRY_SECS,
    })
}

/// Runs `run` (the command) on this thread while a watcher thread keeps the sessions of `kept`
/// fresh; returns what `run` returns once the watcher has stopped.
pub fn while_running<T>(kept: &mut [Kept], ctx: Ctx, ui: &Ui, run: impl FnOnce() -> T) -> T {
    let margin = ctx.margin();
    let now = crate::time::now();
    for k in kept.iter_mut() {
        // An environment's credentials are not renewed, but get their warning then.
        k.next = due(k.session.credentials.expiration, margin, now);
    }
    if kept.iter().all(|k| k.next.is_none()) {
        return run();
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(|| watch(kept, ctx, ui, stopped));
        let out = run();
        drop(stop);
        out
    })
}

fn watch(kept: &mut [Kept], ctx: Ctx, ui: &Ui, stopped: Receiver<()>) {
    let margin = ctx.margin();
    let quiet = Ui::silent();
    // The resolver's own notices (the keyring fallback, ...) were said at the start.
    let inner = if ui.verbose > 0 { ui } else { &quiet };
    loop {
        let Some(next) = kept.iter().filter_map(|k| k.next).min() else {
            // Nothing left to renew: wait for the command to end.
            let _ = stopped.recv();
            return;
        };
        // To the start of second `next` (not a whole number of seconds from a truncated now:
        // up to a second late matters for a short session).
        let at = std::time::UNIX_EPOCH + Duration::from_secs(next.max(0) as u64);
        let wait = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = crate::time::now();
        for k in kept.iter_mut().filter(|k| k.next.is_some_and(|n| n <= now)) {
            renew_one(k, ctx, margin, ui, inner);
        }
    }
}

fn renew_one(k: &mut Kept, ctx: Ctx, margin: i64, ui: &Ui, inner: &Ui) {
    let now = crate::time::now();
    let cache = k.login_cache.clone();
    let ends = k
        .session
        .credentials
        .expiration
        .map(|e| {
            format!(
                "ends at {} (in {} s)",
                crate::time::rfc3339(e),
                (e - now).max(0)
            )
        })
        .unwrap_or_default();
    if k.session.renewal == Renewal::Fixed {
        ui.warn(format!(
            "the AWS session for cache {cache} comes from the environment and {ends}; \
             nixstore-auth cannot renew it, so the cache stops working then"
        ));
        k.next = None;
        return;
    }
    let outcome = match session::resolve(&k.request, ctx, inner) {
        Ok(new) if session_newer(&new, &k.session) => {
            match k.lease.refresh_with(&new.credentials, Some(info_of(&new))) {
                Ok(()) => {
                    ui.debug(format!(
                        "renewed the AWS session for {} ({}, from {}); it ends at {}",
                        k.lease.cache_names().join(", "),
                        new.credentials.access_key_id,
                        new.origin.as_str(),
                        new.credentials
                            .expiration
                            .map(crate::time::rfc3339)
                            .unwrap_or_else(|| "never".into())
                    ));
                    k.session = new;
                    k.warned_login = false;
                    k.last_error = None;
                    Outcome::Renewed
                }
                Err(e) => {
                    warn_failure(k, ui, &format!("the proxy did not take it: {e:#}"));
                    Outcome::Failed
                }
            }
        }
        Ok(_) => Outcome::NotNewer,
        Err(e) if e.downcast_ref::<NeedsLogin>().is_some() => {
            if !k.warned_login {
                k.warned_login = true;
                ui.warn(format!(
                    "the AWS session for cache {cache} {ends}, and renewing it needs you: {e}. \
                     Run `nixstore-auth login {cache}` in another terminal: the running command \
                     keeps the same cache URL and continues with the new session"
                ));
            }
            Outcome::Failed
        }
        Err(e) => {
            warn_failure(k, ui, &format!("{e:#}"));
            Outcome::Failed
        }
    };
    k.next = next_check(outcome, k.session.credentials.expiration, margin, now);
}

fn session_newer(new: &Session, old: &Session) -> bool {
    match (new.credentials.expiration, old.credentials.expiration) {
        (Some(n), Some(o)) => n > o,
        _ => false,
    }
}

/// Warns once per distinct cause: a refresh that keeps failing the same way says it once.
fn warn_failure(k: &mut Kept, ui: &Ui, why: &str) {
    if k.last_error.as_deref() == Some(why) {
        return;
    }
    k.last_error = Some(why.to_string());
    ui.warn(format!(
        "cannot renew the AWS session for cache {} yet (trying again every {RETRY_SECS} s; the \
         command keeps running): {why}",
        k.login_cache
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_check_table() {
        use Outcome::*;
        // (outcome, new expiration, margin, now) -> next check
        let rows = [
            (Renewed, Some(1000), 300, 100, Some(700)),
            // Shorter than twice the margin: renewed halfway through.
            (Renewed, Some(1000), 300, 695, Some(848)),
            (Renewed, Some(110), 300, 100, Some(105)),
            (Renewed, Some(130), 20, 100, Some(115)),
            // About to end, or ended: the next second, never in a busy loop.
            (Renewed, Some(101), 300, 100, Some(101)),
            (Renewed, Some(90), 300, 100, Some(101)),
            (Renewed, None, 300, 100, None),
            (NotNewer, Some(1000), 300, 700, Some(710)),
            (Failed, Some(1000), 300, 700, Some(710)),
            // A short session left: tried again sooner, at least a second apart.
            (Failed, Some(108), 300, 100, Some(102)),
            (Failed, Some(103), 300, 100, Some(101)),
            // Past its end: keep trying (a `login` may bring one).
            (Failed, Some(1000), 300, 1200, Some(1210)),
            (Failed, None, 300, 700, None),
            (Renewed, Some(1000), -5, 100, Some(1000)),
        ];
        for (i, (o, exp, margin, now, want)) in rows.into_iter().enumerate() {
            assert_eq!(next_check(o, exp, margin, now), want, "row {i}");
        }
    }

    #[test]
    fn margin_scales_with_short_sessions() {
        // (configured margin, seconds left) -> margin used
        let rows = [
            (300, 3600, 300),
            (300, 900, 300),
            (300, 600, 300),
            (300, 400, 200),
            (300, 10, 5),
            (20, 30, 15),
            (20, 1, 0),
            (300, 0, 0),
            (300, -5, 0),
            (-5, 100, 0),
            (0, 100, 0),
        ];
        for (i, (configured, left, want)) in rows.into_iter().enumerate() {
            assert_eq!(margin_for(configured, left), want, "row {i}");
        }
        assert_eq!(due(Some(160), 20, 100), Some(140));
        assert_eq!(due(Some(110), 300, 100), Some(105));
        assert_eq!(due(None, 20, 100), None);
    }
}
