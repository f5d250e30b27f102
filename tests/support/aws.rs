//! The AWS session bed: the run's moto (S3, STS, IAM with authentication on; this bed's own
//! user, roles and bucket) and the tests' STS front on 127.0.0.1 at a free port, stopped on Drop; a fresh HOME per proof, whose commands run
//! as root in the Nix under test's userland (the chroot's for 2.34).

use super::{E2e, Moto, NixUnderTest, StsFront};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const MFA_SERIAL: &str = "arn:aws:iam::123456789012:mfa/alice";

/// The run's moto + the STS front + the IAM user, roles and bucket made in moto (moto.py
/// aws-bed, with names of their own).
pub struct AwsBed {
    pub nix: NixUnderTest,
    pub dir: PathBuf,
    /// The binary under test (inside the proof's directory: reachable from the chroot).
    pub bin: PathBuf,
    /// tests/support/py/s3get.py, copied into the proof's directory.
    pub s3get: PathBuf,
    pub key_id: String,
    pub secret: String,
    pub role_deploy: String,
    pub role_mid: String,
    pub bucket: String,
    pub key: String,
    pub body: String,
    pub front: StsFront,
    pub moto: Moto,
}

impl AwsBed {
    pub fn start(e2e: &E2e) -> AwsBed {
        let moto = Moto::shared(true);
        let out = moto.fixture(e2e, "aws-bed", &[&super::unique_tag()]);
        out.assert_success("moto setup (it also proves that auth is on)");
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        let front = StsFront::start(
            e2e,
            &moto.url(),
            &s("access_key_id"),
            &s("secret_access_key"),
            v["roles"]["gst"].as_str().unwrap(),
        );
        AwsBed {
            nix: e2e.nix.clone(),
            dir: e2e.dir.clone(),
            bin: e2e.bin.clone(),
            s3get: e2e.script("s3get.py"),
            key_id: s("access_key_id"),
            secret: s("secret_access_key"),
            role_deploy: v["roles"]["deploy"].as_str().unwrap().into(),
            role_mid: v["roles"]["mid"].as_str().unwrap().into(),
            bucket: s("bucket"),
            key: s("key"),
            body: s("body"),
            front,
            moto,
        }
    }

    pub fn moto_url(&self) -> String {
        self.moto.url()
    }

    pub fn front_url(&self) -> String {
        self.front.url()
    }

    /// How many times the front saw `action` (refused calls included).
    pub fn calls(&self, action: &str) -> u64 {
        self.front.calls(action)
    }

    /// Make the front report sessions that expire `secs` from now (0: moto's own expiry).
    pub fn set_expiry(&self, secs: u64) {
        self.front.set_expiry(secs)
    }

    /// A fresh HOME with AWS profiles: `work` (role + MFA, source `keys`), `chain`
    /// (role via `mid`), `gst` (MFA, no role: GetSessionToken), `plain` (keys only).
    pub fn home(&self) -> Home {
        let dir = tempfile::Builder::new()
            .prefix("home-")
            .tempdir_in(&self.dir)
            .unwrap();
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
            nix: self.nix.clone(),
            bin: self.bin.clone(),
            sts: self.front_url(),
            s3: self.moto_url(),
        };
        h.set_config("keyring-backend = \"file\"\n");
        h
    }

    /// Reads the bucket's object with the given keys, directly (no nixstore-auth).
    pub fn read_with(&self, home: &Home, key_id: &str, secret: &str) -> Output {
        let mut c = home.plain_cmd(self.nix.python());
        c.arg(&self.s3get)
            .args([&self.bucket, &self.key])
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret);
        c.output().unwrap()
    }

    /// The argv of a child that reads the bucket with the credentials in its environment.
    pub fn reader(&self) -> Vec<String> {
        vec![
            self.nix.python().display().to_string(),
            self.s3get.display().to_string(),
            self.bucket.clone(),
            self.key.clone(),
        ]
    }
}

/// A HOME of root's for one proof, below the proof's directory.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub nix: NixUnderTest,
    /// The binary under test.
    pub bin: PathBuf,
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

    /// The latest expiry (Unix seconds) of the sessions cached in the file store.
    pub fn cached_expiry(&self) -> Option<i64> {
        let entries = fs::read_dir(self.secrets_dir()).ok()?;
        entries
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter_map(|v| v["expiration"].as_i64())
            .max()
    }

    /// Waits until every session cached in the file store has expired (its real expiry, as
    /// the STS front set it: polled, not a fixed sleep).
    pub fn wait_until_cached_sessions_expire(&self) {
        let expiry = self
            .cached_expiry()
            .expect("a cached session with an expiry");
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        };
        assert!(
            expiry - now() < 120,
            "the cached session ends in {} s: not a short one",
            expiry - now()
        );
        super::wait_until(
            "the cached sessions to expire",
            std::time::Duration::from_secs(130),
            || now() >= expiry,
        );
    }

    /// The environment of a user on this HOME (and nothing else).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let root = self.path();
        let p = |rel: &str| root.join(rel).display().to_string();
        vec![
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("HOME", root.display().to_string()),
            ("XDG_CONFIG_HOME", p(".config")),
            ("XDG_DATA_HOME", p(".local/share")),
            ("XDG_CACHE_HOME", p(".cache")),
            ("XDG_RUNTIME_DIR", p("run")),
            ("AWS_ENDPOINT_URL_STS", self.sts.clone()),
            ("AWS_ENDPOINT_URL_S3", self.s3.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// `program` with [`Home::env`], nothing inherited, in the Nix under test's userland.
    pub fn plain_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = self.nix.command(program);
        c.env_clear().envs(self.env()).stdin(Stdio::null());
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
        self.plain_cmd(&self.bin)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
