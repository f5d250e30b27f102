//! The client end of the proxy's private control channel: connect (refusing a socket another
//! user serves, before anything is sent) and exchange one request line for one reply line.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

use super::control::{Reply as Status, Request};
use super::paths;

/// Connects to the proxy's control socket; `None` when nothing listens there. A socket served
/// by another user is an error, before anything (credentials above all) is sent to it.
pub(super) fn connect_control(sock: &Path) -> Result<Option<UnixStream>> {
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
pub(super) fn exchange(stream: &UnixStream, req: &Request) -> Result<Status> {
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
