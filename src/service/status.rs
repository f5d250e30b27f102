//! Where the background service stands, gathered once for `service status` and `doctor`: the
//! unit files and the service manager's view, the proxy (running, a background one, its
//! port), the include line and file, and each recorded S3 cache (mounted, its credential,
//! whether the nix-daemon fetched through its URL), with a fix for each problem.

use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

use super::marker::{self, Installed};
use super::plan::{self, Route, Trust};
use super::units;
use crate::config::{Config, Dirs};
use crate::nix::include;
use crate::proxy::{self, Standing};

#[derive(Debug, Clone, Serialize)]
pub struct UnitFile {
    pub path: PathBuf,
    pub present: bool,
    /// Its text is what `install` writes now (this binary, this port).
    pub current: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyState {
    pub running: bool,
    pub pid: Option<u32>,
    /// It mounts every recorded cache, renews by itself, never exits when idle.
    pub background: bool,
    /// Its socket came from the service manager.
    pub activated: bool,
    pub port: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncludeState {
    pub nix_conf: PathBuf,
    /// nix.conf has the `!include` line.
    pub line: bool,
    pub file: PathBuf,
    pub present: bool,
    /// Mode 0600 (no one else can read the secret URL).
    pub private: bool,
    /// It lists every recorded S3 cache at its current URL.
    pub current: bool,
    /// Without a service manager: the runtime file with the URLs, which the running
    /// background proxy keeps (absent while it is down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<PathBuf>,
    /// It is there and lists every recorded S3 cache at its current URL.
    pub runtime_current: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheState {
    pub name: String,
    /// The proxy serves it now.
    pub mounted: bool,
    /// Where its credential stands (absent: not mounted).
    pub standing: Option<Standing>,
    /// When a person will be needed although it renews by itself now (the end of an MFA base
    /// session), if known.
    pub needs_login_at: Option<i64>,
    /// The nix-daemon fetched its `nix-cache-info` through the URL (since the proxy started).
    pub daemon_used: bool,
    pub generation: u32,
    /// `nixstore-auth login NAME`, when that is what it needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub installed: bool,
    pub route: Option<Route>,
    pub units: Vec<UnitFile>,
    /// The service manager's words for the socket unit (`enabled`, `active`), systemd only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_enabled: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_active: Option<String>,
    pub proxy: ProxyState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include: Option<IncludeState>,
    pub caches: Vec<CacheState>,
    /// The daemon ignores the URLs until an administrator allows them.
    pub needs_admin: bool,
    pub problems: Vec<Problem>,
    pub exit: i32,
}

/// `service status`'s exit code: 3 when an administrator must act, 0 when the service is
/// installed and the proxy serves every cache it should (S3, GCS, Azure, HTTPS on the proxy
/// route) with a usable credential, else 1.
pub fn exit_code(installed: bool, needs_admin: bool, running: bool, all_usable: bool) -> i32 {
    match (needs_admin, installed && running && all_usable) {
        (true, _) => crate::error::EXIT_NEEDS_ADMIN,
        (false, true) => 0,
        (false, false) => 1,
    }
}

/// Gathers the report. `wake`: a socket-activated proxy that is not running is started by
/// connecting to its port (as the nix-daemon's first request would).
pub fn gather(dirs: &Dirs, cfg: &Config, wake: bool) -> Result<Report> {
    let installed = marker::load(dirs)?;
    let layout = proxy::Layout::new(dirs, cfg)?;
    let route = installed.as_ref().map(|m| m.route);
    let mut problems = Vec::new();
    let bin = std::env::current_exe().ok();
    let log = layout.log_file();
    let unit_files: Vec<UnitFile> = installed
        .as_ref()
        .map(|m| m.units.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|path| {
            let text = crate::fs::read_optional(&path).ok().flatten();
            let want = bin
                .as_ref()
                .map(|b| expected_unit(&path, b, layout.port, &log));
            UnitFile {
                present: text.is_some(),
                current: text.is_some() && text == want.flatten(),
                path,
            }
        })
        .collect();
    for u in &unit_files {
        if !u.present {
            problems.push(Problem {
                what: format!("{} is missing", u.path.display()),
                fix: "nixstore-auth service install".into(),
            });
        } else if !u.current {
            problems.push(Problem {
                what: format!(
                    "{} names another binary or port than this one",
                    u.path.display()
                ),
                fix: "nixstore-auth service install (writes it again)".into(),
            });
        }
    }
    let (socket_enabled, socket_active) = match route {
        Some(Route::Systemd) => (
            super::manager::systemd_state("is-enabled", units::SOCKET_UNIT),
            super::manager::systemd_state("is-active", units::SOCKET_UNIT),
        ),
        _ => (None, None),
    };
    if route == Some(Route::Systemd) && socket_enabled.as_deref() != Some("enabled") {
        problems.push(Problem {
            what: format!(
                "the socket unit is not enabled (systemctl says {:?})",
                socket_enabled.as_deref().unwrap_or("nothing")
            ),
            fix: format!("systemctl --user enable --now {}", units::SOCKET_UNIT),
        });
    }
    let st = match proxy::status(&layout)? {
        Some(st) => Some(st),
        None if wake && route.is_some_and(Route::socket_activated) => {
            proxy::wake(&layout).ok().flatten()
        }
        None => None,
    };
    let proxy_state = ProxyState {
        running: st.is_some(),
        pid: st.as_ref().map(|s| s.pid),
        background: st.as_ref().is_some_and(|s| s.background),
        activated: st.as_ref().is_some_and(|s| s.activated),
        port: st.as_ref().map(|s| s.port).unwrap_or(layout.port),
    };
    if installed.is_some() {
        match &st {
            None => problems.push(Problem {
                what: "the proxy is down: plain Nix commands go on without your S3 caches".into(),
                fix: match route {
                    Some(Route::Systemd) => {
                        format!("systemctl --user restart {}", units::SOCKET_UNIT)
                    }
                    _ => "nixstore-auth proxy start --persistent".into(),
                },
            }),
            Some(s) if !s.background => problems.push(Problem {
                what: format!(
                    "the running proxy (pid {}) is a command's, not the background one: it exits when idle",
                    s.pid
                ),
                fix: "nixstore-auth proxy start --persistent".into(),
            }),
            Some(_) => {}
        }
    } else {
        problems.push(Problem {
            what: "the background service is not installed: only `nixstore-auth exec` reaches your S3 caches".into(),
            fix: "nixstore-auth service install".into(),
        });
    }

    let s3: Vec<_> = cfg
        .caches()?
        .into_iter()
        // Every cache the proxy serves: S3, GCS, Azure, and HTTPS caches on the proxy route.
        .filter(|c| c.served_by_proxy(installed.is_some()))
        .collect();
    let now = crate::time::now();
    let caches: Vec<CacheState> = s3
        .iter()
        .map(|c| {
            let m = st
                .as_ref()
                .and_then(|s| s.mounts.iter().find(|m| m.name == c.name));
            let standing = m.and_then(|m| m.standing.clone());
            let needs_login_at = match &standing {
                Some(Standing::Renews { until: Some(u), .. }) => Some(*u),
                _ => None,
            };
            let fix = match &standing {
                Some(Standing::NeedsPerson { .. }) if c.kind.is_cloud() => {
                    Some(format!("nixstore-auth doctor {}", c.name))
                }
                Some(Standing::NeedsPerson { .. })
                    if matches!(c.kind, crate::cache::CacheKind::Https { .. }) =>
                {
                    Some(crate::nix::https_route::credential_fix(
                        &c.name,
                        c.https.token_command.is_some(),
                    ))
                }
                Some(Standing::NeedsPerson { .. }) => Some(proxy::login_command(&c.name)),
                _ => None,
            };
            CacheState {
                name: c.name.clone(),
                mounted: m.is_some(),
                standing,
                needs_login_at: needs_login_at.filter(|u| *u > now),
                daemon_used: m.is_some_and(|m| m.daemon_used),
                generation: m.map(|m| m.generation).unwrap_or(0),
                fix,
            }
        })
        .collect();
    for c in &caches {
        match &c.standing {
            None if st.is_some() => problems.push(Problem {
                what: format!("cache {} is not mounted by the running proxy", c.name),
                fix: "nixstore-auth proxy start --persistent".into(),
            }),
            Some(Standing::NeedsPerson { why }) => problems.push(Problem {
                what: format!("cache {} needs you: {why}", c.name),
                fix: c
                    .fix
                    .clone()
                    .unwrap_or_else(|| proxy::login_command(&c.name)),
            }),
            Some(Standing::Unavailable { why }) => problems.push(Problem {
                what: format!("cache {}: {why}", c.name),
                fix: format!("nixstore-auth doctor {}", c.name),
            }),
            _ => {}
        }
    }

    let include_state = installed
        .as_ref()
        .map(|m| include_state(dirs, cfg, m, st.as_ref().map(|s| s.pid)));
    if let Some(i) = &include_state {
        if !i.line {
            problems.push(Problem {
                what: format!(
                    "{} does not include {}: plain Nix commands do not know the proxy",
                    i.nix_conf.display(),
                    include::FILE_NAME
                ),
                fix: format!(
                    "add the line `{}` to {} (or run `nixstore-auth service install`)",
                    include::line(),
                    i.nix_conf.display()
                ),
            });
        }
        if !i.present || !i.current {
            problems.push(Problem {
                what: format!(
                    "{} does not list every recorded S3 cache at its current URL",
                    i.file.display()
                ),
                fix: "nixstore-auth service install (writes it again)".into(),
            });
        }
        if st.as_ref().is_some_and(|s| s.background) && i.runtime.is_some() && !i.runtime_current {
            problems.push(Problem {
                what: format!(
                    "the running proxy's URL file {} is missing or out of date",
                    i.runtime
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ),
                fix: "nixstore-auth proxy stop; nixstore-auth proxy start --persistent".into(),
            });
        }
        if i.present && !i.private {
            problems.push(Problem {
                what: format!(
                    "{} can be read by other users: it holds your proxy's URL secret",
                    i.file.display()
                ),
                fix: format!(
                    "chmod 600 {}; nixstore-auth proxy rotate-secret",
                    i.file.display()
                ),
            });
        }
    }
    let needs_admin = installed.is_some() && !s3.is_empty() && {
        let trust = trust_now(&layout, &s3, st.as_ref());
        trust == Trust::NeedsAdmin
    };
    if needs_admin {
        problems.push(Problem {
            what: "the nix-daemon does not trust you and does not allow your proxy's URLs".into(),
            fix: "ask an administrator for the lines `nixstore-auth use CACHE --mode print` shows"
                .into(),
        });
    }
    let all_usable = caches
        .iter()
        .all(|c| c.standing.as_ref().is_some_and(Standing::usable));
    let exit = exit_code(installed.is_some(), needs_admin, st.is_some(), all_usable);
    Ok(Report {
        installed: installed.is_some(),
        route,
        units: unit_files,
        socket_enabled,
        socket_active,
        proxy: proxy_state,
        include: include_state,
        caches,
        needs_admin,
        problems,
        exit,
    })
}

/// What `install` writes at `path` for this binary and port (`None`: not one of our files).
pub fn expected_unit(
    path: &std::path::Path,
    bin: &std::path::Path,
    port: u16,
    log: &std::path::Path,
) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    Some(match name {
        units::SOCKET_UNIT => units::systemd_socket(port),
        units::SERVICE_UNIT => units::systemd_service(bin),
        n if n == format!("{}.plist", units::LAUNCHD_LABEL) => units::launchd_plist(bin, port, log),
        _ => return None,
    })
}

fn include_state(dirs: &Dirs, cfg: &Config, m: &Installed, pid: Option<u32>) -> IncludeState {
    use std::os::unix::fs::PermissionsExt;
    let conf_text = crate::fs::read_optional(&m.nix_conf)
        .ok()
        .flatten()
        .unwrap_or_default();
    let text = crate::fs::read_optional(&m.include).ok().flatten();
    let private = std::fs::metadata(&m.include)
        .map(|md| md.permissions().mode() & 0o077 == 0)
        .unwrap_or(false);
    let current = match (&text, super::include::desired(dirs, cfg, m)) {
        (Some(t), Ok(want)) => *t == want,
        _ => false,
    };
    let runtime = (m.route == Route::Persistent).then(|| super::include::runtime_file(dirs));
    let runtime_current = match (&runtime, pid) {
        (Some(p), Some(pid)) => super::include::desired_runtime(dirs, cfg, m, pid)
            .is_ok_and(|want| crate::fs::read_optional(p).ok().flatten() == Some(want)),
        _ => false,
    };
    IncludeState {
        nix_conf: m.nix_conf.clone(),
        line: include::is_included(&conf_text, &m.include),
        file: m.include.clone(),
        present: text.is_some(),
        private,
        current,
        runtime,
        runtime_current,
    }
}

/// Whether the daemon takes this user's proxy URLs now (probing Nix from its cache).
pub fn trust_now(
    layout: &proxy::Layout,
    s3: &[crate::config::CacheEntry],
    st: Option<&proxy::Status>,
) -> Trust {
    let Ok(setup) = crate::nix::setup::probe(crate::nix::setup::ProbeCache::ReadOnly) else {
        return Trust::Honoured;
    };
    let trusted = setup.system.list("trusted-substituters");
    let allowed: Vec<bool> = s3
        .iter()
        .map(|c| {
            let listed = proxy::stable_url_for(layout, &c.name)
                .is_ok_and(|u| trusted.iter().any(|t| crate::cache::same_url(t, &u)));
            let used =
                st.is_some_and(|s| s.mounts.iter().any(|m| m.name == c.name && m.daemon_used));
            listed || used
        })
        .collect();
    plan::trust_of(setup.user_settings_honoured(), &allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_table() {
        // (installed, needs admin, proxy running, every cache usable) -> exit
        let rows = [
            (true, false, true, true, 0),
            (true, false, false, true, 1),
            (true, false, true, false, 1),
            (false, false, true, true, 1),
            (true, true, true, true, 3),
            (true, true, false, false, 3),
        ];
        for (i, (inst, admin, run, ok, want)) in rows.into_iter().enumerate() {
            assert_eq!(exit_code(inst, admin, run, ok), want, "row {i}");
        }
    }
}
