//! The proxy's side of the control channel: leases (credentials and mounts), status, stop,
//! and reloading the URL secret, for clients of its own uid only.

use super::control::{MAX_LINE, Reply, Request};
use super::log::log;
use super::paths;
use super::state::State;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use zeroize::Zeroizing;

async fn write_reply(w: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// Mounts that took a working session: those that answered misses while a person was
/// needed move to a new URL (files are written: off the async threads). Done before the
/// client gets its answer, so that `login` returns with the include file rewritten.
async fn after_new_sessions(state: &Arc<State>, took: Vec<String>) {
    if took.is_empty() {
        return;
    }
    let st = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        super::background::moved_on(&st, &st.dirs.clone(), &took)
    })
    .await;
}

/// Serves one client of the control socket until it closes; a `lease` counts while it lasts.
pub(super) async fn serve(state: Arc<State>, stream: UnixStream) {
    // The socket's directory is 0700 already; checking the peer costs nothing.
    match stream.peer_cred() {
        Ok(c) if c.uid() == paths::uid() => {}
        _ => return,
    }
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut leased = false;
    loop {
        let mut line = Zeroizing::new(Vec::new());
        match (&mut rd).take(MAX_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let req: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(_) => {
                let _ = write_reply(
                    &mut wr,
                    &Reply {
                        error: Some("malformed control request".into()),
                        ..Reply::default()
                    },
                )
                .await;
                break;
            }
        };
        match req {
            Request::Lease {
                creds,
                mounts,
                info,
            } => {
                let names: Vec<String> = mounts.iter().map(|m| m.name.clone()).collect();
                let took = state.apply_lease(creds.into_credentials(), mounts, info);
                after_new_sessions(&state, took.clone()).await;
                if leased && !took.is_empty() {
                    log(format!(
                        "a client renewed the session of {}",
                        names.join(", ")
                    ));
                }
                if !leased {
                    leased = true;
                    state.ever_leased.store(true, Ordering::SeqCst);
                    let n = state.leases.fetch_add(1, Ordering::SeqCst) + 1;
                    log(format!(
                        "client attached ({n} now) with caches {}",
                        names.join(", ")
                    ));
                }
                if write_reply(&mut wr, &state.status()).await.is_err() {
                    break;
                }
            }
            Request::LeaseHttps { caches, env } => {
                let st = state.clone();
                let names = caches.clone();
                let mounted = tokio::task::spawn_blocking(move || {
                    let rest = super::object::mount_for_lease(&st, &names, &env)?;
                    super::https::mount_for_lease(&st, &rest)
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                let reply = match mounted {
                    Ok(()) => {
                        if !leased {
                            leased = true;
                            state.ever_leased.store(true, Ordering::SeqCst);
                            let n = state.leases.fetch_add(1, Ordering::SeqCst) + 1;
                            log(format!(
                                "client attached ({n} now) with caches {}",
                                caches.join(", ")
                            ));
                        }
                        state.status()
                    }
                    Err(e) => Reply {
                        error: Some(e),
                        ..Reply::default()
                    },
                };
                if write_reply(&mut wr, &reply).await.is_err() {
                    break;
                }
            }
            Request::Renew {
                creds,
                info,
                caches,
            } => {
                let took = state.renew(creds.into_credentials(), info, &caches);
                log(format!(
                    "login handed over a session: {} cache(s) took it",
                    took.len()
                ));
                let n = took.len();
                after_new_sessions(&state, took).await;
                let reply = Reply {
                    renewed: n,
                    ..state.status()
                };
                let _ = write_reply(&mut wr, &reply).await;
                break;
            }
            Request::Status => {
                let _ = write_reply(&mut wr, &state.status()).await;
                break;
            }
            Request::Stop => {
                log("stop requested");
                let _ = write_reply(&mut wr, &state.status()).await;
                state.stop.notify_one();
                break;
            }
            Request::Reload => {
                let reply = match super::background::reload(&state).await {
                    None | Some(Ok(_)) => state.status(),
                    Some(Err(e)) => Reply {
                        error: Some(e),
                        ..Reply::default()
                    },
                };
                let _ = write_reply(&mut wr, &reply).await;
                break;
            }
            Request::ReloadSecret => {
                let reply = match paths::read_secret(&state.secret_file) {
                    Ok(Some(s)) => {
                        *state.secret.write().unwrap_or_else(|e| e.into_inner()) = s;
                        log("URL secret reloaded");
                        state.status()
                    }
                    Ok(None) => Reply {
                        error: Some("the secret file is gone".into()),
                        ..Reply::default()
                    },
                    Err(e) => Reply {
                        error: Some(format!("{e:#}")),
                        ..Reply::default()
                    },
                };
                let _ = write_reply(&mut wr, &reply).await;
                break;
            }
        }
    }
    if leased {
        let n = state.leases.fetch_sub(1, Ordering::SeqCst) - 1;
        log(format!("client detached ({n} left)"));
    }
}
