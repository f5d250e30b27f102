//! A second S3 server that checks every signature, presigned URLs included: `s3s-fs` from
//! crates.io (built once by scripts/test.sh with `cargo install` under
//! /var/cache/nixstore-auth-test/), with a logging, fault-injecting front
//! (tests/support/py/s3_front.py) before it. Its limits (see TESTBED.md): one static access key
//! (no STS: proofs use that key as a long-term key of an AWS profile), no region of its own (it
//! checks whatever region the client signed: the front logs the credential scope), no listing of
//! unfinished multipart uploads (their files lie in its data directory: `.upload-ID.json`,
//! `.upload_id-ID.part-N`).

use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where scripts/test.sh installs s3s-fs (`NIXSTORE_AUTH_S3S_FS` names another binary).
pub fn s3s_fs_binary() -> PathBuf {
    let bin = std::env::var_os("NIXSTORE_AUTH_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/nixstore-auth-test/s3s-fs-0.14.1/bin/s3s-fs"));
    assert!(
        bin.exists(),
        "{} is missing: scripts/test.sh installs it (cargo install s3s-fs --version 0.14.1 --features binary)",
        bin.display()
    );
    bin
}

/// s3s-fs on 127.0.0.1 with its own data directory and key.
pub struct S3sFs {
    pub port: u16,
    pub data: PathBuf,
    pub key_id: String,
    pub secret: String,
    pub service: Service,
}

impl S3sFs {
    /// Starts it with `buckets` (directories of its data directory).
    pub fn start(e2e: &E2e, buckets: &[&str]) -> S3sFs {
        let port = free_port();
        let data = e2e.private_dir("s3s-data");
        for b in buckets {
            fs::create_dir_all(data.join(b)).unwrap();
        }
        let key_id = format!("S3SFS{}", unique_tag().to_uppercase());
        let secret = new_token();
        let mut cmd = Command::new(s3s_fs_binary());
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &key_id, "--secret-key", &secret])
            .arg(&data)
            .env("RUST_LOG", "s3s_fs=debug,s3s=info")
            .env("NO_COLOR", "1");
        let log = e2e.dir.join(format!("s3s-fs-{port}.log"));
        let service = Service::spawn("s3s-fs", cmd, &log, Duration::from_secs(30), || {
            port_open(port)
        });
        S3sFs {
            port,
            data,
            key_id,
            secret,
            service,
        }
    }

    /// Copies a `file://` binary cache directory into `bucket`.
    pub fn put_dir(&self, bucket: &str, dir: &Path) {
        let out = run_root(
            "cp",
            [
                "-r",
                "--no-preserve=ownership",
                &format!("{}/.", dir.display()),
                self.data.join(bucket).to_str().unwrap(),
            ],
            None,
        );
        out.assert_success("copy the cache into s3s-fs's bucket");
    }

    /// Files of unfinished multipart uploads in the data directory.
    pub fn unfinished_uploads(&self) -> Vec<String> {
        fs::read_dir(&self.data)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".upload-") || n.starts_with(".upload_id-"))
            .collect()
    }

    /// An object's bytes, read from the data directory.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        fs::read(self.data.join(bucket).join(key)).ok()
    }
}

/// The logging, fault-injecting front (tests/support/py/s3_front.py) before an [`S3sFs`].
pub struct S3Front {
    pub port: u16,
    pub log: PathBuf,
    pub service: Service,
}

impl S3Front {
    pub fn start(e2e: &E2e, upstream: &S3sFs) -> S3Front {
        let port = free_port();
        let log = e2e.dir.join(format!("s3-front-{port}.jsonl"));
        fs::write(&log, "").unwrap();
        let mut cmd = Command::new(venv_bin("python"));
        cmd.arg(e2e.script("s3_front.py"))
            .args([port.to_string(), upstream.port.to_string()])
            .arg(&log);
        let out = e2e.dir.join(format!("s3-front-{port}.out"));
        let service = Service::spawn("s3_front.py", cmd, &out, Duration::from_secs(30), || {
            port_open(port)
        });
        S3Front { port, log, service }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request logged so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn control(&self, what: &str, body: serde_json::Value) {
        let out = run_root(
            "curl",
            [
                "-sS",
                "--fail",
                "-X",
                "POST",
                "--data-binary",
                &body.to_string(),
                &format!("{}/__front/{what}", self.url()),
            ],
            None,
        );
        out.assert_success(&format!("s3 front {what}"));
    }

    /// The next `times` requests with `method` whose query holds `query_has` fail with 500
    /// (`stall`: are held until [`S3Front::release`], then fail).
    pub fn rule(&self, method: &str, query_has: &str, stall: bool, times: u32) {
        self.control(
            "rule",
            serde_json::json!({"method": method, "query_has": query_has,
                "action": if stall { "stall" } else { "fail" }, "times": times}),
        );
    }

    pub fn release(&self) {
        self.control("release", serde_json::json!({}));
    }

    /// Presigned NAR GETs get one signature digit changed (on) or pass unchanged (off).
    pub fn tamper(&self, on: bool) {
        self.control("tamper", serde_json::json!({"on": on}));
    }
}

/// A test user (trusted) whose AWS profile `s3s` holds s3s-fs's key, the daemon, s3s-fs with
/// the front, and the cache URL through the front.
pub struct StoreBed<'a> {
    pub e2e: &'a E2e,
    pub _procs: UserProcs,
    pub daemon: NixDaemon,
    pub front: S3Front,
    pub s3s: S3sFs,
    pub user: TestUser,
    pub bucket: String,
    pub port: u16,
}

/// The AWS profile of a [`StoreBed`]'s user.
pub const S3S_PROFILE: &str = "s3s";

impl<'a> StoreBed<'a> {
    pub fn new(e2e: &'a E2e) -> StoreBed<'a> {
        let user = TestUser::create(e2e, "t");
        let procs = UserProcs(user.uid);
        let daemon = NixDaemon::start(e2e, &NixConf::new().trusted_user(&user.name));
        let bucket = "nix-store-cache".to_string();
        let s3s = S3sFs::start(e2e, &[&bucket]);
        let front = S3Front::start(e2e, &s3s);
        let bed = StoreBed {
            e2e,
            _procs: procs,
            daemon,
            front,
            s3s,
            user,
            bucket,
            port: free_port(),
        };
        bed.write_user_file(
            ".aws/config",
            &format!("[profile {S3S_PROFILE}]\nregion = garage\n"),
        );
        bed.write_user_file(
            ".aws/credentials",
            &format!(
                "[{S3S_PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                bed.s3s.key_id, bed.s3s.secret
            ),
        );
        bed.write_user_file(
            ".config/nixstore-auth/config.toml",
            &format!(
                "keyring-backend = \"file\"\n\n[proxy]\nport = {}\n",
                bed.port
            ),
        );
        let run = runtime_dir(bed.user.uid);
        let _ = fs::remove_dir_all(&run);
        fs::create_dir_all(&run).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&run, Some(bed.user.uid), Some(bed.user.uid)).unwrap();
        bed
    }

    /// `s3://BUCKET?region=garage&endpoint=FRONT&addressing-style=path&profile=s3s` and `extra`.
    pub fn url(&self, extra: &str) -> String {
        format!(
            "s3://{}?region=garage&endpoint={}&addressing-style=path&profile={S3S_PROFILE}{extra}",
            self.bucket,
            self.front.url()
        )
    }

    /// Writes a 0600 file below the user's HOME, owned by the user (directories 0700).
    pub fn write_user_file(&self, rel: &str, text: &str) {
        self.user.write_private(rel, text);
    }

    /// A command as the user, with a runtime dir and a short proxy grace period.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> UserCmd<'_> {
        self.user
            .cmd(program)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("XDG_RUNTIME_DIR", runtime_dir(self.user.uid))
            .env("NIXSTORE_AUTH_PROXY_IDLE_SECS", GRACE_SECS.to_string())
            .env("NO_COLOR", "1")
    }

    pub fn nsa<I, S>(&self, args: I) -> UserCmd<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd(&self.e2e.bin).args(args)
    }

    /// `use URL --name NAME --public-key KEY` as the user.
    pub fn use_cache(&self, url: &str, name: &str, public_key: &str) {
        self.nsa(["use", url, "--name", name, "--public-key", public_key])
            .run()
            .assert_success("use s3://...");
    }

    pub fn proxy_log(&self) -> String {
        self.user.read(".cache/nixstore-auth/proxy.log")
    }

    /// The user's proxy processes.
    pub fn proxy_pids(&self) -> Vec<u32> {
        proxy_pids(self.user.uid)
    }
}

impl Drop for StoreBed<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            note(&format!(
                "--- proxy log ---\n{}\n--- s3 front ---\n{}\n--- s3s-fs ---\n{}\n--- nix-daemon log ---\n{}",
                tail(&self.user.home.join(".cache/nixstore-auth/proxy.log"), 40),
                tail(&self.front.log, 40),
                tail(&self.s3s.service.log, 20),
                tail(&self.daemon.log, 30)
            ));
        }
    }
}
