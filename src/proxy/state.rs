//! What the running proxy holds: the URL secret, the mounted caches with their sessions, the
//! count of clients and requests that keeps it alive.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use zeroize::Zeroizing;

use super::control::{MountStatus, Reply, SessionInfo, WireMount};
use super::credential::Standing;
use super::log::log;
use super::respond::Body;
use super::sign::{self, Session};
use super::urls::Generations;
use crate::cache::S3Ref;

/// What every request the proxy sends upstream says it is.
pub(super) const USER_AGENT: &str = concat!("nixstore-auth-proxy/", env!("CARGO_PKG_VERSION"));

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
    /// Set by the background proxy when only a person can renew the credential: why.
    pub(super) needs_person: Option<String>,
    /// Mounted by a background proxy because config.toml records the cache.
    pub(super) recorded: bool,
}

impl MountEntry {
    /// A mount with no session yet.
    pub(super) fn new(s3: S3Ref, recorded: bool) -> MountEntry {
        MountEntry {
            s3,
            session: None,
            expired_at: None,
            presign: Default::default(),
            info: None,
            needs_person: None,
            recorded,
        }
    }

    /// The same mount with another session (a person is no longer needed).
    pub(super) fn with_session(&self, session: Arc<Session>, info: Option<SessionInfo>) -> Self {
        MountEntry {
            s3: self.s3.clone(),
            session: Some(session),
            expired_at: None,
            presign: Default::default(),
            info,
            needs_person: None,
            recorded: self.recorded,
        }
    }

    /// The same mount after its session expired (dropping it zeroizes the secret key).
    pub(super) fn expired(&self, at: Option<i64>) -> Self {
        MountEntry {
            s3: self.s3.clone(),
            session: None,
            expired_at: at,
            presign: Default::default(),
            info: self.info.clone(),
            needs_person: self.needs_person.clone(),
            recorded: self.recorded,
        }
    }

    /// The same mount, now known to need a person (or not: `None`).
    pub(super) fn needing(&self, why: Option<String>) -> Self {
        MountEntry {
            s3: self.s3.clone(),
            session: self.session.clone(),
            expired_at: self.expired_at,
            presign: Default::default(),
            info: self.info.clone(),
            needs_person: why,
            recorded: self.recorded,
        }
    }

    /// Where its credential stands at `now`.
    pub(super) fn standing(&self, now: i64) -> Standing {
        let info = self.info.as_ref();
        let renewal = info.map(|i| i.renewal.as_str()).unwrap_or("");
        let renew_until = info.and_then(|i| i.renew_until);
        match &self.session {
            Some(s) if s.refused() => Standing::Unavailable {
                why: "S3 refused the AWS session".into(),
            },
            Some(s) if !s.expired(now) => match renewal {
                "auto" => Standing::Renews {
                    expires: s.expiration,
                    until: renew_until,
                },
                _ => Standing::Valid {
                    expires: s.expiration,
                },
            },
            session => {
                let ended = session
                    .as_ref()
                    .and_then(|s| s.expiration)
                    .or(self.expired_at);
                let ended = match ended {
                    Some(e) => format!("the AWS session expired at {}", crate::time::rfc3339(e)),
                    None => "there is no AWS session".to_string(),
                };
                if let Some(why) = &self.needs_person {
                    return Standing::NeedsPerson {
                        why: format!("{ended}: {why}"),
                    };
                }
                match (renewal, renew_until) {
                    ("login", _) => Standing::NeedsPerson {
                        why: format!("{ended}, and each new one takes an MFA code"),
                    },
                    ("auto", Some(u)) if u <= now => Standing::NeedsPerson {
                        why: format!("{ended}, and so has its MFA base session"),
                    },
                    _ => Standing::Unavailable { why: ended },
                }
            }
        }
    }
}

/// What the background renewer is asked by the control channel (see `background.rs`).
pub(super) enum RenewerCmd {
    /// Read config.toml again and mount what it records; answers with a summary or an error.
    Reload(tokio::sync::oneshot::Sender<Result<String, String>>),
}

pub(super) struct State {
    pub(super) secret: RwLock<Zeroizing<String>>,
    pub(super) secret_file: PathBuf,
    pub(super) mounts: RwLock<HashMap<String, Arc<MountEntry>>>,
    /// The HTTPS caches served (`https.rs`), by name; a name is never in both maps.
    pub(super) https: RwLock<HashMap<String, Arc<super::https::HttpsMount>>>,
    /// The GCS and Azure caches served (`object.rs`), by name; in no other map.
    pub(super) objects: RwLock<HashMap<String, Arc<super::object::ObjectMount>>>,
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
    /// The URLs' generations (`urls.rs`), as in the state file.
    pub(super) generations: RwLock<Generations>,
    /// Each mount's `nix-cache-info` as last fetched: answered while a person is needed.
    pub(super) cache_info: Mutex<HashMap<String, Vec<u8>>>,
    /// Mounts answered with a miss while a person was needed, since they last worked: their
    /// URL moves to a new generation once they work again.
    pub(super) missed: Mutex<HashSet<String>>,
    /// A background proxy: mounts every recorded cache, renews, never exits when idle.
    pub(super) background: AtomicBool,
    /// The service manager handed over the listening socket.
    pub(super) activated: bool,
    /// The background renewer's inbox, once it runs.
    pub(super) renewer: Mutex<Option<std::sync::mpsc::Sender<RenewerCmd>>>,
    /// Our directories (config.toml, the state files, the runtime directory).
    pub(super) dirs: crate::config::Dirs,
}

impl State {
    /// Takes mounts and credentials from a client. Each mount keeps the session it has unless
    /// the new one is fresher, or the old one expired or was refused by S3.
    /// Returns the mounts that took the new session.
    pub(super) fn apply_lease(
        &self,
        creds: crate::aws::Credentials,
        mounts: Vec<WireMount>,
        info: Option<SessionInfo>,
    ) -> Vec<String> {
        let now = crate::time::now();
        let new = Arc::new(Session::new(&creds));
        drop(creds);
        let mut took = Vec::new();
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
            if took_new {
                took.push(m.name.clone());
            }
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
            let entry = match &old {
                // The same cache: it keeps what the background proxy knows of it.
                Some(o) if m == WireMount::from_s3(&m.name, &o.s3) && !took_new => continue,
                Some(o) if m == WireMount::from_s3(&m.name, &o.s3) => o.with_session(session, info),
                _ => MountEntry::new(m.s3(), false).with_session(session, info),
            };
            map.insert(m.name.clone(), Arc::new(entry));
        }
        took
    }

    /// A session from `login`: taken by the mounts named in `caches` and those whose session
    /// is of the same profile, where it is fresher. Returns the mounts that took it.
    pub(super) fn renew(
        &self,
        creds: crate::aws::Credentials,
        info: SessionInfo,
        caches: &[String],
    ) -> Vec<String> {
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
            return Vec::new();
        }
        self.apply_lease(creds, mounts, Some(info))
    }

    /// The mounts that took a working session after serving misses while a person was
    /// needed: their URLs must move to a new generation.
    pub(super) fn recovered(&self, took: &[String]) -> Vec<String> {
        let mut missed = self.missed.lock().unwrap_or_else(|e| e.into_inner());
        took.iter().filter(|n| missed.remove(*n)).cloned().collect()
    }

    /// The URL generation of a mount.
    pub(super) fn generation(&self, name: &str) -> u32 {
        self.generations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .of(name)
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
                generation: self.generation(name),
                standing: Some(m.standing(now)),
                recorded: m.recorded,
            })
            .collect();
        mounts.extend(super::object::statuses(self));
        // HTTPS mounts: the proxy streams what the cache serves (its own redirects pass on).
        mounts.extend(
            self.https
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(name, m)| {
                    super::object::status_row(
                        self,
                        name,
                        m.auth.base().to_string(),
                        m.auth.as_ref(),
                        "stream",
                        m.recorded,
                    )
                }),
        );
        mounts.sort_by(|a, b| a.name.cmp(&b.name));
        Reply {
            ok: true,
            pid: std::process::id(),
            port: self.port,
            leases: self.leases.load(Ordering::SeqCst),
            mounts,
            background: self.background.load(Ordering::SeqCst),
            activated: self.activated,
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
