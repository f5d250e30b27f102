//! Which GCS and Azure caches the proxy has mounted, and from what: a command's lease mounts
//! them from its environment (`mount_for_lease`, checked against the store at once), a
//! background proxy from config.toml (`load_recorded`), one decision says when a mount is made
//! again (`keep_mount`), and `proxy status` gets their rows (`statuses`).

use std::sync::Arc;

use super::log::log;
use super::object::{ObjectMount, check};
use super::state::State;
use crate::cloud::State as CredState;
use crate::cloud_cache::EnvSnapshot;

/// The proxy's async runtime, once it runs (`use_runtime`), for the background reloads.
static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();

/// Remembers the proxy's runtime: the background proxy's reloads mount cloud caches in it.
pub(super) fn use_runtime(rt: tokio::runtime::Handle) {
    let _ = RUNTIME.set(rt);
}

/// What is known of a cloud cache's current mount when it is asked for again.
#[derive(Debug, Clone, Copy)]
struct Have {
    /// Same URL, and made from the secret stored now (`cloud_cache::secret_tag`).
    same_cache: bool,
    /// Mounted by the background proxy from config.toml (else by a command's lease).
    recorded: bool,
    /// Its credential does not need a person.
    works: bool,
    /// Made from the environment the asking command has.
    same_env: bool,
    /// Asked by the background proxy's reload (else by a command's lease).
    background: bool,
}

/// Whether the current mount stays (with its tokens) or is made again. A command keeps one
/// made from its own environment, and a background mount that works; one that needs a person
/// gives way to the command's environment. A reload makes recorded mounts again (a secret may
/// have changed) but keeps a command's mount that works. A changed cache or secret always
/// remounts.
fn keep_mount(h: Have) -> bool {
    if !h.same_cache {
        return false;
    }
    match (h.background, h.recorded) {
        (false, true) => h.works || h.same_env,
        (false, false) => h.same_env,
        (true, true) => false,
        (true, false) => h.works,
    }
}

/// `proxy status`'s rows for the cloud mounts: the credential in use (as `origin`), where it
/// stands, and how NARs go.
pub(super) fn statuses(state: &State) -> Vec<super::control::MountStatus> {
    let map = state.objects.read().unwrap_or_else(|e| e.into_inner());
    map.iter()
        .map(|(name, m)| {
            status_row(
                state,
                name,
                m.url.clone(),
                m.auth.as_ref(),
                m.nars(state.redirect_nars),
                m.recorded,
            )
        })
        .collect()
}

/// One `proxy status` row for a mount whose credential is an [`ObjectAuth`] (GCS, Azure and
/// HTTPS caches): where the credential stands, in the terms S3 sessions use.
pub(super) fn status_row(
    state: &State,
    name: &str,
    url: String,
    auth: &dyn crate::cloud::ObjectAuth,
    nars: &str,
    recorded: bool,
) -> super::control::MountStatus {
    use super::credential::{SessionInfo, Standing};
    let (session, standing, renewal) = match auth.state() {
        CredState::Valid { until } => ("valid", Standing::Valid { expires: until }, ""),
        CredState::Renews { until } => (
            "valid",
            Standing::Renews {
                expires: None,
                until,
            },
            "auto",
        ),
        CredState::NeedsPerson { why, .. } => ("needs-person", Standing::NeedsPerson { why }, ""),
    };
    super::control::MountStatus {
        name: name.to_string(),
        url,
        session: session.into(),
        expiration: None,
        nars: nars.into(),
        daemon_used: state
            .daemon_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name),
        info: Some(SessionInfo {
            profile: None,
            origin: auth.describe(),
            renewal: renewal.into(),
            renew_until: None,
        }),
        generation: state.generation(name),
        standing: Some(standing),
        recorded,
    }
}

/// A background proxy's mounts of the GCS and Azure caches config.toml records, made afresh
/// (an Azure key or SAS may have changed) from the proxy's own environment; a command's mount
/// that works is kept (its environment may hold what the service's lacks). Unmounts recorded
/// ones no longer listed. Needs the async runtime (google-cloud-auth renews in a task): without
/// one (the first load, before it starts) nothing happens, and `background::spawn` loads them.
/// Returns how many are recorded.
pub(super) fn load_recorded(
    state: &State,
    cfg: &crate::config::Config,
    dirs: &crate::config::Dirs,
    caches: &[crate::config::CacheEntry],
) -> usize {
    let wanted: Vec<&crate::config::CacheEntry> =
        caches.iter().filter(|c| c.kind.is_cloud()).collect();
    // Entered only while mounting: the renewer's thread must stay outside the runtime.
    let _entered = match (tokio::runtime::Handle::try_current(), RUNTIME.get()) {
        (Ok(_), _) => None,
        (Err(_), Some(rt)) => Some(rt.enter()),
        (Err(_), None) => return wanted.len(),
    };
    let env = EnvSnapshot::gather();
    let mut map = state.objects.write().unwrap_or_else(|e| e.into_inner());
    map.retain(|name, m| {
        let keep = !m.recorded || wanted.iter().any(|c| &c.name == name);
        if !keep {
            log(format!(
                "unmounted {name}: config.toml no longer records it"
            ));
        }
        keep
    });
    for c in &wanted {
        let tag = crate::cloud_cache::secret_tag(c, cfg, dirs).ok().flatten();
        let keep = map.get(&c.name).is_some_and(|m| {
            keep_mount(Have {
                same_cache: m.url == c.kind.url() && m.secret_tag == tag,
                recorded: m.recorded,
                works: !matches!(m.auth.state(), CredState::NeedsPerson { .. }),
                same_env: false,
                background: true,
            })
        });
        if keep {
            continue;
        }
        match ObjectMount::recorded(c, cfg, dirs, &env, true) {
            Ok(m) => {
                log(format!(
                    "mounted {} ({}, {}) from config.toml",
                    c.name,
                    m.url,
                    m.auth.describe()
                ));
                map.insert(c.name.clone(), Arc::new(m));
            }
            Err(e) => log(format!("cannot mount {}: {e:#}", c.name)),
        }
    }
    wanted.len()
}

/// Mounts the recorded GCS and Azure caches among `names` for a command's lease, with the
/// command's environment `env`; returns the other names (for the HTTPS kind). A cache already
/// mounted from the same environment keeps its mount (and its tokens).
pub(super) fn mount_for_lease(
    state: &State,
    names: &[String],
    env: &EnvSnapshot,
) -> Result<Vec<String>, String> {
    let dirs = &state.dirs;
    let cfg = crate::config::Config::load(&dirs.config_file()).map_err(|e| format!("{e:#}"))?;
    let mut rest = Vec::new();
    for name in names {
        let entry = cfg.cache(name).map_err(|e| format!("{e:#}"))?;
        let Some(entry) = entry.filter(|e| e.kind.is_cloud()) else {
            rest.push(name.clone());
            continue;
        };
        // A `secret set` since: the credential is loaded again.
        let tag = crate::cloud_cache::secret_tag(&entry, &cfg, dirs)
            .map_err(|e| format!("{name}: {e:#}"))?;
        let same = state
            .objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_some_and(|m| {
                keep_mount(Have {
                    same_cache: m.url == entry.kind.url() && m.secret_tag == tag,
                    recorded: m.recorded,
                    works: !matches!(m.auth.state(), CredState::NeedsPerson { .. }),
                    same_env: m.env == *env,
                    background: false,
                })
            });
        if same {
            continue;
        }
        let m = ObjectMount::recorded(&entry, &cfg, dirs, env, false)
            .map_err(|e| format!("{name}: {e:#}"))?;
        // A credential the store refuses fails the command now, naming the cache and the fix,
        // instead of leaving Nix with misses it cannot explain.
        if let Err(why) = tokio::runtime::Handle::current().block_on(check(&m)) {
            log(format!("cannot mount {name}: {why}"));
            return Err(format!("{name}: {why}"));
        }
        log(format!(
            "mounted {name} ({}, {}) for a command",
            m.url,
            m.auth.describe()
        ));
        state
            .objects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), Arc::new(m));
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_reuse_table() {
        // (same_cache, recorded, works, same_env, background) -> keep
        let rows = [
            // A command's lease.
            (true, true, true, false, false, true),
            (true, true, false, false, false, false),
            (true, true, false, true, false, true),
            (true, false, true, true, false, true),
            (true, false, true, false, false, false),
            (true, false, false, true, false, true),
            (false, true, true, true, false, false),
            (false, false, true, true, false, false),
            // The background proxy's reload.
            (true, true, true, false, true, false),
            (true, false, true, false, true, true),
            (true, false, false, false, true, false),
            (false, false, true, false, true, false),
        ];
        for (same_cache, recorded, works, same_env, background, keep) in rows {
            let h = Have {
                same_cache,
                recorded,
                works,
                same_env,
                background,
            };
            assert_eq!(keep_mount(h), keep, "{h:?}");
        }
    }
}
