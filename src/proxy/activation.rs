//! What a service manager hands the proxy and expects back, without libsystemd: the listening
//! socket (systemd's `LISTEN_FDS`/`LISTEN_PID`, fd 3; launchd's `launch_activate_socket`) and
//! readiness and status lines (`READY=1`, `STATUS=...`, `STOPPING=1`) on `NOTIFY_SOCKET`, a
//! Unix datagram socket (a path, or `@name` in the abstract namespace).

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// The first socket systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;

/// How many sockets were passed to process `pid`: `LISTEN_FDS` when `LISTEN_PID` names it
/// (a socket meant for a parent is not ours), else 0.
pub fn passed_count(pid: u32, env: &dyn Fn(&str) -> Option<String>) -> usize {
    let for_us = env("LISTEN_PID")
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == pid);
    if !for_us {
        return 0;
    }
    env("LISTEN_FDS")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0)
}

/// The listening TCP socket handed over by the service manager, if any: systemd's fd 3, or
/// launchd's socket named `Listeners` (macOS). It must be a listening socket on 127.0.0.1.
pub fn take_listener() -> Result<Option<std::net::TcpListener>> {
    #[cfg(target_os = "macos")]
    if let Some(l) = launchd::listener()? {
        return Ok(Some(l));
    }
    let env = |k: &str| std::env::var(k).ok();
    let n = passed_count(std::process::id(), &env);
    // SAFETY: called at the start of `proxy serve`, before any other thread exists; the
    // variables are meant for this process only and must not reach anything it starts.
    unsafe {
        for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(k);
        }
    }
    if n == 0 {
        return Ok(None);
    }
    if n > 1 {
        bail!(
            "the service manager passed {n} sockets; the proxy takes one (ListenStream=127.0.0.1:PORT)"
        );
    }
    from_fd(FIRST_FD).map(Some)
}

/// Takes `fd` as a listening TCP socket on 127.0.0.1, close-on-exec and non-blocking.
fn from_fd(fd: i32) -> Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl on a descriptor number; it fails harmlessly when nothing is open there.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        bail!("the service manager said it passed fd {fd}, but nothing is open there");
    }
    // SAFETY: as above; the socket must not leak into processes we start.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    // SAFETY: the service manager handed this descriptor to us alone; we own it from here on.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    let addr = listener
        .local_addr()
        .context("the socket passed by the service manager is not a TCP socket")?;
    if addr.ip() != std::net::IpAddr::from([127, 0, 0, 1]) {
        bail!(
            "the service manager passed a socket on {addr}; the proxy listens on 127.0.0.1 only (ListenStream=127.0.0.1:PORT)"
        );
    }
    listener
        .set_nonblocking(true)
        .context("cannot make the passed socket non-blocking")?;
    Ok(listener)
}

/// Where readiness and status go: `NOTIFY_SOCKET`, read once (and removed from the
/// environment, so nothing the proxy runs can talk to the service manager in its name).
pub struct Notifier {
    target: Option<PathBuf>,
    last_status: std::sync::Mutex<String>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from);
        // SAFETY: as in `take_listener`, at the start of `proxy serve`, single-threaded.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        Notifier {
            target,
            last_status: Default::default(),
        }
    }

    /// Whether a service manager listens.
    pub fn active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (e.g. `READY=1\nSTATUS=...`); false when nobody listens or it failed.
    pub fn send(&self, state: &str) -> bool {
        match &self.target {
            Some(t) => send_to(t, state).is_ok(),
            None => false,
        }
    }

    /// Sends `STATUS=line` when it differs from the last one sent.
    pub fn status(&self, line: &str) {
        let mut last = self.last_status.lock().unwrap_or_else(|e| e.into_inner());
        if *last != line {
            *last = line.to_string();
            self.send(&format!("STATUS={}", line.replace('\n', " ")));
        }
    }
}

/// One datagram to the notification socket at `target` (`@name`: Linux's abstract namespace).
pub fn send_to(target: &std::path::Path, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    let bytes = target.as_os_str().as_bytes();
    match bytes.first() {
        #[cfg(target_os = "linux")]
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        _ => {
            sock.send_to(state.as_bytes(), target)?;
        }
    }
    Ok(())
}

/// launchd's socket activation: the `Sockets` entry named `Listeners` of the LaunchAgent
/// (`service/units.rs` writes it). Untested: no Mac or Darwin target is available here.
#[cfg(target_os = "macos")]
mod launchd {
    use anyhow::{Result, bail};

    unsafe extern "C" {
        fn launch_activate_socket(
            name: *const libc::c_char,
            fds: *mut *mut libc::c_int,
            cnt: *mut libc::size_t,
        ) -> libc::c_int;
    }

    /// The socket launchd holds for us, or `None` when not started by launchd (ESRCH) or the
    /// agent has no such socket (ENOENT).
    pub fn listener() -> Result<Option<std::net::TcpListener>> {
        let mut fds: *mut libc::c_int = std::ptr::null_mut();
        let mut cnt: libc::size_t = 0;
        // SAFETY: launchd fills a malloc'd array we free below.
        let rc = unsafe { launch_activate_socket(c"Listeners".as_ptr(), &mut fds, &mut cnt) };
        if rc == libc::ESRCH || rc == libc::ENOENT {
            return Ok(None);
        }
        if rc != 0 {
            bail!(
                "launch_activate_socket failed: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        // SAFETY: `cnt` descriptors were written to `fds`.
        let all: Vec<i32> = unsafe { std::slice::from_raw_parts(fds, cnt).to_vec() };
        // SAFETY: the array was allocated by launchd with malloc.
        unsafe { libc::free(fds.cast()) };
        match all.as_slice() {
            [fd] => super::from_fd(*fd).map(Some),
            _ => bail!("launchd passed {} sockets; the proxy takes one", all.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_sockets_count_only_for_this_pid() {
        let env_of = |pid: Option<&'static str>, fds: Option<&'static str>| {
            move |k: &str| match k {
                "LISTEN_PID" => pid.map(String::from),
                "LISTEN_FDS" => fds.map(String::from),
                _ => None,
            }
        };
        // (LISTEN_PID, LISTEN_FDS) for pid 42 -> count
        let rows = [
            (Some("42"), Some("1"), 1),
            (Some("42"), Some("2"), 2),
            (Some("41"), Some("1"), 0),
            (None, Some("1"), 0),
            (Some("42"), None, 0),
            (Some("42"), Some("x"), 0),
            (Some("x"), Some("1"), 0),
        ];
        for (i, (pid, fds, want)) in rows.into_iter().enumerate() {
            assert_eq!(passed_count(42, &env_of(pid, fds)), want, "row {i}");
        }
    }

    #[test]
    fn a_listener_passed_as_a_descriptor_is_taken_and_checked() {
        use std::os::fd::IntoRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let fd = l.into_raw_fd();
        let back = from_fd(fd).unwrap();
        assert_eq!(back.local_addr().unwrap().port(), port);
        assert!(from_fd(9999).is_err());
    }

    #[test]
    fn notifications_reach_a_datagram_socket_by_path_and_abstract_name() {
        use std::os::unix::net::UnixDatagram;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send_to(&path, "READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 128];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("nixstore-auth-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let rx = UnixDatagram::bind_addr(&addr).unwrap();
            send_to(std::path::Path::new(&format!("@{name}")), "STOPPING=1").unwrap();
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"STOPPING=1");
        }
        // Status lines are sent once per change.
        let path2 = dir.path().join("notify2");
        let rx = UnixDatagram::bind(&path2).unwrap();
        rx.set_nonblocking(true).unwrap();
        let n = Notifier {
            target: Some(path2),
            last_status: Default::default(),
        };
        for line in ["a", "a", "b"] {
            n.status(line);
        }
        let mut got = Vec::new();
        while let Ok(k) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..k]).into_owned());
        }
        assert_eq!(got, ["STATUS=a", "STATUS=b"]);
    }
}
