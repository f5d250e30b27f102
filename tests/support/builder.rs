//! A remote builder for the end-to-end proofs: the host's Nix (2.8) with its own store, its own
//! configuration and its own HOME, in its own network namespace (its 127.0.0.1 is not ours, so
//! it cannot reach our proxy), reached by the local nix-daemon of the Nix under test over a real
//! `sshd` as `root@nsa-builder`.
//!
//! How the connection runs: `systemd-socket-activate --inetd` listens on a loopback port of the
//! host and, for each connection, runs `ip netns exec NS /usr/sbin/sshd -i` with the socket as
//! its stdin and stdout. The local daemon's `ssh` reaches it through the `NIX_SSHOPTS` the daemon
//! is started with (`-F` our ssh_config: the alias, the port, the key, the pinned host key),
//! since the SSH connection is always root's and comes from the daemon's environment. A
//! `ProxyCommand ip netns exec NS sshd -i` would need no port, but the 2.34 daemon runs in a
//! chroot, where its ssh runs the ProxyCommand with the chroot's files (no host `sshd`, no host
//! Nix): a loopback port is the one door both daemons share.
//!
//! The traps that would make a remote-build proof prove nothing, avoided here:
//! - the builder's store is a store of its own (`?remote-store=DIR/root`, a store root outside
//!   `/nix`, which makes Nix build in its sandbox), with its own database and build logs;
//! - its configuration is its own (`NIX_CONF_DIR`, set by sshd's `SetEnv`), and so are HOME and
//!   `XDG_CACHE_HOME` (root's real ones stay untouched);
//! - the host alias `nsa-builder` is not `localhost` (for which Nix skips ssh altogether);
//! - builds use `/bin/sh`, which the sandbox has only through `sandbox-paths` (with the shared
//!   libraries it needs, found with `ldd`), and get no `PATH`: builders use shell builtins only;
//! - a marker file exists only in the builder's sandbox (`/nsa-builder-marker`): an output that
//!   holds it was built there and nowhere else.

use super::{E2e, Service, free_port, note, run, run_root, unique_tag, wait_until};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The builder's host alias in the ssh configuration (not `localhost`: Nix would skip ssh).
pub const BUILDER_HOST: &str = "nsa-builder";
/// Where the builder's sandbox shows its marker file.
pub const MARKER_PATH: &str = "/nsa-builder-marker";
/// Prefix of the network namespaces we make (leftovers of killed runs are removed by it).
const NETNS_PREFIX: &str = "nsa-builder-";

/// The builder; see the module's documentation. Everything it has lives below [`Builder::dir`]:
/// its store root, configuration, HOME, keys and logs. On Drop: the listener stops and the
/// network namespace goes (the directory goes with the proof's).
pub struct Builder {
    pub dir: PathBuf,
    /// The root of the builder's store (`remote-store=`): its `nix/store`, `nix/var`.
    pub root: PathBuf,
    /// The builder's `NIX_CONF_DIR`.
    pub conf_dir: PathBuf,
    pub home: PathBuf,
    /// What [`MARKER_PATH`] holds inside the builder's sandbox.
    pub marker: String,
    pub netns: String,
    /// The loopback port sshd is reached at (socket activation on the host).
    pub port: u16,
    ssh_config: PathBuf,
    sshd_log: PathBuf,
    sandbox_paths: String,
    listener: Option<Service>,
}

impl Builder {
    /// Makes the builder: keys, sshd configuration, the network namespace (loopback up, so
    /// that a URL on 127.0.0.1 is refused there as on a real machine), the store root and
    /// `nix.conf` (base settings plus `extra`), and the listener. Checks that the builder
    /// answers over ssh and cannot reach a port listening on our loopback.
    pub fn start(e2e: &E2e, extra_conf: &str) -> Builder {
        remove_leftover_namespaces();
        let dir = e2e.private_dir("builder");
        let sub = |name: &str| {
            let p = dir.join(name);
            fs::create_dir_all(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
            p
        };
        let (keys, root, conf_dir, home) = (sub("keys"), sub("root"), sub("conf"), sub("home"));
        for (name, comment) in [
            ("host", "nsa-builder-host"),
            ("client", "nsa-builder-client"),
        ] {
            run_root(
                "ssh-keygen",
                [
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    comment,
                    "-f",
                    keys.join(name).to_str().unwrap(),
                ],
                None,
            )
            .assert_success("ssh-keygen (is openssh-client installed?)");
        }
        let client_pub = fs::read_to_string(keys.join("client.pub")).unwrap();
        fs::write(keys.join("authorized_keys"), &client_pub).unwrap();
        let host_pub = fs::read_to_string(keys.join("host.pub")).unwrap();
        let host_key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        fs::write(
            keys.join("known_hosts"),
            format!("{BUILDER_HOST} {}\n", host_key.join(" ")),
        )
        .unwrap();

        let marker = format!("nsa-builder-marker-{}", unique_tag());
        fs::write(dir.join("marker"), format!("{marker}\n")).unwrap();
        let sandbox_paths = format!(
            "{MARKER_PATH}={} {}",
            dir.join("marker").display(),
            shell_sandbox_paths()
        );

        // sshd's privilege separation directory (made at boot where a service manager runs).
        fs::create_dir_all("/run/sshd").unwrap();
        let sshd_log = dir.join("sshd.log");
        let sshd_config = dir.join("sshd_config");
        fs::write(
            &sshd_config,
            format!(
                "HostKey {keys}/host\n\
                 AuthorizedKeysFile {keys}/authorized_keys\n\
                 PermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PidFile none\n\
                 LogLevel VERBOSE\n\
                 SetEnv NIX_CONF_DIR={conf} HOME={home} XDG_CACHE_HOME={home}/.cache\n",
                keys = keys.display(),
                conf = conf_dir.display(),
                home = home.display(),
            ),
        )
        .unwrap();
        run_root(
            "/usr/sbin/sshd",
            ["-t", "-f", sshd_config.to_str().unwrap()],
            None,
        )
        .assert_success("sshd -t (is openssh-server installed?)");

        let netns = format!("{NETNS_PREFIX}{}", unique_tag());
        run_root("ip", ["netns", "add", &netns], None).assert_success("ip netns add");
        run_root(
            "ip",
            ["netns", "exec", &netns, "ip", "link", "set", "lo", "up"],
            None,
        )
        .assert_success("loopback up in the builder's namespace");

        let port = free_port();
        let ssh_config = dir.join("ssh_config");
        fs::write(
            &ssh_config,
            format!(
                "Host {BUILDER_HOST}\n\
                 \x20 HostName 127.0.0.1\n\
                 \x20 Port {port}\n\
                 \x20 User root\n\
                 \x20 IdentityFile {keys}/client\n\
                 \x20 IdentitiesOnly yes\n\
                 \x20 HostKeyAlias {BUILDER_HOST}\n\
                 \x20 UserKnownHostsFile {keys}/known_hosts\n\
                 \x20 GlobalKnownHostsFile /dev/null\n\
                 \x20 StrictHostKeyChecking yes\n\
                 \x20 BatchMode yes\n",
                keys = keys.display()
            ),
        )
        .unwrap();

        let mut builder = Builder {
            dir: dir.clone(),
            root,
            conf_dir,
            home,
            marker,
            netns,
            port,
            ssh_config,
            sshd_log,
            sandbox_paths,
            listener: None,
        };
        builder.write_conf(extra_conf);
        let log = dir.join("socket-activate.log");
        let mut cmd = Command::new("systemd-socket-activate");
        cmd.args(["--inetd", "--accept", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args([
                "ip",
                "netns",
                "exec",
                &builder.netns,
                "/usr/sbin/sshd",
                "-i",
                "-f",
            ])
            .arg(&sshd_config)
            .arg("-E")
            .arg(&builder.sshd_log);
        builder.listener = Some(Service::spawn(
            "sshd for the builder (systemd-socket-activate)",
            cmd,
            &log,
            Duration::from_secs(10),
            || fs::read_to_string(&log).is_ok_and(|t| t.contains("Listening on")),
        ));

        // The connection works from here, as root with our ssh configuration.
        let out = run(
            Command::new("ssh")
                .arg("-F")
                .arg(&builder.ssh_config)
                .arg(BUILDER_HOST)
                .arg("echo NIX_CONF_DIR=$NIX_CONF_DIR"),
            None,
            Duration::from_secs(30),
        );
        out.assert_success("ssh to the builder");
        assert!(
            out.stdout
                .contains(&format!("NIX_CONF_DIR={}", builder.conf_dir.display())),
            "sshd did not set the builder's NIX_CONF_DIR:\n{out}"
        );
        // Its loopback is not ours: the port we reached it through is open here, refused there.
        assert!(
            !builder.can_reach(port),
            "the builder reaches a port of our loopback"
        );
        builder
    }

    /// Rewrites the builder's `nix.conf`: the base (its own sandbox with `/bin/sh` and the
    /// marker, no substituters, plain-text build logs) plus `extra`. Each ssh connection starts
    /// a new `nix-daemon --stdio` / `nix-store --serve`, which reads it afresh.
    pub fn write_conf(&self, extra: &str) {
        fs::write(
            self.conf_dir.join("nix.conf"),
            format!(
                "# The e2e builder's own configuration (tests/support/builder.rs).\n\
                 build-users-group =\n\
                 sandbox = true\n\
                 sandbox-paths = {}\n\
                 substituters =\n\
                 compress-build-log = false\n\
                 experimental-features = nix-command\n\
                 {extra}\n",
                self.sandbox_paths
            ),
        )
        .unwrap();
    }

    /// `NIX_SSHOPTS` for the local daemon: our ssh configuration.
    pub fn sshopts(&self) -> String {
        format!("-F {}", self.ssh_config.display())
    }

    /// The store URI the local side names the builder by: `ssh-ng://nsa-builder?remote-store=…`
    /// or `ssh://…`.
    pub fn uri(&self, scheme: &str) -> String {
        assert!(scheme == "ssh-ng" || scheme == "ssh", "scheme {scheme}");
        format!(
            "{scheme}://{BUILDER_HOST}?remote-store={}",
            self.root.display()
        )
    }

    /// The host-side path of a store path in the builder's store.
    pub fn store_file(&self, store_path: &str) -> PathBuf {
        self.root.join(store_path.trim_start_matches('/'))
    }

    /// Whether the builder's store holds `store_path` (valid in its database).
    pub fn holds(&self, store_path: &str) -> bool {
        self.nix_store(&["--check-validity", store_path]).success()
    }

    /// The builder's build logs (`nix/var/log/nix/drvs/*/*`), plain text.
    pub fn build_logs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let drvs = self.root.join("nix/var/log/nix/drvs");
        for sub in fs::read_dir(drvs).into_iter().flatten().flatten() {
            for f in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
                out.push(f.path());
            }
        }
        out
    }

    /// Deletes store paths from the builder's store (with whatever there refers to them).
    pub fn delete(&self, paths: &[&str]) {
        let mut args = vec!["--delete"];
        args.extend(paths);
        let out = self.nix_store(&args);
        assert!(
            out.success() || !paths.iter().any(|p| self.holds(p)),
            "delete from the builder's store:\n{out}"
        );
    }

    /// `nix-store ARGS` of the builder's Nix on its store, as root with its configuration.
    pub fn nix_store(&self, args: &[&str]) -> super::Output {
        let store = self.root.display().to_string();
        run(
            Command::new("nix-store")
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", &self.home)
                .env("NIX_CONF_DIR", &self.conf_dir)
                .args(["--store", &store])
                .args(args),
            None,
            super::DEFAULT_TIMEOUT,
        )
    }

    /// Whether a process in the builder's namespace can open a TCP connection to
    /// `127.0.0.1:port` (there).
    pub fn can_reach(&self, port: u16) -> bool {
        run_root(
            "ip",
            [
                "netns",
                "exec",
                &self.netns,
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/127.0.0.1/{port}"),
            ],
            None,
        )
        .success()
    }

    /// The files below [`Builder::dir`] (its store, database, configuration, HOME, logs, sshd's
    /// files) that hold any of `needles`, found with `grep -rlF` (the store's database has an
    /// 8 MiB reserve file a scan in the test's own debug build would crawl through). The
    /// patterns go to grep in a root-only file beside the builder's directory, never in argv.
    pub fn files_holding_any(&self, needles: &[String]) -> Vec<PathBuf> {
        let patterns = self.dir.with_file_name("builder-scan-patterns");
        fs::write(&patterns, "").unwrap();
        fs::set_permissions(&patterns, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&patterns, needles.join("\n") + "\n").unwrap();
        let out = run_root(
            "grep",
            [
                "-rlsF".as_ref(),
                "-f".as_ref(),
                patterns.as_os_str(),
                self.dir.as_os_str(),
            ],
            None,
        );
        let _ = fs::remove_file(&patterns);
        // grep: 0 found, 1 none, 2 trouble (an unreadable file is skipped quietly with -s).
        assert!(out.code() == Some(0) || out.code() == Some(1), "{out}");
        out.stdout.lines().map(PathBuf::from).collect()
    }

    /// The sshd log (one line per connection and login).
    pub fn sshd_log(&self) -> String {
        fs::read_to_string(&self.sshd_log).unwrap_or_default()
    }

    /// Counts the logins sshd accepted (one per ssh connection Nix opened).
    pub fn logins(&self) -> usize {
        self.sshd_log()
            .lines()
            .filter(|l| l.contains("Accepted publickey for root"))
            .count()
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        if let Some(mut l) = self.listener.take() {
            l.stop();
        }
        if std::thread::panicking() {
            note(&format!(
                "--- builder sshd log ---\n{}",
                super::tail(&self.sshd_log, 30)
            ));
        }
        // sshd sessions in the namespace ended with their connections; wait for them, then
        // remove it.
        let netns = self.netns.clone();
        wait_until(
            "the builder's sessions to end",
            Duration::from_secs(10),
            || namespace_pids(&netns).is_empty(),
        );
        let out = run_root("ip", ["netns", "delete", &self.netns], None);
        if !out.success() {
            note(&format!(
                "warning: could not delete the builder's namespace:\n{out}"
            ));
        }
    }
}

/// Pids of processes in the network namespace `name`.
fn namespace_pids(name: &str) -> Vec<String> {
    let out = run_root("ip", ["netns", "pids", name], None);
    out.stdout.split_whitespace().map(str::to_string).collect()
}

/// Namespaces a killed earlier run left behind (nothing runs in them any more).
fn remove_leftover_namespaces() {
    let out = run_root("ip", ["netns", "list"], None);
    for name in out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NETNS_PREFIX))
    {
        if namespace_pids(name).is_empty() {
            note(&format!(
                "removing network namespace {name} left by an earlier run"
            ));
            let _ = run_root("ip", ["netns", "delete", name], None);
        }
    }
}

/// `sandbox-paths` entries that make `/bin/sh` work in the builder's sandbox: the shell itself
/// and every shared object `ldd` names for it, each at the path the loader asks for, bound from
/// its real file (Debian's `/bin`, `/lib` and `/lib64` are symlinks into `/usr`).
fn shell_sandbox_paths() -> String {
    let sh = fs::canonicalize("/bin/sh").unwrap();
    let mut entries = vec![format!("/bin/sh={}", sh.display())];
    let out = run_root("ldd", [sh.to_str().unwrap()], None);
    out.assert_success("ldd /bin/sh");
    for line in out.stdout.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let seen = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(seen) = seen.filter(|s| s.starts_with('/')) else {
            continue;
        };
        let real = fs::canonicalize(seen).unwrap();
        entries.push(format!("{seen}={}", real.display()));
    }
    entries.join(" ")
}

/// A derivation built with `/bin/sh` and builtins only (no `PATH` in a build): it reads the
/// marker (present only in the builder's sandbox) and the first line of each of `inputs` (store
/// paths, taken with `builtins.storePath`, so they are inputs the local daemon must realise
/// first), and writes them to `$out` on one line, as [`remote_build_output`] says. `tag` makes
/// it unique (a new derivation per build).
pub fn remote_build_expr(inputs: &[&str], tag: &str) -> String {
    let mut lets = String::new();
    let mut script = format!("read -r marker < {MARKER_PATH};");
    let mut echo = String::from("$marker");
    for (i, input) in inputs.iter().enumerate() {
        lets += &format!("  in{i} = builtins.storePath \"{input}\";\n");
        script += &format!(" read -r l{i} < ${{in{i}}};");
        echo += &format!(" $l{i}");
    }
    format!(
        "let\n{lets}in\n\
         derivation {{\n\
         \x20 name = \"nsa-remote-{tag}\";\n\
         \x20 system = builtins.currentSystem;\n\
         \x20 builder = \"/bin/sh\";\n\
         \x20 args = [ \"-c\" \"{script} echo \\\"{echo}\\\" > $out\" ];\n\
         }}\n"
    )
}

/// What [`remote_build_expr`] writes when it ran on `builder`: the marker, then each input's
/// first line (`lines`).
pub fn remote_build_output(builder: &Builder, lines: &[&str]) -> String {
    let mut out = builder.marker.clone();
    for l in lines {
        out.push(' ');
        out.push_str(l);
    }
    out.push('\n');
    out
}

/// Root of the local Nix under test: `nix-store --delete` of `path`, of everything in the store
/// that refers to it (the `.drv` files of earlier builds that took it as an input) and of those
/// derivations' outputs (Nix keeps a derivation while its output lives, `keep-derivations`),
/// so that the next build must substitute it again.
pub fn delete_with_referrers(e2e: &E2e, path: &str) {
    delete_referrers(e2e, path).assert_success("nix-store --delete");
}

fn delete_referrers(e2e: &E2e, path: &str) -> super::Output {
    let out = super::root_nix(e2e, "nix-store", &["-q", "--referrers-closure", path], None);
    if !out.success() {
        return out;
    }
    let mut doomed: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    for drv in doomed.clone().iter().filter(|p| p.ends_with(".drv")) {
        let outs = super::root_nix(e2e, "nix-store", &["-q", "--outputs", drv], None);
        doomed.extend(
            outs.stdout
                .lines()
                .filter(|o| e2e.nix.host_path(o).exists())
                .map(str::to_string),
        );
    }
    let mut args = vec!["--delete"];
    args.extend(doomed.iter().map(String::as_str));
    super::root_nix(e2e, "nix-store", &args, None)
}

/// On Drop, [`delete_with_referrers`] of a path, quietly (the proof's builds made `.drv` files
/// that refer to it, which would keep it in the store).
pub struct DeleteWithReferrers<'a>(pub &'a E2e, pub String);

impl Drop for DeleteWithReferrers<'_> {
    fn drop(&mut self) {
        let _ = delete_referrers(self.0, &self.1);
    }
}

/// The text of a file written for a test user (0644 below the proof's directory).
pub fn write_public(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}
