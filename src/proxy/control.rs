//! The private control channel: one JSON object per line over the Unix socket.
//!
//! A client sends a request line and reads one reply line. A `lease` connection then stays open:
//! the proxy counts it as a client until it closes (also when the client is killed), and further
//! `lease` lines on it hand fresher credentials. Credentials travel only here, never in argv,
//! the proxy's environment or files.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Longest request line the proxy reads (credentials and mounts fit easily).
pub const MAX_LINE: u64 = 256 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request<'a> {
    Lease {
        #[serde(borrow)]
        creds: WireCreds<'a>,
        mounts: Vec<WireMount>,
    },
    Status,
    Stop,
    ReloadSecret,
}

/// Credentials on the wire. `Cow` lets the client serialise borrowed secrets without copies.
#[derive(Serialize, Deserialize)]
pub struct WireCreds<'a> {
    #[serde(borrow)]
    pub access_key_id: Cow<'a, str>,
    #[serde(borrow)]
    pub secret_access_key: Cow<'a, str>,
    #[serde(borrow, default)]
    pub session_token: Option<Cow<'a, str>>,
    #[serde(default)]
    pub expiration: Option<i64>,
}

impl std::fmt::Debug for WireCreds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireCreds")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl WireCreds<'_> {
    pub fn into_credentials(self) -> crate::aws::Credentials {
        use zeroize::Zeroizing;
        crate::aws::Credentials {
            access_key_id: self.access_key_id.into_owned(),
            secret_access_key: Zeroizing::new(self.secret_access_key.into_owned()),
            session_token: self.session_token.map(|t| Zeroizing::new(t.into_owned())),
            expiration: self.expiration,
        }
    }
}

impl<'a> From<&'a crate::aws::Credentials> for WireCreds<'a> {
    fn from(c: &'a crate::aws::Credentials) -> Self {
        WireCreds {
            access_key_id: Cow::Borrowed(&c.access_key_id),
            secret_access_key: Cow::Borrowed(c.secret_access_key.as_str()),
            session_token: c.session_token.as_ref().map(|t| Cow::Borrowed(t.as_str())),
            expiration: c.expiration,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireMount {
    pub name: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
}

impl WireMount {
    pub fn from_mount(m: &super::Mount) -> WireMount {
        WireMount {
            name: m.name.clone(),
            bucket: m.s3.bucket.clone(),
            prefix: m.s3.prefix.clone(),
            region: m.s3.region.clone(),
            endpoint: m.s3.endpoint.clone(),
        }
    }

    pub fn s3(&self) -> crate::cache::S3Ref {
        crate::cache::S3Ref {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            profile: None,
        }
    }
}

/// The proxy's answer to any request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub leases: usize,
    #[serde(default)]
    pub mounts: Vec<MountStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountStatus {
    pub name: String,
    pub url: String,
    /// "valid", "expired", "refused" or "none".
    pub session: String,
    #[serde(default)]
    pub expiration: Option<i64>,
    /// How NARs reach Nix: "redirect" (presigned URLs), "stream", or "untried" before the first.
    #[serde(default)]
    pub nars: String,
    /// Whether root (the nix-daemon) has fetched the cache's `nix-cache-info` through the URL.
    #[serde(default)]
    pub daemon_used: bool,
}

// The proxy's side of the channel.

use super::paths;
use super::server::log;
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
            Request::Lease { creds, mounts } => {
                let names: Vec<String> = mounts.iter().map(|m| m.name.clone()).collect();
                state.apply_lease(creds.into_credentials(), mounts);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_round_trips_and_debug_hides_the_secret() {
        let c = crate::aws::Credentials {
            access_key_id: "AKIA".into(),
            secret_access_key: zeroize::Zeroizing::new("very-secret".into()),
            session_token: Some(zeroize::Zeroizing::new("tok\"en".into())),
            expiration: Some(5),
        };
        let line = serde_json::to_string(&Request::Lease {
            creds: (&c).into(),
            mounts: vec![],
        })
        .unwrap();
        let Request::Lease { creds, .. } = serde_json::from_str(&line).unwrap() else {
            panic!("not a lease");
        };
        assert!(!format!("{creds:?}").contains("very-secret"));
        let back = creds.into_credentials();
        assert_eq!(back.secret_access_key.as_str(), "very-secret");
        assert_eq!(back.session_token.unwrap().as_str(), "tok\"en");
    }
}
