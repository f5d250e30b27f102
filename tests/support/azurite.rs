//! Azure's test bed: Azurite (Microsoft's emulator, npm `azurite`, pinned by scripts/test.sh)
//! over HTTPS with `--oauth basic`, a test CA, and the Entra ID stand-in
//! (tests/support/py/entra_stub.py).
//!
//! What Azurite checks for real: Shared Key signatures, service SAS and user-delegation SAS
//! signatures and their expiry (tampered or expired: 403), and of an Entra token its issuer,
//! audience and expiry — not its signature. The stand-in checks a client secret, or a
//! workload-identity assertion's aud/iss/sub/exp (not its signature). Neither exercises the
//! Azure CLI route (a stand-in script does, in the unit tests) nor managed identity.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{DEFAULT_TIMEOUT, Service, free_port, port_open, run};

/// Azurite's pinned version: 3.35.0 is the newest that declares support for node 20 (3.36
/// wants node 21, 3.37 node 22); scripts/test.sh installs it here.
pub const AZURITE_VERSION: &str = "3.35.0";

/// The development account every Azurite has (public, documented by Microsoft).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `azurite-blob` as scripts/test.sh installs it (`NIXSTORE_AUTH_AZURITE` overrides), if there.
pub fn azurite_bin() -> Option<PathBuf> {
    let path = std::env::var_os("NIXSTORE_AUTH_AZURITE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "/var/cache/nixstore-auth-test/azurite-{AZURITE_VERSION}/node_modules/.bin/azurite-blob"
            ))
        });
    path.exists().then_some(path)
}

/// A CA and a server certificate for 127.0.0.1 / localhost, made with openssl.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn create(dir: &Path) -> TestCa {
        fs::create_dir_all(dir).unwrap();
        let p = |n: &str| dir.join(n);
        let ossl = |args: &[&str]| {
            let out = run(Command::new("openssl").args(args), None, DEFAULT_TIMEOUT);
            out.assert_success("openssl");
        };
        let (ca_key, ca, key, csr, cert, ext) = (
            p("ca.key"),
            p("ca.pem"),
            p("server.key"),
            p("server.csr"),
            p("server.pem"),
            p("ext.cnf"),
        );
        let s = |p: &PathBuf| p.to_str().unwrap().to_string();
        ossl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
            "-days",
            "2",
            "-subj",
            "/CN=nixstore-auth test CA",
        ]);
        ossl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
            "-subj",
            "/CN=127.0.0.1",
        ]);
        fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
        ossl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-out",
            &s(&cert),
            "-days",
            "2",
            "-extfile",
            &s(&ext),
        ]);
        TestCa { ca, cert, key }
    }

    /// A reqwest client trusting this CA (and only the system's roots besides).
    pub fn client(&self) -> reqwest::Client {
        let pem = fs::read(&self.ca).unwrap();
        reqwest::Client::builder()
            .tls_certs_merge([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap()
    }
}

/// Azurite's blob service on 127.0.0.1, HTTPS, `--oauth basic`, its data in a directory.
pub struct Azurite {
    pub port: u16,
    pub service: Service,
    ca: PathBuf,
}

impl Azurite {
    pub fn start(dir: &Path, ca: &TestCa) -> Azurite {
        let bin = azurite_bin().expect("azurite is not installed: run scripts/test.sh");
        let port = free_port();
        let data = dir.join(format!("azurite-{port}"));
        fs::create_dir_all(&data).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
        ])
        .arg(&data)
        .args(["--cert"])
        .arg(&ca.cert)
        .args(["--key"])
        .arg(&ca.key)
        .args(["--oauth", "basic", "--disableProductStyleUrl"]);
        let log = dir.join(format!("azurite-{port}.log"));
        let service = Service::spawn("azurite", cmd, &log, Duration::from_secs(60), || {
            port_open(port)
        });
        Azurite {
            port,
            service,
            ca: ca.ca.clone(),
        }
    }

    /// The development account's blob endpoint (path-style).
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/{DEV_ACCOUNT}", self.port)
    }

    /// Creates `container` (Shared Key with the development key, sent by curl).
    pub fn create_container(&self, container: &str) {
        use nixstore_auth::azure::shared_key::{AccountKey, authorization, string_to_sign};
        let date = httpdate_now();
        let headers = [
            ("x-ms-date".to_string(), date.clone()),
            (
                "x-ms-version".to_string(),
                nixstore_auth::azure::sas::API_VERSION.to_string(),
            ),
        ];
        let path = format!("/{DEV_ACCOUNT}/{container}");
        let sts = string_to_sign(
            "PUT",
            &headers,
            DEV_ACCOUNT,
            &path,
            &[("restype".into(), "container".into())],
        );
        let auth = authorization(
            DEV_ACCOUNT,
            &AccountKey::from_base64(DEV_KEY).unwrap(),
            &sts,
        );
        let out = run(
            Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-X",
                    "PUT",
                    "--cacert",
                ])
                .arg(&self.ca)
                .args([
                    "-H",
                    &format!("x-ms-date: {date}"),
                    "-H",
                    &format!("x-ms-version: {}", nixstore_auth::azure::sas::API_VERSION),
                    "-H",
                    &format!("Authorization: {auth}"),
                    "-H",
                    "Content-Length: 0",
                ])
                .arg(format!(
                    "https://127.0.0.1:{}{path}?restype=container",
                    self.port
                )),
            None,
            DEFAULT_TIMEOUT,
        );
        assert_eq!(
            out.stdout.trim(),
            "201",
            "create container {container}: {out}"
        );
    }
}

fn httpdate_now() -> String {
    let out = run(
        Command::new("date")
            .args(["-u", "+%a, %d %b %Y %H:%M:%S GMT"])
            .env("LC_ALL", "C"),
        None,
        DEFAULT_TIMEOUT,
    );
    out.stdout.trim().to_string()
}

/// The Entra ID stand-in (tests/support/py/entra_stub.py) over HTTPS with the test CA.
pub struct EntraStub {
    pub port: u16,
    pub service: Service,
    pub config: PathBuf,
    ca: PathBuf,
}

impl EntraStub {
    /// Starts the stand-in with `config` (see the script for its fields).
    pub fn start(
        dir: &Path,
        ca: &TestCa,
        python: &Path,
        script: &Path,
        config: &serde_json::Value,
    ) -> EntraStub {
        let port = free_port();
        let path = dir.join(format!("entra-{port}.json"));
        fs::write(&path, config.to_string()).unwrap();
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .arg(port.to_string())
            .arg(&ca.cert)
            .arg(&ca.key)
            .arg(&path);
        let log = dir.join(format!("entra-{port}.log"));
        let service = Service::spawn("entra stand-in", cmd, &log, Duration::from_secs(30), || {
            port_open(port)
        });
        EntraStub {
            port,
            service,
            config: path,
            ca: ca.ca.clone(),
        }
    }

    /// `AZURE_AUTHORITY_HOST` for this stand-in.
    pub fn authority(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Replaces the configuration (read again on every request).
    pub fn set_config(&self, config: &serde_json::Value) {
        let tmp = self.config.with_extension("tmp");
        fs::write(&tmp, config.to_string()).unwrap();
        fs::rename(&tmp, &self.config).unwrap();
    }

    /// The stand-in's counters (`{"issued": {"secret": n, "assertion": n}, "refused": n}`).
    pub fn stats(&self) -> serde_json::Value {
        let out = run(
            Command::new("curl")
                .args(["-sS", "--cacert"])
                .arg(&self.ca)
                .arg(format!("{}/_stats", self.authority())),
            None,
            DEFAULT_TIMEOUT,
        );
        out.assert_success("entra stand-in stats");
        serde_json::from_str(&out.stdout).unwrap()
    }
}
