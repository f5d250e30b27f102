//! The background proxy's own work (socket-activated, or `proxy start --persistent`): it mounts
//! every S3 cache config.toml records, keeps each one's credential fresh through its source
//! (`credential.rs`, `aws_source.rs`) with the refresh rules of `refresh.rs` (renew
//! `session-refresh-margin` seconds before the end, retry after a fruitless try), and tells the
//! user once when only a person can renew one: the log, a notice file the `shell-init` hook
//! shows before the next prompt, a desktop notification, and the service's status line.
//!
//! When a cache that answered misses while a person was needed works again (a renewal, a
//! command's lease, `login`), its URL moves to a new generation (`urls.rs`) and the include
//! file is rewritten, so that the nix-daemon remembers none of those misses.
//!
//! It runs on its own thread, never on the async runtime: resolving sessions blocks (STS, the
//! keyring) and makes runtimes of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::aws_source::AwsSource;
use super::control::WireMount;
use super::credential::{Credential, Renewal, Source, login_command};
use super::log::log;
use super::notice::notice_file;
use super::state::{MountEntry, RenewerCmd, State};
use crate::cache::CacheKind;
use crate::config::{Config, Dirs};
use crate::refresh::{Outcome, next_check};

/// One recorded cache and its source.
struct Kept {
    source: Box<dyn Source>,
    /// The next renewal (epoch seconds); `None`: nothing to renew (no end).
    next: Option<i64>,
    /// The user was told that a person is needed (reset when it works again).
    told: bool,
    last_error: Option<String>,
}

pub(super) struct Renewer {
    state: Arc<State>,
    dirs: Dirs,
    kept: BTreeMap<String, Kept>,
    margin: i64,
}

impl Renewer {
    pub(super) fn new(state: Arc<State>, dirs: Dirs) -> Renewer {
        Renewer {
            state,
            dirs,
            kept: BTreeMap::new(),
            margin: crate::aws::session_cache::DEFAULT_REFRESH_MARGIN,
        }
    }

    /// Mounts what config.toml records now (and unmounts recorded caches it no longer lists).
    /// Returns a one-line summary.
    pub(super) fn load(&mut self) -> Result<String, String> {
        let cfg = Config::load(&self.dirs.config_file()).map_err(|e| format!("{e:#}"))?;
        let caches = cfg.caches().map_err(|e| format!("{e:#}"))?;
        self.margin = crate::aws::session::Ctx::new(&cfg, &self.dirs).margin();
        let wanted: BTreeMap<String, crate::cache::S3Ref> = caches
            .into_iter()
            .filter_map(|c| match c.kind {
                CacheKind::S3(s3) => Some((c.name, s3)),
                _ => None,
            })
            .collect();
        if let Ok(g) = super::urls::load(&super::urls::file(&self.dirs.state)) {
            *self
                .state
                .generations
                .write()
                .unwrap_or_else(|e| e.into_inner()) = g;
        }
        let mut map = self.state.mounts.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, m| {
            let keep = !m.recorded || wanted.contains_key(name);
            if !keep {
                log(format!(
                    "unmounted {name}: config.toml no longer records it"
                ));
            }
            keep
        });
        self.kept.retain(|name, _| wanted.contains_key(name));
        for (name, s3) in &wanted {
            let same = map.get(name).is_some_and(|m| {
                m.recorded && WireMount::from_s3(name, &m.s3) == WireMount::from_s3(name, s3)
            });
            if !same {
                let entry = match map.get(name) {
                    // A command's lease mounted it already: keep its session.
                    Some(m) if WireMount::from_s3(name, &m.s3) == WireMount::from_s3(name, s3) => {
                        MountEntry {
                            recorded: true,
                            ..m.needing(m.needs_person.clone())
                        }
                    }
                    _ => MountEntry::new(s3.clone(), true),
                };
                map.insert(name.clone(), Arc::new(entry));
                log(format!("mounted {name} ({}) from config.toml", s3.to_url()));
                self.kept.remove(name);
            }
            self.kept.entry(name.clone()).or_insert_with(|| Kept {
                source: Box::new(AwsSource::new(name, s3, &cfg, &self.dirs)),
                next: Some(0),
                told: false,
                last_error: None,
            });
        }
        drop(map);
        let https = self.load_https(&cfg, &caches_again(&cfg));
        let clouds =
            super::object::load_recorded(&self.state, &cfg, &self.dirs, &caches_again(&cfg));
        runtime_urls(&self.dirs);
        Ok(format!(
            "{} recorded cache(s) mounted",
            wanted.len() + https + clouds
        ))
    }

    /// Mounts the recorded HTTPS caches on the proxy route afresh (their token is read again:
    /// `use` and `secret set` change it), and unmounts those no longer recorded. A mount that
    /// works where a person was needed moves to a new URL (`moved_on`). Returns how many.
    fn load_https(&mut self, cfg: &Config, caches: &[crate::config::CacheEntry]) -> usize {
        let wanted: Vec<&crate::config::CacheEntry> = caches
            .iter()
            .filter(|c| c.https_route(true).is_some() && c.served_by_proxy(true))
            .collect();
        let mut recovered = Vec::new();
        {
            let mut map = self.state.https.write().unwrap_or_else(|e| e.into_inner());
            map.retain(|name, m| {
                let keep = !m.recorded || wanted.iter().any(|c| &c.name == name);
                if !keep {
                    log(format!(
                        "unmounted {name}: config.toml no longer records it on the proxy route"
                    ));
                }
                keep
            });
            for c in &wanted {
                match super::https::HttpsMount::recorded(c, cfg, &self.dirs, true) {
                    Ok(m) => {
                        let works = !matches!(
                            crate::cloud::ObjectAuth::state(&*m.auth),
                            crate::cloud::State::NeedsPerson { .. }
                        );
                        let was = map.get(&c.name).map(|old| {
                            !matches!(
                                crate::cloud::ObjectAuth::state(&*old.auth),
                                crate::cloud::State::NeedsPerson { .. }
                            )
                        });
                        if was.is_none() {
                            log(format!(
                                "mounted {} ({}) from config.toml",
                                c.name,
                                c.kind.url()
                            ));
                        }
                        if works && was != Some(true) {
                            recovered.push(c.name.clone());
                        }
                        map.insert(c.name.clone(), Arc::new(m));
                    }
                    Err(e) => log(format!("cannot mount {}: {e:#}", c.name)),
                }
            }
        }
        moved_on(&self.state, &self.dirs, &recovered);
        wanted.len()
    }

    /// Renews every credential that is due now. Returns when the next one is due.
    pub(super) fn round(&mut self) -> Option<i64> {
        let now = crate::time::now();
        let due: Vec<String> = self
            .kept
            .iter()
            .filter(|(_, k)| k.next.is_some_and(|n| n <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.renew_one(&name);
        }
        self.kept.values().filter_map(|k| k.next).min()
    }

    fn renew_one(&mut self, name: &str) {
        let Some(k) = self.kept.get_mut(name) else {
            return;
        };
        let name = k.source.cache().to_string();
        let name = name.as_str();
        let now = crate::time::now();
        let before = current_expiry(&self.state, name);
        let outcome = match k.source.renew() {
            Renewal::Fresh {
                credential,
                info,
                cache_info,
            } => {
                if let Some(body) = cache_info {
                    self.state
                        .cache_info
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.to_string(), body);
                }
                let newer = credential.expiration();
                let took = install(&self.state, name, credential, info);
                if k.told && !took.is_empty() {
                    log(format!("{name} works again without a person"));
                }
                k.told = false;
                k.last_error = None;
                moved_on(&self.state, &self.dirs, &took);
                if newer.is_some() && newer > before {
                    Outcome::Renewed
                } else {
                    Outcome::NotNewer
                }
            }
            Renewal::NeedsPerson(why) => {
                set_needs_person(&self.state, name, Some(why.clone()));
                if !k.told {
                    k.told = true;
                    tell(&self.dirs, name, &why, before);
                }
                Outcome::Failed
            }
            Renewal::Failed(why) => {
                if k.last_error.as_deref() != Some(why.as_str()) {
                    log(format!(
                        "cannot renew the credential of {name} yet (trying again): {why}"
                    ));
                    k.last_error = Some(why);
                }
                Outcome::Failed
            }
        };
        let expiry = current_expiry(&self.state, name);
        k.next = match next_check(outcome, expiry, self.margin, now) {
            // A mount that never had a credential: try again like a failed renewal.
            None if expiry.is_none() && outcome == Outcome::Failed => {
                Some(now + crate::refresh::RETRY_SECS)
            }
            other => other,
        };
    }

    /// Serves renewals and the control channel's requests until the proxy exits.
    pub(super) fn run(mut self, inbox: Receiver<RenewerCmd>) {
        loop {
            let next = self.round();
            keep_nix_cache_private();
            let wait = match next {
                Some(n) => {
                    Duration::from_secs((n - crate::time::now()).clamp(0, CHECK_EVERY) as u64)
                }
                None => Duration::from_secs(CHECK_EVERY as u64),
            };
            match inbox.recv_timeout(wait) {
                Ok(RenewerCmd::Reload(reply)) => {
                    // A newly recorded cache gets its session before `use` returns: the next
                    // plain command must not find it without one.
                    let loaded = self.load();
                    self.round();
                    let _ = reply.send(loaded);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Runs `renewer` on its own thread and gives the control channel its inbox.
pub(super) fn spawn(state: &Arc<State>, renewer: Renewer) {
    let (tx, rx) = std::sync::mpsc::channel();
    *state.renewer.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    // The clouds' credentials renew in the async runtime's tasks (`object_mounts.rs`): mounted
    // now that it runs, before the proxy serves; reloads on the renewer's thread (which never
    // runs inside the runtime: sessions make runtimes of their own) enter it just for that.
    super::object::use_runtime(tokio::runtime::Handle::current());
    if let Ok(cfg) = Config::load(&renewer.dirs.config_file()) {
        let caches = caches_again(&cfg);
        super::object::load_recorded(&renewer.state, &cfg, &renewer.dirs, &caches);
    }
    std::thread::spawn(move || renewer.run(rx));
}

/// Asks the renewer to read config.toml again; `None` when no renewer runs (a command's proxy).
pub(super) async fn reload(state: &State) -> Option<Result<String, String>> {
    let tx = state
        .renewer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    tx.send(RenewerCmd::Reload(reply)).ok()?;
    answer.await.ok()
}

/// The caches config.toml records (read again: `load` consumed its list).
fn caches_again(cfg: &Config) -> Vec<crate::config::CacheEntry> {
    cfg.caches().unwrap_or_default()
}

/// How often the renewer looks at `~/.cache/nix` (and at due renewals) at the latest.
const CHECK_EVERY: i64 = 5;

/// Nix records the URLs it opens (the proxy's secret with them) in `~/.cache/nix`, and makes
/// the directory again with the user's umask if it is deleted: keep it private (0700) while
/// the background proxy runs, as `service install` left it.
fn keep_nix_cache_private() {
    use std::os::unix::fs::MetadataExt;
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let dir = crate::nix::client_cache::dir(&|k| std::env::var(k).ok(), home.as_ref());
    let open = match std::fs::metadata(&dir) {
        Ok(m) => m.mode() & 0o077 != 0,
        Err(_) => true,
    };
    if open {
        // The one private-directory rule (a symlink is followed; someone else's is refused).
        match crate::nix::client_cache::protect() {
            Ok(()) => log(format!("made {} private (0700) again", dir.display())),
            Err(e) => log(format!("cannot keep {} private: {e:#}", dir.display())),
        }
    }
}

fn current_expiry(state: &State, name: &str) -> Option<i64> {
    state
        .mounts
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .and_then(|m| m.session.as_ref().and_then(|s| s.expiration))
}

/// Puts a fresh credential on mount `name` (kept only where fresher); returns the mounts that
/// took it.
fn install(
    state: &State,
    name: &str,
    credential: Credential,
    info: super::control::SessionInfo,
) -> Vec<String> {
    let s3 = {
        let map = state.mounts.read().unwrap_or_else(|e| e.into_inner());
        match map.get(name) {
            Some(m) => m.s3.clone(),
            None => return Vec::new(),
        }
    };
    match credential {
        Credential::Aws(creds) => {
            state.apply_lease(creds, vec![WireMount::from_s3(name, &s3)], Some(info))
        }
    }
}

fn set_needs_person(state: &State, name: &str, why: Option<String>) {
    let mut map = state.mounts.write().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = map.get(name).cloned() {
        map.insert(name.to_string(), Arc::new(m.needing(why)));
    }
}

/// Tells the user, once, that only a person can renew `name`'s credential (`notice.rs`).
fn tell(dirs: &Dirs, name: &str, why: &str, expires: Option<i64>) {
    super::notice::tell(dirs, name, why, expires, &login_command(name));
}

/// After mounts took a working credential: those that answered misses while a person was
/// needed move to a new URL generation, the include file names the new URLs, and the notice
/// goes (nothing is needed any more).
pub(super) fn moved_on(state: &State, dirs: &Dirs, took: &[String]) {
    if took.is_empty() {
        return;
    }
    let recovered = state.recovered(took);
    let needs_remain = state
        .mounts
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .any(|m| m.needs_person.is_some());
    if !needs_remain {
        let rundir = super::paths::runtime_dir_of(dirs);
        let _ = std::fs::remove_file(notice_file(&rundir));
    }
    if recovered.is_empty() {
        return;
    }
    let fixed = crate::service::marker::load(dirs)
        .ok()
        .flatten()
        .is_some_and(|m| m.fixed_urls);
    if fixed {
        log(format!(
            "{} work(s) again; the URL stays (an administrator listed it), so the nix-daemon may remember misses from the last hour",
            recovered.join(", ")
        ));
        return;
    }
    let file = super::urls::file(&dirs.state);
    for name in &recovered {
        match super::urls::bump(&file, name) {
            Ok(g) => log(format!(
                "{name} works again: its URL moves to generation {g}, so the nix-daemon remembers none of the misses"
            )),
            Err(e) => log(format!("cannot move the URL of {name}: {e:#}")),
        }
    }
    if let Ok(g) = super::urls::load(&file) {
        *state.generations.write().unwrap_or_else(|e| e.into_inner()) = g;
    }
    match crate::service::include::sync(dirs) {
        Ok(Some(p)) => log(format!("rewrote {}", p.display())),
        Ok(None) => {}
        Err(e) => log(format!("cannot rewrite the include file: {e:#}")),
    }
    runtime_urls(dirs);
}

/// Without a service manager, the background proxy keeps its URLs in the runtime file the
/// include file names (and removes it when it exits): written again after every change.
fn runtime_urls(dirs: &Dirs) {
    match crate::service::include::sync_runtime(dirs) {
        Ok(Some(p)) => log(format!("wrote the URLs to {}", p.display())),
        Ok(None) => {}
        Err(e) => log(format!("cannot write the URLs for Nix: {e:#}")),
    }
}
