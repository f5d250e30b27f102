//! What the user's Nix setup is: version, daemon or single-user, which nix.conf files apply,
//! whether the daemon trusts this user, NixOS. Probing (I/O) is at the bottom; the decisions
//! above it are pure so that every case can be tested without a daemon.

use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::conf::NixConf;
use super::probe_cache::{self, Facts, TRUST_LINE_SINCE};
pub use super::version::Version;

/// Whether the daemon trusts the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Trusted,
    Untrusted,
}

/// Everything `use`, `remove`, `exec` and `doctor` need to know about the installed Nix.
#[derive(Debug, Clone)]
pub struct NixSetup {
    pub version: Option<Version>,
    /// Commands go through the nix-daemon (multi-user install).
    pub daemon: bool,
    pub is_root: bool,
    pub nixos: bool,
    pub user: String,
    pub groups: Vec<String>,
    /// `$NIX_CONF_DIR/nix.conf`, the daemon's file.
    pub system_conf: PathBuf,
    /// The first user file Nix reads (the one we edit).
    pub user_conf: PathBuf,
    /// The daemon's view: settings from the system file and its includes.
    pub system: SettingsView,
    pub trust: Trust,
    /// Setting names the installed client knows (`None`: no `nix`, or it would not say).
    pub known_settings: Option<BTreeSet<String>>,
}

impl NixSetup {
    /// The netrc file the daemon uses unless a trusted user forwards another.
    pub fn system_netrc(&self) -> PathBuf {
        netrc_in_force(&self.system, &self.system_conf)
    }

    /// Whether settings in the user's own files reach whoever downloads (the client itself, or
    /// a daemon that trusts the user).
    pub fn user_settings_honoured(&self) -> bool {
        !self.daemon || self.is_root || self.trust == Trust::Trusted
    }
}

/// Settings gathered from a nix.conf and the files it includes, in Nix's order.
#[derive(Debug, Clone, Default)]
pub struct SettingsView {
    /// (setting name as written, values, file) in the order Nix applies them.
    pub assignments: Vec<(String, Vec<String>, PathBuf)>,
    /// Files that were read (for `doctor` and messages).
    pub files: Vec<PathBuf>,
    /// Every file looked at, also missing and unreadable ones (what the probe cache stats).
    pub consulted: Vec<PathBuf>,
    /// `include`d files that are missing (an error for Nix) and problems reading files.
    pub problems: Vec<String>,
    /// Files that exist but this user may not read: Nix clients skip them silently and the
    /// root daemon reads them (an administrator keeps a setting private that way, e.g. an
    /// untrusted user's proxy URL). Not a problem; their settings cannot be seen from here.
    pub unreadable: Vec<PathBuf>,
}

impl SettingsView {
    /// The list value of a setting after every file: plain lines replace, `extra-` lines append.
    pub fn list(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (key, values, _) in &self.assignments {
            let (base, extra) = super::names::split_key(key);
            if base == name {
                if !extra {
                    out.clear();
                }
                out.extend(values.iter().cloned());
            }
        }
        out
    }

    /// The scalar value of a setting (last plain assignment wins).
    pub fn scalar(&self, name: &str) -> Option<String> {
        self.assignments
            .iter()
            .rev()
            .find(|(k, _, _)| super::names::split_key(k) == (name, false))
            .map(|(_, v, _)| v.join(" "))
    }

    /// Where a setting is assigned: the files and the values there.
    pub fn sources(&self, name: &str) -> Vec<(PathBuf, Vec<String>)> {
        self.assignments
            .iter()
            .filter(|(k, _, _)| super::names::split_key(k).0 == name)
            .map(|(_, v, f)| (f.clone(), v.clone()))
            .collect()
    }
}

/// Reads `path` and the files it includes, in order. A missing `!include` is fine (cachix#693);
/// a missing top-level file is an empty config.
pub fn load_view(path: &Path) -> SettingsView {
    let mut view = SettingsView::default();
    load_into(path, &mut view, 0);
    view
}

fn load_into(path: &Path, view: &mut SettingsView, depth: usize) {
    if depth > 16 {
        view.problems
            .push(format!("{}: includes nested too deeply", path.display()));
        return;
    }
    view.consulted.push(path.to_path_buf());
    let text = match crate::fs::read_optional(path) {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied) =>
        {
            view.unreadable.push(path.to_path_buf());
            return;
        }
        Err(e) => {
            view.problems.push(format!("{e:#}"));
            return;
        }
    };
    let conf = match NixConf::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            view.problems.push(format!("{}: {e}", path.display()));
            return;
        }
    };
    view.files.push(path.to_path_buf());
    // Events in line order: assignments of any setting, and includes.
    enum Event {
        Set(String, Vec<String>),
        Include(String, bool),
    }
    let mut events: Vec<(usize, Event)> = conf
        .assignments()
        .into_iter()
        .map(|o| (o.line, Event::Set(o.key, o.values)))
        .collect();
    events.extend(
        conf.includes()
            .into_iter()
            .map(|i| (i.line, Event::Include(i.path, i.optional))),
    );
    events.sort_by_key(|(line, _)| *line);
    for (_, ev) in events {
        match ev {
            Event::Set(k, v) => view.assignments.push((k, v, path.to_path_buf())),
            Event::Include(p, optional) => {
                let target = path.parent().unwrap_or(Path::new("/")).join(&p);
                if target.exists() {
                    load_into(&target, view, depth + 1);
                } else {
                    // Creating it later changes what Nix reads: the probe cache stats it too.
                    view.consulted.push(target.clone());
                    if !optional {
                        view.problems.push(format!(
                            "{} includes {}, which does not exist (Nix refuses to start with it)",
                            path.display(),
                            target.display()
                        ));
                    }
                }
            }
        }
    }
}

/// Does `trusted-users` (with `*` and `@group`) cover this user?
pub fn is_trusted(trusted_users: &[String], user: &str, groups: &[String]) -> bool {
    trusted_users.iter().any(|t| {
        t == "*"
            || t == user
            || t.strip_prefix('@')
                .is_some_and(|g| groups.iter().any(|mine| mine == g))
    })
}

/// Nix's own lookup of the user's config files: `NIX_USER_CONF_FILES`, else
/// `$XDG_CONFIG_HOME/nix/nix.conf` then each of `$XDG_CONFIG_DIRS`.
pub fn user_conf_files(env: &dyn Fn(&str) -> Option<String>, home: &Path) -> Vec<PathBuf> {
    if let Some(files) = env("NIX_USER_CONF_FILES").filter(|s| !s.is_empty()) {
        return files
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    let mut dirs = vec![
        env("XDG_CONFIG_HOME")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config")),
    ];
    dirs.extend(
        env("XDG_CONFIG_DIRS")
            .unwrap_or_else(|| "/etc/xdg".into())
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
    );
    dirs.into_iter().map(|d| d.join("nix/nix.conf")).collect()
}

/// `$NIX_CONF_DIR/nix.conf`, default `/etc/nix/nix.conf`.
pub fn system_conf_file(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("NIX_CONF_DIR")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/nix"))
        .join("nix.conf")
}

fn real_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The netrc file a config gives: its `netrc-file`, else `netrc` beside the system nix.conf.
pub fn netrc_in_force(view: &SettingsView, system_conf: &Path) -> PathBuf {
    view.scalar("netrc-file")
        .map(PathBuf::from)
        .unwrap_or_else(|| system_conf.with_file_name("netrc"))
}

/// The daemon's netrc without a full probe (no `nix` or `id` run): for `exec`'s warning.
pub fn daemon_netrc() -> PathBuf {
    let system_conf = system_conf_file(&real_env);
    netrc_in_force(&load_view(&system_conf), &system_conf)
}

/// The user's nix.conf as Nix looks it up (the one `use` edits).
pub fn user_conf() -> Result<PathBuf> {
    let home = home_dir()?;
    Ok(user_conf_files(&real_env, &home)
        .into_iter()
        .next()
        .unwrap_or_else(|| home.join(".config/nix/nix.conf")))
}

fn home_dir() -> Result<PathBuf> {
    directories::BaseDirs::new()
        .map(|b| b.home_dir().to_path_buf())
        .context("cannot find the home directory (is HOME set?)")
}

/// Is the store reached through the daemon? Follows `NIX_REMOTE`, else Nix's `auto`: the local
/// store when its database is writable, the daemon when its socket exists.
pub fn uses_daemon(nix_remote: Option<&str>) -> bool {
    match nix_remote {
        Some("daemon") => true,
        Some(s) if s.starts_with("unix://") => true,
        Some("") | None => {
            let db_writable = access_writable(Path::new("/nix/var/nix/db"));
            !db_writable && Path::new("/nix/var/nix/daemon-socket/socket").exists()
        }
        Some(_) => false,
    }
}

fn access_writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// How `probe` uses the probe cache (see `probe_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeCache {
    /// Answer from it while its key holds, and store a new probe: `exec`, on every Nix command.
    ReadWrite,
    /// Answer from it, never write: `use` and `remove` change only the files they report.
    ReadOnly,
    /// Run `nix` and leave the cache alone: `doctor` reports what is true now.
    Off,
}

/// Probes the machine.
pub fn probe(cache: ProbeCache) -> Result<NixSetup> {
    let home = home_dir()?;
    let system_conf = system_conf_file(&real_env);
    let user_files = user_conf_files(&real_env, &home);
    let user_conf = user_conf()?;
    let system = load_view(&system_conf);
    let is_root = crate::fs::is_root();
    let me = crate::user::current();
    let daemon = !is_root && uses_daemon(real_env("NIX_REMOTE").as_deref());
    let trusted_by_files =
        is_root || is_trusted(&system.list("trusted-users"), &me.name, &me.groups);
    let mut conf_files = system.consulted.clone();
    for f in &user_files {
        conf_files.extend(load_view(f).consulted);
    }
    let facts = nix_facts(&conf_files, &me, daemon, trusted_by_files, cache);
    let trust = match facts.daemon_trust {
        Some(true) => Trust::Trusted,
        Some(false) => Trust::Untrusted,
        None if trusted_by_files => Trust::Trusted,
        None => Trust::Untrusted,
    };
    let nixos =
        Path::new("/run/current-system/nixos-version").exists() || Path::new("/etc/NIXOS").exists();
    Ok(NixSetup {
        version: facts.version,
        daemon,
        is_root,
        nixos,
        user: me.name,
        groups: me.groups,
        system_conf,
        user_conf,
        system,
        trust,
        known_settings: facts.known_settings,
    })
}

/// What only running `nix` tells: from the probe cache while its key holds, else from `nix`
/// (at most one run of each subcommand), stored for the next command where `cache` allows.
fn nix_facts(
    conf_files: &[PathBuf],
    me: &crate::user::Identity,
    daemon: bool,
    trusted_by_files: bool,
    cache: ProbeCache,
) -> Facts {
    let Some(nix) = probe_cache::resolve_program("nix", real_env("PATH").as_deref()) else {
        // No Nix to run; nothing stored, so that installing one is noticed.
        return Facts::default();
    };
    let cache_dir = crate::config::Dirs::new().ok().map(|d| d.cache);
    let key = probe_cache::KeyInputs::gather(&nix, conf_files, &real_env, me.uid, &me.gids, daemon)
        .map(|k| probe_cache::key(&k));
    let stored = match (&cache_dir, &key) {
        (Some(dir), Some(key)) if cache != ProbeCache::Off => probe_cache::load(dir, key),
        _ => None,
    };
    if let Some(facts) = stored {
        return facts;
    }
    let version = nix_version(&nix);
    let facts = Facts {
        version,
        known_settings: version.and_then(|v| known_settings(&nix, v).ok()),
        daemon_trust: if daemon {
            daemon_says_trusted(&nix, version)
        } else {
            None
        },
    };
    if let (Some(dir), Some(key)) = (&cache_dir, &key)
        && cache == ProbeCache::ReadWrite
        && probe_cache::cacheable(&facts, daemon, trusted_by_files)
    {
        // A cache that cannot be written costs a probe next time, nothing more.
        let _ = probe_cache::save(dir, key, &facts);
    }
    facts
}

/// The version `nix --version` prints.
fn nix_version(nix: &Path) -> Option<Version> {
    let out = Command::new(nix).arg("--version").output().ok()?;
    Version::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Asks a Nix ≥ 2.15 daemon whether it trusts us (`Trusted: 1`); older ones print nothing.
fn daemon_says_trusted(nix: &Path, version: Option<Version>) -> Option<bool> {
    let v = version?;
    if v < TRUST_LINE_SINCE {
        return None;
    }
    let sub = if v >= Version(2, 19, 0) {
        "info"
    } else {
        "ping"
    };
    let out = Command::new(nix)
        .args([
            "--extra-experimental-features",
            "nix-command",
            "store",
            sub,
            "--store",
            "daemon",
        ])
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Trusted:")?;
        Some(rest.trim() == "1")
    })
}

/// Parses `nix show-config --json` / `nix config show --json`: the setting names.
pub fn parse_known(json: &str) -> Result<BTreeSet<String>> {
    let v: serde_json::Value = serde_json::from_str(json).context("not JSON")?;
    let obj = v.as_object().context("not a JSON object")?;
    let mut names: BTreeSet<String> = obj.keys().cloned().collect();
    // Aliases are accepted too (e.g. binary-caches).
    for entry in obj.values() {
        if let Some(aliases) = entry.get("aliases").and_then(|a| a.as_array()) {
            names.extend(aliases.iter().filter_map(|a| a.as_str().map(String::from)));
        }
    }
    Ok(names)
}

/// The settings the client knows, from `nix show-config --json` (`nix config show` since 2.20).
fn known_settings(nix: &Path, version: Version) -> Result<BTreeSet<String>> {
    let show: &[&str] = if version >= Version(2, 20, 0) {
        &["config", "show"]
    } else {
        &["show-config"]
    };
    let out = Command::new(nix)
        .args(["--extra-experimental-features", "nix-command"])
        .args(show)
        .arg("--json")
        .output()
        .context("cannot run `nix` to learn which settings it knows")?;
    if !out.status.success() {
        anyhow::bail!(
            "`nix {} --json` failed: {}",
            show.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_known(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(Version::parse("nix (Nix) 2.8.0\n"), Some(Version(2, 8, 0)));
        assert_eq!(
            Version::parse("nix (Lix, like Nix) 2.91.1"),
            Some(Version(2, 91, 1))
        );
        assert_eq!(
            Version::parse("nix (Nix) 2.34.0pre20250101_abc"),
            Some(Version(2, 34, 0))
        );
        assert_eq!(Version::parse("garbage"), None);
        assert!(Version(2, 15, 0) > Version(2, 8, 1));
    }

    #[test]
    fn settings_listings_parse_with_aliases() {
        let known =
            parse_known(r#"{"substituters":{"aliases":["binary-caches"]},"netrc-file":{}}"#)
                .unwrap();
        assert!(known.contains("binary-caches"));
        assert!(known.contains("netrc-file"));
        assert!(parse_known("[]").is_err());
    }

    #[test]
    fn trust_covers_wildcard_user_and_groups() {
        let t = |list: &[&str], user, groups: &[&str]| {
            is_trusted(
                &list.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                user,
                &groups.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert!(t(&["root", "alice"], "alice", &[]));
        assert!(!t(&["root"], "alice", &["wheel"]));
        assert!(t(&["root", "@wheel"], "alice", &["users", "wheel"]));
        assert!(t(&["*"], "bob", &[]));
        assert!(!t(&["@wheel"], "wheel", &[]));
    }

    #[test]
    fn user_conf_lookup_follows_nix() {
        let home = Path::new("/home/u");
        let env = |k: &str| match k {
            "NIX_USER_CONF_FILES" => Some("/a/nix.conf:/b/nix.conf".to_string()),
            _ => None,
        };
        assert_eq!(user_conf_files(&env, home)[0], PathBuf::from("/a/nix.conf"));
        let env = |k: &str| match k {
            "XDG_CONFIG_HOME" => Some("/x".to_string()),
            _ => None,
        };
        assert_eq!(
            user_conf_files(&env, home)[0],
            PathBuf::from("/x/nix/nix.conf")
        );
        let env = |_: &str| None;
        assert_eq!(
            user_conf_files(&env, home)[0],
            PathBuf::from("/home/u/.config/nix/nix.conf")
        );
        assert_eq!(system_conf_file(&env), PathBuf::from("/etc/nix/nix.conf"));
    }

    #[test]
    fn views_follow_includes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("nix.conf");
        std::fs::write(
            dir.path().join("inc.conf"),
            "extra-trusted-users = bob\nnetrc-file = /inc/netrc\n",
        )
        .unwrap();
        std::fs::write(
            &main,
            "trusted-users = root\ninclude inc.conf\n!include missing.conf\nextra-trusted-users = @wheel # admins\n",
        )
        .unwrap();
        let view = load_view(&main);
        assert_eq!(view.list("trusted-users"), vec!["root", "bob", "@wheel"]);
        assert_eq!(view.scalar("netrc-file").as_deref(), Some("/inc/netrc"));
        assert!(view.problems.is_empty(), "{:?}", view.problems);
        // The missing optional include counts as consulted: creating it must be noticed.
        assert_eq!(
            view.consulted,
            vec![
                main.clone(),
                dir.path().join("inc.conf"),
                dir.path().join("missing.conf")
            ]
        );
        std::fs::write(
            &main,
            "include nope.conf\nbinary-caches = a\nextra-substituters = b\n",
        )
        .unwrap();
        let view = load_view(&main);
        assert_eq!(view.list("substituters"), vec!["a", "b"]);
        assert_eq!(view.problems.len(), 1);
    }
}
