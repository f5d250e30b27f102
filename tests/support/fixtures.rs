//! Fixtures the proofs share: test tokens and nix.conf reading, a tmux terminal, a user's login
//! session with a real Secret Service (gnome-keyring under dbus-run-session), and the leak
//! scanners (files holding a secret; files another user can read that hold one).

use super::{
    AccessEntry, DEFAULT_TIMEOUT, E2e, Nginx, NixUnderTest, Output, Service, SignedCache, TestUser,
    UserCmd, processes, run,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The Basic auth login the HTTPS proofs give `use --login` (not the default: proves the flag is
/// used).
pub const LOGIN: &str = "e2e-reader";
/// The login keyring's password (a throwaway keyring in a throwaway HOME: not a secret).
pub const KEYRING_PASSWORD: &str = "e2e-keyring-password";
/// Files bigger than this are not scanned for secrets (none of ours are).
const SCAN_LIMIT: u64 = 64 << 20;

/// A token nobody could guess, so that finding it anywhere is meaningful.
pub fn new_token() -> String {
    format!(
        "tok{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// All values of `name = ...` lines in nix.conf text (whitespace-separated, comments dropped).
pub fn setting(conf: &str, name: &str) -> Vec<String> {
    conf.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
        .collect()
}

/// Regular files below `dir` (symlinks not followed) whose contents hold `needle`, with their
/// permission bits; with `since`, only files modified since then (for shared directories like
/// /tmp).
pub fn files_holding(dir: &Path, needle: &str, since: Option<SystemTime>) -> Vec<(PathBuf, u32)> {
    fn walk(dir: &Path, needle: &[u8], since: Option<SystemTime>, out: &mut Vec<(PathBuf, u32)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(&path, needle, since, out);
                continue;
            }
            if !meta.is_file() || meta.len() > SCAN_LIMIT {
                continue;
            }
            if since.is_some_and(|t| meta.modified().is_ok_and(|m| m < t)) {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            if bytes.windows(needle.len()).any(|w| w == needle) {
                out.push((path, meta.permissions().mode() & 0o7777));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, needle.as_bytes(), since, &mut out);
    out
}

/// The files below `/tmp`, `/var/log`, `/nix/var/log`, every test user's home and `extra` (paths
/// as the Nix under test sees them) that `reader` can read and that hold any of `needles`,
/// searched as `reader` (with find and grep in the Nix's userland: the chroot's logs for 2.34).
/// Only files modified since the proof started are read: the needles are secrets made during
/// the proof, so no older file can hold one (and a shared machine's /tmp may hold gigabytes).
/// The test harness's own files (daemon and server logs, the daemon's HOME) are left out: on a
/// real machine they are root's and private; the test users' homes are searched.
pub fn readable_files_holding(
    e2e: &E2e,
    reader: &TestUser,
    needles: &[String],
    extra: &[&Path],
) -> Vec<PathBuf> {
    // A control: a file anyone may read, written now below the proof's directory, holding a
    // needle of its own. The scan must find it (else it proves nothing), and it is then left
    // out of the result.
    let control_needle = new_token();
    let control = e2e.dir.join(format!("scan-control-{}", reader.name));
    fs::write(&control, format!("control {control_needle}\n")).unwrap();
    fs::set_permissions(&control, fs::Permissions::from_mode(0o644)).unwrap();
    // The patterns live where only the reader can read them, and are not searched.
    let patterns = reader.home.join(".needles");
    let mut all = needles.to_vec();
    all.push(control_needle);
    fs::write(&patterns, all.join("\n") + "\n").unwrap();
    fs::set_permissions(&patterns, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&patterns, Some(reader.uid), None).unwrap();
    let mut roots: Vec<String> = ["/tmp", "/var/log", "/nix/var/log"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    roots.extend(extra.iter().map(|p| p.display().to_string()));
    // A second of slack: file times and our clock are both whole-second precise here.
    let since = e2e
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .saturating_sub(1);
    let script = format!(
        "find \"$@\" -type f -newermt @{since} -print0 2>/dev/null \
         | xargs -0 -r grep -lsF -D skip -f {} --",
        patterns.display()
    );
    let out = reader
        .cmd("sh")
        .args(["-c", &script, "scan"])
        .args(&roots)
        .run();
    let _ = fs::remove_file(&patterns);
    let _ = fs::remove_file(&control);
    let found: Vec<PathBuf> = out.stdout.lines().map(PathBuf::from).collect();
    assert!(
        found.contains(&control),
        "the scan as {} did not find its control file {}: it proves nothing\n{out}",
        reader.name,
        control.display()
    );
    found
        .into_iter()
        .filter(|p| p != &control)
        .filter(|p| {
            let Ok(rel) = p.strip_prefix(&e2e.dir) else {
                return !p.starts_with(&reader.home);
            };
            // Below the test's directory only the test users' homes are the product's.
            rel.components()
                .next()
                .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("home-"))
                && !p.starts_with(&reader.home)
        })
        .collect()
}

/// A tmux server on its own socket in the proof's directory, run in the Nix under test's
/// userland (the pane's commands, and the client commands that talk to it, are the chroot's for
/// 2.34), with one session `e2e`. Killed on Drop.
pub struct Tmux {
    nix: NixUnderTest,
    socket: PathBuf,
}

impl Tmux {
    /// Starts the server with `command` in its first window; the server (and so every pane) gets
    /// `env` and `TERM=xterm` and nothing else but a PATH.
    pub fn start(e2e: &E2e, command: &str, env: &[(&str, String)]) -> Tmux {
        let tmux = Tmux {
            nix: e2e.nix.clone(),
            socket: e2e.dir.join("tmux.sock"),
        };
        let mut cmd = tmux.command();
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("TERM", "xterm")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args([
                "new-session",
                "-d",
                "-s",
                "e2e",
                "-x",
                "160",
                "-y",
                "40",
                command,
            ]);
        run(&mut cmd, None, DEFAULT_TIMEOUT).assert_success("tmux new-session");
        tmux
    }

    fn command(&self) -> Command {
        let mut cmd = self.nix.command("tmux");
        cmd.arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .env_remove("TMUX");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run(self.command().args(args), None, DEFAULT_TIMEOUT)
    }

    /// Opens a new window (it becomes the session's current one) running `command`.
    pub fn new_window(&self, command: &str) {
        self.run(&["new-window", "-t", "e2e", command])
            .assert_success("tmux new-window");
    }

    /// Types `keys` (tmux key names: `Enter`, `C-c`, or text) into the current window.
    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        self.run(&args).assert_success("tmux send-keys");
    }

    /// The current window's screen.
    pub fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "e2e"]).stdout
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// A 0700 directory of `user`'s below the test's directory.
pub fn user_dir(e2e: &E2e, user: &TestUser, what: &str) -> PathBuf {
    let dir = e2e.dir.join(format!("{what}-{}", user.name));
    // A second session of the same user reuses it.
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.uid)).unwrap();
    dir
}

/// Where a test user's commands run: their own `TMPDIR` and (optionally) `XDG_RUNTIME_DIR`,
/// both 0700 below the test's directory, and, with a keyring, the D-Bus session in which
/// gnome-keyring serves the Secret Service. Everything runs as the user; the session (bus and
/// keyring daemon) is stopped on Drop.
pub struct UserSession<'a> {
    pub user: &'a TestUser,
    pub runtime: Option<PathBuf>,
    pub tmp: PathBuf,
    pub bus: Option<String>,
    keyring: Option<Service>,
    /// Removed (as root) on Drop, after the keyring has stopped.
    _runtime_dir: Option<tempfile::TempDir>,
}

impl<'a> UserSession<'a> {
    /// A real Secret Service: `dbus-run-session` as the user, gnome-keyring unlocked in it (a
    /// fresh login keyring in the user's fresh HOME: see TESTBED.md's traps), kept alive while
    /// the test runs commands on that bus.
    pub fn with_keyring(e2e: &E2e, user: &'a TestUser) -> UserSession<'a> {
        Self::with_keyring_password(e2e, user, KEYRING_PASSWORD)
    }

    /// As `with_keyring`, unlocking with `password`: another password than the one the user's
    /// login keyring was made with leaves that keyring locked (TESTBED.md's second trap).
    pub fn with_keyring_password(e2e: &E2e, user: &'a TestUser, password: &str) -> UserSession<'a> {
        // A short path: gnome-keyring binds a socket in it, and socket paths hold 107 bytes.
        let runtime_dir = tempfile::Builder::new()
            .prefix("nsa-run-")
            .tempdir_in("/tmp")
            .unwrap();
        let runtime = runtime_dir.path().to_path_buf();
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&runtime, Some(user.uid), Some(user.uid)).unwrap();
        let tmp = user_dir(e2e, user, "tmp");
        let address_file = runtime.join("bus-address");
        let script = format!(
            "printf '%s\\n' '{password}' | gnome-keyring-daemon --unlock --components=secrets >/dev/null \
             && printf '%s' \"$DBUS_SESSION_BUS_ADDRESS\" > {f}.new && mv {f}.new {f} && exec sleep 86400",
            f = address_file.display()
        );
        let cmd = user
            .cmd("dbus-run-session")
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("TMPDIR", &tmp)
            .args(["--", "sh", "-c"])
            .arg(&script)
            .into_command();
        let keyring = Service::spawn(
            "dbus-run-session + gnome-keyring",
            cmd,
            &e2e.dir.join(format!("keyring-{}.log", user.name)),
            Duration::from_secs(30),
            || address_file.exists(),
        );
        let bus = fs::read_to_string(&address_file).unwrap();
        assert!(bus.starts_with("unix:"), "odd bus address {bus:?}");
        UserSession {
            user,
            runtime: Some(runtime),
            tmp,
            bus: Some(bus),
            keyring: Some(keyring),
            _runtime_dir: Some(runtime_dir),
        }
    }

    /// No session bus at all (headless, CI): nixstore-auth must fall back to its file store.
    /// No `XDG_RUNTIME_DIR` either, so that `exec` uses a private temporary directory.
    pub fn without_keyring(e2e: &E2e, user: &'a TestUser) -> UserSession<'a> {
        UserSession {
            user,
            runtime: None,
            tmp: user_dir(e2e, user, "tmp"),
            bus: None,
            keyring: None,
            _runtime_dir: None,
        }
    }

    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> UserCmd<'a> {
        let mut cmd = self.user.cmd(program).env("TMPDIR", &self.tmp);
        if let Some(rt) = &self.runtime {
            cmd = cmd.env("XDG_RUNTIME_DIR", rt);
        }
        if let Some(bus) = &self.bus {
            cmd = cmd.env("DBUS_SESSION_BUS_ADDRESS", bus);
        }
        cmd
    }

    /// `nixstore-auth ARGS` as the user.
    pub fn nsa<I, S>(&self, e2e: &E2e, args: I) -> UserCmd<'a>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd(&e2e.bin).args(args)
    }

    /// Our entries in the Secret Service, as `secret-tool search --all service nixstore-auth`
    /// finds them: (account, secret) pairs.
    pub fn keyring_entries(&self) -> Vec<(String, String)> {
        assert!(self.bus.is_some(), "this session has no keyring");
        let out = self
            .cmd("secret-tool")
            .args(["search", "--all", "service", "nixstore-auth"])
            .run();
        // secret-tool prints each item's label and secret on stdout, its attributes on stderr,
        // in the same order; it exits 1 when nothing matches.
        let secrets: Vec<String> = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("secret = "))
            .map(str::to_string)
            .collect();
        let accounts: Vec<String> = out
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("attribute.username = "))
            .map(str::to_string)
            .collect();
        if secrets.is_empty() && accounts.is_empty() {
            // Nothing found: no output (exit code 0, or 1 in some versions); an error message
            // means a broken keyring.
            assert!(
                matches!(out.code(), Some(0 | 1)) && out.stderr.trim().is_empty(),
                "secret-tool search failed (is the keyring running?)\n{out}"
            );
        }
        assert_eq!(
            secrets.len(),
            accounts.len(),
            "cannot pair secret-tool's output: {} secrets, accounts {accounts:?}",
            secrets.len()
        );
        accounts.into_iter().zip(secrets).collect()
    }

    /// The accounts the keyring holds (never their secrets, for messages).
    pub fn keyring_accounts(&self) -> Vec<String> {
        self.keyring_entries().into_iter().map(|(a, _)| a).collect()
    }
}

impl Drop for UserSession<'_> {
    fn drop(&mut self) {
        // Stops dbus-run-session, its dbus-daemon and gnome-keyring-daemon (one process group).
        if let Some(mut k) = self.keyring.take() {
            k.stop();
        }
        // userdel refuses a user who still runs something: wait for the daemons to go.
        let uid = self.user.uid;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !processes(|p| owner(p.pid) == Some(uid)).is_empty()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn owner(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
}

/// Asserts that nginx served the narinfo and the NAR of `cache` to `LOGIN` with 200, in the
/// log entries from `from` on.
#[track_caller]
pub fn assert_authenticated_fetch(nginx: &Nginx, cache: &SignedCache, from: usize) {
    let log = nginx.access_log();
    let log = &log[from.min(log.len())..];
    let narinfo = format!("/{}.narinfo", cache.hash());
    let ok = |pred: &dyn Fn(&AccessEntry) -> bool| {
        log.iter()
            .any(|e| e.user == LOGIN && e.status == 200 && pred(e))
    };
    assert!(
        ok(&|e| e.uri == narinfo) && ok(&|e| e.uri.starts_with("/nar/")),
        "nginx did not serve {narinfo} and its NAR to {LOGIN:?} with 200; access log: {log:#?}"
    );
}
