//! Plain `nix` with no wrapper (issue 19): the background proxy service, through the real
//! nix-daemon of each Nix under test, moto (S3, IAM, STS) with authentication on, and the
//! tests' STS front (tests/support/py/sts_front.py: short sessions per action, MFA base
//! sessions, a call log). A trusted test user records the bucket, runs `service install`, and
//! then runs Nix commands with a bare environment (`env -i HOME=... USER=... PATH=...`: no
//! `exec`, no shell functions, no `AWS_*`).
//!
//! What runs where: no machine here runs systemd as PID 1 and `systemctl --user` answers
//! nowhere, so `service install` takes the route without a user service manager (a detached
//! `proxy start --persistent`) in proofs 1 and 3 to 7; the systemd route is taken in proof 2
//! with a stub `systemctl` first on PATH that records its calls, and the socket activation
//! there is real: `systemd-socket-activate` (host only: it is not in the 2.34 chroot) runs
//! the unit's `ExecStart` line, so for Nix 2.34 that proxy runs on the host as the same user
//! (same uid, same /tmp paths, shared loopback) and the chroot's daemon reaches it.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The user's nix.conf before anything: a comment, a setting, a blank line; uninstall and
/// `remove` must give these bytes back.
const USER_CONF: &str = "# my own settings\nkeep-derivations = true\n\n";

/// The service bed: the S3 bed, the STS front, a signed cache (P1) and one more path (P2) in
/// the bucket, the user's AWS profile, config.toml, and the cache recorded with `use`.
struct Svc<'a> {
    bed: Bed<'a>,
    front: StsFront,
    role: String,
    p1: SignedCache,
    more: ExtraPaths,
}

impl<'a> Svc<'a> {
    /// `mfa`: the role profile has an MFA device (one code a workday: the base session).
    /// `margin`: `session-refresh-margin`.
    fn start(e2e: &'a E2e, tag: &str, mfa: bool, margin: u64) -> Svc<'a> {
        let bed = Bed::new(e2e);
        let role = bed
            .user
            .read(".aws/config")
            .lines()
            .find_map(|l| l.strip_prefix("role_arn = "))
            .expect("the bed's role profile")
            .to_string();
        let account = role.split(':').nth(4).unwrap().to_string();
        let front = StsFront::start(e2e, &bed.moto.url(), &bed.key_id, &bed.secret, &role);
        let p1 = SignedCache::create(e2e, tag);
        let more = ExtraPaths::create(e2e, &format!("{tag}x"), 1, &cache_secret_key(e2e, tag));
        bed.upload(&p1.dir);
        bed.upload(&more.dir);
        let mfa_line = if mfa {
            format!("mfa_serial = arn:aws:iam::{account}:mfa/nix\n")
        } else {
            String::new()
        };
        bed.write_user_file(
            ".aws/config",
            &format!(
                "[profile {PROFILE}]\nrole_arn = {role}\nsource_profile = base\n{mfa_line}region = us-east-1\n\n\
                 [profile base]\nregion = us-east-1\n"
            ),
        );
        bed.write_user_file(
            ".config/nixstore-auth/config.toml",
            &format!(
                "keyring-backend = \"file\"\nsession-refresh-margin = {margin}\n\n[proxy]\nport = {}\n",
                bed.port
            ),
        );
        bed.write_user_file(".config/nix/nix.conf", USER_CONF);
        fs::set_permissions(bed.user.nix_conf(), fs::Permissions::from_mode(0o644)).unwrap();
        let svc = Svc {
            bed,
            front,
            role,
            p1,
            more,
        };
        svc.nsa(&[
            "use",
            &svc.bed.url,
            "--name",
            NAME,
            "--public-key",
            &svc.p1.public_key,
        ])
        .run()
        .assert_success("use s3://");
        svc
    }

    /// `nixstore-auth ARGS` as the user, with STS at the front.
    fn nsa(&self, args: &[&str]) -> UserCmd<'_> {
        self.bed
            .nsa(args)
            .env("AWS_ENDPOINT_URL_STS", self.front.url())
            .timeout(Duration::from_secs(120))
    }

    /// `sh -c SCRIPT` as the user with a bare environment: HOME, USER and PATH only (what
    /// direnv, an editor, cron or a script gets at the least; no `AWS_*`, no wrapper).
    fn plain(&self, script: &str) -> Output {
        let out = self
            .bed
            .user
            .bare_sh(&[], script)
            .timeout(Duration::from_secs(120))
            .run();
        let bin = self.bed.e2e.bin.display().to_string();
        assert!(
            !out.what.contains("AWS_") && !out.what.contains(&bin),
            "not plain: {}",
            out.what
        );
        out
    }

    /// `service install` as the user; asserts it exits 0.
    fn install(&self) -> Output {
        let out = self.nsa(&["service", "install"]).run();
        out.assert_success("service install");
        out
    }

    /// The include file next to the user's nix.conf.
    fn include_file(&self) -> PathBuf {
        self.bed.user.home.join(".config/nix/nixstore-auth.conf")
    }

    fn p2(&self) -> &str {
        &self.more.paths[0]
    }

    fn valid(&self, path: &str) -> bool {
        root_nix(self.bed.e2e, "nix-store", &["--check-validity", path], None).success()
    }

    /// A derivation in no cache (unique per call): a plain `nix-build` of it must build.
    fn local_build(&self, tag: &str) -> Output {
        self.local_build_with(tag, "")
    }

    /// The same with more options for `nix-build`.
    fn local_build_with(&self, tag: &str, options: &str) -> Output {
        let expr = format!(
            "derivation {{ name = \"nsa-local-{tag}-{}\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = [ \"-c\" \"echo built > $out\" ]; }}",
            unique_tag()
        );
        self.plain(&format!("nix-build --no-out-link {options} -E '{expr}'"))
    }

    /// `service status` as the user.
    fn status(&self) -> Output {
        self.nsa(&["service", "status"]).run()
    }

    /// Another local user (in nix-users) finds none of the user's secrets in any file they can
    /// read, with the user's home opened 0755 (proof 6).
    fn assert_other_user_finds_nothing(&self, bob: &TestUser) {
        self.bed.user.open_home();
        let found = readable_files_holding(self.bed.e2e, bob, &self.bed.secrets(), &[]);
        assert!(found.is_empty(), "another user reads a secret in {found:?}");
    }
}

/// What the nix-daemon's narinfo cache (its HOME's `~/.cache/nix/binary-cache-v*.sqlite`)
/// says of store path hash `hash` under each cache URL starting with `url_prefix`:
/// `(url, present)` rows (present 0: a remembered miss).
fn daemon_remembers(e2e: &E2e, url_prefix: &str, hash: &str) -> Vec<(String, i64)> {
    let dir = e2e.dir.join("daemon-home/.cache/nix");
    let script = "import sqlite3, sys, glob\n\
                  for f in glob.glob(sys.argv[1] + '/binary-cache-v*.sqlite'):\n\
                  \x20   c = sqlite3.connect(f)\n\
                  \x20   for url, present in c.execute('select c.url, n.present from NARs n join BinaryCaches c on n.cache = c.id where n.hashPart = ? order by c.id', (sys.argv[2],)):\n\
                  \x20       print(url, present)\n";
    let out = run(
        Command::new(venv_bin("python"))
            .args(["-c", script])
            .arg(&dir)
            .arg(hash),
        None,
        DEFAULT_TIMEOUT,
    );
    out.assert_success("read the daemon's narinfo cache");
    out.stdout
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(u, _)| u.starts_with(url_prefix))
        .map(|(u, p)| (u.to_string(), p.parse().unwrap_or(-1)))
        .collect()
}

/// Proofs 1, 6 and 7: `use` + `service install` (no user service manager: a detached
/// persistent proxy); plain `nix-store -r` (and `nix build`) substitute through the daemon;
/// another user cannot read the include file, gets nothing from the port and finds the URL
/// secret nowhere; `service uninstall` and `remove` give nix.conf back byte for byte and no
/// proxy of the user remains.
fn plain_nix_substitutes_through_the_background_service(e2e: &E2e) {
    let s = Svc::start(e2e, "plain", false, 20);
    // Before install: plain Nix does not know the cache (the daemon never saw the URL).
    let out = s.plain(&format!("nix-store -r {}", s.p1.store_path));
    out.assert_failure("plain nix-store -r before service install");

    let installed = s.install();
    assert!(
        installed
            .stderr
            .contains("started a detached background proxy"),
        "no user service manager here: {installed}"
    );
    let conf = s.bed.user.read(".config/nix/nix.conf");
    assert!(
        conf.starts_with(USER_CONF) && conf.ends_with("\n!include nixstore-auth.conf\n"),
        "{conf}"
    );
    let include = fs::read_to_string(s.include_file()).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&s.include_file()),
        0o600,
        "the include file is private"
    );
    let secret = s.bed.url_secret();
    let url = format!("http://127.0.0.1:{}/{secret}/{NAME}", s.bed.port);
    // No service manager: the URLs are in a runtime file the running proxy keeps.
    let runtime_urls = s.bed.runtime_dir().join("nixstore-auth/nix.conf");
    assert!(
        include.contains(&s.p1.public_key)
            && include.contains("\nfallback = true\n")
            && include.ends_with(&format!("\n!include {}\n", runtime_urls.display()))
            && !include.contains(&secret),
        "{include}"
    );
    let urls = fs::read_to_string(&runtime_urls).unwrap();
    assert!(
        urls.contains(&format!("\nextra-substituters = {url}\n")),
        "{urls}"
    );
    assert_eq!(mode(&runtime_urls), 0o600, "the URL file is private");
    assert!(!conf.contains(&secret), "the secret URL is in nix.conf");
    let nix_cache = s.bed.user.home.join(".cache/nix");
    assert_eq!(mode(&nix_cache), 0o700, "~/.cache/nix private at install");
    // Opened again (as Nix makes it anew after a delete): the background proxy closes it.
    fs::set_permissions(&nix_cache, fs::Permissions::from_mode(0o755)).unwrap();
    wait_until(
        "the proxy to make ~/.cache/nix private again",
        Duration::from_secs(15),
        || mode(&nix_cache) == 0o700,
    );

    let moto_from = s.bed.moto_log().len();
    let out = s.plain(&format!("nix-store -r {}", s.p1.store_path));
    out.assert_success("plain nix-store -r P1");
    assert!(s.p1.is_valid(e2e));
    let narinfos = s.bed.moto_gets(moto_from, |k| k.ends_with(".narinfo"));
    let nars = s.bed.moto_gets(moto_from, |k| k.starts_with("nar/"));
    assert!(
        narinfos >= 1 && nars >= 1,
        "moto served no GET:\n{}",
        s.bed.moto_log()
    );
    // `nix build` of a store path: a plain new-style command substitutes too.
    let out = s.plain(&format!(
        "nix --extra-experimental-features nix-command build --no-link {}",
        s.p2()
    ));
    out.assert_success("plain nix build --no-link P2");
    assert!(s.valid(s.p2()));
    // The requests came from root (the nix-daemon), not from the user's own Nix.
    let st = s.nsa(&["proxy", "status"]).run();
    st.assert_success("proxy status");
    assert!(
        st.stdout.contains("background") && st.stdout.contains("used by the nix-daemon"),
        "{st}"
    );
    let status = s.status();
    status.assert_success("service status: up, serving the cache");
    assert!(status.stdout.contains("renews by itself"), "{status}");
    let json = s.nsa(&["service", "status", "--format", "json"]).run();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["proxy"]["background"], true, "{json}");
    assert_eq!(v["caches"][0]["standing"]["state"], "renews", "{json}");
    assert_eq!(v["exit"], 0);

    // Proof 6: another local user.
    let bob = TestUser::create(e2e, "b");
    let cat = bob.cmd("cat").arg(s.include_file()).run();
    cat.assert_failure("bob reads the include file");
    s.bed.user.open_home();
    let (code, body) = curl_status_as(&bob.name, &format!("{url}/nix-cache-info"));
    assert_eq!(code, 0, "bob got an HTTP answer from the port: {body}");
    s.assert_other_user_finds_nothing(&bob);
    s.bed
        .assert_no_secret("service install output", &installed.all());

    // Proof 7: undone byte for byte, and no proxy of the user remains.
    let out = s.nsa(&["service", "uninstall"]).run();
    out.assert_success("service uninstall");
    let out = s.nsa(&["remove", NAME]).run();
    out.assert_success("remove");
    assert_eq!(s.bed.user.read(".config/nix/nix.conf"), USER_CONF);
    assert!(!s.include_file().exists());
    wait_until("no proxy of the user", Duration::from_secs(10), || {
        proxy_pids(s.bed.user.uid).is_empty()
    });
}

/// Proof 2: socket activation for real. `service install` with a stub `systemctl` (it records
/// its calls and answers) takes the systemd route; the written units pass `systemd-analyze
/// --user verify` (the `Documentation=` man page found in this tree's man/); the unit's
/// `ExecStart` line runs under `systemd-socket-activate -l 127.0.0.1:PORT` with a
/// `NOTIFY_SOCKET` the test reads: `READY=1` and a `STATUS=` naming the cache, and a plain
/// `nix-store -r` substitutes through it.
fn socket_activation_for_real(e2e: &E2e) {
    let s = Svc::start(e2e, "sock", false, 20);
    let stub_dir = e2e.dir.join("stub-bin");
    fs::create_dir_all(&stub_dir).unwrap();
    fs::set_permissions(&stub_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let calls = e2e.dir.join("systemctl-calls");
    fs::write(&calls, "").unwrap();
    fs::set_permissions(&calls, fs::Permissions::from_mode(0o666)).unwrap();
    let stub = stub_dir.join("systemctl");
    fs::write(
        &stub,
        format!(
            "#!/bin/sh\n# A stand-in for systemctl (no systemd runs here): records its arguments.\n\
             echo \"$*\" >> {calls}\ncase \"$2\" in is-enabled) echo enabled ;; is-active) echo active ;; esac\nexit 0\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{USER_PATH}", stub_dir.display());
    let out = s.nsa(&["service", "install"]).env("PATH", &path).run();
    out.assert_success("service install with a user service manager");
    let recorded = fs::read_to_string(&calls).unwrap();
    assert!(
        recorded
            .ends_with("--user daemon-reload\n--user enable --now nixstore-auth-proxy.socket\n"),
        "systemctl calls: {recorded:?}"
    );
    let units = s.bed.user.home.join(".config/systemd/user");
    let socket_unit = units.join("nixstore-auth-proxy.socket");
    let service_unit = units.join("nixstore-auth-proxy.service");
    let socket_text = fs::read_to_string(&socket_unit).unwrap();
    assert!(socket_text.contains(&format!("ListenStream=127.0.0.1:{}\n", s.bed.port)));

    // systemd-analyze verify: on the host (the units name /tmp paths, the same on both sides).
    let rt = e2e.private_dir("verify-run");
    // `Documentation=man:nixstore-auth-service(1)`: verify looks the page up with man(1); the
    // one generated in this tree, in man's layout.
    let man1 = e2e.dir.join("man/man1");
    fs::create_dir_all(&man1).unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("man/nixstore-auth-service.1"),
        man1.join("nixstore-auth-service.1"),
    )
    .unwrap();
    let out = run(
        Command::new("systemd-analyze")
            .args(["--user", "verify"])
            .arg(&socket_unit)
            .arg(&service_unit)
            .env("XDG_RUNTIME_DIR", &rt)
            .env("MANPATH", e2e.dir.join("man")),
        None,
        DEFAULT_TIMEOUT,
    );
    out.assert_success("systemd-analyze --user verify");
    assert!(out.all().trim().is_empty(), "verify complained: {out}");

    // The ExecStart line, run as systemd would: socket on fd 3, NOTIFY_SOCKET.
    let service_text = fs::read_to_string(&service_unit).unwrap();
    let exec_start: Vec<String> = service_text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(&exec_start[1..], ["proxy", "serve"]);
    let notify_dir = e2e.dir.join("notify");
    fs::create_dir_all(&notify_dir).unwrap();
    fs::set_permissions(&notify_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let notify_path = notify_dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    fs::set_permissions(&notify_path, fs::Permissions::from_mode(0o666)).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let u = &s.bed.user;
    let mut cmd = Command::new("/usr/sbin/runuser");
    cmd.env_clear()
        .args(["-u", &u.name, "--", "systemd-socket-activate"]);
    cmd.arg("-l").arg(format!("127.0.0.1:{}", s.bed.port));
    for (k, v) in [
        ("HOME", u.home.display().to_string()),
        ("USER", u.name.clone()),
        ("PATH", USER_PATH.to_string()),
        ("XDG_RUNTIME_DIR", s.bed.runtime_dir().display().to_string()),
        ("AWS_ENDPOINT_URL_STS", s.front.url()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("NOTIFY_SOCKET", notify_path.display().to_string()),
    ] {
        cmd.arg(format!("--setenv={k}={v}"));
    }
    cmd.args(&exec_start);
    // Ready when it says it listens (a connection would start the proxy already).
    let activate_log = e2e.dir.join("socket-activate.log");
    let activator = Service::spawn(
        "systemd-socket-activate",
        cmd,
        &activate_log,
        Duration::from_secs(10),
        || {
            fs::read_to_string(&activate_log)
                .unwrap_or_default()
                .contains("Listening on")
        },
    );
    // systemd-socket-activate execs the unit's command in its own process at the first
    // connection: until then that process is systemd-socket-activate itself.
    let pid = activator.pid().unwrap();
    let comm = |pid: u32| proc_text(pid, "comm").trim().to_string();
    // runuser may fork: its child, in the same process group, is the command.
    let runuser_child = || {
        processes(|p| p.pgid == pid && p.pid != pid)
            .first()
            .map(|p| p.pid)
            .unwrap_or(pid)
    };
    assert!(
        comm(runuser_child()).starts_with("systemd-socket"),
        "nothing runs before the first connection: {}",
        comm(runuser_child())
    );
    let started = Instant::now();
    // The first connection is the daemon's: it starts the proxy.
    let out = s.plain(&format!("nix-store -r {}", s.p1.store_path));
    out.assert_success("plain nix-store -r through the socket-activated proxy");
    assert!(s.p1.is_valid(e2e));
    let mut buf = [0u8; 4096];
    let mut said = String::new();
    while !said.contains("READY=1") {
        let n = notify.recv(&mut buf).expect("READY=1 on NOTIFY_SOCKET");
        said.push_str(&String::from_utf8_lossy(&buf[..n]));
        said.push('\n');
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    assert!(
        said.contains(&format!("STATUS=serving {NAME}: renews by itself")),
        "{said}"
    );
    let st = s.nsa(&["proxy", "status"]).run();
    assert!(st.stdout.contains("socket-activated"), "{st}");
    let status = s.nsa(&["service", "status"]).env("PATH", &path).run();
    status.assert_success("service status with the socket-activated proxy");
    let proxy_pid = runuser_child();
    assert_eq!(comm(proxy_pid), "nixstore-auth", "the activated proxy");
    // `exec` leases the background proxy: no second proxy.
    let out = s.bed.exec(&["nix-store", "-r", s.p2()]);
    out.assert_success("exec -- nix-store -r P2 with the background proxy running");
    assert!(s.valid(s.p2()));
    assert_eq!(proxy_pids(u.uid), [proxy_pid], "one proxy: {out}");
    assert!(s.bed.proxy_log().contains("client attached"));
    // `proxy stop` ends it cleanly (systemd would start it again on the next connection; this
    // stand-in execs the proxy in its own process and so has no socket left to listen on).
    s.nsa(&["proxy", "stop"]).run().assert_success("proxy stop");
    while !said.contains("STOPPING=1") {
        let n = notify.recv(&mut buf).expect("STOPPING=1 on NOTIFY_SOCKET");
        said.push_str(&String::from_utf8_lossy(&buf[..n]));
        said.push('\n');
    }
    let bob = TestUser::create(e2e, "b");
    s.assert_other_user_finds_nothing(&bob);
    drop(activator);
}

/// Proof 3: sessions of seconds. With the role's sessions lasting 20 s and a margin of 8 s,
/// plain `nix-store -r P1`, then past the first session's end plain `nix-store -r P2`: both
/// substitute; the STS log shows the proxy's unattended renewal; no wrapper ran.
fn the_proxy_renews_short_sessions_by_itself(e2e: &E2e) {
    let s = Svc::start(e2e, "renew", false, 8);
    s.front
        .configure(serde_json::json!({"expiry_by_action": {"AssumeRole": 20}}));
    let started = Instant::now();
    s.install();
    let out = s.plain(&format!("nix-store -r {}", s.p1.store_path));
    out.assert_success("plain nix-store -r P1");
    assert!(s.p1.is_valid(e2e));
    // Past the end of the first session (20 s after install), with a renewal logged.
    wait_until(
        "the first session's end and a renewal",
        Duration::from_secs(60),
        || started.elapsed() > Duration::from_secs(21) && s.front.logged("AssumeRole").len() >= 2,
    );
    let out = s.plain(&format!("nix-store -r {}", s.p2()));
    out.assert_success("plain nix-store -r P2 after the first session ended");
    assert!(s.valid(s.p2()));
    let assumed = s.front.logged("AssumeRole");
    assert!(assumed.len() >= 2, "no unattended renewal: {assumed:?}");
    assert!(assumed.iter().all(|a| a["code"].is_null()), "{assumed:?}");
    let log = s.bed.proxy_log();
    assert!(log.contains("switched to a newer session"), "{log}");
    assert!(!log.contains("(503)"), "{log}");
    let bob = TestUser::create(e2e, "b");
    s.assert_other_user_finds_nothing(&bob);
}

/// Proof 4: the MFA base session ended. Plain `nix-store -r` of a cached path does not hang
/// and fails as Nix does for a missing path; a plain build of a local derivation succeeds;
/// `service status` exits 1 naming `login`, `doctor` too, the notice reaches the shell hook
/// once; after `login CACHE --mfa-code` the very next plain `nix-store -r` of that same path
/// substitutes (its URL moved on, so the daemon remembers no miss).
fn a_person_is_needed_then_login_substitutes_at_once(e2e: &E2e) {
    let s = Svc::start(e2e, "person", true, 3);
    s.front.configure(serde_json::json!({
        "expiry_by_action": {"AssumeRole": 12, "GetSessionToken": 8},
        "mfa_roles": [s.role],
    }));
    let login = s.nsa(&["login", NAME, "--mfa-code", "123456"]).run();
    login.assert_success("login with an MFA code");
    let logged_in = Instant::now();
    s.install();
    let out = s.plain(&format!("nix-store -r {}", s.p1.store_path));
    out.assert_success("plain nix-store -r P1 while the session lasts");

    // The base session ends at 8 s, the role session at 12 s: then only a person can help.
    wait_until(
        "service status to say that a person is needed",
        Duration::from_secs(40),
        || logged_in.elapsed() > Duration::from_secs(12) && s.status().stdout.contains("needs you"),
    );
    let status = s.status();
    status.assert_code(1, "service status while a person is needed");
    assert!(
        status
            .stdout
            .contains(&format!("nixstore-auth login {NAME}")),
        "{status}"
    );
    let doctor = s.nsa(&["doctor"]).run();
    doctor.assert_code(1, "doctor while a person is needed");
    assert!(
        doctor
            .stdout
            .contains(&format!("nixstore-auth login {NAME}")),
        "{doctor}"
    );
    let t = Instant::now();
    let out = s.plain(&format!("nix-store -r {}", s.p2()));
    assert!(t.elapsed() < Duration::from_secs(30), "it hung: {out}");
    out.assert_code(
        1,
        "plain nix-store -r of a cached path while a person is needed",
    );
    assert!(
        out.stderr.contains("don't know how to build"),
        "a miss, as Nix says it: {out}"
    );
    assert!(!s.valid(s.p2()));
    // The daemon remembers that miss under the cache's URL (a new URL is what forgets it).
    let base = format!(
        "http://127.0.0.1:{}/{}/{NAME}",
        s.bed.port,
        s.bed.url_secret()
    );
    let hash2 = &s.p2().rsplit('/').next().unwrap()[..32];
    assert_eq!(
        daemon_remembers(e2e, &base, hash2),
        [(base.clone(), 0)],
        "the daemon did not remember the miss"
    );
    s.local_build("person")
        .assert_success("a plain build of a local derivation while a person is needed");
    let log = s.bed.proxy_log();
    assert!(
        log.contains(&format!("cache {NAME} needs you")) && log.contains("answering misses (404)"),
        "{log}"
    );
    // The shell hook shows the notice once (a real interactive bash as the user).
    let init = s.nsa(&["shell-init", "bash"]).run();
    init.assert_success("shell-init bash");
    let rc = s.bed.user.home.join("init.bash");
    fs::write(&rc, &init.stdout).unwrap();
    let hook = s
        .bed
        .cmd("bash")
        .args(["--norc", "--noprofile", "-i"])
        .stdin(format!("source {}\ntrue\ntrue\nexit\n", rc.display()))
        .run();
    assert_eq!(
        hook.stderr
            .matches(&format!("nixstore-auth: cache {NAME} needs you"))
            .count(),
        1,
        "{hook}"
    );

    let login = s.nsa(&["login", NAME, "--mfa-code", "234567"]).run();
    login.assert_success("login after the base session ended");
    assert!(
        login
            .stderr
            .contains("handed the new session to the running proxy"),
        "{login}"
    );
    let urls = fs::read_to_string(s.bed.runtime_dir().join("nixstore-auth/nix.conf")).unwrap();
    assert!(
        urls.contains(&format!("/{NAME}~1\n")),
        "the URL moved on: {urls}"
    );
    let out = s.plain(&format!("nix-store -r {}", s.p2()));
    out.assert_success("the same path right after login");
    assert!(s.valid(s.p2()));
    assert_eq!(
        daemon_remembers(e2e, &base, hash2),
        [(base.clone(), 0), (format!("{base}~1"), 1)],
        "the old URL keeps its miss; the new one found the path"
    );
    s.status().assert_success("service status after login");
    let bob = TestUser::create(e2e, "b");
    s.assert_other_user_finds_nothing(&bob);
}

/// Proof 5: the proxy is down (no service manager to start it again) after the daemon used
/// the cache: stopped (`proxy stop`), and killed (`kill -9`). A plain build of a derivation in
/// no cache succeeds, even with `--option fallback false`: the URLs live in a runtime file
/// only the running proxy keeps (a watcher removes it when the proxy is killed), so Nix does
/// not know the cache while it is down (Nix 2.8 fails every build while it knows a cache it
/// cannot reach, with or without `fallback`: its `SubstituterDisabled` ends the daemon's
/// worker). `doctor`, `service status` and the shell hook say the proxy is down.
fn with_the_proxy_down_plain_builds_still_work(e2e: &E2e) {
    let s = Svc::start(e2e, "down", false, 20);
    s.install();
    let runtime_urls = s.bed.runtime_dir().join("nixstore-auth/nix.conf");
    assert!(runtime_urls.exists(), "the running proxy keeps its URLs");
    // The daemon knows the cache now (it keeps its nix-cache-info), as before a reboot.
    s.plain(&format!("nix-store -r {}", s.p1.store_path))
        .assert_success("plain nix-store -r P1 while the proxy is up");
    s.nsa(&["proxy", "stop"]).run().assert_success("proxy stop");
    wait_until("the proxy to exit", Duration::from_secs(10), || {
        proxy_pids(s.bed.user.uid).is_empty()
    });
    assert!(
        !runtime_urls.exists(),
        "a stopped proxy takes its URLs with it"
    );
    let build_without_fallback = |what: &str| {
        let t = Instant::now();
        let out = s.local_build_with(what, "--option fallback false");
        out.assert_success(&format!("a plain build with the proxy {what}"));
        note(&format!(
            "{}: plain build with the proxy {what} took {:?}",
            e2e.name,
            t.elapsed()
        ));
    };
    build_without_fallback("stopped");
    let doctor = s.nsa(&["doctor"]).run();
    doctor.assert_code(1, "doctor with the proxy down");
    assert!(doctor.stdout.contains("the proxy is down"), "{doctor}");
    s.status()
        .assert_code(1, "service status with the proxy down");
    let init = s.nsa(&["shell-init", "bash"]).run();
    let rc = s.bed.user.home.join("init.bash");
    fs::write(&rc, &init.stdout).unwrap();
    let hook = s
        .bed
        .cmd("bash")
        .args(["--norc", "--noprofile", "-i"])
        .stdin(format!("source {}\ntrue\ntrue\nexit\n", rc.display()))
        .run();
    assert_eq!(
        hook.stderr.matches("the background proxy is down").count(),
        1,
        "{hook}"
    );

    // Killed: started again, used, then `kill -9`.
    s.nsa(&["proxy", "start", "--persistent"])
        .run()
        .assert_success("proxy start --persistent");
    s.plain(&format!("nix-store -r {}", s.p2()))
        .assert_success("plain nix-store -r P2 with the proxy started again");
    let pids = proxy_pids(s.bed.user.uid);
    assert_eq!(pids.len(), 1, "{pids:?}");
    // SAFETY: kill(2) of the test user's proxy, which this proof started.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    wait_until(
        "the watcher to remove the killed proxy's URLs",
        Duration::from_secs(10),
        || !runtime_urls.exists(),
    );
    build_without_fallback("killed");
    let bob = TestUser::create(e2e, "b");
    s.assert_other_user_finds_nothing(&bob);
}

crate::proofs!(
    plain_nix_substitutes_through_the_background_service,
    socket_activation_for_real,
    the_proxy_renews_short_sessions_by_itself,
    a_person_is_needed_then_login_substitutes_at_once,
    with_the_proxy_down_plain_builds_still_work,
);
