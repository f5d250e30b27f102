//! The proxy's TCP front door: who gets in, and how much any one client can hold.
//!
//! Every accepted connection's owner is looked up before a byte is read; other local users
//! are closed at once (with a reset, so they hold nothing, not even a TIME_WAIT entry here).
//! The allowed ones (the proxy's user and root, the nix-daemon) are bounded too: a request
//! head must arrive within [`HEAD_TIMEOUT`] (also between requests on a kept-alive
//! connection), and at most [`MAX_CONNECTIONS`] are open at once.

use anyhow::{Context, Result};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use super::log::Refusals;
use super::paths::{self, Layout};
use super::peer;
use super::respond::Body;
use super::state::{InFlight, State};

/// Open connections served at once: well above Nix's `http-connections` (25) times several
/// concurrent commands, far below the file limit.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a connection may take to send a request head, counted from when it opens or from
/// the end of its previous response: slow or idle clients are closed.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(15);

static FOREIGN: Refusals = Refusals::new();
static FULL: Refusals = Refusals::new();

pub fn bind(layout: &Layout) -> Result<TcpListener> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    // A previous proxy's connections in TIME_WAIT must not keep the port from us.
    sock.set_reuseaddr(true)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], layout.port));
    match sock.bind(addr) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            anyhow::bail!("{}", layout.port_taken_message())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot listen on 127.0.0.1:{}", layout.port));
        }
    }
    sock.listen(1024).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("{}", layout.port_taken_message())
        } else {
            anyhow::Error::new(e)
        }
    })
}

/// Raises the soft limit on open files to the hard one: connections are bounded by
/// [`MAX_CONNECTIONS`], not by a soft limit of 1024.
pub fn raise_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Accepts connections until the process ends.
pub async fn serve(state: Arc<State>, listener: TcpListener) {
    let me = paths::uid();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((tcp, client)) = listener.accept().await else {
            // Out of descriptors or a transient error: let the others finish first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let owner = match tcp.local_addr() {
            Ok(server) => peer::owner(client, server),
            Err(_) => peer::Owner::NotFound,
        };
        if !peer::may_connect(owner, me) {
            let _ = tcp.set_zero_linger();
            drop(tcp);
            FOREIGN.note(|| match owner {
                peer::Owner::Uid(u) => format!(
                    "refused a connection from uid {u}: this proxy serves only uid {me} and root (the nix-daemon)"
                ),
                peer::Owner::NotFound => {
                    "refused a connection whose owner cannot be found (closed already?)".into()
                }
            });
            continue;
        }
        let peer::Owner::Uid(peer_uid) = owner else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let _ = tcp.set_zero_linger();
            drop(tcp);
            FULL.note(|| {
                format!("refused a connection: {MAX_CONNECTIONS} are open already (uid {peer_uid})")
            });
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let st = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(st.clone(), req, peer_uid));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc);
            // A client that sent no request head in time is simply closed (idle keep-alive
            // connections end that way too): nothing worth a log line.
            let _ = conn.await;
            drop(slot);
        });
    }
}

/// Serves one request from a client owned by `peer_uid` (the proxy's own user, or root).
async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer_uid: u32,
) -> Result<Response<Body>, Infallible> {
    let guard = InFlight::new(&state);
    Ok(match super::route::route(&state, &req, peer_uid) {
        Ok(super::route::Routed::S3(target)) => {
            super::upstream::forward(&state, target, req, guard).await
        }
        Ok(super::route::Routed::Https(target)) => {
            super::https::serve(&state, target, req, guard).await
        }
        Ok(super::route::Routed::Object(target)) => {
            super::object::serve(&state, target, req, guard).await
        }
        Err(refusal) => *refusal,
    })
}
