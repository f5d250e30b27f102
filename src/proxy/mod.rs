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
//!   Never 401/403/404 for those: Nix remembers those as misses for an hour. The exception is
//!   a cache only a person can renew now (`credential.rs`): its reads are misses (404), so that
//!   plain Nix goes on without it, and its URL moves to a new generation once it works again
//!   (`urls.rs`), so that the daemon remembers none of them.
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
//! - Background (`service install`: socket-activated, or `proxy start --persistent`): it never
//!   exits when idle, mounts every recorded S3 cache and renews their sessions itself
//!   (`background.rs`), reports readiness to its service manager (`activation.rs`), and still
//!   takes sessions from leases and `login`. `serve` drops AWS credentials from its own
//!   environment whoever started it.

mod activation;
mod aws_source;
mod background;
mod channel;
mod client;
mod clients;
mod control;
mod credential;
mod desktop;
pub mod https;
pub mod https_rules;
mod launch;
mod listen;
mod log;
mod multipart;
mod notice;
mod object;
mod object_mounts;
mod object_upload;
mod paths;
mod peer;
mod probe;
mod respond;
mod route;
mod server;
mod sign;
mod state;
mod upstream;
mod urls;

pub use client::{
    Lease, Mount, PEER_CHECK, Started, access_summary, current_urls, describe, ensure_running,
    ensure_running_for, ensure_running_https, reload, renew, rotate_secret, stable_url_for, start,
    status, stop, wake,
};
pub use control::{MountStatus, Reply as Status, SessionInfo};
pub use credential::{Standing, login_command};
pub use notice::notice_file;
pub use paths::runtime_dir_of;
pub use paths::{GRACE_ENV, Layout, PortOrigin, default_port};
pub use probe::{Probe, probe};
pub use server::{serve, watch_urls};
