//! The end-to-end harness (`tests/e2e/`), against real parts only: a real `nix-daemon` of each
//! Nix under test, real unprivileged users, nginx with Basic auth and TLS, moto as S3/STS/IAM,
//! the tests' STS front, a real Secret Service, real signed caches.
//!
//! These proofs change machine state (users, `/etc/nix`, the daemon), so:
//! - they run only when `CI=true` or `NIXSTORE_AUTH_E2E=1`; otherwise the harness
//!   ([`harness`], libtest-mimic) reports each as *ignored*. They need root; `sudo
//!   ./scripts/test.sh` installs what they need. When they are switched on, a missing
//!   prerequisite fails the proof: it never skips.
//! - every proof runs once per Nix under test ([`NixUnderTest`], selected with
//!   `NIXSTORE_AUTH_TEST_NIX=2.8,2.34`, unset: all; a version left out is ignored):
//!   [`proofs!`] lists an area's proofs, and the harness makes the tests
//!   `AREA::PROOF::nix_2_8` and `AREA::PROOF::nix_2_34`;
//! - each holds the machine-wide lock `/tmp/nixstore-auth-e2e.lock` for its whole run, as
//!   other developers on the same machine run them too;
//! - every server listens on 127.0.0.1 on a port picked at run time, and every process, user and
//!   file change is undone by a Drop guard, also when the test panics. The proof's guards drop
//!   before its [`E2e`] (which unmounts the chroot and releases the lock). Servers that proofs
//!   can share without interfering (moto, one per auth mode; nginx, one vhost per proof) are
//!   started once per run of the binary ([`shared`]) and stopped when it ends; each proof gets
//!   its own bucket, IAM user, roles and vhost there.
//!
//! ```ignore
//! fn example_claim_in_words(e2e: &E2e) {
//!     let alice = TestUser::create(e2e, "alice");
//!     let daemon = NixDaemon::start(e2e, &NixConf::new().trusted_user(&alice.name));
//!     let cache = SignedCache::create(e2e, "example");
//!     let nginx = Nginx::start(e2e, NginxOptions::new(&cache.dir).basic_auth("me", "token"));
//!     alice.cmd(&e2e.bin).args(["list"]).run().assert_success("nixstore-auth list");
//! }
//! crate::proofs!(example_claim_in_words);
//! ```
//!
//! A new area: a module `tests/e2e/AREA.rs` that ends with `crate::proofs!(proof_a, proof_b);`,
//! and its name added to the `areas!` list in `tests/e2e/main.rs` (one list: it declares the
//! module and hands its proofs to the harness). A module left out of that list does not build:
//! its `PROOFS` would be unused. Name each proof after what it claims.
//!
//! Set `NIXSTORE_AUTH_E2E_KEEP=1` to keep a proof's directory (logs, configs) for a post-mortem.
#![allow(dead_code, unused_imports, unused_macros)] // each test crate uses a different part

mod aws;
mod azurite;
mod builder;
mod fixtures;
mod gcs;
pub mod harness;
mod nginx;
mod nix;
mod nut;
mod s3;
mod s3s;
mod service;
pub mod shared;
mod users;

pub use aws::{AwsBed, Home, MFA_SERIAL, text};
pub use azurite::{
    Azurite, DEV_ACCOUNT as AZURITE_ACCOUNT, DEV_KEY as AZURITE_KEY, EntraStub, TestCa, azurite_bin,
};
pub use builder::*;
pub use fixtures::*;
pub use gcs::{GcsBed, fake_gcs_bin, service_account_key};
pub use harness::Proof;
pub use nginx::{AccessEntry, Nginx, NginxOptions, Tls};
pub use nix::{ExtraPaths, NixConf, NixDaemon, SignedCache, add_paths, cache_secret_key, root_nix};
pub use nut::{ALL as ALL_NIX, NixUnderTest, Prepared, SELECT_VAR};
pub use s3::*;
pub use s3s::*;
pub use service::{Moto, ProcStat, Service, StsFront, moto_py, port_open, processes, venv_bin};
pub use users::{TestUser, USER_PATH, UserCmd};

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The machine-wide lock every end-to-end proof holds for its whole run.
pub const LOCK_PATH: &str = "/tmp/nixstore-auth-e2e.lock";

/// How long a command may run before [`run`] kills it (Nix retries can hang for minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// The support scripts (tests/support/py), copied into each proof's directory.
const SCRIPTS: &[(&str, &str)] = &[
    ("moto.py", include_str!("py/moto.py")),
    ("sts_front.py", include_str!("py/sts_front.py")),
    ("s3get.py", include_str!("py/s3get.py")),
    ("flood.py", include_str!("py/flood.py")),
    ("squat.py", include_str!("py/squat.py")),
    ("slow_client.py", include_str!("py/slow_client.py")),
    ("s3_front.py", include_str!("py/s3_front.py")),
    ("gcs_front.py", include_str!("py/gcs_front.py")),
    ("entra_stub.py", include_str!("py/entra_stub.py")),
];

/// Whether end-to-end tests are switched on (`CI=true` or `NIXSTORE_AUTH_E2E=1`).
pub fn e2e_enabled() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("NIXSTORE_AUTH_E2E").is_ok_and(|v| v == "1")
}

/// Writes a line to the real stderr: libtest captures `eprintln!`, and a skip must be visible.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
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

/// Lists an area's proofs (`fn PROOF(e2e: &E2e)`) for the harness, which runs each on every Nix
/// under test as `AREA::PROOF::nix_2_8` and `AREA::PROOF::nix_2_34`. A proof that must behave
/// differently per version asks [`E2e::on`] and names the difference. The area must be listed
/// in `tests/e2e/main.rs` (see the top of this file).
#[macro_export]
macro_rules! proofs {
    ($($name:ident),* $(,)?) => {
        /// This area's proofs, for the harness (registered in tests/e2e/main.rs).
        pub const PROOFS: &[$crate::support::Proof] = &[
            $($crate::support::Proof {
                module: module_path!(),
                name: stringify!($name),
                run: $name,
            },)*
        ];
    };
}

/// Declares the areas (one module each, `tests/e2e/AREA.rs`) and runs the harness on their
/// proofs: `tests/e2e/main.rs` is this one call.
#[macro_export]
macro_rules! areas {
    ($($area:ident),* $(,)?) => {
        $(mod $area;)*

        fn main() -> std::process::ExitCode {
            $crate::support::harness::e2e_main(&[$($area::PROOFS),*])
        }
    };
}

/// Everything an end-to-end proof owns for its duration: the lock, the Nix under test (mounted,
/// for the chroot), a scratch directory, and a copy of the built binary that unprivileged users
/// can execute (also inside the chroot).
pub struct E2e {
    /// The proof's name (from its thread).
    pub name: String,
    /// The Nix this run of the proof is against.
    pub nix: NixUnderTest,
    /// Scratch directory under /tmp, mode 0755 so that test users can reach their homes below
    /// it. Put secrets in 0700 subdirectories ([`E2e::private_dir`]).
    pub dir: PathBuf,
    /// `nixstore-auth` built by cargo for this test run, linked once per run below /tmp (mode
    /// 0755, reachable by test users and from the chroot).
    pub bin: PathBuf,
    /// When the proof started (before its users, servers and secrets were made).
    pub started: SystemTime,
    tempdir: Option<tempfile::TempDir>,
    // Unmounted after the directory is gone, before the lock is released.
    _prepared: Prepared,
    _lock: File,
}

/// Nanoseconds all proofs of this run waited for the machine-wide lock (left out of their
/// timings).
static LOCK_WAIT_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long the proofs of this run have waited for the machine-wide lock so far.
pub fn lock_wait_total() -> Duration {
    Duration::from_nanos(LOCK_WAIT_NANOS.load(std::sync::atomic::Ordering::Relaxed))
}

impl E2e {
    /// Starts the proof `name` on the Nix `nix_id` (the harness calls this only when proofs are
    /// switched on and that Nix is selected): waits for the machine-wide lock, prepares the Nix
    /// and makes the proof's directory. Panics when not root: switched-on end-to-end proofs
    /// never skip.
    pub fn start(name: &str, nix_id: &str) -> E2e {
        let name = name.to_string();
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
            let waiting = Instant::now();
            // SAFETY: as above.
            let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
            assert_eq!(
                rc,
                0,
                "flock {LOCK_PATH}: {}",
                std::io::Error::last_os_error()
            );
            LOCK_WAIT_NANOS.fetch_add(
                waiting.elapsed().as_nanos() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let started = SystemTime::now();
        let nix = NixUnderTest::named(nix_id);
        let prepared = nix.prepare();
        let tempdir = tempfile::Builder::new()
            // Short: Unix socket paths below it must fit in 107 bytes.
            .prefix(&format!("nsa-e2e-{nix_id}-{name}-"))
            .tempdir_in("/tmp")
            .expect("create the test's directory under /tmp");
        let dir = tempdir.path().to_path_buf();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        // The target dir may sit under a home that other users cannot enter, and outside the
        // chroot: the binary is copied, once per run, below /tmp (see `shared::binary`).
        let bin = shared::binary();
        let scripts = dir.join("py");
        fs::create_dir_all(&scripts).unwrap();
        fs::set_permissions(&scripts, fs::Permissions::from_mode(0o755)).unwrap();
        for (file, text) in SCRIPTS {
            fs::write(scripts.join(file), text).unwrap();
            fs::set_permissions(scripts.join(file), fs::Permissions::from_mode(0o644)).unwrap();
        }
        let keep = std::env::var("NIXSTORE_AUTH_E2E_KEEP").is_ok_and(|v| v == "1");
        let tempdir = if keep {
            note(&format!("{name}: keeping {}", dir.display()));
            let _ = tempdir.keep();
            None
        } else {
            Some(tempdir)
        };
        note(&format!("{name}: on Nix {} ({})", nix.version(), nix.how));
        E2e {
            name,
            nix,
            dir,
            bin,
            started,
            tempdir,
            _prepared: prepared,
            _lock: lock,
        }
    }
}

impl E2e {
    /// A new 0700 root-owned directory below the test's directory, for keys and passwords.
    pub fn private_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    /// A support script (tests/support/py/NAME), readable by all, inside the proof's directory
    /// (so at the same path inside the chroot).
    pub fn script(&self, name: &str) -> PathBuf {
        let path = self.dir.join("py").join(name);
        assert!(path.exists(), "no support script {name}");
        path
    }

    /// Whether this run is against Nix `id` (`"2.8"`, `"2.34"`).
    pub fn on(&self, id: &str) -> bool {
        self.nix.id == id
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
