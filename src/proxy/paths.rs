//! Where the proxy lives: its port, its URL secret, its private runtime directory, its log.

use anyhow::{Context, Result, bail};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::config::{Config, Dirs};

/// The config key that sets the port, as the user writes it in config.toml.
pub const PORT_KEY: &str = "[proxy] port";
/// Overrides the idle grace period (seconds) for the proxy; mainly for tests.
pub const GRACE_ENV: &str = "NIXSTORE_AUTH_PROXY_IDLE_SECS";
const DEFAULT_GRACE_SECS: u64 = 30;

pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// The default port: `20000 + uid % 10000`. Below Linux's ephemeral range (32768+), so outgoing
/// connections never hold it, and different users of one machine get different ports.
pub fn default_port(uid: u32) -> u16 {
    20000 + (uid % 10000) as u16
}

/// Where the proxy's port came from: it decides what a taken port means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortOrigin {
    /// `[proxy] port` in config.toml.
    Config,
    /// Chosen when the proxy first started and kept in the state file, so the URL stays stable.
    Remembered,
    /// The default, not yet remembered: nothing has started a proxy or shown its URL.
    Default,
}

/// Everything the proxy and its clients agree on, resolved once.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dirs: Dirs,
    pub port: u16,
    pub port_origin: PortOrigin,
    pub grace_secs: u64,
    /// Whether NAR downloads may be answered with a redirect to a presigned S3 URL
    /// (`[proxy] redirect-nars`, default true), so that their bytes bypass the proxy.
    pub redirect_nars: bool,
}

/// The lowest and highest port the proxy picks by itself: below Linux's ephemeral range.
const PORT_RANGE: std::ops::RangeInclusive<u16> = 20000..=32767;

/// The port to remember when the default is taken the first time: the first free one after
/// it in [`PORT_RANGE`], wrapping around; `None` when every one is taken.
pub fn choose_port(default: u16, free: impl Fn(u16) -> bool) -> Option<u16> {
    let (lo, hi) = (*PORT_RANGE.start(), *PORT_RANGE.end());
    let start = default.clamp(lo, hi);
    (start..=hi).chain(lo..start).find(|&p| free(p))
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl Layout {
    /// Resolves the layout from our directories and config.toml (and `NIXSTORE_AUTH_PROXY_IDLE_SECS`).
    pub fn new(dirs: &Dirs, cfg: &Config) -> Result<Layout> {
        let dirs = dirs.clone();
        let cfg_path = dirs.config_file();
        let port_file = dirs.state.join(PORT_FILE);
        let (port, port_origin) = match cfg.get_int(Some("proxy"), "port") {
            Some(p) if (1024..=65535).contains(&p) => (p as u16, PortOrigin::Config),
            Some(p) => bail!(
                "{PORT_KEY} = {p} in {} is not a usable port: pick one between 1024 and 65535",
                cfg_path.display()
            ),
            None => match read_port_file(&port_file)? {
                Some(p) => (p, PortOrigin::Remembered),
                None => (default_port(uid()), PortOrigin::Default),
            },
        };
        let grace_secs = match std::env::var(GRACE_ENV) {
            Ok(v) => v
                .trim()
                .parse()
                .with_context(|| format!("{GRACE_ENV}={v:?} is not a number of seconds"))?,
            Err(_) => match cfg.get_int(Some("proxy"), "idle-secs") {
                Some(s) if s >= 0 => s as u64,
                Some(s) => bail!(
                    "[proxy] idle-secs = {s} in {} must not be negative",
                    cfg_path.display()
                ),
                None => DEFAULT_GRACE_SECS,
            },
        };
        let redirect_nars = cfg
            .get_bool("proxy", "redirect-nars")
            .with_context(|| format!("in {}", cfg_path.display()))?
            .unwrap_or(true);
        Ok(Layout {
            dirs,
            port,
            port_origin,
            grace_secs,
            redirect_nars,
        })
    }

    /// The file that remembers the port chosen when the proxy first started.
    pub fn port_file(&self) -> PathBuf {
        self.dirs.state.join(PORT_FILE)
    }

    /// Fixes the port for good the first time it matters (a proxy starts, or its URL is shown):
    /// `running` (a proxy that already listens), else the default if free, else the next free
    /// port; remembered in the state file. Later a taken port is an error, never a silent
    /// move: an administrator may have listed the URL.
    pub fn settle_port(&mut self, running: Option<u16>) -> Result<()> {
        if self.port_origin != PortOrigin::Default {
            return Ok(());
        }
        let file = self.port_file();
        crate::fs::private_dir(&self.dirs.state)?;
        let _lock = crate::fs::lock(&file)?;
        // Another command may have settled it while we waited for the lock.
        if let Some(p) = read_port_file(&file)? {
            self.port = p;
            self.port_origin = PortOrigin::Remembered;
            return Ok(());
        }
        let port = match running {
            Some(p) => p,
            None => choose_port(self.port, port_is_free).with_context(|| {
                format!(
                    "no free port for the proxy on 127.0.0.1 between {} and {}; set one with `{PORT_KEY} = NUMBER` in {}",
                    PORT_RANGE.start(),
                    PORT_RANGE.end(),
                    self.dirs.config_file().display()
                )
            })?,
        };
        crate::fs::atomic_write(&file, format!("{port}\n").as_bytes(), 0o600)?;
        self.port = port;
        self.port_origin = PortOrigin::Remembered;
        Ok(())
    }

    /// The port [`Layout::settle_port`] would fix, without fixing it (for `--dry-run`).
    pub fn port_to_settle(&self, running: Option<u16>) -> u16 {
        if self.port_origin != PortOrigin::Default {
            return self.port;
        }
        if let Ok(Some(p)) = read_port_file(&self.port_file()) {
            return p;
        }
        running
            .or_else(|| choose_port(self.port, port_is_free))
            .unwrap_or(self.port)
    }

    pub fn secret_file(&self) -> PathBuf {
        self.dirs.data.join("proxy-secret")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dirs.cache.join("proxy.log")
    }

    /// The private directory holding the control socket (created 0700, ownership checked).
    pub fn runtime_dir(&self) -> Result<PathBuf> {
        let dir = runtime_dir_of(&self.dirs);
        crate::fs::private_dir(&dir)?;
        Ok(dir)
    }

    pub fn socket_path(&self) -> Result<PathBuf> {
        Ok(self.runtime_dir()?.join("proxy.sock"))
    }

    /// What to tell the user when the port is taken by another program.
    pub fn port_taken_message(&self) -> String {
        let cfg = self.dirs.config_file();
        match self.port_origin {
            PortOrigin::Config => format!(
                "port {} on 127.0.0.1 (set by {PORT_KEY} in {}) is in use by another program; nothing was sent to it. Free it, or choose another with `{PORT_KEY} = NUMBER`",
                self.port,
                cfg.display()
            ),
            PortOrigin::Remembered | PortOrigin::Default => format!(
                "port {} on 127.0.0.1, the proxy's port since it first started (remembered in {}), is in use by another program; nothing was sent to it. The port is kept so that the proxy's URL stays the same (an administrator may have listed it): free the port, or move with `{PORT_KEY} = NUMBER` in {} (the URL changes)",
                self.port,
                self.port_file().display(),
                cfg.display()
            ),
        }
    }
}

/// Where the control socket (and the notice for the shell hook) live, without creating it:
/// `$XDG_RUNTIME_DIR/nixstore-auth`, else `/tmp/nixstore-auth-UID`. A Unix socket path must
/// fit in sun_path (108 bytes on Linux): a runtime dir too long for `proxy.sock` falls back
/// to the private directory under /tmp.
pub fn runtime_dir_of(dirs: &Dirs) -> PathBuf {
    match &dirs.runtime {
        Some(d) if d.join("proxy.sock").as_os_str().len() < 100 => d.clone(),
        _ => PathBuf::from(format!("/tmp/nixstore-auth-{}", uid())),
    }
}

/// The state file's name for the remembered port.
const PORT_FILE: &str = "proxy-port";

/// The remembered port, if any; an unusable file is an error naming it.
fn read_port_file(path: &Path) -> Result<Option<u16>> {
    let Some(text) = crate::fs::read_optional(path)? else {
        return Ok(None);
    };
    match text.trim().parse::<u16>() {
        Ok(p) if p >= 1024 => Ok(Some(p)),
        _ => Err(crate::ui::error_with_help(
            format!(
                "{} does not hold a port number (1024 to 65535)",
                path.display()
            ),
            "remove it so that the proxy picks one again",
        )),
    }
}

/// 256 random bits, hex: URL-safe and easy to check.
fn new_secret() -> Zeroizing<String> {
    let bytes: [u8; 32] = rand::random();
    Zeroizing::new(hex::encode(bytes))
}

fn valid_secret(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads the URL secret, creating it (0600) on first use.
pub fn read_or_create_secret(path: &Path) -> Result<Zeroizing<String>> {
    if let Some(s) = read_secret(path)? {
        return Ok(s);
    }
    let _lock = crate::fs::lock(path)?;
    // Another process may have created it while we waited for the lock.
    if let Some(s) = read_secret(path)? {
        return Ok(s);
    }
    let s = new_secret();
    write_secret(path, &s)?;
    Ok(s)
}

/// Reads the URL secret if it exists; `Err` if it exists but is unusable.
pub fn read_secret(path: &Path) -> Result<Option<Zeroizing<String>>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let meta = fs::metadata(path)?;
    if meta.mode() & 0o077 != 0 {
        // Someone widened it: narrow it again rather than refuse to work.
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private (0600)", path.display()))?;
    }
    let s = Zeroizing::new(text.trim().to_string());
    if !valid_secret(&s) {
        return Err(crate::ui::error_with_help(
            format!(
                "{} does not hold a proxy secret (64 hex digits)",
                path.display()
            ),
            "run `nixstore-auth proxy rotate-secret` to make a new one",
        ));
    }
    Ok(Some(s))
}

/// Replaces the URL secret with a new one and returns it.
pub fn rotate_secret(path: &Path) -> Result<Zeroizing<String>> {
    let _lock = crate::fs::lock(path)?;
    let s = new_secret();
    write_secret(path, &s)?;
    Ok(s)
}

fn write_secret(path: &Path, s: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        crate::fs::private_dir(dir)?;
    }
    let mut text = Zeroizing::new(s.to_string());
    text.push('\n');
    crate::fs::atomic_write(path, text.as_bytes(), 0o600)
}

/// Opens the proxy's log for appending (0600, never through a symlink, in a private
/// directory), starting afresh when it has grown large.
pub fn open_log(path: &Path) -> Result<fs::File> {
    if let Some(dir) = path.parent() {
        crate::fs::private_dir(dir)?;
    }
    if fs::symlink_metadata(path)
        .map(|m| m.is_file() && m.len() > super::log::CAP)
        .unwrap_or(false)
    {
        let _ = fs::rename(path, path.with_extension("log.1"));
    }
    let mut f = super::log::open(path)
        .with_context(|| format!("cannot open the proxy log {} (a symlink?)", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.flush()?;
    Ok(f)
}

/// The last lines of the log, to explain why a freshly started proxy died.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// An exclusive lock on a file, held until dropped.
pub struct Flock(#[allow(dead_code)] fs::File);

fn open_lock(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))
}

/// Takes `path`'s lock without waiting; `None` when someone else holds it.
pub fn try_lock(path: &Path) -> Result<Option<Flock>> {
    let f = open_lock(path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(Flock(f))),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The lock that orders "a client attaches" against "the proxy decides to exit": clients hold
/// it (waiting) from connecting until their lease is counted; the proxy takes it (without
/// waiting) before it exits.
pub fn lock_start(rundir: &Path, wait: bool) -> Result<Option<Flock>> {
    let path = rundir.join("start.lock");
    if !wait {
        return try_lock(&path);
    }
    let f = open_lock(&path)?;
    f.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(Some(Flock(f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_default_port_moves_to_the_next_free_one_wrapping_around() {
        let free_above = |n: u16| move |p: u16| p >= n;
        assert_eq!(choose_port(21000, |_| true), Some(21000));
        assert_eq!(choose_port(21000, free_above(21003)), Some(21003));
        assert_eq!(choose_port(32767, |p| p != 32767), Some(20000));
        assert_eq!(choose_port(21000, |p| p == 20500), Some(20500));
        assert_eq!(choose_port(21000, |_| false), None);
    }

    #[test]
    fn the_remembered_port_is_read_back_and_garbage_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proxy-port");
        assert_eq!(read_port_file(&p).unwrap(), None);
        fs::write(&p, "23456\n").unwrap();
        assert_eq!(read_port_file(&p).unwrap(), Some(23456));
        fs::write(&p, "80\n").unwrap();
        assert!(format!("{:#}", read_port_file(&p).unwrap_err()).contains("proxy-port"));
    }

    #[test]
    fn default_port_is_below_the_ephemeral_range_and_per_user() {
        assert_eq!(default_port(0), 20000);
        assert_eq!(default_port(1000), 21000);
        assert_eq!(default_port(12345), 22345);
        assert!(default_port(u32::MAX) < 32768);
    }

    #[test]
    fn secret_is_created_private_once_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data/proxy-secret");
        let a = read_or_create_secret(&p).unwrap();
        assert!(valid_secret(&a));
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(*read_or_create_secret(&p).unwrap(), *a);
        let b = rotate_secret(&p).unwrap();
        assert_ne!(*a, *b);
        assert_eq!(*read_secret(&p).unwrap().unwrap(), *b);
        fs::write(&p, "short\n").unwrap();
        let err = read_secret(&p).unwrap_err();
        assert!(format!("{err:#}").contains("does not hold a proxy secret"));
        assert!(crate::ui::help_of(&err).unwrap().contains("rotate-secret"));
    }
}
