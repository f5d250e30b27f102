//! What probing the installed Nix learned (version, the settings its client knows, the daemon's
//! trust answer), kept on disk and reused while its inputs are unchanged. Probing runs `nix`
//! two or three times (tens of milliseconds); with the shell wrappers every Nix command would
//! pay that. The key covers everything the answers depend on: the `nix` binary, every nix.conf
//! in force with its includes (stat'ed, so unreadable files count too), the environment that
//! picks or overrides them, and who we are. An upgrade or an administrator's edit changes the
//! key, and the next command probes again.
//!
//! Pure parts (key, file format, what may be kept) first; file access at the bottom.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::version::Version;

/// Name of the cache file under the user's cache dir (the format is in the name).
pub const FILE_NAME: &str = "nix-probe-v1.json";

/// Entries kept: one per distinct setup in use (e.g. shells with different `NIX_CONFIG`).
const MAX_ENTRIES: usize = 8;

/// Variables that change which files Nix reads, what it is told, or which daemon it asks.
pub const KEY_ENV: &[&str] = &[
    "NIX_CONF_DIR",
    "NIX_USER_CONF_FILES",
    "XDG_CONFIG_HOME",
    "XDG_CONFIG_DIRS",
    "NIX_CONFIG",
    "NIX_REMOTE",
    "NIX_DAEMON_SOCKET_PATH",
    "NIX_STATE_DIR",
];

/// What `stat` says about a file; any edit or replacement changes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    /// ctime cannot be set back by `touch`; with the inode it catches a file renamed over.
    pub ctime_ns: i128,
    pub ino: u64,
}

/// Everything the probe's answers depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInputs {
    /// The `nix` that runs, after PATH and symlinks.
    pub nix: PathBuf,
    pub nix_stamp: Stamp,
    /// Each nix.conf consulted, includes too, in order; `None` for a missing file (creating it
    /// changes the key).
    pub conf: Vec<(PathBuf, Option<Stamp>)>,
    /// Values of [`KEY_ENV`], in that order.
    pub env: Vec<Option<String>>,
    pub uid: u32,
    pub gids: Vec<u32>,
    pub daemon: bool,
}

/// The cache key: a hash, so that values such as `NIX_CONFIG` (which may hold an
/// `access-tokens` line) never reach the file.
pub fn key(k: &KeyInputs) -> String {
    let mut h = Sha256::new();
    // Every field is length-prefixed: no two different inputs serialize alike.
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let stamp = |s: &Stamp| -> Vec<u8> {
        [
            &s.size.to_le_bytes()[..],
            &s.mtime_ns.to_le_bytes(),
            &s.ctime_ns.to_le_bytes(),
            &s.ino.to_le_bytes(),
        ]
        .concat()
    };
    field(b"nixstore-auth probe key v1");
    field(k.nix.as_os_str().as_bytes());
    field(&stamp(&k.nix_stamp));
    field(&(k.conf.len() as u64).to_le_bytes());
    for (path, st) in &k.conf {
        field(path.as_os_str().as_bytes());
        match st {
            Some(s) => field(&stamp(s)),
            None => field(b"missing"),
        }
    }
    for v in &k.env {
        match v {
            Some(v) => field(&[b"=", v.as_bytes()].concat()),
            None => field(b"unset"),
        }
    }
    field(&k.uid.to_le_bytes());
    field(
        &k.gids
            .iter()
            .flat_map(|g| g.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    field(&[k.daemon as u8]);
    hex::encode(h.finalize())
}

/// What one probe learned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub version: Option<Version>,
    /// Setting names (aliases included) the client knows.
    pub known_settings: Option<BTreeSet<String>>,
    /// The daemon's own answer (`Trusted: 0/1`, Nix ≥ 2.15); `None` when not asked or silent.
    pub daemon_trust: Option<bool>,
}

/// Nix prints a `Trusted:` line in `nix store ping` / `nix store info` since this version.
pub const TRUST_LINE_SINCE: Version = Version(2, 15, 0);

/// Whether a probe's answers may be reused. Not when part of it failed (no version, no
/// settings list, a daemon that should have answered but did not: it may simply be down), and
/// not when the daemon's trust answer contradicts `trusted-users` in the files: the daemon
/// reads its config at start, so it has not been restarted since an edit, and its answer will
/// change without any file changing.
pub fn cacheable(f: &Facts, asked_daemon: bool, trusted_by_files: bool) -> bool {
    let Some(version) = f.version else {
        return false;
    };
    if f.known_settings.is_none() {
        return false;
    }
    match f.daemon_trust {
        Some(answer) => answer == trusted_by_files,
        None => !(asked_daemon && version >= TRUST_LINE_SINCE),
    }
}

#[derive(Serialize, Deserialize, Default)]
struct CacheFile {
    /// Newest first.
    entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    facts: Facts,
}

/// The facts stored under `key` in the cache file's text; anything unreadable is a miss.
pub fn find(text: &str, key: &str) -> Option<Facts> {
    let file: CacheFile = serde_json::from_str(text).ok()?;
    file.entries
        .into_iter()
        .find(|e| e.key == key)
        .map(|e| e.facts)
}

/// The cache file's new text with `facts` under `key` in front (a corrupted old text is
/// dropped), keeping at most [`MAX_ENTRIES`].
pub fn with_entry(old: Option<&str>, key: &str, facts: &Facts) -> String {
    let mut file: CacheFile = old
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    file.entries.retain(|e| e.key != key);
    file.entries.insert(
        0,
        Entry {
            key: key.to_string(),
            facts: facts.clone(),
        },
    );
    file.entries.truncate(MAX_ENTRIES);
    // Invariant: plain structs of strings, numbers and maps with string keys always serialize.
    serde_json::to_string(&file).expect("facts serialize")
}

// ---- file access ------------------------------------------------------------------------------

/// `stat` of a file (following symlinks, as Nix does when it reads it); `None` when missing.
/// Needs no read permission.
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    Some(Stamp {
        size: m.size(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
    })
}

/// The program `name` as `execvp` finds it in `path_var` (glibc's default without PATH). Not
/// canonicalized: `nix` picks its personality from argv[0], so it must run under this name.
pub fn resolve_program(name: &str, path_var: Option<&str>) -> Option<PathBuf> {
    path_var
        .unwrap_or("/bin:/usr/bin")
        .split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable_file(p))
}

fn is_executable_file(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path.
    let runnable = unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 };
    runnable && p.is_file()
}

impl KeyInputs {
    /// Resolves `nix`'s symlinks (a profile switch retargets them), stats it and the nix.conf
    /// files, and reads the [`KEY_ENV`] variables.
    pub fn gather(
        nix: &Path,
        conf_files: &[PathBuf],
        env: &dyn Fn(&str) -> Option<String>,
        uid: u32,
        gids: &[u32],
        daemon: bool,
    ) -> Option<KeyInputs> {
        let nix = std::fs::canonicalize(nix).ok()?;
        Some(KeyInputs {
            nix_stamp: stamp(&nix)?,
            nix,
            conf: conf_files.iter().map(|p| (p.clone(), stamp(p))).collect(),
            env: KEY_ENV.iter().map(|name| env(name)).collect(),
            uid,
            gids: gids.to_vec(),
            daemon,
        })
    }
}

/// The cached facts under `key`, if the file holds them.
pub fn load(cache_dir: &Path, key: &str) -> Option<Facts> {
    let text = crate::fs::read_optional(&cache_dir.join(FILE_NAME)).ok()??;
    find(&text, key)
}

/// Stores `facts` under `key` (a 0600 file in a 0700 dir). Failing to write costs only a
/// probe next time, so errors are returned for a debug line, not for the user.
pub fn save(cache_dir: &Path, key: &str, facts: &Facts) -> anyhow::Result<()> {
    let file = cache_dir.join(FILE_NAME);
    crate::fs::private_dir(cache_dir)?;
    let old = crate::fs::read_optional(&file).ok().flatten();
    crate::fs::atomic_write(
        &file,
        with_entry(old.as_deref(), key, facts).as_bytes(),
        0o600,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(mtime_ns: i128) -> Stamp {
        Stamp {
            size: 10,
            mtime_ns,
            ctime_ns: mtime_ns,
            ino: 7,
        }
    }

    fn base() -> KeyInputs {
        KeyInputs {
            nix: "/usr/bin/nix".into(),
            nix_stamp: st(1),
            conf: vec![
                ("/etc/nix/nix.conf".into(), Some(st(2))),
                ("/etc/nix/secret.conf".into(), Some(st(3))),
                ("/home/u/.config/nix/nix.conf".into(), None),
            ],
            env: KEY_ENV.iter().map(|_| None).collect(),
            uid: 1000,
            gids: vec![1000, 27],
            daemon: true,
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        type Change = fn(&mut KeyInputs);
        let table: &[(&str, Change)] = &[
            ("nix upgraded in place (mtime)", |k| {
                k.nix_stamp.mtime_ns = 9
            }),
            ("nix replaced (inode)", |k| k.nix_stamp.ino = 8),
            ("nix of another size", |k| k.nix_stamp.size = 11),
            ("another nix on PATH", |k| {
                k.nix = "/nix/var/nix/profiles/default/bin/nix".into()
            }),
            ("system nix.conf edited", |k| k.conf[0].1 = Some(st(5))),
            ("an include edited", |k| {
                k.conf[1].1.as_mut().unwrap().mtime_ns = 6
            }),
            ("an include touched back (ctime)", |k| {
                k.conf[1].1.as_mut().unwrap().ctime_ns = 6
            }),
            ("a user nix.conf created", |k| k.conf[2].1 = Some(st(4))),
            ("an include removed", |k| k.conf[1].1 = None),
            ("an include added", |k| {
                k.conf.push(("/etc/nix/more.conf".into(), Some(st(4))))
            }),
            ("NIX_CONFIG set", |k| {
                k.env[4] = Some("plugin-files = /x.so".into())
            }),
            ("NIX_CONFIG set to empty", |k| {
                k.env[4] = Some(String::new())
            }),
            ("NIX_REMOTE set", |k| k.env[5] = Some("daemon".into())),
            ("NIX_CONF_DIR set", |k| k.env[0] = Some("/opt/nix".into())),
            ("another user", |k| k.uid = 1001),
            ("joined a group", |k| k.gids.push(30)),
            ("no daemon", |k| k.daemon = false),
        ];
        let k0 = key(&base());
        assert_eq!(k0, key(&base()), "the key is deterministic");
        let mut seen = BTreeSet::from([k0.clone()]);
        for (what, change) in table {
            let mut k = base();
            change(&mut k);
            let k1 = key(&k);
            assert_ne!(k1, k0, "{what}");
            assert!(seen.insert(k1), "{what}: collides with another row");
        }
        // Fields cannot bleed into each other: moving a byte between two paths changes it.
        let mut a = base();
        a.conf[0].0 = "/etc/nix/nix.con".into();
        a.conf[1].0 = "f/etc/nix/secret.conf".into();
        assert_ne!(key(&a), k0);
    }

    #[test]
    fn the_key_hides_environment_values() {
        let mut k = base();
        k.env[4] = Some("access-tokens = github.com=ghp_secret".into());
        let text = with_entry(None, &key(&k), &Facts::default());
        assert!(!text.contains("ghp_secret"));
        assert_eq!(key(&k).len(), 64);
    }

    fn facts() -> Facts {
        Facts {
            version: Some(Version(2, 8, 0)),
            known_settings: Some(BTreeSet::from(["substituters".to_string()])),
            daemon_trust: None,
        }
    }

    #[test]
    fn entries_round_trip_and_stay_bounded() {
        let mut text = with_entry(None, "k0", &facts());
        assert_eq!(find(&text, "k0"), Some(facts()));
        assert_eq!(find(&text, "other"), None);
        for i in 1..20 {
            text = with_entry(Some(&text), &format!("k{i}"), &Facts::default());
        }
        assert_eq!(find(&text, "k19"), Some(Facts::default()));
        assert_eq!(find(&text, "k0"), None, "the oldest entries go");
        assert!(find(&text, &format!("k{}", 20 - MAX_ENTRIES)).is_some());
        // Re-storing a key replaces it rather than duplicating it.
        let again = with_entry(Some(&text), "k19", &facts());
        assert_eq!(find(&again, "k19"), Some(facts()));
    }

    #[test]
    fn corrupted_files_are_misses_and_get_replaced() {
        for bad in [
            "",
            "{",
            "null",
            "[]",
            r#"{"entries":[{"key":"k0"}]}"#,
            "\u{0}\u{1}",
        ] {
            assert_eq!(find(bad, "k0"), None, "{bad:?}");
            let text = with_entry(Some(bad), "k0", &facts());
            assert_eq!(find(&text, "k0"), Some(facts()), "{bad:?}");
        }
    }

    #[test]
    fn only_complete_and_settled_answers_are_kept() {
        let new = |trust: Option<bool>| Facts {
            version: Some(Version(2, 24, 0)),
            daemon_trust: trust,
            ..facts()
        };
        // (facts, asked the daemon, trusted by the files) -> keep?
        let table: &[(Facts, bool, bool, bool)] = &[
            (facts(), true, false, true), // 2.8 prints no trust line
            (facts(), false, true, true),
            (
                Facts {
                    version: None,
                    ..facts()
                },
                false,
                false,
                false,
            ),
            (
                Facts {
                    known_settings: None,
                    ..facts()
                },
                false,
                false,
                false,
            ),
            (new(Some(true)), true, true, true),
            (new(Some(false)), true, false, true),
            (new(Some(false)), true, true, false), // daemon not restarted since the edit
            (new(Some(true)), true, false, false),
            (new(None), true, true, false), // daemon down: ask again next time
            (new(None), false, false, true), // single-user: nothing to ask
        ];
        for (i, (f, asked, files, keep)) in table.iter().enumerate() {
            assert_eq!(cacheable(f, *asked, *files), *keep, "row {i}: {f:?}");
        }
    }

    fn set_mtime(path: &Path, secs_ahead: u64) {
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(secs_ahead);
        std::fs::File::options()
            .append(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    /// The key as the probe computes it from real files: touching a nix.conf, an include or
    /// the nix binary invalidates the stored facts.
    #[test]
    fn a_changed_mtime_invalidates() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let nix = dir.path().join("nix");
        std::fs::write(&nix, "#!/bin/sh\n").unwrap();
        let conf = dir.path().join("nix.conf");
        let inc = dir.path().join("inc.conf");
        std::fs::write(&conf, "include inc.conf\n").unwrap();
        std::fs::write(&inc, "trusted-users = root\n").unwrap();
        let files = vec![conf.clone(), inc.clone(), dir.path().join("user.conf")];
        let env = |_: &str| None;
        let inputs = || KeyInputs::gather(&nix, &files, &env, 1000, &[1000], true).unwrap();
        let cache = dir.path().join("cache");
        let k0 = key(&inputs());
        save(&cache, &k0, &facts()).unwrap();
        assert_eq!(load(&cache, &k0), Some(facts()));
        assert_eq!(
            std::fs::metadata(cache.join(FILE_NAME))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
            0o700
        );

        set_mtime(&inc, 60);
        let k1 = key(&inputs());
        assert_ne!(k1, k0, "an edited include");
        assert_eq!(load(&cache, &k1), None);
        set_mtime(&conf, 120);
        let k2 = key(&inputs());
        assert_ne!(k2, k1, "an edited nix.conf");
        set_mtime(&nix, 180);
        let k3 = key(&inputs());
        assert_ne!(k3, k2, "an upgraded nix");
        std::fs::write(dir.path().join("user.conf"), "").unwrap();
        assert_ne!(key(&inputs()), k3, "a new user nix.conf");
        // A file the user cannot read is stat'ed all the same.
        std::fs::set_permissions(&inc, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert!(stamp(&inc).is_some());

        // A corrupted cache file is a miss, and the next save replaces it.
        std::fs::write(cache.join(FILE_NAME), "{ not json").unwrap();
        assert_eq!(load(&cache, &k0), None);
        save(&cache, &k0, &facts()).unwrap();
        assert_eq!(load(&cache, &k0), Some(facts()));
    }

    #[test]
    fn programs_resolve_through_path_and_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let target = real.join("nix");
        std::fs::write(&target, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&target, bin.join("nix")).unwrap();
        // A non-executable `nix` earlier on PATH is skipped, as execvp skips it.
        let first = dir.path().join("first");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::write(first.join("nix"), "").unwrap();
        let path = format!("{}:{}", first.display(), bin.display());
        let found = resolve_program("nix", Some(&path)).unwrap();
        assert_eq!(found, bin.join("nix"));
        // The key names the file the link points to.
        let k = KeyInputs::gather(&found, &[], &|_| None, 0, &[], false).unwrap();
        assert_eq!(k.nix, std::fs::canonicalize(&target).unwrap());
        assert_eq!(
            resolve_program("nix", Some(&first.display().to_string())),
            None
        );
    }
}
