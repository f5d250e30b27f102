//! Starting the proxy: a detached `proxy serve` with a short environment, or, where a service
//! manager holds the port for it, a connection that makes the manager start it.

use anyhow::{Context, Result, bail};
use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::channel::connect_control;
use super::paths::{self, GRACE_ENV, Layout};

/// A proxy a service manager starts on the first connection (its socket unit holds the
/// port): connect once to start it, and wait for its control socket. `None` when nothing
/// listens on the port; an error when something else holds it.
///
/// Only a socket that can be the service manager's is ever connected to: the service is
/// installed with a socket-activated route, and (Linux) the listening socket is this user's.
/// Anything else on the port is another program's, and gets no connection at all.
pub(super) fn activate(layout: &Layout, sock: &Path) -> Result<Option<UnixStream>> {
    let activated = crate::service::marker::load(&layout.dirs)
        .ok()
        .flatten()
        .is_some_and(|m| m.route.socket_activated());
    if !activated || layout.port_origin == paths::PortOrigin::Default {
        return Ok(None);
    }
    if cfg!(target_os = "linux") && listener_uid(layout.port) != Some(paths::uid()) {
        return Ok(None);
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], layout.port));
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        return Ok(None);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(s) = connect_control(sock)? {
            return Ok(Some(s));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{}", layout.port_taken_message())
}

/// The uid owning the socket that listens on 127.0.0.1:`port` (`/proc/net/tcp`), if any.
fn listener_uid(port: u16) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    listening_owner(&table, port)
}

/// In a `/proc/net/tcp` table: the uid of the LISTEN (state 0A) socket on 127.0.0.1:`port`.
fn listening_owner(table: &str, port: u16) -> Option<u32> {
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
            .then(|| f.get(7)?.parse().ok())
            .flatten()
    })
}

/// Environment the detached proxy keeps; everything else is dropped, AWS credentials and the
/// profile choice of the caller's shell above all. A background proxy resolves sessions
/// itself, so it keeps what finding them needs and is no secret: the home and XDG
/// directories (AWS config files, our config, the session cache), the session bus (the
/// keyring), and AWS settings that name files, regions and endpoints. `serve` drops the
/// credential variables again, whoever started it (`CREDENTIAL_VARS`).
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
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "NIX_USER_CONF_FILES",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
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
pub(super) fn spawn(
    layout: &Layout,
    sock: &Path,
    ui: &crate::ui::Ui,
    persistent: bool,
) -> Result<UnixStream> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    wait_for_port(layout)?;
    let log_path = layout.log_file();
    let log = paths::open_log(&log_path)?;
    let exe = std::env::current_exe().context("cannot find the nixstore-auth executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["proxy", "serve"]);
    if persistent {
        cmd.arg("--persistent");
    }
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
    // A background proxy resolves every recorded cache's session before it serves.
    let deadline = Instant::now() + Duration::from_secs(if persistent { 60 } else { 10 });
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
                "the proxy did not come up within {} s; see {}",
                if persistent { 60 } else { 10 },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_socket_owner_is_read_from_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:5208 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 1 1\n\
   1: 0100007F:5208 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
   2: 00000000:5209 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1002        0 3 1\n";
        assert_eq!(listening_owner(table, 0x5208), Some(1001));
        // Listening on 0.0.0.0, not 127.0.0.1; and nothing at all.
        assert_eq!(listening_owner(table, 0x5209), None);
        assert_eq!(listening_owner(table, 0x520a), None);
        // A real one: this process's own listener.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listener_uid(port), Some(paths::uid()));
    }
}
