//! Where the proxy lives: its port, its URL secret, its private runtime directory, its log.

use anyhow::{Context, Result, bail};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// Everything the proxy and its clients agree on, resolved once.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dirs: Dirs,
    pub port: u16,
    /// Whether `port` came from config.toml (for error messages).
    pub port_from_config: bool,
    pub grace_secs: u64,
    /// Whether NAR downloads may be answered with a redirect to a presigned S3 URL
    /// (`[proxy] redirect-nars`, default true), so that their bytes bypass the proxy.
    pub redirect_nars: bool,
}

impl Layout {
    pub fn load() -> Result<Layout> {
        let dirs = Dirs::new()?;
        let cfg_path = dirs.config_file();
        let cfg = Config::load(&cfg_path)?;
        let (port, port_from_config) = match cfg.get_int(Some("proxy"), "port") {
            Some(p) if (1024..=65535).contains(&p) => (p as u16, true),
            Some(p) => bail!(
                "{PORT_KEY} = {p} in {} is not a usable port: pick one between 1024 and 65535",
                cfg_path.display()
            ),
            None => (default_port(uid()), false),
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
            port_from_config,
            grace_secs,
            redirect_nars,
        })
    }

    pub fn secret_file(&self) -> PathBuf {
        self.dirs.data.join("proxy-secret")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dirs.cache.join("proxy.log")
    }

    /// The private directory holding the control socket (created 0700, ownership checked).
    pub fn runtime_dir(&self) -> Result<PathBuf> {
        // A Unix socket path must fit in sun_path (108 bytes on Linux): a runtime dir too long
        // for `proxy.sock` falls back to the private directory under /tmp.
        let dir = match &self.dirs.runtime {
            Some(d) if d.join("proxy.sock").as_os_str().len() < 100 => d.clone(),
            _ => PathBuf::from(format!("/tmp/nixstore-auth-{}", uid())),
        };
        ensure_private_dir(&dir)?;
        Ok(dir)
    }

    pub fn socket_path(&self) -> Result<PathBuf> {
        Ok(self.runtime_dir()?.join("proxy.sock"))
    }

    /// What to tell the user when the port is taken by another program.
    pub fn port_taken_message(&self) -> String {
        let origin = if self.port_from_config {
            format!("set by {PORT_KEY}")
        } else {
            format!("the default for uid {}", uid())
        };
        format!(
            "port {} on 127.0.0.1 ({origin}) is in use by another program; choose a free one with `{PORT_KEY} = NUMBER` in {} (under a [proxy] table)",
            self.port,
            self.dirs.config_file().display()
        )
    }
}

/// Creates `dir` 0700 if missing; refuses one that is a symlink, belongs to someone else, or is
/// open to others (in /tmp anyone could have made it first).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (a symlink?); remove it so that nixstore-auth can make its private directory there",
            dir.display()
        );
    }
    if meta.uid() != uid() {
        bail!(
            "{} belongs to uid {}, not to you (uid {}); remove it or set XDG_RUNTIME_DIR",
            dir.display(),
            meta.uid(),
            uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (0700)", dir.display()))?;
    }
    Ok(())
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
        bail!(
            "{} does not hold a proxy secret (64 hex digits); run `nixstore-auth proxy rotate-secret` to make a new one",
            path.display()
        );
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
        crate::fs::private_dir(dir, 0o700)?;
    }
    let mut text = Zeroizing::new(s.to_string());
    text.push('\n');
    crate::fs::atomic_write(path, text.as_bytes(), 0o600)
}

/// Opens the proxy's log for appending (0600), starting afresh when it has grown large.
pub fn open_log(path: &Path) -> Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if fs::metadata(path)
        .map(|m| m.len() > 4 << 20)
        .unwrap_or(false)
    {
        let _ = fs::rename(path, path.with_extension("log.1"));
    }
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open the proxy log {}", path.display()))?;
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

/// An exclusive `flock` held until dropped.
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
    // SAFETY: flock on a valid, owned descriptor.
    let rc = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if rc == 0 {
        return Ok(Some(Flock(f)));
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == ErrorKind::WouldBlock {
        Ok(None)
    } else {
        Err(e).with_context(|| format!("cannot lock {}", path.display()))
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
    // SAFETY: flock on a valid, owned descriptor.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(Some(Flock(f)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(format!("{err:#}").contains("rotate-secret"));
    }

    #[test]
    fn private_dir_is_tightened_and_symlinks_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("rt");
        ensure_private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(ensure_private_dir(&link).is_err());
    }
}
