//! The loopback signing proxy: makes private S3 caches look like Nix HTTP binary caches.
//!
//! One process per user serves every mounted S3 cache at a stable URL
//! `http://127.0.0.1:PORT/SECRET/NAME`, signing each request with SigV4 and streaming bodies
//! both ways. Nix (client or daemon) sees an ordinary HTTP cache; the daemon never needs the
//! user's AWS credentials.
//!
//! # API (for `exec`, `push`, `doctor`)
//! ```ignore
//! // Starts or reuses the proxy, hands it the session (kept only if fresher than the one it
//! // has) and the mounts; returns once the proxy serves them. Keep the lease while Nix runs.
//! let lease = proxy::ensure_running(&creds, &[Mount { name, s3 }], ui)?;
//! let url = lease.url_for("my-cache");      // http://127.0.0.1:PORT/SECRET/my-cache
//! lease.refresh_with(&newer, info)?;          // a newer session (refresh.rs does it mid-run)
//! proxy::renew(&layout, &creds, info, &["my-cache".into()])?;  // `login`: no lease needed
//! drop(lease);                               // the proxy exits after the grace period
//! let url = proxy::stable_url_for("my-cache")?;  // same URL, starts nothing (`use --mode print`)
//! let st = proxy::status()?;                 // Some(reply) when a proxy runs (for `doctor`)
//! ```
//!
//! # Behaviour
//! - PORT: `[proxy] port` in config.toml, else `20000 + uid % 10000` (below the ephemeral range,
//!   distinct per user). A port held by another program is an error naming that key.
//! - SECRET: 256 random bits (hex) in `$XDG_DATA_HOME/nixstore-auth/proxy-secret` (0600),
//!   made on first use; `proxy rotate-secret` replaces it and the running proxy reloads it.
//!   A request without it gets 401.
//! - Status codes: S3's 404 → 404. Refused or expired credentials → 503; upstream errors,
//!   timeouts, connection failures → 502 (503 for S3's SlowDown); an unknown cache name → 503.
//!   Never 401/403/404 for those: Nix remembers those as misses for an hour.
//! - Addressing: path-style on custom endpoints; virtual-hosted on AWS (path-style for bucket
//!   names with dots). Region from the cache, else us-east-1.
//! - Lifecycle: the first client spawns `nixstore-auth proxy serve` (setsid, stdin/stdout
//!   null, log in `$XDG_CACHE_HOME/nixstore-auth/proxy.log`, 0600, environment cleared to a
//!   short allow-list so no AWS variable reaches it). Clients talk to it over a Unix socket in
//!   a 0700 directory (`$XDG_RUNTIME_DIR/nixstore-auth`, else `/tmp/nixstore-auth-UID`); an
//!   open connection there is a lease. The proxy exits when no lease and no request remain for
//!   the grace period (`[proxy] idle-secs`, env `NIXSTORE_AUTH_PROXY_IDLE_SECS`, default 30),
//!   and at once when idle with every session expired. Expired sessions are dropped: requests
//!   then get 503 until a client brings a fresh one.

mod clients;
mod control;
pub mod https;
pub mod https_rules;
mod listen;
mod log;
mod multipart;
mod paths;
mod peer;
mod probe;
mod respond;
mod route;
mod server;
mod sign;
mod state;
mod upstream;

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub use control::{MountStatus, Reply as Status, SessionInfo};
pub use paths::{GRACE_ENV, default_port};
/// Whether the proxy can tell which local user a connection comes from (Linux). Elsewhere it
/// relies on the URL secret alone.
pub const PEER_CHECK: bool = peer::SUPPORTED;
pub use probe::{Probe, probe};

use control::{Request, WireMount};
pub use paths::Layout;

/// An S3 cache to serve under `NAME`.
#[derive(Debug, Clone)]
pub struct Mount {
    pub name: String,
    pub s3: crate::cache::S3Ref,
}

/// A client's hold on the proxy: while it lives the proxy keeps running. Dropping it (or the
/// process dying) releases it.
pub struct Lease {
    stream: UnixStream,
    port: u16,
    pid: u32,
    secret: Zeroizing<String>,
    mounts: Vec<WireMount>,
    info: Option<SessionInfo>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("port", &self.port)
            .field("pid", &self.pid)
            .field("mounts", &self.mounts)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The cache's URL for Nix: `http://127.0.0.1:PORT/SECRET/NAME`. It holds the secret: hand
    /// it to Nix through `NIX_CONFIG` only, never argv or a world-readable file.
    pub fn url_for(&self, name: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}/{name}",
            self.port,
            self.secret.as_str()
        )
    }

    /// The proxy's process id.
    pub fn proxy_pid(&self) -> u32 {
        self.pid
    }

    /// Hands the proxy a newer session for this lease's caches.
    pub fn refresh(&mut self, creds: &crate::aws::Credentials) -> Result<()> {
        let info = self.info.clone();
        self.refresh_with(creds, info)
    }

    /// The same, saying where the new session came from and how it renews.
    pub fn refresh_with(
        &mut self,
        creds: &crate::aws::Credentials,
        info: Option<SessionInfo>,
    ) -> Result<()> {
        self.info = info;
        let req = Request::Lease {
            creds: creds.into(),
            mounts: self.mounts.clone(),
            info: self.info.clone(),
        };
        exchange(&self.stream, &req).map(drop)
    }

    /// The names of the caches this lease mounts.
    pub fn cache_names(&self) -> Vec<String> {
        self.mounts.iter().map(|m| m.name.clone()).collect()
    }
}

/// Hands a running proxy a newer session (from `login`): the caches named, and every cache
/// whose session is of `info.profile`, take it where it is fresher. `None` when no proxy runs;
/// else how many caches took it.
pub fn renew(
    layout: &Layout,
    creds: &crate::aws::Credentials,
    info: SessionInfo,
    caches: &[String],
) -> Result<Option<usize>> {
    let sock = layout.socket_path()?;
    let Some(s) = connect_control(&sock)? else {
        return Ok(None);
    };
    let req = Request::Renew {
        creds: creds.into(),
        info,
        caches: caches.to_vec(),
    };
    exchange(&s, &req).map(|r| Some(r.renewed))
}

/// Starts or reuses the user's proxy, hands it `creds` (kept if fresher than what it has) and
/// the mounts, and returns once the proxy serves them.
pub fn ensure_running(
    layout: &Layout,
    creds: &crate::aws::Credentials,
    mounts: &[Mount],
    ui: &crate::ui::Ui,
) -> Result<Lease> {
    ensure_running_for(layout, creds, None, mounts, ui)
}

/// [`ensure_running`], saying where the session came from and how it renews (shown by `proxy
/// status`).
pub fn ensure_running_for(
    layout: &Layout,
    creds: &crate::aws::Credentials,
    info: Option<SessionInfo>,
    mounts: &[Mount],
    ui: &crate::ui::Ui,
) -> Result<Lease> {
    let mut layout = layout.clone();
    let secret = paths::read_or_create_secret(&layout.secret_file())?;
    let rundir = layout.runtime_dir()?;
    let sock = rundir.join("proxy.sock");
    let wire: Vec<WireMount> = mounts.iter().map(WireMount::from_mount).collect();
    for m in &wire {
        crate::cache::validate_name(&m.name)?;
    }
    // Held until the lease is counted, so that the proxy cannot decide to exit in between.
    let _start = paths::lock_start(&rundir, true)?;
    let mut last_err = None;
    for _attempt in 0..2 {
        let stream = match connect_control(&sock)? {
            Some(s) => s,
            None => {
                layout.settle_port(None)?;
                spawn(&layout, &sock, ui)?
            }
        };
        let req = Request::Lease {
            creds: creds.into(),
            mounts: wire.clone(),
            info: info.clone(),
        };
        match exchange(&stream, &req) {
            Ok(reply) => {
                // A proxy started before ports were remembered: its port is the stable one.
                layout.settle_port(Some(reply.port))?;
                if reply.port != layout.port {
                    ui.warn(format!(
                        "the running proxy listens on port {} but the configuration says {}; `nixstore-auth proxy stop` makes the next run use the new port",
                        reply.port, layout.port
                    ));
                }
                ui.debug(format!(
                    "proxy pid {} on 127.0.0.1:{} serves {} cache(s)",
                    reply.pid,
                    reply.port,
                    wire.len()
                ));
                return Ok(Lease {
                    stream,
                    port: reply.port,
                    pid: reply.pid,
                    secret,
                    mounts: wire,
                    info,
                });
            }
            // A proxy that was just exiting: start a new one.
            Err(e) => last_err = Some(e),
        }
    }
    // Invariant: the loop above returns on success, so both attempts set `last_err`.
    Err(last_err.expect("two attempts failed")).context("cannot reach the nixstore-auth proxy")
}

/// Who the proxy serves, in a sentence for `proxy status` and `doctor`.
pub fn access_summary() -> String {
    if PEER_CHECK {
        format!(
            "only uid {} and root (the nix-daemon) can connect, only uid {} can upload; other local users are refused at connect, even with the URL",
            paths::uid(),
            paths::uid()
        )
    } else {
        "this platform cannot tell which local user a connection comes from: the proxy relies on the URL secret alone".into()
    }
}

/// The URL `ensure_running` would give for `name`, without starting anything.
pub fn stable_url_for(layout: &Layout, name: &str) -> Result<String> {
    crate::cache::validate_name(name)?;
    let mut layout = layout.clone();
    // Shown URLs may be listed by an administrator: fix the port now, not at the first start.
    let running = match connect_control(&layout.socket_path()?)? {
        Some(s) => Some(exchange(&s, &Request::Status)?.port),
        None => None,
    };
    layout.settle_port(running)?;
    let secret = paths::read_or_create_secret(&layout.secret_file())?;
    Ok(format!(
        "http://127.0.0.1:{}/{}/{name}",
        layout.port,
        secret.as_str()
    ))
}

/// The running proxy's state, or `None` when none runs.
pub fn status(layout: &Layout) -> Result<Option<Status>> {
    let sock = layout.socket_path()?;
    match connect_control(&sock)? {
        Some(s) => exchange(&s, &Request::Status).map(Some),
        None => Ok(None),
    }
}

/// Stops the running proxy; `false` when none ran.
pub fn stop(layout: &Layout) -> Result<bool> {
    let sock = layout.socket_path()?;
    let Some(s) = connect_control(&sock)? else {
        return Ok(false);
    };
    exchange(&s, &Request::Stop)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// Makes a new URL secret; a running proxy switches to it at once. Returns the secret file
/// and whether a running proxy took it.
pub fn rotate_secret(layout: &Layout) -> Result<(PathBuf, bool)> {
    let file = layout.secret_file();
    paths::rotate_secret(&file)?;
    let sock = layout.socket_path()?;
    let told = match connect_control(&sock)? {
        Some(s) => {
            exchange(&s, &Request::ReloadSecret)?;
            true
        }
        None => false,
    };
    Ok((file, told))
}

/// Facts for `proxy status` when nothing runs: the port and where files are.
pub fn describe(layout: &Layout) -> Result<(u16, PathBuf, PathBuf)> {
    Ok((layout.port, layout.secret_file(), layout.log_file()))
}

/// The body of the hidden `proxy serve`: runs the proxy in the foreground until it is idle.
pub fn serve(layout: Layout, ui: &crate::ui::Ui) -> Result<()> {
    let rundir = layout.runtime_dir()?;
    // One proxy per user. A previous one may still be finishing its exit: wait a little.
    let deadline = Instant::now() + Duration::from_secs(5);
    let _instance = loop {
        if let Some(l) = paths::try_lock(&rundir.join("serve.lock"))? {
            break l;
        }
        if Instant::now() > deadline {
            log::log("another proxy already runs for this user; leaving");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    log::cap_at(&layout.log_file());
    listen::raise_file_limit();
    let secret = paths::read_or_create_secret(&layout.secret_file())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(server::run(layout, secret, ui.verbose > 0));
    if let Err(e) = &result {
        log::log(format!("error: {e:#}"));
    }
    result
}

/// Connects to the proxy's control socket; `None` when nothing listens there. A socket served
/// by another user is an error, before anything (credentials above all) is sent to it.
fn connect_control(sock: &Path) -> Result<Option<UnixStream>> {
    let stream = match UnixStream::connect(sock) {
        Ok(s) => s,
        // No socket, or a stale one that nothing listens on: no proxy runs.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot connect to the proxy's socket {}; nothing was sent to it",
                    sock.display()
                )
            });
        }
    };
    let owner = socket_peer_uid(&stream)
        .with_context(|| format!("cannot tell who serves {}", sock.display()))?;
    if owner != paths::uid() {
        bail!(
            "{} is served by uid {owner}, not by you (uid {}); nothing was sent to it. Remove it (and find out how another user got a socket into your runtime directory)",
            sock.display(),
            paths::uid()
        );
    }
    Ok(Some(stream))
}

/// The uid of the process that listens on the other end of `s`.
fn socket_peer_uid(s: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    #[cfg(target_os = "linux")]
    {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: SO_PEERCRED fills a ucred we own, of the length we pass.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(cred.uid)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: getpeereid writes two ids we own.
        if unsafe { libc::getpeereid(s.as_raw_fd(), &mut uid, &mut gid) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(uid)
    }
}

/// Sends one request line and reads the reply line.
fn exchange(stream: &UnixStream, req: &Request) -> Result<Status> {
    let mut line = Zeroizing::new(serde_json::to_vec(req).context("encoding a control request")?);
    line.push(b'\n');
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    (&*stream)
        .write_all(&line)
        .context("the proxy closed its control socket")?;
    let mut reply = String::new();
    // One reply per request and nothing unasked, so a fresh reader loses nothing.
    BufReader::new(stream)
        .read_line(&mut reply)
        .context("no answer from the proxy")?;
    if reply.is_empty() {
        bail!("the proxy closed the connection without answering (it may be exiting)");
    }
    let reply: Status = serde_json::from_str(&reply).context("malformed answer from the proxy")?;
    match (&reply.error, reply.ok) {
        (Some(e), _) => bail!("the proxy refused: {e}"),
        (None, false) => bail!("the proxy refused the request"),
        _ => Ok(reply),
    }
}

/// Environment the detached proxy keeps; everything else (AWS_* above all) is dropped.
const ENV_KEEP: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_RUNTIME_DIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    GRACE_ENV,
];

/// Starts `nixstore-auth proxy serve` detached and returns a connection to its control socket.
fn spawn(layout: &Layout, sock: &Path, ui: &crate::ui::Ui) -> Result<UnixStream> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    wait_for_port(layout)?;
    let log_path = layout.log_file();
    let log = paths::open_log(&log_path)?;
    let exe = std::env::current_exe().context("cannot find the nixstore-auth executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["proxy", "serve"]);
    if ui.verbose > 0 {
        cmd.arg("--verbose");
    }
    cmd.env_clear();
    for k in ENV_KEEP {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the proxy from our terminal and process
    // group, so Ctrl-C aimed at `exec` and its command does not reach it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the proxy")?;
    ui.debug(format!(
        "started the proxy (pid {}), log in {}",
        child.id(),
        log_path.display()
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        if let Some(s) = connect_control(sock)? {
            break s;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the proxy exited at start ({status}):\n{}\n(full log: {})",
                paths::log_tail(&log_path, 5),
                log_path.display()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the proxy did not come up within 10 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Reap it whenever it exits, so it never lingers as a zombie of a long-running `exec`.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(stream)
}

/// Fails with a message naming the config key when another program holds the port. A proxy
/// that is just exiting may hold it for a moment, hence the short wait.
fn wait_for_port(layout: &Layout) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", layout.port)) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == ErrorKind::AddrInUse => bail!("{}", layout.port_taken_message()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot listen on 127.0.0.1:{}", layout.port));
            }
        }
    }
}
