//! The Nix under test: which Nix an end-to-end proof runs against, and how to reach it.
//!
//! Two are known, selected with `NIXSTORE_AUTH_TEST_NIX=2.8,2.34` (unset: both):
//! - `2.8`: the host's own Debian 12 `nix-bin` (2.8.0), `/etc/nix`, `/nix`, as on a user's machine;
//! - `2.34`: Debian sid's `nix-bin` (2.34.x) in a chroot made by `scripts/nix-chroot.sh`
//!   (default `/var/cache/nixstore-auth-test/sid`, `NIXSTORE_AUTH_CHROOT` overrides it), with
//!   its own store, `/etc/nix`, daemon and users. It shares the host's loopback (nginx, moto and
//!   the STS front run on the host) and, for the time of one proof, the host's `/tmp` (a bind
//!   mount): the proof's directory, the users' homes and the copied binary are under `/tmp`, so
//!   they have the same path on both sides and the test reads the users' files directly.
//!
//! Everything a proof runs in the Nix's userland (commands as a test user, root's `nix`
//! commands, the daemon) is built with [`NixUnderTest::command`]: on the host a plain
//! `Command`, for the chroot one that calls `chroot(2)` right before `exec`. Files of the chroot
//! that are not under `/tmp` (its `/etc/nix`, its store, its daemon socket) are reached from the
//! host below the chroot directory: [`NixUnderTest::host_path`].
//!
//! Chroot users share the host's uids (a test user is made on both sides with the same uid, so
//! that a uid found in /proc is always the test's) and the loopback: two proxies of one uid
//! would collide on its default port. Proofs run one at a time (the machine-wide lock), and so
//! the versions run one after another.

use super::{DEFAULT_TIMEOUT, note, run};
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every Nix the harness knows, in the order a full run takes them.
pub const ALL: [&str; 2] = ["2.8", "2.34"];

/// The environment variable that selects the Nix versions (comma-separated; unset: all).
pub const SELECT_VAR: &str = "NIXSTORE_AUTH_TEST_NIX";

/// The chroot of Debian sid's Nix (as scripts/nix-chroot.sh makes it).
pub fn chroot_dir() -> PathBuf {
    std::env::var_os("NIXSTORE_AUTH_CHROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/nixstore-auth-test/sid"))
}

fn chroot_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nix-chroot.sh")
}

/// One Nix installation the proofs run against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NixUnderTest {
    /// `2.8` or `2.34`: the name [`SELECT_VAR`] selects it by.
    pub id: &'static str,
    /// How the tests install it (for messages).
    pub how: &'static str,
    /// The chroot directory; `None` for the host's own Nix.
    pub root: Option<PathBuf>,
}

impl NixUnderTest {
    /// The Nix named `id` (one of [`ALL`]).
    pub fn named(id: &str) -> NixUnderTest {
        match id {
            "2.8" => NixUnderTest {
                id: "2.8",
                how: "Debian 12 nix-bin on the host",
                root: None,
            },
            "2.34" => NixUnderTest {
                id: "2.34",
                how: "Debian sid nix-bin in a chroot (scripts/nix-chroot.sh)",
                root: Some(chroot_dir()),
            },
            other => panic!("unknown Nix under test {other:?}: known are {ALL:?}"),
        }
    }

    /// The Nix versions [`SELECT_VAR`] selects (unset or empty: all); an error names a version
    /// it does not know (a typo must not silently run nothing).
    pub fn selection() -> Result<Vec<&'static str>, String> {
        let v = match std::env::var(SELECT_VAR) {
            Ok(v) if !v.trim().is_empty() => v,
            _ => return Ok(ALL.to_vec()),
        };
        let mut selected = Vec::new();
        for w in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match ALL.iter().find(|id| **id == w) {
                Some(id) => selected.push(*id),
                None => {
                    return Err(format!(
                        "{SELECT_VAR}={v}: unknown Nix {w:?} (known: {})",
                        ALL.join(", ")
                    ));
                }
            }
        }
        Ok(selected)
    }

    /// Whether [`SELECT_VAR`] selects this Nix (the harness checks the variable first).
    pub fn selected(id: &str) -> bool {
        Self::selection().is_ok_and(|s| s.contains(&id))
    }

    /// Whether this is the chroot's Nix.
    pub fn in_chroot(&self) -> bool {
        self.root.is_some()
    }

    /// The host-side path of a path as this Nix's processes see it (`/etc/nix/netrc` is
    /// `CHROOT/etc/nix/netrc` for the chroot). Paths under `/tmp` are the same on both sides
    /// while the proof runs.
    pub fn host_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        match &self.root {
            None => path.to_path_buf(),
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
        }
    }

    /// This Nix's `/etc/nix`, host side.
    pub fn etc_nix(&self) -> PathBuf {
        self.host_path("/etc/nix")
    }

    /// Its daemon's socket, host side.
    pub fn daemon_socket(&self) -> PathBuf {
        self.host_path("/nix/var/nix/daemon-socket/socket")
    }

    /// Its store directory, host side.
    pub fn store_dir(&self) -> PathBuf {
        self.host_path("/nix/store")
    }

    /// A command that runs `program` in this Nix's userland: on the host as is; for the chroot,
    /// the child enters the chroot (`chroot(2)`) right before `exec`, so that `program`, the
    /// users, `/etc/nix` and the store are the chroot's. The working directory set with
    /// `current_dir` must be under `/tmp` (or `/`) for the chroot.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        if let Some(root) = &self.root {
            let root = CString::new(root.as_os_str().as_bytes()).unwrap();
            // SAFETY: chroot, getcwd and chdir are async-signal-safe system calls on memory
            // allocated before fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::chroot(root.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The working directory (set with current_dir, before this runs) is now
                    // outside the root: the kernel names it "(unreachable)/tmp/...". Under /tmp
                    // (bind-mounted) the same path leads to it inside; else `/`. The raw system
                    // call: glibc's getcwd refuses such a name.
                    let mut buf = [0u8; 4096];
                    let n = libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len() - 1);
                    let prefix = b"(unreachable)";
                    let mut moved = false;
                    if n > 0 && buf.starts_with(prefix) {
                        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len() - 1);
                        buf[len] = 0;
                        let path = buf[prefix.len()..].as_ptr();
                        moved = libc::chdir(path.cast()) == 0;
                    }
                    if !(moved || n > 0 && buf[0] == b'/') {
                        libc::chdir(c"/".as_ptr());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// A Python 3 with boto3 in this userland: the test venv on the host, Debian's
    /// python3-boto3 in the chroot.
    pub fn python(&self) -> PathBuf {
        match &self.root {
            None => super::venv_bin("python"),
            Some(_) => PathBuf::from("/usr/bin/python3"),
        }
    }

    /// `nix --version`'s number, e.g. `2.34.8` (asked once per run).
    pub fn version(&self) -> String {
        static HOST: OnceLock<String> = OnceLock::new();
        static CHROOT: OnceLock<String> = OnceLock::new();
        let cell = if self.in_chroot() { &CHROOT } else { &HOST };
        cell.get_or_init(|| {
            let mut cmd = self.command("nix");
            cmd.arg("--version")
                .env_clear()
                .env("PATH", "/usr/bin:/bin");
            let out = run(&mut cmd, None, DEFAULT_TIMEOUT);
            out.assert_success("nix --version");
            let version = out
                .stdout
                .split_whitespace()
                .last()
                .unwrap_or_default()
                .to_string();
            assert!(
                version == self.id || version.starts_with(&format!("{}.", self.id)),
                "the Nix under test {} is {version:?}: {}",
                self.id,
                out.stdout
            );
            version
        })
        .clone()
    }

    /// Makes this Nix usable for one proof: for the chroot, `scripts/nix-chroot.sh ensure`
    /// (once per test process: it creates or reuses the chroot and resets its nix.conf), then
    /// `mount` and the bind mount of `/tmp`. Dropping the returned guard unmounts everything
    /// below the chroot (`nix-chroot.sh umount`).
    pub fn prepare(&self) -> Prepared {
        let Some(root) = &self.root else {
            return Prepared { root: None };
        };
        static ENSURED: OnceLock<()> = OnceLock::new();
        ENSURED.get_or_init(|| {
            let ready = root.join(".nixstore-auth-chroot-ready");
            if !ready.exists() {
                note(&format!(
                    "making the Nix 2.34 chroot at {} (scripts/nix-chroot.sh ensure, 1-2 minutes)",
                    root.display()
                ));
            }
            chroot_sh(&["ensure"]);
        });
        let guard = Prepared {
            root: Some(root.clone()),
        };
        chroot_sh(&["mount"]);
        let tmp = root.join("tmp");
        if !is_mountpoint(&tmp) {
            std::fs::create_dir_all(&tmp).unwrap();
            super::run_root("mount", ["--bind", "/tmp", tmp.to_str().unwrap()], None)
                .assert_success("bind-mount /tmp into the chroot");
        }
        guard
    }
}

/// Runs `scripts/nix-chroot.sh ARGS` (with the harness's chroot directory); panics on failure.
fn chroot_sh(args: &[&str]) {
    let mut cmd = Command::new("bash");
    cmd.arg(chroot_script())
        .args(args)
        .env("NIXSTORE_AUTH_CHROOT", chroot_dir());
    run(&mut cmd, None, std::time::Duration::from_secs(900))
        .assert_success(&format!("scripts/nix-chroot.sh {}", args.join(" ")));
}

fn is_mountpoint(path: &Path) -> bool {
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|m| Path::new(m) == real)
}

/// What [`NixUnderTest::prepare`] set up; unmounts the chroot's mounts on Drop.
pub struct Prepared {
    root: Option<PathBuf>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if self.root.is_none() {
            return;
        }
        let mut cmd = Command::new("bash");
        cmd.arg(chroot_script())
            .arg("umount")
            .env("NIXSTORE_AUTH_CHROOT", chroot_dir());
        let out = run(&mut cmd, None, DEFAULT_TIMEOUT);
        if !out.success() || !out.stderr.trim().is_empty() {
            note(&format!("scripts/nix-chroot.sh umount:\n{out}"));
        }
    }
}
