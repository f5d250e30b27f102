//! The running proxy: each request as route → forward (or the refusal), and the lifecycle
//! loop that keeps the proxy up while clients or requests remain.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::UnixListener;
use zeroize::Zeroizing;

use super::log::log;
use super::paths::{self, Layout};
use super::state::{MountEntry, State};

/// Runs until stopped, or idle (no client, nothing in flight) for the grace period, or idle
/// with no unexpired session left.
pub async fn run(layout: Layout, secret: Zeroizing<String>, verbose: bool) -> Result<()> {
    // The previous proxy may still be releasing the port for a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    let http = loop {
        match super::listen::bind(&layout) {
            Ok(l) => break l,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(e),
        }
    };
    let sock_path = layout.socket_path()?;
    let _ = std::fs::remove_file(&sock_path);
    let control = UnixListener::bind(&sock_path)
        .with_context(|| format!("cannot listen on {}", sock_path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600))?;
    }
    let client = super::upstream::upstream_client();
    let state = Arc::new(State {
        secret: RwLock::new(secret),
        secret_file: layout.secret_file(),
        mounts: RwLock::new(HashMap::new()),
        client,
        leases: AtomicUsize::new(0),
        ever_leased: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        port: layout.port,
        verbose,
        redirect_nars: layout.redirect_nars,
        stop: tokio::sync::Notify::new(),
        daemon_used: Default::default(),
    });
    log(format!(
        "listening on 127.0.0.1:{} (pid {}, idle grace {} s)",
        layout.port,
        std::process::id(),
        layout.grace_secs
    ));

    tokio::spawn(super::listen::serve(state.clone(), http));
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = control.accept().await {
                tokio::spawn(super::clients::serve(st.clone(), s));
            }
        }
    });

    let grace = Duration::from_secs(layout.grace_secs);
    let mut idle_since: Option<Instant> = None;
    let rundir = layout.runtime_dir()?;
    let mut exit_lock = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let reason = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.stop.notified() => break "stopped on request".to_string(),
        }
        let now = crate::time::now();
        let usable = {
            let mut map = state.mounts.write().unwrap_or_else(|e| e.into_inner());
            for (name, m) in map.iter_mut() {
                if let Some(s) = m.session.as_ref().filter(|s| s.expired(now)) {
                    log(format!(
                        "the AWS session for {name} expired at {}; answering 503 until a client brings a fresh one",
                        crate::time::expiry(s.expiration)
                    ));
                    // Dropping the last reference zeroizes the secret key.
                    *m = Arc::new(MountEntry {
                        s3: m.s3.clone(),
                        session: None,
                        expired_at: s.expiration,
                        presign: Default::default(),
                        info: m.info.clone(),
                    });
                }
            }
            map.values().any(|m| m.session.is_some())
        };
        if state.leases.load(Ordering::SeqCst) > 0 || state.in_flight.load(Ordering::SeqCst) > 0 {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        let why = if state.ever_leased.load(Ordering::SeqCst) && !usable {
            "no client left and no unexpired session".to_string()
        } else if since.elapsed() >= grace {
            format!("no client for {} s", layout.grace_secs)
        } else {
            continue;
        };
        // A client attaching right now holds the start lock until its lease counts: exit only
        // with the lock, and only if still idle; it is released when the process ends.
        match paths::lock_start(&rundir, false) {
            Ok(Some(lock)) if state.leases.load(Ordering::SeqCst) == 0 => {
                exit_lock = Some(lock);
                break why;
            }
            _ => continue,
        }
    };
    // Remove the socket first, so that a new client starts a new proxy instead of reaching
    // this one while it exits.
    let _ = std::fs::remove_file(&sock_path);
    log(format!("exiting: {reason}"));
    drop(exit_lock);
    Ok(())
}
