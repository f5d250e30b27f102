//! What the running proxy holds: the URL secret, the mounted caches with their sessions, the
//! count of clients and requests that keeps it alive.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use zeroize::Zeroizing;

use super::control::{MountStatus, Reply, SessionInfo, WireMount};
use super::log::log;
use super::respond::Body;
use super::sign::{self, Session};
use crate::cache::S3Ref;

/// The pooled client for S3.
pub(super) type Upstream = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Body,
>;

pub(super) struct MountEntry {
    pub(super) s3: S3Ref,
    pub(super) session: Option<Arc<Session>>,
    /// When the session that was dropped had expired, for the 503's explanation.
    pub(super) expired_at: Option<i64>,
    /// Whether S3 takes presigned GETs from this session: tried once, at the first NAR.
    pub(super) presign: tokio::sync::OnceCell<bool>,
    /// What the client said about the session (origin, how it renews).
    pub(super) info: Option<SessionInfo>,
}

pub(super) struct State {
    pub(super) secret: RwLock<Zeroizing<String>>,
    pub(super) secret_file: PathBuf,
    pub(super) mounts: RwLock<HashMap<String, Arc<MountEntry>>>,
    pub(super) client: Upstream,
    pub(super) leases: AtomicUsize,
    pub(super) ever_leased: AtomicBool,
    pub(super) in_flight: AtomicUsize,
    pub(super) port: u16,
    pub(super) verbose: bool,
    pub(super) redirect_nars: bool,
    pub(super) stop: tokio::sync::Notify,
    /// Caches whose `nix-cache-info` root (the nix-daemon) has fetched through the URL: proof,
    /// from the user's side, that the daemon uses the URL (an administrator may have listed it
    /// in a file the user cannot read).
    pub(super) daemon_used: Mutex<HashSet<String>>,
}

impl State {
    /// Takes mounts and credentials from a client. Each mount keeps the session it has unless
    /// the new one is fresher, or the old one expired or was refused by S3.
    /// Returns how many mounts took the new session.
    pub(super) fn apply_lease(
        &self,
        creds: crate::aws::Credentials,
        mounts: Vec<WireMount>,
        info: Option<SessionInfo>,
    ) -> usize {
        let now = crate::time::now();
        let new = Arc::new(Session::new(&creds));
        drop(creds);
        let mut took = 0;
        let mut map = self.mounts.write().unwrap_or_else(|e| e.into_inner());
        for m in mounts {
            let old = map.get(&m.name).cloned();
            let keep = old
                .as_ref()
                .and_then(|old| old.session.clone().map(|s| (s, old.info.clone())))
                .filter(|(old, _)| {
                    !old.expired(now)
                        && !old.refused()
                        && !sign::fresher(new.expiration, old.expiration)
                });
            let took_new = keep.is_none();
            took += usize::from(took_new);
            let (session, info) = keep.unwrap_or_else(|| (new.clone(), info.clone()));
            if took_new && old.as_ref().is_some_and(|o| o.session.is_some()) {
                // The switch is atomic: requests under way keep their Arc of the old session.
                log(format!(
                    "mount {}: switched to a newer session (expires {})",
                    m.name,
                    crate::time::expiry(session.expiration)
                ));
            }
            if self.verbose {
                log(format!(
                    "mount {}: {} (expires {})",
                    m.name,
                    if took_new {
                        "took the client's session"
                    } else {
                        "kept its fresher session"
                    },
                    crate::time::expiry(session.expiration)
                ));
            }
            map.insert(
                m.name.clone(),
                Arc::new(MountEntry {
                    s3: m.s3(),
                    session: Some(session),
                    expired_at: None,
                    presign: Default::default(),
                    info,
                }),
            );
        }
        took
    }

    /// A session from `login`: taken by the mounts named in `caches` and those whose session
    /// is of the same profile, where it is fresher. Returns how many took it.
    pub(super) fn renew(
        &self,
        creds: crate::aws::Credentials,
        info: SessionInfo,
        caches: &[String],
    ) -> usize {
        let mounts: Vec<WireMount> = {
            let map = self.mounts.read().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .filter(|(name, m)| {
                    caches.contains(name)
                        || (info.profile.is_some()
                            && m.info.as_ref().and_then(|i| i.profile.as_ref())
                                == info.profile.as_ref())
                })
                .map(|(name, m)| WireMount::from_s3(name, &m.s3))
                .collect()
        };
        if mounts.is_empty() {
            return 0;
        }
        self.apply_lease(creds, mounts, Some(info))
    }

    pub(super) fn status(&self) -> Reply {
        let now = crate::time::now();
        let map = self.mounts.read().unwrap_or_else(|e| e.into_inner());
        let mut mounts: Vec<MountStatus> = map
            .iter()
            .map(|(name, m)| MountStatus {
                name: name.clone(),
                url: m.s3.to_url(),
                session: match &m.session {
                    None if m.expired_at.is_some() => "expired",
                    None => "none",
                    Some(s) if s.expired(now) => "expired",
                    Some(s) if s.refused() => "refused",
                    Some(_) => "valid",
                }
                .into(),
                expiration: m
                    .session
                    .as_ref()
                    .and_then(|s| s.expiration)
                    .or(m.expired_at),
                nars: match m.presign.get() {
                    _ if !self.redirect_nars => "stream",
                    Some(true) => "redirect",
                    Some(false) => "stream",
                    None => "untried",
                }
                .into(),
                daemon_used: self
                    .daemon_used
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(name),
                info: m.info.clone(),
            })
            .collect();
        mounts.sort_by(|a, b| a.name.cmp(&b.name));
        Reply {
            ok: true,
            pid: std::process::id(),
            port: self.port,
            leases: self.leases.load(Ordering::SeqCst),
            mounts,
            ..Reply::default()
        }
    }
}

/// Counts a request as in flight until its response body is done.
pub(super) struct InFlight(Arc<State>);

impl InFlight {
    pub(super) fn new(state: &Arc<State>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
