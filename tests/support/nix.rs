//! The system's Nix: `/etc/nix` (backed up and restored), a `nix-daemon` we start and stop, and
//! signed binary caches made with the real `nix` tools.

use super::{E2e, Output, Service, kill_group, note, processes, run, unique_tag, wait_until};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const ETC_NIX: &str = "/etc/nix";
pub const DAEMON_SOCKET: &str = "/nix/var/nix/daemon-socket/socket";
/// Backup of the files we rewrite; left behind only by a killed test run, restored by the next.
const BACKUP_DIR: &str = "/tmp/nixstore-auth-e2e-etc-nix.bak";
/// The pid of the daemon we run, so that a run after a killed one can end that daemon.
const PID_FILE: &str = "/tmp/nixstore-auth-e2e-daemon.pid";
const MANAGED: [&str; 2] = ["nix.conf", "netrc"];

/// The `/etc/nix/nix.conf` a test runs with. Always: `substituters =` (there is no internet:
/// cache.nixos.org would make every lookup retry), `sandbox = false` (Debian), and
/// `experimental-features = nix-command`.
#[derive(Clone, Debug, Default)]
pub struct NixConf {
    /// Users (or `@groups`) in `trusted-users`, after `root`.
    pub trusted_users: Vec<String>,
    /// The CA bundle the daemon trusts for https caches (see [`super::Tls`]). Nix 2.8 has no
    /// `ssl-cert-file` setting (it warns `unknown setting`): the daemon gets it as
    /// `NIX_SSL_CERT_FILE` in its environment, as a service manager would set it.
    pub ca_bundle: Option<PathBuf>,
    /// More lines, appended verbatim.
    pub extra: String,
}

impl NixConf {
    pub fn new() -> NixConf {
        NixConf::default()
    }

    pub fn trusted_user(mut self, user: &str) -> NixConf {
        self.trusted_users.push(user.to_string());
        self
    }

    pub fn ca_bundle(mut self, path: &Path) -> NixConf {
        self.ca_bundle = Some(path.to_path_buf());
        self
    }

    pub fn extra(mut self, lines: &str) -> NixConf {
        self.extra.push_str(lines);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// The text of `/etc/nix/nix.conf`.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# Written by nixstore-auth's end-to-end tests; the original is restored afterwards.\n\
             substituters =\n\
             sandbox = false\n\
             experimental-features = nix-command\n",
        );
        text += &format!("trusted-users = root {}\n", self.trusted_users.join(" "));
        text += &self.extra;
        text
    }
}

/// Saves `/etc/nix/nix.conf` and `/etc/nix/netrc` (or their absence) and puts them back on Drop.
struct EtcNixBackup;

impl EtcNixBackup {
    fn take() -> EtcNixBackup {
        let backup = Path::new(BACKUP_DIR);
        if backup.join("complete").exists() {
            note("restoring /etc/nix from a previous end-to-end run that did not finish");
            restore_etc_nix();
        }
        let _ = fs::remove_dir_all(backup);
        fs::create_dir_all(backup).unwrap();
        fs::set_permissions(backup, fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir_all(ETC_NIX).unwrap();
        for name in MANAGED {
            let src = Path::new(ETC_NIX).join(name);
            match fs::symlink_metadata(&src) {
                Ok(meta) => {
                    // A symlinked /etc/nix/nix.conf (NixOS, home-grown setups) is not ours to rewrite.
                    assert!(
                        !meta.file_type().is_symlink(),
                        "{} is a symlink: end-to-end tests only run on a machine whose /etc/nix they may rewrite",
                        src.display()
                    );
                    fs::copy(&src, backup.join(name)).unwrap();
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    fs::write(backup.join(format!("{name}.absent")), "").unwrap();
                }
                Err(e) => panic!("{}: {e}", src.display()),
            }
        }
        fs::write(backup.join("complete"), "").unwrap();
        EtcNixBackup
    }
}

fn restore_etc_nix() {
    let backup = Path::new(BACKUP_DIR);
    for name in MANAGED {
        let dst = Path::new(ETC_NIX).join(name);
        if backup.join(format!("{name}.absent")).exists() {
            let _ = fs::remove_file(&dst);
        } else {
            // fs::copy keeps the backup's mode (copied from the original).
            fs::copy(backup.join(name), &dst).unwrap();
        }
    }
    let _ = fs::remove_dir_all(backup);
}

impl Drop for EtcNixBackup {
    fn drop(&mut self) {
        restore_etc_nix();
    }
}

/// A `nix-daemon` started by the test (in its own session, HOME in the test's directory so that
/// its narinfo cache `~/.cache/nix` is fresh per test) with `/etc/nix` rewritten from a
/// [`NixConf`]. On Drop: the daemon is stopped and `/etc/nix` restored.
pub struct NixDaemon {
    service: Option<Service>,
    pub log: PathBuf,
    home: PathBuf,
    ca_bundle: Option<PathBuf>,
    // Dropped after `drop` has stopped the daemon.
    _backup: EtcNixBackup,
}

impl NixDaemon {
    /// Writes `/etc/nix/nix.conf` from `conf`, removes `/etc/nix/netrc` (write one with
    /// [`NixDaemon::write_netrc`]) and starts the daemon. Panics if another nix-daemon runs.
    pub fn start(e2e: &E2e, conf: &NixConf) -> NixDaemon {
        end_leftover_daemon();
        let backup = EtcNixBackup::take();
        let home = e2e.private_dir("daemon-home");
        let mut daemon = NixDaemon {
            service: None,
            log: e2e.dir.join("nix-daemon.log"),
            home,
            ca_bundle: conf.ca_bundle.clone(),
            _backup: backup,
        };
        daemon.write_conf(&conf.render());
        let _ = fs::remove_file(Path::new(ETC_NIX).join("netrc"));
        daemon.spawn();
        daemon
    }

    /// Rewrites `/etc/nix/nix.conf` from `conf`, takes its CA bundle, and restarts the daemon.
    pub fn reconfigure(&mut self, conf: &NixConf) {
        self.write_conf(&conf.render());
        self.ca_bundle = conf.ca_bundle.clone();
        self.restart();
    }

    /// Replaces `/etc/nix/nix.conf` (the daemon reads it at start: [`NixDaemon::restart`]).
    pub fn write_conf(&self, text: &str) {
        let path = Path::new(ETC_NIX).join("nix.conf");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Appends lines to `/etc/nix/nix.conf`.
    pub fn append_conf(&self, lines: &str) {
        let mut text = self.conf();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(lines);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        self.write_conf(&text);
    }

    /// The current `/etc/nix/nix.conf`.
    pub fn conf(&self) -> String {
        fs::read_to_string(Path::new(ETC_NIX).join("nix.conf")).unwrap_or_default()
    }

    /// Writes the daemon's own netrc `/etc/nix/netrc` (mode 0600, as a token file should be).
    pub fn write_netrc(&self, text: &str) {
        let path = Path::new(ETC_NIX).join("netrc");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, text).unwrap();
    }

    /// Stops and starts the daemon, e.g. after a change to `/etc/nix/nix.conf`.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("nix-daemon");
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join(".cache"));
        if let Some(ca) = &self.ca_bundle {
            cmd.env("NIX_SSL_CERT_FILE", ca);
        }
        // A stale socket file from the previous daemon refuses connections until the new one
        // has replaced it.
        let service = Service::spawn(
            "nix-daemon",
            cmd,
            &self.log,
            Duration::from_secs(20),
            || UnixStream::connect(DAEMON_SOCKET).is_ok(),
        );
        fs::write(PID_FILE, service.pid().unwrap().to_string()).unwrap();
        self.service = Some(service);
    }

    fn stop(&mut self) {
        if let Some(mut service) = self.service.take() {
            service.stop();
            let _ = fs::remove_file(PID_FILE);
        }
    }
}

impl Drop for NixDaemon {
    fn drop(&mut self) {
        // Before the backup field restores /etc/nix.
        self.stop();
    }
}

/// Ends a daemon left by a killed earlier run of ours (pid file), and refuses to run next to a
/// nix-daemon somebody else started: the tests rewrite its configuration.
fn end_leftover_daemon() {
    if let Ok(pid) = fs::read_to_string(PID_FILE) {
        if let Ok(pid) = pid.trim().parse::<u32>() {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "nix-daemon" {
                note(&format!(
                    "stopping nix-daemon {pid} left by an earlier end-to-end run"
                ));
                kill_group(pid, libc::SIGKILL);
                wait_until(
                    "the old nix-daemon to exit",
                    Duration::from_secs(10),
                    || processes(|p| p.pid == pid).is_empty(),
                );
            }
        }
        let _ = fs::remove_file(PID_FILE);
    }
    // A daemon that is just exiting gets a moment; one somebody else runs does not go away.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // A daemon in a chroot (another Nix under test) has its own store and /etc/nix.
        let others = processes(|p| p.comm == "nix-daemon" && in_our_root(p.pid));
        if others.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a nix-daemon is already running (pids: {}); the end-to-end tests start their own \
             with a test configuration: stop it first",
            others
                .iter()
                .map(|p| p.pid.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` sees the same root directory as we do (not a chroot's).
fn in_our_root(pid: u32) -> bool {
    let ours = fs::canonicalize("/proc/self/root").ok();
    fs::canonicalize(format!("/proc/{pid}/root")).ok() == ours
}

/// A root `nix`/`nix-store` command on the local store (no daemon), HOME in the test's directory
/// so that root's own `~/.cache/nix` stays untouched. `nix` commands get
/// `--extra-experimental-features nix-command`.
pub fn root_nix(e2e: &E2e, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let home = e2e.private_dir("root-home");
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join(".cache"));
    if program == "nix" {
        cmd.args(["--extra-experimental-features", "nix-command"]);
    }
    cmd.args(args);
    run(&mut cmd, stdin, super::DEFAULT_TIMEOUT)
}

/// A binary cache directory (`nix copy --to file://DIR`) holding one store path with unique
/// contents, signed with a fresh key; the path itself is deleted from the local store so that a
/// test can substitute it back. On Drop the path is deleted from the store again.
pub struct SignedCache {
    /// The cache directory (serve it with [`super::Nginx`]).
    pub dir: PathBuf,
    /// The store path in the cache, e.g. `/nix/store/...-nixstore-auth-e2e-TAG`.
    pub store_path: String,
    /// `name:base64` public key that verifies the cache's signatures.
    pub public_key: String,
    e2e_dir: PathBuf,
}

impl SignedCache {
    /// Makes the cache under `e2e.dir/cache-TAG`. `tag` (`[a-z0-9-]`) names the store path.
    pub fn create(e2e: &E2e, tag: &str) -> SignedCache {
        let unique = unique_tag();
        let work = e2e.private_dir(&format!("cache-{tag}-work"));
        let file = work.join(format!("nixstore-auth-e2e-{tag}"));
        fs::write(
            &file,
            format!("nixstore-auth e2e {} {tag} {unique}\n", e2e.name),
        )
        .unwrap();
        let added = root_nix(e2e, "nix-store", &["--add", file.to_str().unwrap()], None);
        added.assert_success("nix-store --add");
        let store_path = added.stdout.trim().to_string();

        let key_name = format!("nixstore-auth-e2e-{tag}-{unique}-1");
        let secret = root_nix(
            e2e,
            "nix",
            &["key", "generate-secret", "--key-name", &key_name],
            None,
        );
        secret.assert_success("nix key generate-secret");
        let secret_file = work.join("secret-key");
        fs::write(&secret_file, secret.stdout.trim()).unwrap();
        let public = root_nix(
            e2e,
            "nix",
            &["key", "convert-secret-to-public"],
            Some(secret.stdout.trim().as_bytes()),
        );
        public.assert_success("nix key convert-secret-to-public");
        let public_key = public.stdout.trim().to_string();

        root_nix(
            e2e,
            "nix",
            &[
                "store",
                "sign",
                "--key-file",
                secret_file.to_str().unwrap(),
                &store_path,
            ],
            None,
        )
        .assert_success("nix store sign");
        let dir = e2e.dir.join(format!("cache-{tag}"));
        root_nix(
            e2e,
            "nix",
            &[
                "copy",
                "--to",
                &format!("file://{}", dir.display()),
                &store_path,
            ],
            None,
        )
        .assert_success("nix copy --to file://");
        let cache = SignedCache {
            dir,
            store_path,
            public_key,
            e2e_dir: e2e.dir.clone(),
        };
        cache.delete_local(e2e);
        assert!(
            cache.dir.join("nix-cache-info").exists(),
            "nix copy made no nix-cache-info in {}",
            cache.dir.display()
        );
        cache
    }

    /// The store path's hash part: the narinfo is served at `/<hash>.narinfo`.
    pub fn hash(&self) -> &str {
        let base = self.store_path.rsplit('/').next().unwrap();
        &base[..32]
    }

    /// Deletes the path from the local store (it must be gone before a test substitutes it).
    pub fn delete_local(&self, e2e: &E2e) {
        root_nix(e2e, "nix-store", &["--delete", &self.store_path], None)
            .assert_success("nix-store --delete");
        assert!(
            !self.is_valid(e2e),
            "{} still valid after delete",
            self.store_path
        );
    }

    /// Whether the path is valid in the local store.
    pub fn is_valid(&self, e2e: &E2e) -> bool {
        root_nix(
            e2e,
            "nix-store",
            &["--check-validity", &self.store_path],
            None,
        )
        .success()
    }
}

impl Drop for SignedCache {
    fn drop(&mut self) {
        // Keep the store clean; errors do not matter (the path may already be gone).
        let _ = Command::new("nix-store")
            .args(["--delete", &self.store_path])
            .env("HOME", &self.e2e_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
