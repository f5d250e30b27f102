//! The Nix under test's `/etc/nix` (backed up and restored), a `nix-daemon` we start and stop,
//! and signed binary caches made with the real `nix` tools of that Nix.

use super::{
    E2e, NixUnderTest, Output, Service, kill_group, note, processes, run, unique_tag, wait_until,
};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Backup of the files we rewrite; left behind only by a killed test run, restored by the next.
fn backup_dir(nix: &NixUnderTest) -> PathBuf {
    PathBuf::from(format!("/tmp/nixstore-auth-e2e-etc-nix-{}.bak", nix.id))
}
/// The pid of the daemon we run, so that a run after a killed one can end that daemon.
fn pid_file(nix: &NixUnderTest) -> PathBuf {
    PathBuf::from(format!("/tmp/nixstore-auth-e2e-daemon-{}.pid", nix.id))
}
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
    /// More variables in the daemon's environment (e.g. `NIX_SSHOPTS` for remote builders).
    pub env: Vec<(String, String)>,
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

    pub fn daemon_env(mut self, name: &str, value: &str) -> NixConf {
        self.env.push((name.to_string(), value.to_string()));
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

/// Saves the Nix's `/etc/nix/nix.conf` and `/etc/nix/netrc` (or their absence) and puts them
/// back on Drop.
struct EtcNixBackup {
    etc: PathBuf,
    backup: PathBuf,
}

impl EtcNixBackup {
    fn take(nix: &NixUnderTest) -> EtcNixBackup {
        let this = EtcNixBackup {
            etc: nix.etc_nix(),
            backup: backup_dir(nix),
        };
        let backup = this.backup.as_path();
        if backup.join("complete").exists() {
            note(&format!(
                "restoring {} from a previous end-to-end run that did not finish",
                this.etc.display()
            ));
            this.restore();
        }
        let _ = fs::remove_dir_all(backup);
        fs::create_dir_all(backup).unwrap();
        fs::set_permissions(backup, fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir_all(&this.etc).unwrap();
        for name in MANAGED {
            let src = this.etc.join(name);
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
        this
    }

    fn restore(&self) {
        let backup = self.backup.as_path();
        for name in MANAGED {
            let dst = self.etc.join(name);
            if backup.join(format!("{name}.absent")).exists() {
                let _ = fs::remove_file(&dst);
            } else {
                // fs::copy keeps the backup's mode (copied from the original).
                fs::copy(backup.join(name), &dst).unwrap();
            }
        }
        let _ = fs::remove_dir_all(backup);
    }
}

impl Drop for EtcNixBackup {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A `nix-daemon` of the Nix under test, started by the test (in its own session, HOME in the
/// test's directory so that its narinfo cache `~/.cache/nix` is fresh per test) with that Nix's
/// `/etc/nix` rewritten from a [`NixConf`]. On Drop: the daemon is stopped and `/etc/nix`
/// restored.
pub struct NixDaemon {
    nix: NixUnderTest,
    service: Option<Service>,
    pub log: PathBuf,
    home: PathBuf,
    ca_bundle: Option<PathBuf>,
    env: Vec<(String, String)>,
    // Dropped after `drop` has stopped the daemon.
    _backup: EtcNixBackup,
}

impl NixDaemon {
    /// Writes `/etc/nix/nix.conf` from `conf`, removes `/etc/nix/netrc` (write one with
    /// [`NixDaemon::write_netrc`]) and starts the daemon. Panics if another nix-daemon runs.
    pub fn start(e2e: &E2e, conf: &NixConf) -> NixDaemon {
        end_leftover_daemon(&e2e.nix);
        let backup = EtcNixBackup::take(&e2e.nix);
        let home = e2e.private_dir("daemon-home");
        let mut daemon = NixDaemon {
            nix: e2e.nix.clone(),
            service: None,
            log: e2e.dir.join("nix-daemon.log"),
            home,
            ca_bundle: conf.ca_bundle.clone(),
            env: conf.env.clone(),
            _backup: backup,
        };
        daemon.write_conf(&conf.render());
        let _ = fs::remove_file(daemon.etc_file("netrc"));
        daemon.spawn();
        daemon
    }

    /// A file of this Nix's `/etc/nix`, host side.
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.nix.etc_nix().join(name)
    }

    /// Rewrites `/etc/nix/nix.conf` from `conf`, takes its CA bundle, and restarts the daemon.
    pub fn reconfigure(&mut self, conf: &NixConf) {
        self.write_conf(&conf.render());
        self.ca_bundle = conf.ca_bundle.clone();
        self.env = conf.env.clone();
        self.restart();
    }

    /// Replaces `/etc/nix/nix.conf` (the daemon reads it at start: [`NixDaemon::restart`]).
    pub fn write_conf(&self, text: &str) {
        let path = self.etc_file("nix.conf");
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
        fs::read_to_string(self.etc_file("nix.conf")).unwrap_or_default()
    }

    /// Writes the daemon's own netrc `/etc/nix/netrc` (mode 0600, as a token file should be).
    pub fn write_netrc(&self, text: &str) {
        let path = self.etc_file("netrc");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, text).unwrap();
    }

    /// Removes the daemon's netrc `/etc/nix/netrc`.
    pub fn remove_netrc(&self) {
        fs::remove_file(self.etc_file("netrc")).unwrap();
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
        let mut cmd = self.nix.command("nix-daemon");
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join(".cache"));
        if let Some(ca) = &self.ca_bundle {
            cmd.env("NIX_SSL_CERT_FILE", ca);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // A stale socket file from the previous daemon refuses connections until the new one
        // has replaced it.
        let socket = self.nix.daemon_socket();
        let service = Service::spawn(
            &format!("nix-daemon (Nix {})", self.nix.id),
            cmd,
            &self.log,
            Duration::from_secs(20),
            || UnixStream::connect(&socket).is_ok(),
        );
        fs::write(pid_file(&self.nix), service.pid().unwrap().to_string()).unwrap();
        self.service = Some(service);
    }

    fn stop(&mut self) {
        if let Some(mut service) = self.service.take() {
            service.stop();
            let _ = fs::remove_file(pid_file(&self.nix));
        }
    }
}

impl Drop for NixDaemon {
    fn drop(&mut self) {
        // Before the backup field restores /etc/nix.
        self.stop();
    }
}

/// Ends a daemon of this Nix left by a killed earlier run of ours (pid file), and refuses to run
/// next to a nix-daemon of this Nix somebody else started: the tests rewrite its configuration.
fn end_leftover_daemon(nix: &NixUnderTest) {
    let pid_file = pid_file(nix);
    if let Ok(pid) = fs::read_to_string(&pid_file) {
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
        let _ = fs::remove_file(&pid_file);
    }
    // A daemon that is just exiting gets a moment; one somebody else runs does not go away.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // Only daemons of this Nix (same root directory): another Nix has its own store and
        // /etc/nix.
        let others = processes(|p| p.comm == "nix-daemon" && in_root_of(p.pid, nix));
        if others.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a nix-daemon of Nix {} is already running (pids: {}); the end-to-end tests start \
             their own with a test configuration: stop it first{}",
            nix.id,
            others
                .iter()
                .map(|p| p.pid.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            if nix.in_chroot() {
                " (scripts/nix-chroot.sh stop-daemon)"
            } else {
                ""
            }
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` runs in the root directory of `nix` (ours, or the chroot).
fn in_root_of(pid: u32, nix: &NixUnderTest) -> bool {
    let root = fs::canonicalize(nix.host_path("/")).ok();
    fs::canonicalize(format!("/proc/{pid}/root")).ok() == root
}

/// A root `nix`/`nix-store` command of the Nix under test on its local store (no daemon), HOME
/// in the test's directory so that root's own `~/.cache/nix` stays untouched. `nix` commands
/// get `--extra-experimental-features nix-command`.
pub fn root_nix(e2e: &E2e, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let home = e2e.private_dir("root-home");
    let mut cmd = e2e.nix.command(program);
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

/// Deletes store paths of `nix`, quietly (Drop guards: the paths may already be gone).
fn delete_quietly(nix: &NixUnderTest, home: &Path, paths: &[String]) {
    let _ = nix
        .command("nix-store")
        .arg("--delete")
        .args(paths)
        .env("HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
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
    nix: NixUnderTest,
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
            nix: e2e.nix.clone(),
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
        delete_quietly(
            &self.nix,
            &self.e2e_dir,
            std::slice::from_ref(&self.store_path),
        );
    }
}

/// Store paths made for a test, signed with a cache's key and copied to a `file://` directory,
/// deleted from the local store (now and on Drop).
pub struct ExtraPaths {
    pub dir: PathBuf,
    pub paths: Vec<String>,
    e2e_dir: PathBuf,
    nix: NixUnderTest,
}

/// `n` new store paths with unique contents (named `nixstore-auth-e2e-TAG-I`).
pub fn add_paths(e2e: &E2e, tag: &str, n: usize) -> Vec<String> {
    let work = e2e.private_dir(&format!("paths-{tag}"));
    let unique = unique_tag();
    let files: Vec<String> = (0..n)
        .map(|i| {
            let f = work.join(format!("nixstore-auth-e2e-{tag}-{i}"));
            fs::write(&f, format!("{} {tag} {i} {unique}\n", e2e.name)).unwrap();
            f.display().to_string()
        })
        .collect();
    let mut args = vec!["--add"];
    args.extend(files.iter().map(String::as_str));
    let out = root_nix(e2e, "nix-store", &args, None);
    out.assert_success("nix-store --add");
    let paths: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    assert_eq!(paths.len(), n, "{out}");
    paths
}

/// The secret key file of a [`SignedCache`] made with `tag` (root-only).
pub fn cache_secret_key(e2e: &E2e, tag: &str) -> PathBuf {
    e2e.dir.join(format!("cache-{tag}-work/secret-key"))
}

impl ExtraPaths {
    /// `n` paths signed with `secret_key`, copied to a new cache directory, deleted locally.
    pub fn create(e2e: &E2e, tag: &str, n: usize, secret_key: &Path) -> ExtraPaths {
        let paths = add_paths(e2e, tag, n);
        let mut sign = vec!["store", "sign", "--key-file", secret_key.to_str().unwrap()];
        sign.extend(paths.iter().map(String::as_str));
        root_nix(e2e, "nix", &sign, None).assert_success("nix store sign");
        let dir = e2e.dir.join(format!("cache-{tag}"));
        let to = format!("file://{}", dir.display());
        let mut copy = vec!["copy", "--to", &to];
        copy.extend(paths.iter().map(String::as_str));
        root_nix(e2e, "nix", &copy, None).assert_success("nix copy --to file://");
        let extra = ExtraPaths {
            dir,
            paths,
            e2e_dir: e2e.dir.clone(),
            nix: e2e.nix.clone(),
        };
        extra.delete_local(e2e);
        extra
    }

    /// Paths made elsewhere (e.g. by [`add_paths`]), deleted from the store on Drop.
    pub fn guard(e2e: &E2e, paths: Vec<String>) -> ExtraPaths {
        ExtraPaths {
            dir: PathBuf::new(),
            paths,
            e2e_dir: e2e.dir.clone(),
            nix: e2e.nix.clone(),
        }
    }

    pub fn delete_local(&self, e2e: &E2e) {
        let mut args = vec!["--delete"];
        args.extend(self.paths.iter().map(String::as_str));
        root_nix(e2e, "nix-store", &args, None).assert_success("nix-store --delete");
    }

    pub fn valid(&self, e2e: &E2e) -> usize {
        self.paths
            .iter()
            .filter(|p| root_nix(e2e, "nix-store", &["--check-validity", p], None).success())
            .count()
    }
}

impl Drop for ExtraPaths {
    fn drop(&mut self) {
        delete_quietly(&self.nix, &self.e2e_dir, &self.paths);
    }
}
