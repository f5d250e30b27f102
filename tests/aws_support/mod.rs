//! The AWS test bed: moto (S3, STS, IAM with authentication on) and the tests' own STS front,
//! both on 127.0.0.1 at free ports, killed on drop; a fresh HOME per test.
//!
//! The e2e rule (COMMON.md): run only with CI=true or NIXSTORE_AUTH_E2E=1, fail (never skip)
//! in CI when something is missing, hold the machine-wide lock for the whole test.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nixstore-auth");
pub const LOCK: &str = "/tmp/nixstore-auth-e2e.lock";
pub const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws_support");
pub const MFA_SERIAL: &str = "arn:aws:iam::123456789012:mfa/alice";

/// Held for a whole test: the machine-wide e2e lock.
pub struct E2eGuard {
    _lock: fs::File,
}

/// `None` (after printing a skip line) unless e2e tests are switched on.
pub fn e2e_guard(name: &str) -> Option<E2eGuard> {
    let on = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("NIXSTORE_AUTH_E2E").is_ok_and(|v| v == "1");
    if !on {
        eprintln!("skipping {name}: set NIXSTORE_AUTH_E2E=1 (or CI=true) to run e2e tests");
        return None;
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .expect("open the e2e lock file");
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {LOCK}");
    Some(E2eGuard { _lock: f })
}

/// The venv with moto and boto3: $NIXSTORE_AUTH_VENV, default `<repo>/.venv/testbed`;
/// created when missing.
pub fn venv() -> PathBuf {
    let v = std::env::var_os("NIXSTORE_AUTH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/testbed"));
    if !v.join("bin/moto_server").exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&v)
            .status()
            .expect("python3 must be installed")
            .success()
            && Command::new(v.join("bin/pip"))
                .args(["install", "-q", "moto[server]", "boto3"])
                .status()
                .expect("run pip")
                .success();
        assert!(ok, "cannot create the test venv at {}", v.display());
    }
    v
}

pub fn python() -> PathBuf {
    venv().join("bin/python")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server process in its own process group, killed (group and all) on drop.
pub struct Proc(Child);

impl Proc {
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let log = fs::File::create(log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        Proc(cmd.spawn().expect("start a test server"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        // SAFETY: signalling the process group we created for this child.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// moto + the STS front + the IAM user, roles and bucket made in moto.
pub struct Bed {
    pub dir: tempfile::TempDir,
    pub moto_port: u16,
    pub front_port: u16,
    pub key_id: String,
    pub secret: String,
    pub role_deploy: String,
    pub role_mid: String,
    pub bucket: String,
    pub key: String,
    pub body: String,
    _moto: Proc,
    _front: Proc,
}

impl Bed {
    pub fn start() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let moto_port = free_port();
        let mut moto = Command::new(venv().join("bin/moto_server"));
        moto.args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "1000");
        let moto = Proc::spawn(moto, &dir.path().join("moto.log"));
        wait_port(moto_port, "moto");
        let moto_url = format!("http://127.0.0.1:{moto_port}");
        let out = Command::new(python())
            .arg(format!("{SUPPORT}/setup_moto.py"))
            .arg(&moto_url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "moto setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        let front_port = free_port();
        let mut front = Command::new(python());
        front
            .arg(format!("{SUPPORT}/sts_front.py"))
            .arg(front_port.to_string())
            .arg(&moto_url)
            .arg(s("access_key_id"))
            .arg(v["roles"]["gst"].as_str().unwrap())
            .env("FRONT_USER_SECRET", s("secret_access_key"));
        let front = Proc::spawn(front, &dir.path().join("front.log"));
        wait_port(front_port, "the STS front");
        Bed {
            moto_port,
            front_port,
            key_id: s("access_key_id"),
            secret: s("secret_access_key"),
            role_deploy: v["roles"]["deploy"].as_str().unwrap().into(),
            role_mid: v["roles"]["mid"].as_str().unwrap().into(),
            bucket: s("bucket"),
            key: s("key"),
            body: s("body"),
            dir,
            _moto: moto,
            _front: front,
        }
    }

    pub fn moto_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.moto_port)
    }

    pub fn front_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.front_port)
    }

    fn front_request(&self, req: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.front_port)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    }

    /// How many times the front saw `action` (refused calls included).
    pub fn calls(&self, action: &str) -> u64 {
        let body = self.front_request("GET /_calls HTTP/1.0\r\n\r\n");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v[action].as_u64().unwrap_or(0)
    }

    /// Make the front report sessions that expire `secs` from now (0: moto's own expiry).
    pub fn set_expiry(&self, secs: u64) {
        let body = format!("{{\"expiry\": {secs}}}");
        self.front_request(&format!(
            "POST /_config HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }

    /// A fresh HOME with AWS profiles: `work` (role + MFA, source `keys`), `chain`
    /// (role via `mid`), `gst` (MFA, no role: GetSessionToken), `plain` (keys only).
    pub fn home(&self) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join(".aws")).unwrap();
        fs::write(
            root.join(".aws/config"),
            format!(
                "[profile work]\nrole_arn = {deploy}\nsource_profile = keys\n\
                 mfa_serial = {MFA_SERIAL}\nregion = us-east-1\n\n\
                 [profile chain]\nrole_arn = {deploy}\nsource_profile = middle\n\
                 mfa_serial = {MFA_SERIAL}\n\n\
                 [profile middle]\nrole_arn = {mid}\nsource_profile = keys\n\n\
                 [profile gst]\nmfa_serial = {MFA_SERIAL}\nregion = us-east-1\n\n\
                 [profile plain]\nregion = us-east-1\n",
                deploy = self.role_deploy,
                mid = self.role_mid
            ),
        )
        .unwrap();
        let keys = format!(
            "aws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.key_id, self.secret
        );
        fs::write(
            root.join(".aws/credentials"),
            format!("[keys]\n{keys}\n[gst]\n{keys}\n[plain]\n{keys}"),
        )
        .unwrap();
        fs::set_permissions(
            root.join(".aws/credentials"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        for d in [".config/nixstore-auth", ".local/share", ".cache", "run"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::set_permissions(root.join("run"), fs::Permissions::from_mode(0o700)).unwrap();
        let h = Home {
            dir,
            sts: self.front_url(),
            s3: self.moto_url(),
        };
        h.set_config("keyring-backend = \"file\"\n");
        h
    }

    /// Reads the bucket's object with the given keys, directly (no nixstore-auth).
    pub fn read_with(&self, home: &Home, key_id: &str, secret: &str) -> Output {
        let mut c = home.plain_cmd(python());
        c.arg(format!("{SUPPORT}/s3get.py"))
            .args([&self.bucket, &self.key])
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret);
        c.output().unwrap()
    }

    /// The argv of a child that reads the bucket with the credentials in its environment.
    pub fn reader(&self) -> Vec<String> {
        vec![
            python().display().to_string(),
            format!("{SUPPORT}/s3get.py"),
            self.bucket.clone(),
            self.key.clone(),
        ]
    }
}

pub struct Home {
    pub dir: tempfile::TempDir,
    pub sts: String,
    pub s3: String,
}

impl Home {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn set_config(&self, text: &str) {
        fs::write(self.path().join(".config/nixstore-auth/config.toml"), text).unwrap();
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.path().join(".local/share/nixstore-auth/secrets")
    }

    /// Cached session entries in the file store.
    pub fn cached_sessions(&self) -> usize {
        fs::read_dir(self.secrets_dir())
            .map(|rd| rd.count())
            .unwrap_or(0)
    }

    /// Environment of a user on this HOME: nothing inherited but PATH.
    pub fn plain_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        let root = self.path();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root)
            .env("XDG_CONFIG_HOME", root.join(".config"))
            .env("XDG_DATA_HOME", root.join(".local/share"))
            .env("XDG_CACHE_HOME", root.join(".cache"))
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env("AWS_ENDPOINT_URL_STS", &self.sts)
            .env("AWS_ENDPOINT_URL_S3", &self.s3)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        // A new session: no controlling terminal, so nothing can prompt.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        c
    }

    /// The binary with this HOME, no terminal.
    pub fn cmd(&self) -> Command {
        self.plain_cmd(BIN)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every regular file under `dir` holding `needle` whose mode lets others (group/other) read it,
/// plus every file holding it at all, as (path, mode).
pub fn files_containing(dir: &Path, needle: &str) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file()
                && let Ok(bytes) = fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                out.push((p, m.permissions().mode() & 0o777));
            }
        }
    }
    out
}
