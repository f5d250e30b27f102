//! The S3 test bed: a test user with an MFA role profile over moto's IAM user, moto (S3, STS,
//! IAM) with authentication on, the real nix-daemon, and helpers to reach the user's proxy.

use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The name `use --name` records the cache under (also the proxy's mount name).
pub const NAME: &str = "s3cache";
/// The role profile in the user's ~/.aws/config (role_arn + source_profile + mfa_serial).
pub const PROFILE: &str = "cache";
/// moto accepts any MFA code; the flag still proves the code reaches AssumeRole without a prompt.
pub const MFA_CODE: &str = "123456";
/// The proxy's idle grace period in these tests.
pub const GRACE_SECS: u64 = 2;

/// Kills, by pid, every process still running as the test user (the proxy that `exec` started
/// in its own session, a stray CMD): they would block `userdel` and outlive the test.
pub struct UserProcs(pub u32);

impl Drop for UserProcs {
    fn drop(&mut self) {
        for pid in user_pids(self.0) {
            // SAFETY: kill(2) on a pid of a process our test started as its own user.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        let _ = fs::remove_dir_all(runtime_dir(self.0));
    }
}

/// The user's `XDG_RUNTIME_DIR`: short, like `/run/user/UID` (the proxy's Unix socket path
/// must fit in `sun_path`; the test's directory name is too long for it). Removed on Drop.
pub fn runtime_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/nixstore-auth-e2e-run-{uid}"))
}

/// Live processes whose real uid is `uid`.
pub fn user_pids(uid: u32) -> Vec<u32> {
    processes(|p| proc_uid(p.pid) == Some(uid))
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

pub fn proc_uid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A NUL-separated /proc file as text with spaces.
pub fn proc_text(pid: u32, file: &str) -> String {
    let bytes = fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
    String::from_utf8_lossy(&bytes).replace('\0', " ")
}

/// The user's proxy processes (`nixstore-auth proxy serve`).
pub fn proxy_pids(uid: u32) -> Vec<u32> {
    user_pids(uid)
        .into_iter()
        .filter(|&pid| proc_text(pid, "cmdline").contains("proxy serve"))
        .collect()
}

/// Everything the S3 tests share: the user, moto with the bucket, the daemon.
pub struct Bed<'a> {
    pub e2e: &'a E2e,
    // Fields drop in this order: the user's processes first, the user last.
    pub _procs: UserProcs,
    pub daemon: NixDaemon,
    pub moto: Moto,
    pub user: TestUser,
    pub bucket: String,
    /// `s3://BUCKET?region=...&endpoint=...&profile=...`
    pub url: String,
    /// The proxy's port (config.toml `[proxy] port`).
    pub port: u16,
    pub key_id: String,
    pub secret: String,
    pub script: PathBuf,
    /// Whether moto checks signatures.
    pub auth: bool,
    /// The role the user's profile assumes (`cache-reader-TAG`, this bed's own).
    pub role_arn: String,
}

impl<'a> Bed<'a> {
    /// The bed with a user in the daemon's `trusted-users`.
    pub fn new(e2e: &'a E2e) -> Bed<'a> {
        Bed::with_trust(e2e, true)
    }

    /// The bed; `trusted`: whether the user is in `trusted-users` (always in `nix-users`).
    pub fn with_trust(e2e: &'a E2e, trusted: bool) -> Bed<'a> {
        Bed::with_options(e2e, trusted, true)
    }

    /// The bed; `auth`: whether moto checks signatures (it then cannot serve presigned URLs:
    /// it answers them 500, so the proxy streams NARs itself). The run's moto of that kind
    /// ([`Moto::shared`]) with this bed's own user, role and bucket.
    pub fn with_options(e2e: &'a E2e, trusted: bool, auth: bool) -> Bed<'a> {
        let user = TestUser::create(e2e, "s");
        let procs = UserProcs(user.uid);
        let conf = if trusted {
            NixConf::new().trusted_user(&user.name)
        } else {
            NixConf::new()
        };
        let daemon = NixDaemon::start(e2e, &conf);
        let moto = Moto::shared(auth);
        let script = e2e.script("moto.py");
        let tag = unique_tag();
        let bucket = format!("nix-cache-{tag}");
        let out = moto.fixture(e2e, "s3-bed", &[&bucket, &tag]);
        out.assert_success("moto setup");
        let keys: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        let s = |k: &str| keys[k].as_str().unwrap().to_string();
        let port = free_port();
        let url = format!(
            "s3://{bucket}?region=us-east-1&endpoint={}&profile={PROFILE}",
            moto.url()
        );
        let bed = Bed {
            e2e,
            _procs: procs,
            daemon,
            user,
            bucket,
            url,
            port,
            key_id: s("key_id"),
            secret: s("secret"),
            script,
            moto,
            auth,
            role_arn: s("role_arn"),
        };
        bed.write_home(&bed.role_arn);
        bed
    }

    /// ~/.aws/config (role profile with MFA over a source profile), ~/.aws/credentials (the IAM
    /// user's keys), our config.toml (proxy port, file secret store), a private runtime dir.
    pub fn write_home(&self, role_arn: &str) {
        let account = role_arn.split(':').nth(4).unwrap();
        self.write_user_file(
            ".aws/config",
            &format!(
                "[profile {PROFILE}]\nrole_arn = {role_arn}\nsource_profile = base\n\
                 mfa_serial = arn:aws:iam::{account}:mfa/nix\nregion = us-east-1\n\n\
                 [profile base]\nregion = us-east-1\n"
            ),
        );
        self.write_user_file(
            ".aws/credentials",
            &format!(
                "[base]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                self.key_id, self.secret
            ),
        );
        // moto's own GetSessionToken hands out keys it then refuses (TESTBED.md): the MFA
        // profile here takes the direct AssumeRole with the code. tests/e2e/sessions.rs proves
        // the base session against the tests' STS front.
        self.write_user_file(
            ".config/nixstore-auth/config.toml",
            &format!(
                "keyring-backend = \"file\"\nmfa-base-session = false\n\n[proxy]\nport = {}\n",
                self.port
            ),
        );
        let run = self.runtime_dir();
        let _ = fs::remove_dir_all(&run);
        fs::create_dir_all(&run).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&run, Some(self.user.uid), Some(self.user.uid)).unwrap();
    }

    /// Writes a 0600 file below the user's HOME, owned by the user (directories too).
    pub fn write_user_file(&self, rel: &str, text: &str) {
        self.user.write_private(rel, text);
    }

    /// The environment a real user would have: the AWS endpoint (moto), a runtime dir, a short
    /// grace period for the proxy.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.moto.url()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("XDG_RUNTIME_DIR", self.runtime_dir().display().to_string()),
            ("NIXSTORE_AUTH_PROXY_IDLE_SECS", GRACE_SECS.to_string()),
            ("NO_COLOR", "1".into()),
        ]
    }

    pub fn runtime_dir(&self) -> PathBuf {
        runtime_dir(self.user.uid)
    }

    /// A command run as the user with [`Bed::env`].
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> UserCmd<'_> {
        let mut cmd = self.user.cmd(program);
        for (k, v) in self.env() {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// `nixstore-auth ARGS` as the user.
    pub fn nsa<I, S>(&self, args: I) -> UserCmd<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd(&self.e2e.bin).args(args)
    }

    /// `nixstore-auth -v exec --mfa-code CODE -- CMD...` as the user.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.nsa(["-v", "exec", "--mfa-code", MFA_CODE, "--"])
            .args(cmd)
            .run()
    }

    /// Runs the boto3 script (tests/support/py/moto.py) in `mode` with the IAM user's keys (in
    /// its environment), in the run's `moto.py serve`.
    pub fn boto(&self, mode: &str, args: &[&str]) -> Output {
        let url = self.moto.url();
        let mut argv = vec![mode, url.as_str(), self.bucket.as_str()];
        argv.extend_from_slice(args);
        moto_py(
            &argv,
            &[
                ("E2E_KEY_ID", &self.key_id),
                ("E2E_SECRET", &self.secret),
                ("E2E_AUTH", if self.auth { "on" } else { "off" }),
            ],
        )
    }

    /// The bucket's keys with their ETags, one per line, sorted.
    pub fn bucket_listing(&self) -> String {
        let out = self.boto("list", &[]);
        out.assert_success("list the bucket");
        out.stdout
    }

    /// Uploads a `file://` binary cache directory to the bucket's root.
    pub fn upload(&self, dir: &Path) {
        self.boto("upload", &[dir.to_str().unwrap()])
            .assert_success("upload the cache to moto");
    }

    /// `use s3://... --name NAME --public-key KEY` as the user; checks what it wrote.
    pub fn use_cache(&self, public_key: &str) {
        let out = self
            .nsa(["use", &self.url, "--name", NAME, "--public-key", public_key])
            .run();
        out.assert_success("use s3://");
        assert!(
            out.all().contains("exec"),
            "use should say how to use the cache:\n{out}"
        );
        let conf = self.user.read(".config/nix/nix.conf");
        assert!(
            conf.lines()
                .any(|l| l.starts_with("extra-trusted-public-keys") && l.contains(public_key)),
            "use did not add the public key to nix.conf:\n{conf}"
        );
        assert!(
            !conf.contains("s3://") && !conf.contains("substituters ="),
            "use added a substituter the daemon cannot use:\n{conf}"
        );
    }

    /// moto's log (its stdout and stderr: one line per request). The run's moto is shared:
    /// read it from an offset taken before the requests of interest, by this bed's bucket.
    pub fn moto_log(&self) -> String {
        self.moto.log_text()
    }

    /// The proxy's log.
    pub fn proxy_log(&self) -> String {
        self.user.read(".cache/nixstore-auth/proxy.log")
    }

    /// The proxy URL's secret (made on first use).
    pub fn url_secret(&self) -> String {
        self.user
            .read(".local/share/nixstore-auth/proxy-secret")
            .trim()
            .to_string()
    }

    /// The cached AWS session (file secret store): its path and JSON.
    pub fn session_entry(&self) -> (PathBuf, serde_json::Value) {
        let dir = self.user.home.join(".local/share/nixstore-auth/secrets");
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex_name) = name.strip_suffix(".secret") else {
                continue;
            };
            let account = String::from_utf8(hex::decode(hex_name).unwrap()).unwrap();
            if account.starts_with("aws-session:") {
                let text = fs::read_to_string(entry.path()).unwrap();
                return (entry.path(), serde_json::from_str(&text).unwrap());
            }
        }
        panic!("no cached AWS session in {}", dir.display());
    }

    /// Every secret that must never show: the IAM user's secret key, the session's secret key
    /// and token, the proxy URL's secret.
    pub fn secrets(&self) -> Vec<String> {
        let (_, s) = self.session_entry();
        let mut v = vec![
            self.secret.clone(),
            s["secret_access_key"].as_str().unwrap().to_string(),
            self.url_secret(),
        ];
        if let Some(t) = s["session_token"].as_str() {
            v.push(t.to_string());
        }
        assert!(v.iter().all(|s| s.len() >= 16), "a secret is too short");
        v
    }

    /// Panics if `text` (from `what`) holds any secret.
    #[track_caller]
    pub fn assert_no_secret(&self, what: &str, text: &str) {
        for s in self.secrets() {
            assert!(
                !text.contains(&s),
                "{what} shows a secret ({}...):\n{text}",
                &s[..4]
            );
        }
    }

    /// Requests moto answered with 200 for a GET of an object whose key matches `pred`, from
    /// moto log lines after byte offset `from`.
    pub fn moto_gets(&self, from: usize, pred: impl Fn(&str) -> bool) -> usize {
        let log = self.moto_log();
        log[from.min(log.len())..]
            .lines()
            .filter(|l| {
                let Some((_, req)) = l.split_once("\"GET /") else {
                    return false;
                };
                let Some((path, rest)) = req.split_once(' ') else {
                    return false;
                };
                // Only this bed's bucket: the moto is shared by the run's proofs.
                let Some(key) = path.strip_prefix(&format!("{}/", self.bucket)) else {
                    return false;
                };
                rest.contains("\" 200 ") && pred(key)
            })
            .count()
    }

    /// Waits until no proxy process of the user remains (the grace period plus slack).
    pub fn assert_proxy_exits(&self) {
        wait_until(
            "the proxy to exit after its grace period",
            Duration::from_secs(GRACE_SECS + 10),
            || proxy_pids(self.user.uid).is_empty(),
        );
        assert!(
            !self.runtime_dir().join("nixstore-auth/proxy.sock").exists(),
            "the proxy left its socket behind"
        );
    }
}

impl Drop for Bed<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            note(&format!(
                "--- proxy log ---\n{}\n--- nix-daemon log ---\n{}",
                tail(&self.user.home.join(".cache/nixstore-auth/proxy.log"), 30),
                tail(&self.daemon.log, 30)
            ));
        }
    }
}

/// `out` without Nix's own progress lines. Nix names the substituter in them ("copying path
/// '...' from 'http://127.0.0.1:PORT/SECRET/NAME'"), so the URL secret shows there, in the
/// user's own output, as with any credential embedded in a URL; everything else (what
/// nixstore-auth prints, the child's argv) must be clean. The AWS secrets never reach Nix.
pub fn without_nix_progress(out: &Output) -> String {
    let text = out.all();
    let secrets_in_progress = text
        .lines()
        .filter(|l| l.starts_with("copying path '"))
        .all(|l| !l.contains("AWS") && !l.contains("secret-key"));
    assert!(secrets_in_progress, "{out}");
    text.lines()
        .filter(|l| !l.starts_with("copying path '"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `(status, body)` of a plain GET with curl.
pub fn curl_status(url: &str) -> (u16, String) {
    curl_status_as("root", url)
}

/// `curl_status` as another local user (through runuser).
pub fn curl_status_as(user: &str, url: &str) -> (u16, String) {
    curl_with(user, &[], url, 30)
}

/// `(status, body)` of a curl request as `user` (through runuser; 0: no HTTP answer at all)
/// that may take `max_secs`. `extra` goes before the URL (`-g` for IPv6 literals, `-T FILE` to
/// upload). curl runs on the host: the loopback and the users' uids are the same for every Nix.
pub fn curl_with(user: &str, extra: &[&str], url: &str, max_secs: u32) -> (u16, String) {
    let max = max_secs.to_string();
    let mut args = vec![
        "-u",
        user,
        "--",
        "curl",
        "-s",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "--max-time",
        &max,
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = run_root("runuser", args, None);
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The administrator's snippet that `use` prints for an untrusted user's S3 cache: lines for a
/// new root-only file, and lines for `/etc/nix/nix.conf` that `!include` it.
#[derive(Debug)]
pub struct AdminSnippet {
    pub private_file: PathBuf,
    pub private_lines: Vec<String>,
    pub conf_lines: Vec<String>,
}

/// Removes a file on Drop (the root-only include below /etc/nix, which the backup does not know).
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

impl AdminSnippet {
    /// Parses `use`'s stdout: `# In a new file PATH, ...:` then its lines, then
    /// `# In the system nix.conf:` then those lines.
    pub fn parse(stdout: &str) -> AdminSnippet {
        let mut private_file = None;
        let (mut private_lines, mut conf_lines) = (Vec::new(), Vec::new());
        let mut section = 0;
        for l in stdout.lines() {
            if let Some(rest) = l.strip_prefix("# In a new file ") {
                private_file = rest.split(',').next().map(PathBuf::from);
                section = 1;
            } else if l.starts_with("# In the system nix.conf") {
                section = 2;
            } else if l.is_empty() || l.starts_with('#') {
                continue;
            } else if section == 1 {
                private_lines.push(l.to_string());
            } else if section == 2 {
                conf_lines.push(l.to_string());
            }
        }
        AdminSnippet {
            private_file: private_file
                .unwrap_or_else(|| panic!("no root-only file in the snippet:\n{stdout}")),
            private_lines,
            conf_lines,
        }
    }

    /// Does what the snippet says, as root: the file (0600), the lines in nix.conf.
    pub fn apply(&self, nix: &NixUnderTest, daemon: &NixDaemon) -> RemoveOnDrop {
        use std::os::unix::fs::OpenOptionsExt;
        let file = nix.host_path(&self.private_file);
        let guard = RemoveOnDrop(file.clone());
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .unwrap();
        std::io::Write::write_all(&mut f, (self.private_lines.join("\n") + "\n").as_bytes())
            .unwrap();
        daemon.append_conf(&self.conf_lines.join("\n"));
        guard
    }
}
