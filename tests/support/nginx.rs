//! nginx serving a directory on 127.0.0.1 behind Basic auth, optionally over TLS with a CA made
//! by the test, and its access log: one vhost per cache, in the nginx the run's proofs share.

use super::{E2e, Service, free_port, note, port_open, run_root, tail};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The system's CA bundle on Debian (ca-certificates).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A CA made with openssl for this test, and a server certificate it signed for `127.0.0.1` and
/// `localhost`.
///
/// To make the daemon trust it, give [`Tls::bundle`] to [`super::NixConf::ca_bundle`]: the
/// daemon then runs with `NIX_SSL_CERT_FILE` pointing at it (Nix 2.8 has no `ssl-cert-file`
/// setting). We chose that over installing the CA into the system store with
/// `update-ca-certificates`: it changes nothing machine-wide, and a killed run leaves no CA behind.
pub struct Tls {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The system's CA bundle plus our CA: what the daemon should trust.
    pub bundle: PathBuf,
}

impl Tls {
    pub fn create(e2e: &E2e) -> Tls {
        let dir = e2e.private_dir("tls");
        let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
        let openssl = |args: &[&str]| {
            run_root("openssl", args, None).assert_success("openssl");
        };
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.crt"),
            "-days",
            "2",
            "-subj",
            "/CN=nixstore-auth e2e test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
            "-subj",
            "/CN=127.0.0.1",
        ]);
        fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("server.ext"),
            "-out",
            &p("server.crt"),
        ]);
        // The bundle and CA certificate are public: readable by all, beside the private keys.
        let public = e2e.dir.join("tls-public");
        fs::create_dir_all(&public).unwrap();
        let ca_cert = public.join("ca.crt");
        fs::copy(dir.join("ca.crt"), &ca_cert).unwrap();
        let mut bundle = fs::read(SYSTEM_CA_BUNDLE).unwrap_or_default();
        bundle.extend(fs::read(&ca_cert).unwrap());
        let bundle_path = public.join("bundle.crt");
        fs::write(&bundle_path, bundle).unwrap();
        for f in [&ca_cert, &bundle_path] {
            fs::set_permissions(f, fs::Permissions::from_mode(0o644)).unwrap();
        }
        Tls {
            ca_cert,
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            bundle: bundle_path,
        }
    }
}

/// What [`Nginx::start`] serves.
pub struct NginxOptions<'a> {
    root: PathBuf,
    basic_auth: Option<(String, String)>,
    tls: Option<&'a Tls>,
    dav_put: bool,
    bearer: Option<String>,
    redirect_nars: Option<String>,
}

impl<'a> NginxOptions<'a> {
    /// Serve the files below `root` (e.g. [`super::SignedCache::dir`]), plain HTTP, no auth.
    pub fn new(root: &Path) -> NginxOptions<'a> {
        NginxOptions {
            root: root.to_path_buf(),
            basic_auth: None,
            tls: None,
            dav_put: false,
            bearer: None,
            redirect_nars: None,
        }
    }

    /// Require `Authorization: Bearer TOKEN` (a `map` on `$http_authorization`, 401 otherwise);
    /// [`Nginx::set_bearer`] rotates the token.
    pub fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_string());
        self
    }

    /// Answer every `/nar/...` (after the auth check) with a 302 to the same path below `base`
    /// (another origin, e.g. a second nginx): how attic and cachix send NARs to object storage.
    pub fn redirect_nars(mut self, base: &str) -> Self {
        self.redirect_nars = Some(base.trim_end_matches('/').to_string());
        self
    }

    /// Take uploads: WebDAV `PUT` (creating directories such as `nar/`), behind the same auth,
    /// as `nix copy --to http://...` needs.
    pub fn dav_put(mut self) -> Self {
        self.dav_put = true;
        self
    }

    /// Require HTTP Basic auth with this login and password (written with `htpasswd -i`, so the
    /// password never appears in argv).
    pub fn basic_auth(mut self, login: &str, password: &str) -> Self {
        self.basic_auth = Some((login.to_string(), password.to_string()));
        self
    }

    /// Serve over TLS with the server certificate of `tls`.
    pub fn tls(mut self, tls: &'a Tls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// One line of the access log.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AccessEntry {
    /// The Basic auth login sent with the request ("" without one).
    pub user: String,
    pub method: String,
    pub uri: String,
    pub status: u16,
    /// The `Authorization` header as received ("" without one): the test's own log.
    #[serde(default)]
    pub authorization: String,
}

fn write_bearer(dir: &Path, token: &str) {
    let tmp = dir.join("bearer.map.new");
    fs::write(&tmp, format!("\"Bearer {token}\" 1;\n")).unwrap();
    fs::rename(&tmp, dir.join("bearer.map")).unwrap();
}

/// One server block (vhost) of the run's nginx ([`super::shared::with_nginx`]), listening on
/// 127.0.0.1 on a port of its own, with its own access and error logs in the proof's directory.
/// Removed on Drop (nginx reloads: the port closes).
pub struct Nginx {
    pub port: u16,
    pub scheme: &'static str,
    pub dir: PathBuf,
}

/// The nginx the proofs of a run share: one master (its own configuration, pid file and logs
/// in the run's directory) that includes one file per vhost and reloads (SIGHUP) when one is
/// added or removed.
pub struct SharedNginx {
    dir: PathBuf,
    service: Service,
}

impl SharedNginx {
    /// Starts nginx with no vhost yet (a status server on a port of its own shows that it is
    /// up).
    pub(super) fn start(run_dir: &Path) -> SharedNginx {
        let dir = run_dir.join("nginx");
        let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
        for sub in [
            "vhosts",
            "tmp/client_body",
            "tmp/proxy",
            "tmp/fastcgi",
            "tmp/uwsgi",
            "tmp/scgi",
        ] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let ready_port = free_port();
        // Workers run as root so that they can read the proofs' 0700 directories.
        let conf = format!(
            r#"user root root;
worker_processes 1;
daemon off;
pid {pid};
error_log {error} info;
events {{ worker_connections 512; }}
http {{
    log_format e2e escape=json '{{"user":"$remote_user","method":"$request_method","uri":"$request_uri","status":$status,"authorization":"$http_authorization"}}';
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    types {{ text/x-nix-narinfo narinfo; }}
    server {{
        listen 127.0.0.1:{ready_port};
        return 204;
    }}
    include {vhosts}/*.conf;
}}
"#,
            pid = d("nginx.pid"),
            error = d("error.log"),
            tmp = d("tmp"),
            vhosts = d("vhosts"),
        );
        fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut cmd = Command::new("nginx");
        cmd.args(["-p", &d(""), "-e", &d("error.log"), "-c", &d("nginx.conf")]);
        let service = Service::spawn_shared(
            "nginx",
            cmd,
            &dir.join("stderr.log"),
            Duration::from_secs(10),
            || port_open(ready_port),
        );
        SharedNginx { dir, service }
    }

    pub(super) fn running(&mut self) -> bool {
        self.service.running()
    }

    fn vhost_file(&self, port: u16) -> PathBuf {
        self.dir.join("vhosts").join(format!("{port}.conf"))
    }

    /// Makes nginx read its configuration again, and waits until `done()` holds; the error
    /// says why not (never a panic: this also runs in Drop).
    fn reload(&mut self, mut done: impl FnMut() -> bool) -> Result<(), String> {
        let pid = self.service.pid().ok_or("the shared nginx is stopped")?;
        // SAFETY: a signal to the nginx master this run started.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            if !self.service.running() {
                return Err("the shared nginx exited on reload".into());
            }
            if std::time::Instant::now() > deadline {
                return Err("not done 10 s after a reload".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn error_log_tail(&self) -> String {
        tail(&self.dir.join("error.log"), 30)
    }
}

impl Nginx {
    /// Adds a vhost serving `opts` to the run's nginx and waits until its port answers.
    pub fn start(e2e: &E2e, opts: NginxOptions<'_>) -> Nginx {
        let port = free_port();
        let dir = e2e.private_dir(&format!("nginx-{port}"));
        let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
        let auth = match &opts.basic_auth {
            Some((login, password)) => {
                run_root(
                    "htpasswd",
                    ["-c", "-i", &d("htpasswd"), login],
                    Some(password.as_bytes()),
                )
                .assert_success("htpasswd (apt-get install apache2-utils)");
                format!(
                    "auth_basic \"nixstore-auth e2e\";\n    auth_basic_user_file {};",
                    d("htpasswd")
                )
            }
            None => String::new(),
        };
        let (listen, tls) = match opts.tls {
            Some(tls) => (
                format!("127.0.0.1:{port} ssl"),
                format!(
                    "ssl_certificate {};\n    ssl_certificate_key {};",
                    tls.cert.display(),
                    tls.key.display()
                ),
            ),
            None => (format!("127.0.0.1:{port}"), String::new()),
        };
        // The accepted header lives in its own file, so that a rotation rewrites only that.
        let (bearer_map, bearer_check) = match &opts.bearer {
            Some(token) => {
                write_bearer(&dir, token);
                (
                    format!(
                        "map $http_authorization $bearer_ok_{port} {{\n    default 0;\n    include {};\n}}",
                        d("bearer.map")
                    ),
                    format!("if ($bearer_ok_{port} = 0) {{ return 401; }}"),
                )
            }
            None => (String::new(), String::new()),
        };
        let redirect = match &opts.redirect_nars {
            Some(base) => format!("location /nar/ {{ return 302 {base}$request_uri; }}"),
            None => String::new(),
        };
        let dav = if opts.dav_put {
            "dav_methods PUT;\n    create_full_put_path on;\n    dav_access user:rw group:r all:r;\n    client_max_body_size 0;"
        } else {
            ""
        };
        let vhost = format!(
            r#"{bearer_map}
server {{
    listen {listen};
    server_name _;
    root {root};
    access_log {access} e2e;
    error_log {error} info;
    {tls}
    {auth}
    {bearer_check}
    {redirect}
    {dav}
}}
"#,
            access = d("access.log"),
            error = d("error.log"),
            root = opts.root.display(),
        );
        super::shared::with_nginx(|nginx| {
            let file = nginx.vhost_file(port);
            fs::write(&file, vhost).unwrap();
            if let Err(e) = nginx.reload(|| port_open(port)) {
                let _ = fs::remove_file(&file);
                panic!(
                    "nginx does not serve port {port}: {e}\n{}",
                    nginx.error_log_tail()
                );
            }
        });
        Nginx {
            port,
            scheme: if opts.tls.is_some() { "https" } else { "http" },
            dir,
        }
    }

    /// `SCHEME://127.0.0.1:PORT`: the cache URL.
    pub fn url(&self) -> String {
        self.url_for_host("127.0.0.1")
    }

    /// The URL with another name for loopback (`localhost`, which the TLS certificate covers):
    /// gives two caches different netrc `machine` names.
    pub fn url_for_host(&self, host: &str) -> String {
        format!("{}://{host}:{}", self.scheme, self.port)
    }

    /// Accept only `Bearer TOKEN` from now on: rewrites the map, reloads nginx, and waits until
    /// a request with the new token is let in.
    pub fn set_bearer(&self, token: &str, tls: Option<&Tls>) {
        write_bearer(&self.dir, token);
        let mut curl = vec![
            "-s".to_string(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}".into(),
            "-H".into(),
            "@-".into(),
        ];
        if let Some(t) = tls {
            curl.extend(["--cacert".into(), t.ca_cert.display().to_string()]);
        }
        curl.push(format!("{}/nix-cache-info", self.url()));
        let header = format!("Authorization: Bearer {token}\n");
        super::shared::with_nginx(|nginx| {
            if let Err(e) = nginx.reload(|| {
                run_root("curl", &curl, Some(header.as_bytes()))
                    .stdout
                    .trim()
                    == "200"
            }) {
                panic!("nginx did not take the new token: {e}");
            }
            // A worker of the old configuration goes on serving the keep-alive connections
            // it holds (the proxy's pool) until they close: wait until it is gone.
            let master = nginx.service.pid().unwrap_or(0);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while super::processes(|p| p.pgid == master && p.pid != master).len() > 1 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "an nginx worker of the old configuration still runs 10 s after the reload"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }

    pub fn access_log_path(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    /// The access log so far (nginx writes each line when the request ends).
    pub fn access_log(&self) -> Vec<AccessEntry> {
        fs::read_to_string(self.access_log_path())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("access log line {l:?}: {e}"))
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            note(&format!(
                "--- nginx on port {}: last lines of its access and error logs ---\n{}\n{}",
                self.port,
                tail(&self.access_log_path(), 20),
                tail(&self.dir.join("error.log"), 20)
            ));
        }
        // The vhost goes, and its port closes, before the proof's directory (its logs, its
        // root) is removed.
        let port = self.port;
        super::shared::with_nginx(|nginx| {
            let _ = fs::remove_file(nginx.vhost_file(port));
            if let Err(e) = nginx.reload(|| !port_open(port)) {
                note(&format!(
                    "warning: removing nginx's vhost on port {port}: {e}"
                ));
            }
        });
    }
}
