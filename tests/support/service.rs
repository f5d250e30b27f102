//! Background servers started by a test: own session, output to a log file, ready check, and
//! stopped (whole process group) on Drop. The one launcher of moto (S3, STS, IAM from the test
//! venv) and of the tests' STS front (tests/support/py/sts_front.py); both run on the host,
//! whichever Nix is under test (the chroot shares the loopback).

use super::{DEFAULT_TIMEOUT, E2e, Output, free_port, kill_group, note, run, tail};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process we started. Its stdout and stderr go to `log`. Drop (or [`Service::stop`])
/// sends SIGTERM to its process group, SIGKILL after 5 s.
pub struct Service {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Service {
    /// Starts `cmd` in a new session (detached from our terminal, leader of a group we signal as
    /// a whole) and waits up to `timeout` for `ready()`. Panics with the log's tail if the
    /// process exits first or never gets ready: a missing prerequisite fails the test.
    pub fn spawn(
        name: &str,
        cmd: Command,
        log: &Path,
        timeout: Duration,
        ready: impl FnMut() -> bool,
    ) -> Service {
        Service::launch(name, cmd, log, timeout, ready, false)
    }

    /// As [`Service::spawn`], for a server the proofs of a run share ([`super::shared`]): it
    /// also dies with the test process.
    pub fn spawn_shared(
        name: &str,
        cmd: Command,
        log: &Path,
        timeout: Duration,
        ready: impl FnMut() -> bool,
    ) -> Service {
        Service::launch(name, cmd, log, timeout, ready, true)
    }

    fn launch(
        name: &str,
        mut cmd: Command,
        log: &Path,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
        shared: bool,
    ) -> Service {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        // SAFETY: setsid is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let spawned = if shared {
            super::shared::spawn_tied_to_process(cmd)
        } else {
            cmd.spawn()
        };
        let child = spawned.unwrap_or_else(|e| {
            panic!("cannot start {name}: {e} (scripts/test.sh installs the test bed)")
        });
        let mut service = Service {
            name: name.to_string(),
            log: log.to_path_buf(),
            child: Some(child),
        };
        let started = Instant::now();
        while !ready() {
            if let Some(status) = service.child.as_mut().unwrap().try_wait().unwrap() {
                service.child = None;
                panic!("{name} exited with {status} at start:\n{}", tail(log, 30));
            }
            assert!(
                started.elapsed() < timeout,
                "{name} was not ready within {timeout:?}:\n{}",
                tail(log, 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }

    /// The pid of the running process (also its process group).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Stops the process group; a no-op when already stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        kill_group(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Children of the server (e.g. nix-daemon's per-connection workers) may linger a moment:
        // the next test must not find them.
        let pgid = child.id();
        kill_group(pgid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes(|stat| stat.pgid == pgid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let log = tail(&self.log, 30);
        if std::thread::panicking() && !log.is_empty() {
            note(&format!(
                "--- {}: last lines of {} ---\n{log}",
                self.name,
                self.log.display()
            ));
        }
        self.stop();
    }
}

/// What [`processes`] knows of a process (from `/proc/PID/stat`).
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    pub pgid: u32,
}

/// Live processes (zombies left out: they are dead) that match `filter`. Reads /proc: procps is
/// not on a bare Debian.
pub fn processes(filter: impl Fn(&ProcStat) -> bool) -> Vec<ProcStat> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if rest.len() < 3 || rest[0] == "Z" || rest[0] == "X" {
            continue;
        }
        let proc_stat = ProcStat {
            pid,
            comm: stat[open + 1..close].to_string(),
            pgid: rest[2].parse().unwrap_or(0),
        };
        if filter(&proc_stat) {
            found.push(proc_stat);
        }
    }
    found
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A program from the test bed's Python venv (`NIXSTORE_AUTH_VENV`, set by scripts/test.sh).
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("NIXSTORE_AUTH_VENV").unwrap_or_else(|| {
        panic!("NIXSTORE_AUTH_VENV is not set: run the tests with scripts/test.sh, which makes the venv")
    });
    let bin = Path::new(&venv).join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test.sh",
        bin.display()
    );
    bin
}

/// A moto server (S3, STS, IAM) on 127.0.0.1, shared by the proofs of a run
/// ([`super::shared::moto`]): one with authentication on (SigV4 checked on every request: see
/// TESTBED.md for what moto checks and what it does not), one with it off. Each proof makes its
/// own IAM user, roles and bucket there (tests/support/py/moto.py, names with a unique tag).
#[derive(Clone)]
pub struct Moto {
    pub port: u16,
    /// Whether moto checks signatures.
    pub auth: bool,
    /// Its log (one line per request), shared by the run's proofs: read it from an offset
    /// taken before the requests of interest, and by the proof's bucket.
    pub log: PathBuf,
    /// Its pid (also its process group).
    pub pid: u32,
    /// The keys of an IAM user allowed everything, which signs the set-up of each proof's
    /// users, roles and buckets once authentication is on.
    admin: Option<(String, String)>,
}

impl Moto {
    /// The run's moto with authentication `auth` (started on first use).
    pub fn shared(auth: bool) -> Moto {
        super::shared::moto(auth)
    }

    /// Starts a moto with its log in `dir`; with `auth`, makes the admin user while requests
    /// are free, then switches authentication on for good (and proves it: moto.py admin).
    pub(super) fn launch(dir: &Path, auth: bool) -> (Moto, Service) {
        let port = free_port();
        let mut cmd = Command::new(venv_bin("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        // Unset, moto never asks for a signature; with a count, the admin's set-up is free
        // and moto.py admin switches authentication on right after.
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "1000");
        } else {
            cmd.env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
        }
        let log = dir.join(format!(
            "moto-{}-{port}.log",
            if auth { "auth" } else { "open" }
        ));
        let service =
            Service::spawn_shared("moto_server", cmd, &log, Duration::from_secs(60), || {
                port_open(port)
            });
        let mut moto = Moto {
            port,
            auth,
            log,
            pid: service.pid().unwrap(),
            admin: None,
        };
        if auth {
            let out = run(
                Command::new(venv_bin("python"))
                    .arg(write_script(dir, "moto.py", include_str!("py/moto.py")))
                    .args(["admin", &moto.url()]),
                None,
                DEFAULT_TIMEOUT,
            );
            out.assert_success("moto admin set-up (it also proves that auth is on)");
            let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            moto.admin = Some((s("access_key_id"), s("secret_access_key")));
        }
        (moto, service)
    }

    /// `http://127.0.0.1:PORT`: the endpoint for `AWS_ENDPOINT_URL*`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs tests/support/py/moto.py `mode` against this moto (as root, with the test venv,
    /// signed by the admin user when authentication is on): makes a proof's IAM users, roles
    /// and buckets (see the script's usage).
    pub fn fixture(&self, _e2e: &E2e, mode: &str, args: &[&str]) -> Output {
        let mut env = Vec::new();
        if let Some((key, secret)) = &self.admin {
            env.push(("E2E_ADMIN_KEY", key.as_str()));
            env.push(("E2E_ADMIN_SECRET", secret.as_str()));
        }
        let url = self.url();
        let mut argv = vec![mode, url.as_str()];
        argv.extend_from_slice(args);
        moto_py(&argv, &env)
    }
}

/// Runs tests/support/py/moto.py with `argv` (`MODE MOTO_URL ARGS...`) and `env` (secrets go
/// there, never in argv) in the run's `moto.py serve`, which keeps boto3 loaded.
pub fn moto_py(argv: &[&str], env: &[(&str, &str)]) -> Output {
    use std::os::unix::process::ExitStatusExt;
    let what = format!("moto.py {}", argv.join(" "));
    let port = super::shared::moto_py_port();
    let body = serde_json::json!({
        "argv": argv,
        "env": env.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
    })
    .to_string();
    let answer = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        s.write_all(
            format!(
                "POST / HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })()
    .unwrap_or_else(|e| panic!("{what}: the shared moto.py did not answer: {e}"));
    let json = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("{what}: odd answer from moto.py serve ({e}): {answer}"));
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    Output {
        status: std::process::ExitStatus::from_raw(
            (v["rc"].as_i64().unwrap_or(1) as i32 & 0xff) << 8,
        ),
        stdout: text("stdout"),
        stderr: text("stderr"),
        what,
    }
}

/// Writes a support script into `dir` (readable by all) and returns its path.
fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// The tests' STS front (tests/support/py/sts_front.py) in front of a [`Moto`]: checks MFA codes
/// as AWS would, counts calls, shortens sessions on request, and serves GetSessionToken.
pub struct StsFront {
    pub port: u16,
    pub service: Service,
}

impl StsFront {
    /// Starts the front for moto at `moto_url`, with the IAM user's key (its secret in the
    /// front's environment, never argv) and the role GetSessionToken sessions are made of.
    pub fn start(
        e2e: &E2e,
        moto_url: &str,
        user_key_id: &str,
        user_secret: &str,
        gst_role: &str,
    ) -> StsFront {
        let port = free_port();
        let mut cmd = Command::new(venv_bin("python"));
        cmd.arg(e2e.script("sts_front.py"))
            .arg(port.to_string())
            .arg(moto_url)
            .arg(user_key_id)
            .arg(gst_role)
            .env("FRONT_USER_SECRET", user_secret);
        let log = e2e.dir.join(format!("sts-front-{port}.log"));
        let service = Service::spawn("the STS front", cmd, &log, Duration::from_secs(30), || {
            port_open(port)
        });
        StsFront { port, service }
    }

    /// `http://127.0.0.1:PORT`: the endpoint for `AWS_ENDPOINT_URL_STS`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn request(&self, req: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    }

    /// How many times the front saw `action` (refused calls included).
    pub fn calls(&self, action: &str) -> u64 {
        let body = self.request("GET /_calls HTTP/1.0\r\n\r\n");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v[action].as_u64().unwrap_or(0)
    }

    /// Makes the front report sessions that expire `secs` from now (0: moto's own expiry).
    pub fn set_expiry(&self, secs: u64) {
        self.configure(serde_json::json!({ "expiry": secs }));
    }

    /// Merges `config` into the front's settings (see sts_front.py: `expiry_by_action`,
    /// `mfa_roles`, `web_tokens`, `sso_tokens`).
    pub fn configure(&self, config: serde_json::Value) {
        self.post("/_config", &config.to_string());
    }

    fn post(&self, path: &str, body: &str) -> String {
        self.request(&format!(
            "POST {path} HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    /// Every call the front saw, in order: `{"action", "key", "code", "token", "role"}`.
    pub fn log(&self) -> Vec<serde_json::Value> {
        let body = self.request("GET /_log HTTP/1.0\r\n\r\n");
        serde_json::from_str(&body).unwrap()
    }

    /// The calls of `action` in the log.
    pub fn logged(&self, action: &str) -> Vec<serde_json::Value> {
        self.log()
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect()
    }

    /// A working session (moto keys of the front's role) ending in `secs`, as credential_process
    /// JSON: `AccessKeyId`, `SecretAccessKey`, `SessionToken`, `Expiration`.
    pub fn mint(&self, secs: u64) -> serde_json::Value {
        let body = self.post("/_mint", &serde_json::json!({ "expiry": secs }).to_string());
        serde_json::from_str(&body).unwrap()
    }
}
