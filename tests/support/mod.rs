//! Shared helpers for the end-to-end tests (`tests/e2e_*.rs`), against real parts only: a real
//! `nix-daemon`, real unprivileged users, nginx with Basic auth and TLS, a real signed cache.
//!
//! These tests change machine state (users, `/etc/nix/nix.conf`, `/etc/nix/netrc`, the daemon),
//! so:
//! - they run only when `CI=true` or `NIXSTORE_AUTH_E2E=1`; otherwise [`e2e_guard`] prints a skip
//!   line and the test returns. They need root; `sudo ./scripts/test.sh` installs what they need.
//!   When they are switched on, a missing prerequisite fails the test: it never skips.
//! - each test holds the machine-wide lock `/tmp/nixstore-auth-e2e.lock` for its whole run, as
//!   other developers on the same machine run them too;
//! - every server listens on 127.0.0.1 on a port picked at run time, and every process, user and
//!   file change is undone by a Drop guard, also when the test panics. Declare the guards after
//!   the [`E2e`] value so that they drop before the lock is released.
//!
//! ```ignore
//! mod support;
//! use support::*;
//!
//! #[test]
//! fn e2e_example() {
//!     let Some(e2e) = e2e_guard() else { return };
//!     let alice = TestUser::create(&e2e, "alice");
//!     let daemon = NixDaemon::start(&e2e, NixConf::new().trusted_user(&alice.name));
//!     let cache = SignedCache::create(&e2e, "example");
//!     let nginx = Nginx::start(&e2e, NginxOptions::new(&cache.dir).basic_auth("me", "token"));
//!     let out = alice.cmd(&e2e.bin).args(["list"]).run();
//!     out.assert_success("nixstore-auth list");
//! }
//! ```
//!
//! Set `NIXSTORE_AUTH_E2E_KEEP=1` to keep a test's directory (logs, configs) for a post-mortem.
#![allow(dead_code, unused_imports)] // each test crate uses a different part of this module

mod nginx;
mod nix;
mod s3;
mod service;
mod users;

pub use nginx::{AccessEntry, Nginx, NginxOptions, Tls};
pub use nix::{NixConf, NixDaemon, SignedCache, root_nix};
pub use s3::*;
pub use service::{Moto, ProcStat, Service, port_open, processes, venv_bin};
pub use users::{TestUser, UserCmd};

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The machine-wide lock every end-to-end test holds for its whole run.
pub const LOCK_PATH: &str = "/tmp/nixstore-auth-e2e.lock";

/// How long a command may run before [`run`] kills it (Nix retries can hang for minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// Whether end-to-end tests are switched on (`CI=true` or `NIXSTORE_AUTH_E2E=1`).
pub fn e2e_enabled() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("NIXSTORE_AUTH_E2E").is_ok_and(|v| v == "1")
}

/// Writes a line to the real stderr: libtest captures `eprintln!`, and a skip must be visible.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("e2e");
    name.rsplit("::").next().unwrap_or(name).to_string()
}

/// A unique, short, lowercase tag (for file contents, key names, user names).
pub fn unique_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:x}",
        (nanos as u64) ^ (u64::from(std::process::id()) << 40)
    )
}

/// Everything an end-to-end test owns for its duration: the lock, a scratch directory, and a
/// copy of the built binary that unprivileged users can execute.
pub struct E2e {
    /// The test's name (from its thread).
    pub name: String,
    /// Scratch directory, mode 0755 so that test users can reach their homes below it. Put
    /// secrets in 0700 subdirectories ([`E2e::private_dir`]).
    pub dir: PathBuf,
    /// `nixstore-auth` built by cargo for this test run, copied into `dir` (mode 0755).
    pub bin: PathBuf,
    tempdir: Option<tempfile::TempDir>,
    _lock: File,
}

/// Starts an end-to-end test: `None` (after printing a skip line) unless `CI=true` or
/// `NIXSTORE_AUTH_E2E=1`; otherwise waits for the machine-wide lock and returns the test's
/// [`E2e`]. Panics when not root: switched-on end-to-end tests never skip.
pub fn e2e_guard() -> Option<E2e> {
    let name = test_name();
    if !e2e_enabled() {
        note(&format!(
            "skipping end-to-end test {name}: set NIXSTORE_AUTH_E2E=1 or CI=true to run it \
             (as root: sudo ./scripts/test.sh)"
        ));
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "{name}: end-to-end tests need root (they create users and edit /etc/nix): \
         run `sudo ./scripts/test.sh`"
    );
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(LOCK_PATH)
        .unwrap_or_else(|e| panic!("cannot open {LOCK_PATH}: {e}"));
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        note(&format!(
            "{name}: waiting for {LOCK_PATH} (another end-to-end run holds it)"
        ));
        // SAFETY: as above.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {LOCK_PATH}: {}",
            std::io::Error::last_os_error()
        );
    }
    let tempdir = tempfile::Builder::new()
        .prefix(&format!("nixstore-auth-e2e-{name}-"))
        .tempdir_in("/tmp")
        .expect("create the test's directory under /tmp");
    let dir = tempdir.path().to_path_buf();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    // The target dir may sit under a home that other users cannot enter: copy the binary.
    let bin = dir.join("bin/nixstore-auth");
    fs::create_dir_all(bin.parent().unwrap()).unwrap();
    fs::set_permissions(bin.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_nixstore-auth"), &bin).expect("copy the built binary");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let keep = std::env::var("NIXSTORE_AUTH_E2E_KEEP").is_ok_and(|v| v == "1");
    let tempdir = if keep {
        note(&format!("{name}: keeping {}", dir.display()));
        let _ = tempdir.keep();
        None
    } else {
        Some(tempdir)
    };
    Some(E2e {
        name,
        dir,
        bin,
        tempdir,
        _lock: lock,
    })
}

impl E2e {
    /// A new 0700 root-owned directory below the test's directory, for keys and passwords.
    pub fn private_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }
}

/// A finished command: exit status and output (lossy UTF-8).
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// What ran, for messages (argv only: tests keep secrets out of it).
    pub what: String,
}

impl Output {
    /// The exit code (`None` when killed by a signal, e.g. on timeout).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout and stderr together, for searching messages wherever the program put them.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self, context: &str) -> &Self {
        assert!(self.success(), "{context}: expected success\n{self}");
        self
    }

    /// Panics with the whole output unless the command exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32, context: &str) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "{context}: expected exit code {code}\n{self}"
        );
        self
    }

    /// Panics with the whole output if the command exited 0.
    #[track_caller]
    pub fn assert_failure(&self, context: &str) -> &Self {
        assert!(!self.success(), "{context}: expected failure\n{self}");
        self
    }

    /// Panics if any of `secrets` appears in stdout or stderr (secrets never in output).
    #[track_caller]
    pub fn assert_hides(&self, secrets: &[&str]) -> &Self {
        for s in secrets {
            assert!(
                !self.all().contains(s),
                "a secret appears in the output:\n{self}"
            );
        }
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown status".to_string(),
        };
        write!(
            f,
            "$ {}\n[{status}]\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.what, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` in its own process group with `stdin` (or /dev/null), captures its output, and
/// kills the whole group after `timeout`. Processes it leaves behind in its group are killed when
/// it exits (they would hold the output pipes open): a server meant to outlive the command must
/// start its own session. Panics when the program cannot be started (a missing prerequisite must
/// fail the test).
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start `{what}`: {e} (run scripts/test.sh, which installs the test bed)")
    });
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        // A thread, so that a child that does not read stdin cannot block us.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            kill_group(child.id(), libc::SIGKILL);
            note(&format!("timeout after {timeout:?}: killed `{what}`"));
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Grandchildren may still hold the pipes: they are in our group, end them too.
    kill_group(child.id(), libc::SIGKILL);
    if let Some(w) = writer {
        let _ = w.join();
    }
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        what,
    }
}

/// Runs a program as root (this test process) with the default timeout.
pub fn run_root<I, S>(program: &str, args: I, stdin: Option<&[u8]>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run(Command::new(program).args(args), stdin, DEFAULT_TIMEOUT)
}

/// Sends `signal` to the process group `pgid` (a group we created); errors are ignored because
/// the group may already be gone.
pub fn kill_group(pgid: u32, signal: i32) {
    // SAFETY: kill with a negative pid targets exactly the process group we created.
    unsafe {
        libc::kill(-(pgid as i32), signal);
    }
}

/// A 127.0.0.1 TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Waits until `check` returns true, panicking with `what` after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every regular file below `dir` (relative path → mode and contents): compare two snapshots to
/// prove that a command wrote nothing, or the same bytes twice. Symlinks are recorded by target.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, (mode, target.into_os_string().into_encoded_bytes()));
            } else if meta.is_dir() {
                out.insert(rel, (mode, Vec::new()));
                walk(root, &path, out);
            } else {
                out.insert(rel, (mode, fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A readable difference between two [`snapshot`]s (empty when equal).
pub fn snapshot_diff(
    before: &BTreeMap<PathBuf, (u32, Vec<u8>)>,
    after: &BTreeMap<PathBuf, (u32, Vec<u8>)>,
) -> String {
    let mut diff = String::new();
    for (path, old) in before {
        match after.get(path) {
            None => diff += &format!("removed {}\n", path.display()),
            Some(new) if new != old => {
                diff += &format!(
                    "changed {} (mode {:o} -> {:o})\n--- before\n{}\n--- after\n{}\n",
                    path.display(),
                    old.0,
                    new.0,
                    String::from_utf8_lossy(&old.1),
                    String::from_utf8_lossy(&new.1)
                )
            }
            _ => {}
        }
    }
    for (path, new) in after {
        if !before.contains_key(path) {
            diff += &format!(
                "added {} (mode {:o})\n{}\n",
                path.display(),
                new.0,
                String::from_utf8_lossy(&new.1)
            );
        }
    }
    diff
}

/// The last `n` lines of a log file, for panic messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
