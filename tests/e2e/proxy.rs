//! The loopback signing proxy against a real moto S3/STS with authentication on. Clients are the
//! real binary (`nixstore-auth proxy lease`, hidden, credentials on stdin, run as root in the
//! Nix under test's userland), curl (libcurl is what Nix uses) and that Nix's own `nix copy`.

use crate::support::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills a process group (a stray proxy) when dropped, also on panic.
struct Killer(u32);

impl Drop for Killer {
    fn drop(&mut self) {
        // SAFETY: signalling a process group we started.
        unsafe {
            libc::kill(-(self.0 as i32), libc::SIGKILL);
        }
    }
}

/// A test user's environment: own HOME, XDG dirs, config.toml with the proxy port.
struct Env {
    home: PathBuf,
    runtime: PathBuf,
    // Short (the control socket's path must fit in sun_path): removed on Drop.
    _runtime: tempfile::TempDir,
    port: u16,
    nix: NixUnderTest,
    bin: PathBuf,
}

impl Env {
    fn new(e2e: &E2e, name: &str, port: u16) -> Env {
        let root = e2e.dir.as_path();
        let home = root.join(name);
        let runtime_dir = tempfile::Builder::new()
            .prefix("nsa-run-")
            .tempdir_in("/tmp")
            .unwrap();
        let runtime = runtime_dir.path().to_path_buf();
        std::fs::create_dir_all(home.join(".config/nixstore-auth")).unwrap();
        std::fs::write(
            home.join(".config/nixstore-auth/config.toml"),
            format!("[proxy]\nport = {port}\n"),
        )
        .unwrap();
        Env {
            home,
            runtime,
            _runtime: runtime_dir,
            port,
            nix: e2e.nix.clone(),
            bin: e2e.bin.clone(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = self.nix.command(&self.bin);
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("NIXSTORE_AUTH_PROXY_IDLE_SECS", "2")
            .env("NO_COLOR", "1");
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.join(".cache/nixstore-auth/proxy.log"))
            .unwrap_or_default()
    }

    fn secret(&self) -> String {
        std::fs::read_to_string(self.home.join(".local/share/nixstore-auth/proxy-secret"))
            .unwrap()
            .trim()
            .to_string()
    }
}

/// A `nixstore-auth proxy lease` process: a client holding a lease until stdin closes.
struct LeaseProc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    base: String,
    pid: u32,
}

impl LeaseProc {
    fn start(env: &Env, creds: &serde_json::Value, mounts: &[(&str, String)]) -> LeaseProc {
        let mut child = env
            .cmd()
            .args(["-v", "proxy", "lease"])
            // A canary: the proxy must not inherit its clients' AWS variables.
            .env("AWS_SECRET_ACCESS_KEY", "env-leak-canary")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mounts: Vec<_> = mounts
            .iter()
            .map(|(n, u)| serde_json::json!({"name": n, "url": u}))
            .collect();
        writeln!(
            stdin,
            "{}",
            serde_json::json!({"creds": creds, "mounts": mounts})
        )
        .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("lease printed {line:?}: {e}"));
        LeaseProc {
            child,
            stdin: Some(stdin),
            stdout,
            base: v["base"].as_str().unwrap().to_string(),
            pid: v["pid"].as_u64().unwrap() as u32,
        }
    }

    fn refresh(&mut self, creds: &serde_json::Value) {
        writeln!(self.stdin.as_mut().unwrap(), "{creds}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(line.contains("refreshed"), "{line}");
    }

    /// Ends the lease the normal way (end of input) and waits for the client.
    fn close(mut self) {
        drop(self.stdin.take());
        let st = self.child.wait().unwrap();
        assert!(st.success(), "lease client failed: {st}");
    }
}

impl Drop for LeaseProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(status, body)` of a request made with curl.
fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "60"])
        .args(args)
        .output()
        .expect("run curl");
    let mut body = out.stdout;
    let pos = body.iter().rposition(|&b| b == b'\n').unwrap();
    let code = String::from_utf8_lossy(&body[pos + 1..])
        .parse()
        .unwrap_or(0);
    body.truncate(pos);
    (code, body)
}

fn get(url: &str) -> (u16, Vec<u8>) {
    curl(&[url])
}

fn alive(pid: u32) -> bool {
    // A zombie (reaped later by its parent or init) no longer runs.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn proxy_signs_streams_and_shares_against_moto(e2e: &E2e) {
    let tmp = e2e.private_dir("proxy");
    let moto = Moto::shared(true);
    let endpoint = moto.url();
    let bucket = format!("bkt-{}", unique_tag());
    let setup = moto.fixture(e2e, "proxy-bed", &[&bucket, &unique_tag()]);
    setup.assert_success("moto setup (it also proves that auth is on)");
    let keys: serde_json::Value = serde_json::from_str(setup.stdout.trim()).unwrap();
    let session = keys["session"].clone();
    assert!(
        session["access_key_id"]
            .as_str()
            .unwrap()
            .starts_with("ASIA")
    );
    assert!(!session["session_token"].as_str().unwrap().is_empty());
    let secrets = [
        keys["user"]["secret_access_key"]
            .as_str()
            .unwrap()
            .to_string(),
        session["secret_access_key"].as_str().unwrap().to_string(),
        session["session_token"].as_str().unwrap().to_string(),
    ];

    let env = Env::new(e2e, "alice", free_port());
    let cache_url = format!("s3://{bucket}/cache?endpoint={endpoint}");
    let a = LeaseProc::start(&env, &session, &[("c", cache_url.clone())]);
    let _proxy_guard = Killer(a.pid); // the proxy is its own session/group leader (setsid)
    let url_secret = env.secret();
    let environ = std::fs::read(format!("/proc/{}/environ", a.pid)).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        !environ.contains("AWS_") && !environ.contains("env-leak-canary"),
        "{environ}"
    );
    let argv = std::fs::read(format!("/proc/{}/cmdline", a.pid)).unwrap();
    assert_eq!(
        argv.split(|&b| b == 0).filter(|s| !s.is_empty()).count(),
        4,
        "exe -v proxy serve"
    );
    assert_eq!(url_secret.len(), 64);
    assert_eq!(
        a.base,
        format!("http://127.0.0.1:{}/{url_secret}", env.port)
    );
    let c = format!("{}/c", a.base);

    // GET, HEAD, 404.
    let (code, body) = get(&format!("{c}/nix-cache-info"));
    assert_eq!((code, &body[..12]), (200, &b"StoreDir: /n"[..]));
    let (code, head) = curl(&["-I", &format!("{c}/abc.narinfo")]);
    assert_eq!(code, 200);
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.contains("content-length: 32"), "{head}");
    assert!(head.contains("content-type: text/x-nix-narinfo"), "{head}");
    assert_eq!(get(&format!("{c}/missing.narinfo")).0, 404);

    // PUT then GET of a multi-MiB object, and the object is where S3 should have it.
    let big: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let file = tmp.join("big.nar.xz");
    std::fs::write(&file, &big).unwrap();
    let (code, _) = curl(&[
        "-T",
        file.to_str().unwrap(),
        "-H",
        "Content-Type: application/x-nix-nar",
        &format!("{c}/nar/big.nar.xz"),
    ]);
    assert_eq!(code, 200, "PUT through the proxy");
    let (code, back) = get(&format!("{c}/nar/big.nar.xz"));
    assert_eq!(code, 200);
    assert_eq!(sha(&back), sha(&big), "round trip");
    let user_auth = format!(
        "{}:{}",
        keys["user"]["access_key_id"].as_str().unwrap(),
        keys["user"]["secret_access_key"].as_str().unwrap()
    );
    let (code, direct) = curl(&[
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "-u",
        &user_auth,
        "-H",
        "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        &format!("{endpoint}/{bucket}/cache/nar/big.nar.xz"),
    ]);
    assert_eq!(
        (code, sha(&direct)),
        (200, sha(&big)),
        "object at BUCKET/PREFIX/KEY"
    );

    // Without the right secret: 401, and the body tells what to do without leaking anything.
    let port = env.port;
    for url in [
        format!(
            "http://127.0.0.1:{port}/{}/c/nix-cache-info",
            "0".repeat(64)
        ),
        format!("http://127.0.0.1:{port}/c/nix-cache-info"),
        format!("http://127.0.0.1:{port}/"),
    ] {
        let (code, body) = get(&url);
        assert_eq!(code, 401, "{url}");
        assert!(!String::from_utf8_lossy(&body).contains(&url_secret));
    }
    // A path that is not a cache file, and an unknown cache name (503, never a remembered miss).
    assert_eq!(get(&format!("{}/c/../secret", a.base)).0, 400);
    assert_eq!(get(&format!("{}/nope/x.narinfo", a.base)).0, 503);

    // 25 requests at once.
    let handles: Vec<_> = (0..25)
        .map(|i| {
            let url = if i % 5 == 0 {
                format!("{c}/nar/big.nar.xz")
            } else {
                format!("{c}/abc.narinfo")
            };
            std::thread::spawn(move || get(&url))
        })
        .collect();
    for h in handles {
        let (code, body) = h.join().unwrap();
        assert_eq!(code, 200);
        assert!(body.len() == 32 || body.len() == big.len());
    }

    // Real Nix as the client: `nix copy --to` PUTs nix-cache-info, the NAR and the narinfo;
    // `nix copy --from` reads them back. Chroot stores in the temp dir leave /nix untouched.
    {
        let src = tmp.join("nix-src");
        let dst = tmp.join("nix-dst");
        std::fs::write(tmp.join("hello.txt"), b"through the proxy\n").unwrap();
        let add = e2e
            .nix
            .command("nix-store")
            .args(["--store", src.to_str().unwrap(), "--add"])
            .arg(tmp.join("hello.txt"))
            .output()
            .unwrap();
        assert!(
            add.status.success(),
            "{}",
            String::from_utf8_lossy(&add.stderr)
        );
        let path = String::from_utf8(add.stdout).unwrap().trim().to_string();
        let nixc = format!("{}/nixc", a.base);
        let nix = |args: &[&str]| {
            let out = e2e
                .nix
                .command("nix")
                .args(["--extra-experimental-features", "nix-command"])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "nix {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // `nixc` is mounted by a lease of its own, as `exec` would do for a second cache.
        let n = LeaseProc::start(
            &env,
            &session,
            &[("nixc", format!("s3://{bucket}/nixc?endpoint={endpoint}"))],
        );
        nix(&[
            "copy",
            "--store",
            src.to_str().unwrap(),
            "--to",
            &nixc,
            &path,
        ]);
        nix(&[
            "copy",
            "--from",
            &nixc,
            "--to",
            dst.to_str().unwrap(),
            "--option",
            "require-sigs",
            "false",
            &path,
        ]);
        let name = path.trim_start_matches("/nix/store/");
        assert_eq!(
            std::fs::read(dst.join("nix/store").join(name)).unwrap(),
            b"through the proxy\n"
        );
        let (code, info) = get(&format!("{nixc}/nix-cache-info"));
        assert_eq!(code, 200, "nix copy uploaded nix-cache-info");
        assert!(String::from_utf8_lossy(&info).contains("StoreDir: /nix/store"));
        n.close();
        // Store paths are read-only: make them removable for the temp dir's cleanup.
        let _ = std::process::Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&src)
            .arg(&dst)
            .status();
    }

    // A second client shares the same proxy.
    let b = LeaseProc::start(&env, &session, &[("c", cache_url.clone())]);
    assert_eq!(b.pid, a.pid, "one proxy per user");
    let st = env.cmd().args(["proxy", "status"]).output().unwrap();
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(st.contains("2 client(s)"), "{st}");
    assert!(!st.contains(&url_secret), "status shows the secret: {st}");

    // Refused credentials (a wrong secret key with a later expiry, so it is taken as fresher):
    // 503, never 401/403/404. Fresh valid credentials on the same lease fix it at once.
    let mut bad = session.clone();
    bad["secret_access_key"] = serde_json::json!("wrong-secret-key-0123456789");
    bad["expiration"] = serde_json::json!(session["expiration"].as_i64().unwrap() + 600);
    let mut d = LeaseProc::start(&env, &bad, &[("c", cache_url.clone())]);
    for key in ["nix-cache-info", "abc.narinfo", "missing.narinfo"] {
        let (code, body) = get(&format!("{c}/{key}"));
        assert_eq!(code, 503, "refused credentials on {key}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("SignatureDoesNotMatch"), "{body}");
        assert!(!body.contains("wrong-secret-key"), "{body}");
    }
    let (code, _) = curl(&["-I", &format!("{c}/abc.narinfo")]);
    assert_eq!(code, 503, "HEAD with refused credentials");
    d.refresh(&session);
    assert_eq!(
        get(&format!("{c}/abc.narinfo")).0,
        200,
        "fresh credentials work at once"
    );

    // An expired session is dropped: 503 until a fresh one arrives.
    let mut short = session.clone();
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let expires = unix_now() + 2;
    short["expiration"] = serde_json::json!(expires);
    let e = LeaseProc::start(&env, &short, &[("short", cache_url.clone())]);
    assert_eq!(get(&format!("{}/short/abc.narinfo", a.base)).0, 200);
    // Its real end (whole seconds: the proxy compares with its clock's seconds too).
    wait_until("the short session to end", Duration::from_secs(10), || {
        unix_now() >= expires
    });
    let (code, body) = get(&format!("{}/short/abc.narinfo", a.base));
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("expired"));

    // Rotating the secret: the old URL gets 401 at once, the new one works.
    let out = env.cmd().args(["proxy", "rotate-secret"]).output().unwrap();
    assert!(out.status.success());
    let new_secret = env.secret();
    assert_ne!(new_secret, url_secret);
    assert_eq!(get(&format!("{c}/abc.narinfo")).0, 401);
    let (code, _) = get(&format!(
        "http://127.0.0.1:{port}/{new_secret}/c/abc.narinfo"
    ));
    assert_eq!(code, 200);

    // Another user's port taken: a clear error naming the config key.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bob = Env::new(e2e, "bob", blocker.local_addr().unwrap().port());
    let mut out = bob
        .cmd()
        .args(["proxy", "lease"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        out.stdin.take().unwrap(),
        "{}",
        serde_json::json!({"creds": session, "mounts": [{"name": "c", "url": cache_url}]})
    )
    .unwrap();
    let mut err = String::new();
    out.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!out.wait().unwrap().success());
    assert!(
        err.contains("[proxy] port") && err.contains("in use"),
        "{err}"
    );

    // Leases end: normally, and by killing a client. Then, after the grace period, no proxy.
    a.close();
    b.close();
    e.close();
    // Longer than the grace period (2 s): a negative claim, so a wait of that length.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        alive(d.pid),
        "the proxy stays while one client remains, past the grace period"
    );
    d.child.kill().unwrap();
    let _ = d.child.wait();
    let pid = d.pid;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the proxy outlived its last client"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!env.runtime.join("nixstore-auth/proxy.sock").exists());
    let st = env.cmd().args(["proxy", "status"]).output().unwrap();
    assert!(String::from_utf8_lossy(&st.stdout).contains("not running"));

    // The log says what happened and holds no secret.
    let log = env.log();
    assert!(log.contains("SignatureDoesNotMatch"), "{log}");
    assert!(log.contains("exiting: "), "{log}");
    for s in secrets.iter().chain([&url_secret, &new_secret]) {
        assert!(!log.contains(s.as_str()), "the log leaks a secret:\n{log}");
    }
    assert!(!log.contains("wrong-secret-key"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(env.home.join(".cache/nixstore-auth/proxy.log"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

crate::proofs!(proxy_signs_streams_and_shares_against_moto);
