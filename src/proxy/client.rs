//! The proxy's API for commands: start or reuse it, lease it, hand it sessions, ask its state,
//! stop it, rotate its URL secret. Everything crosses the private control socket.

use anyhow::{Context, Result};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

use super::channel::{connect_control, exchange};
use super::control::{Reply as Status, Request, SessionInfo, WireMount};
use super::launch::{activate, spawn};
use super::paths::{self, Layout};
use super::peer;

/// Whether the proxy can tell which local user a connection comes from (Linux). Elsewhere it
/// relies on the URL secret alone.
pub const PEER_CHECK: bool = peer::SUPPORTED;

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
    /// Each mount's URL generation, as the proxy said.
    generations: std::collections::HashMap<String, u32>,
    /// The HTTPS caches this lease had mounted.
    https: Vec<String>,
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
        let generation = self.generations.get(name).copied().unwrap_or(0);
        super::urls::url(self.port, self.secret.as_str(), name, generation)
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
        self.mounts
            .iter()
            .map(|m| m.name.clone())
            .chain(self.https.iter().cloned())
            .collect()
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

/// Tells a running proxy that config.toml changed (`use`, `remove`, `service install`): a
/// background proxy mounts every recorded S3 cache again. `None` when no proxy runs.
pub fn reload(layout: &Layout) -> Result<Option<Status>> {
    let Some(s) = connect_control(&layout.socket_path()?)? else {
        return Ok(None);
    };
    exchange(&s, &Request::Reload).map(Some)
}

/// The URL Nix gets for each of `names` now (the secret, the port, each URL's generation),
/// starting nothing; `fixed`: every generation 0 (URLs an administrator listed).
pub fn current_urls(layout: &Layout, names: &[String], fixed: bool) -> Result<Vec<String>> {
    let mut layout = layout.clone();
    if layout.port_origin == paths::PortOrigin::Default {
        // Written where Nix reads it: fix the port now, not at the first start.
        let running = match connect_control(&layout.socket_path()?)? {
            Some(s) => Some(exchange(&s, &Request::Status)?.port),
            None => None,
        };
        layout.settle_port(running)?;
    }
    let secret = paths::read_or_create_secret(&layout.secret_file())?;
    let generations = super::urls::load(&super::urls::file(&layout.dirs.state))?;
    names
        .iter()
        .map(|n| {
            crate::cache::validate_name(n)?;
            let g = if fixed { 0 } else { generations.of(n) };
            Ok(super::urls::url(layout.port, secret.as_str(), n, g))
        })
        .collect()
}

/// What `proxy start` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// A proxy was started (its pid).
    New(u32),
    /// One ran already (its pid).
    Running(u32),
}

/// `proxy start [--persistent]`: starts the proxy detached, or finds the running one (or the
/// one a service manager starts on the first connection). `persistent`: a background proxy
/// that mounts every recorded cache, renews sessions itself and never exits when idle; a
/// command's proxy that runs is replaced by one (the background proxy mounts every recorded
/// cache itself, so running commands keep their URLs).
pub fn start(layout: &Layout, persistent: bool, ui: &crate::ui::Ui) -> Result<Started> {
    let mut layout = layout.clone();
    let sock = layout.runtime_dir()?.join("proxy.sock");
    let found = match connect_control(&sock)? {
        Some(s) => Some(s),
        None => activate(&layout, &sock)?,
    };
    if let Some(s) = found {
        let reply = exchange(&s, &Request::Status)?;
        if !persistent || reply.background {
            return Ok(Started::Running(reply.pid));
        }
        ui.info(format!(
            "replacing the running proxy (pid {}), a command's, by a background one",
            reply.pid
        ));
        stop(&layout)?;
    }
    let _start = paths::lock_start(&layout.runtime_dir()?, true)?;
    layout.settle_port(None)?;
    let stream = spawn(&layout, &sock, ui, persistent)?;
    let reply = exchange(&stream, &Request::Status)?;
    Ok(Started::New(reply.pid))
}

/// The state of the proxy a service manager starts on the first connection: connects to its
/// port to start it (as the nix-daemon's first request would); starts nothing else. `None`
/// when nothing listens there.
pub fn wake(layout: &Layout) -> Result<Option<Status>> {
    if let Some(st) = status(layout)? {
        return Ok(Some(st));
    }
    let sock = layout.socket_path()?;
    match activate(layout, &sock)? {
        Some(s) => exchange(&s, &Request::Status).map(Some),
        None => Ok(None),
    }
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
    let wire: Vec<WireMount> = mounts
        .iter()
        .map(|m| WireMount::from_s3(&m.name, &m.s3))
        .collect();
    for m in &wire {
        crate::cache::validate_name(&m.name)?;
    }
    let req = || Request::Lease {
        creds: creds.into(),
        mounts: wire.clone(),
        info: info.clone(),
    };
    let (stream, reply, _, secret) = attach(layout, ui, req, wire.len())?;
    let generations = reply
        .mounts
        .iter()
        .map(|m| (m.name.clone(), m.generation))
        .collect();
    Ok(Lease {
        stream,
        port: reply.port,
        pid: reply.pid,
        secret,
        mounts: wire,
        info,
        generations,
        https: Vec::new(),
    })
}

/// Starts or reuses the user's proxy and has it serve the recorded HTTPS caches `names` (on
/// the proxy route): the proxy reads their token from the secret store, or runs their token
/// command, itself. Returns once it serves them.
pub fn ensure_running_https(
    layout: &Layout,
    names: &[String],
    ui: &crate::ui::Ui,
) -> Result<Lease> {
    for n in names {
        crate::cache::validate_name(n)?;
    }
    let env = crate::cloud_cache::EnvSnapshot::gather();
    let req = || Request::LeaseHttps {
        caches: names.to_vec(),
        env: env.clone(),
    };
    let (stream, reply, layout, secret) = attach(layout, ui, req, names.len())?;
    if let Some(e) = &reply.error {
        anyhow::bail!("the proxy cannot serve {}: {e}", names.join(", "));
    }
    let generations = super::urls::load(&super::urls::file(&layout.dirs.state))?;
    Ok(Lease {
        stream,
        port: reply.port,
        pid: reply.pid,
        secret,
        mounts: Vec::new(),
        info: None,
        generations: names
            .iter()
            .map(|n| (n.clone(), generations.of(n)))
            .collect(),
        https: names.to_vec(),
    })
}

/// Connects to the user's proxy (starting or activating it), sends what `req` makes and
/// returns the stream that holds the lease, the proxy's reply, the settled layout and the URL
/// secret.
fn attach<'a>(
    layout: &Layout,
    ui: &crate::ui::Ui,
    req: impl Fn() -> Request<'a>,
    count: usize,
) -> Result<(UnixStream, Status, Layout, Zeroizing<String>)> {
    let mut layout = layout.clone();
    let secret = paths::read_or_create_secret(&layout.secret_file())?;
    let rundir = layout.runtime_dir()?;
    let sock = rundir.join("proxy.sock");
    // Held until the lease is counted, so that the proxy cannot decide to exit in between.
    let _start = paths::lock_start(&rundir, true)?;
    let mut last_err = None;
    for _attempt in 0..2 {
        let stream = match connect_control(&sock)? {
            Some(s) => s,
            None => match activate(&layout, &sock)? {
                Some(s) => s,
                None => {
                    layout.settle_port(None)?;
                    spawn(&layout, &sock, ui, false)?
                }
            },
        };
        match exchange(&stream, &req()) {
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
                    "proxy pid {} on 127.0.0.1:{} serves {count} cache(s)",
                    reply.pid, reply.port,
                ));
                return Ok((stream, reply, layout, secret));
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

/// The URL an administrator lists for `name` (generation 0: it never moves), without
/// starting anything.
pub fn stable_url_for(layout: &Layout, name: &str) -> Result<String> {
    let mut layout = layout.clone();
    // Shown URLs may be listed by an administrator: fix the port now, not at the first start.
    let running = match connect_control(&layout.socket_path()?)? {
        Some(s) => Some(exchange(&s, &Request::Status)?.port),
        None => None,
    };
    layout.settle_port(running)?;
    let mut urls = current_urls(&layout, &[name.to_string()], true)?;
    urls.pop().context("no URL")
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
