//! Uploading one path's closure to one cache: the closure from Nix (dependencies first, no
//! `.drv`), a narinfo check per path (what the cache has, including what came from it, is
//! skipped), a per-path lock shared with every other pusher of this cache, then `nix copy`
//! with the signing key, retried.
//!
//! `nix copy --from auto` uploads from the user's own process: to the proxy's URL for an S3
//! cache (so it works on every Nix, also one without S3 support), to the HTTPS URL with the
//! recorded netrc credential otherwise. The destination reaches Nix only through `NIX_CONFIG`
//! (`store = URL?secret-key=FILE`), never argv, and Nix's output is kept: messages name paths
//! and reasons, with the proxy's URL secret taken out.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zeroize::Zeroizing;

use super::StorePath;
use super::queue::Spool;
use crate::nix::forward::{self, Setting};

/// Where uploads go, with what they need. Holds secrets (the proxy URL, a token): never
/// printed; [`Target::redact`] cleans messages.
pub struct Target {
    /// The recorded cache name (for messages and the spool).
    pub name: String,
    /// The store URL `nix copy` uploads to (the proxy's URL for S3).
    pub store_url: String,
    /// The signing key file, if signing.
    pub secret_key: Option<String>,
    /// A netrc file for `nix copy` (HTTPS caches).
    pub netrc_file: Option<String>,
    /// Basic auth for narinfo checks (HTTPS caches).
    pub auth: Option<(String, Zeroizing<String>)>,
    /// An HTTPS cache (uploads need the server to take PUT) rather than S3 through the proxy.
    pub https: bool,
    /// More variables for `nix copy` (the AWS session, for client-side tools).
    pub env: Vec<(String, Zeroizing<String>)>,
    /// Strings that must never show (the proxy URL), replaced in messages.
    pub secrets: Vec<String>,
    /// What to show instead of the store URL.
    pub shown_url: String,
}

impl Target {
    /// `text` with every secret replaced by the cache's public URL.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if !s.is_empty() {
                out = out.replace(s.as_str(), &self.shown_url);
            }
        }
        out
    }

    /// `NIX_CONFIG` lines for `nix copy` to this cache (appended to `existing`).
    pub fn nix_config(&self, existing: Option<&str>) -> String {
        let mut store = self.store_url.clone();
        if let Some(k) = &self.secret_key {
            store.push(if store.contains('?') { '&' } else { '?' });
            store.push_str("secret-key=");
            store.push_str(k);
        }
        let mut settings = vec![
            Setting::new("store", store, true),
            // What Nix remembers about the cache must not decide what is uploaded: the narinfo
            // check just asked the cache itself.
            Setting::new("narinfo-cache-negative-ttl", "0", false),
            Setting::new("narinfo-cache-positive-ttl", "0", false),
        ];
        if let Some(n) = &self.netrc_file {
            settings.push(Setting::new("netrc-file", n.clone(), false));
        }
        forward::nix_config(existing, &settings)
    }
}

/// What became of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Uploaded, with its NAR size.
    Uploaded(u64),
    /// The cache had it already.
    Present,
}

/// An upload that did not succeed: the path and the reason (no secret in it).
#[derive(Debug, Clone)]
pub struct Failure {
    pub path: StorePath,
    pub reason: String,
}

/// Uploads for one target from one thread.
pub struct Uploader<'a> {
    pub target: &'a Target,
    spool: &'a Spool,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// Attempts per path (first try included).
    pub attempts: u32,
    /// Waits between attempts.
    pub backoff: Vec<Duration>,
}

impl<'a> Uploader<'a> {
    pub fn new(target: &'a Target, spool: &'a Spool) -> Result<Uploader<'a>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the HTTP client")?;
        // The client's timers need the runtime.
        let _in_rt = rt.enter();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot start the HTTP client")?;
        drop(_in_rt);
        Ok(Uploader {
            target,
            spool,
            rt,
            client,
            attempts: 3,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(3)],
        })
    }

    /// Whether the cache has `p` (its narinfo answers 200).
    pub fn has(&self, p: &StorePath) -> Result<bool> {
        let url = format!(
            "{}/{}.narinfo",
            self.target.store_url.trim_end_matches('/'),
            p.hash_part()
        );
        let mut req = self.client.head(&url);
        if let Some((login, token)) = &self.target.auth {
            req = req.basic_auth(login, Some(token.as_str()));
        }
        let status = self
            .rt
            // send() starts its timer at once: inside the runtime.
            .block_on(async { req.send().await })
            .map_err(|e| anyhow::anyhow!("{}", self.target.redact(&e.without_url().to_string())))
            .with_context(|| format!("cannot ask {} for {}", self.target.name, p))?
            .status()
            .as_u16();
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            401 | 403 => bail!(
                "{} refused the credential (HTTP {status} for a narinfo); `nixstore-auth doctor {}` checks it",
                self.target.name,
                self.target.name
            ),
            s => bail!(
                "{} answered HTTP {s} for the narinfo of {p}",
                self.target.name
            ),
        }
    }

    /// Uploads what the cache lacks of `paths`' closure, dependencies first; stops at the first
    /// failure. `stop` aborts (a running `nix copy` is killed). Calls `each` per path handled.
    pub fn push_closure(
        &self,
        paths: &[StorePath],
        stop: &AtomicBool,
        each: &mut dyn FnMut(&StorePath, &Done),
    ) -> Result<(), Failure> {
        let closure = closure(paths).map_err(|e| Failure {
            path: paths[0].clone(),
            reason: format!("{e:#}"),
        })?;
        for p in closure {
            if stop.load(Ordering::SeqCst) {
                return Err(Failure {
                    path: p,
                    reason: "stopped".into(),
                });
            }
            let done = self.push_one(&p, stop).map_err(|reason| Failure {
                path: p.clone(),
                reason,
            })?;
            each(&p, &done);
        }
        Ok(())
    }

    /// One path, under its lock: checked, then uploaded with retries.
    fn push_one(&self, p: &StorePath, stop: &AtomicBool) -> Result<Done, String> {
        let _lock = self.spool.lock_path(p).map_err(|e| format!("{e:#}"))?;
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                let wait = self
                    .backoff
                    .get(attempt as usize - 1)
                    .or(self.backoff.last())
                    .copied()
                    .unwrap_or_default();
                if sleep_unless(stop, wait) {
                    return Err("stopped".into());
                }
            }
            match self.has(p) {
                Ok(true) => return Ok(Done::Present),
                Ok(false) => {}
                Err(e) => {
                    last = format!("{e:#}");
                    continue;
                }
            }
            match self.copy(p, stop) {
                Ok(()) => return Ok(Done::Uploaded(nar_size(p).unwrap_or(0))),
                Err(e) if stop.load(Ordering::SeqCst) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `nix copy` of one path (its references are in the cache already, so only it goes up),
    /// in its own process group (a Ctrl-C at the terminal reaches it only through us) and
    /// killed with us.
    fn copy(&self, p: &StorePath, stop: &AtomicBool) -> Result<(), String> {
        let mut cmd = Command::new("nix");
        cmd.args([
            "--extra-experimental-features",
            "nix-command",
            "copy",
            "--from",
            "auto",
            p.as_str(),
        ])
        .env(
            "NIX_CONFIG",
            self.target
                .nix_config(std::env::var("NIX_CONFIG").ok().as_deref()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in &self.target.env {
            cmd.env(k, v.as_str());
        }
        // SAFETY: setpgid and prctl are async-signal-safe and touch no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run nix copy: {e}"))?;
        let mut stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if stop.load(Ordering::SeqCst) => {
                    // SAFETY: kill(2) on the process group of a child we started.
                    unsafe {
                        libc::kill(-(child.id() as i32), libc::SIGKILL);
                    }
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for nix copy: {e}")),
            }
        };
        let text = reader.join().unwrap_or_default();
        match status {
            None => Err("stopped".into()),
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(self
                .target
                .redact(&copy_failure(&text, s.code(), self.target.https))),
        }
    }
}

/// Sleeps `d` unless `stop` is set first; true when stopped.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.load(Ordering::SeqCst)
}

/// Why `nix copy` failed, from its stderr: Nix's error lines, and what an HTTP status means
/// for an upload (not redacted yet).
pub fn copy_failure(stderr: &str, code: Option<i32>, https: bool) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("copying path"))
        .collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("error"))
        .unwrap_or(lines.len().saturating_sub(3));
    let mut reason: String = lines[start..].join(" ");
    if reason.chars().count() > 600 {
        reason = reason.chars().take(600).collect::<String>() + "...";
    }
    if reason.is_empty() {
        reason = format!("nix copy failed (exit {})", code.unwrap_or(-1));
    }
    let status = http_status(stderr);
    let hint = match status {
        Some(401 | 403) => " (the cache refused the upload: the credential may not write)",
        Some(404 | 405 | 501) if https => {
            " (the server does not take uploads by HTTP PUT; an attic server speaks its own API: upload with `attic push`)"
        }
        _ => "",
    };
    format!("{reason}{hint}")
}

/// The first `HTTP error NNN` in Nix's output.
fn http_status(text: &str) -> Option<u16> {
    let at = text.find("HTTP error ")? + "HTTP error ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// The closure of `paths` from Nix, dependencies before the paths that need them, without
/// `.drv` files.
pub fn closure(paths: &[StorePath]) -> Result<Vec<StorePath>> {
    let out = nix_store(&["--query", "--requisites"], paths)?;
    let mut seen = std::collections::HashSet::new();
    Ok(out
        .lines()
        .filter_map(|l| StorePath::parse(l.trim()).ok())
        .filter(|p| !p.is_drv())
        .filter(|p| seen.insert(p.clone()))
        .collect())
}

/// A path's NAR size from Nix.
pub fn nar_size(p: &StorePath) -> Result<u64> {
    let out = nix_store(&["--query", "--size"], std::slice::from_ref(p))?;
    out.trim()
        .parse()
        .with_context(|| format!("nix-store --query --size {p}: {out:?}"))
}

fn nix_store(args: &[&str], paths: &[StorePath]) -> Result<String> {
    let out = Command::new("nix-store")
        .args(args)
        .args(paths.iter().map(StorePath::as_str))
        .stdin(Stdio::null())
        .output()
        .context("cannot run nix-store")?;
    if !out.status.success() {
        bail!(
            "nix-store {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            name: "c".into(),
            store_url: "http://127.0.0.1:1/SECRETSECRET/c".into(),
            secret_key: Some("/k/sk".into()),
            netrc_file: None,
            auth: None,
            https: false,
            env: Vec::new(),
            secrets: vec!["http://127.0.0.1:1/SECRETSECRET/c".into()],
            shown_url: "s3://bucket".into(),
        }
    }

    #[test]
    fn the_store_url_goes_to_nix_config_with_the_key_and_messages_hide_it() {
        let t = target();
        let conf = t.nix_config(Some("sandbox = false"));
        assert!(conf.starts_with("sandbox = false\n"), "{conf}");
        assert!(conf.contains("store = http://127.0.0.1:1/SECRETSECRET/c?secret-key=/k/sk\n"));
        assert!(conf.contains("narinfo-cache-positive-ttl = 0"));
        let msg = t.redact("error: uploading to 'http://127.0.0.1:1/SECRETSECRET/c/nar/x': boom");
        assert!(!msg.contains("SECRET"), "{msg}");
        assert!(msg.contains("s3://bucket/nar/x"), "{msg}");
    }

    #[test]
    fn a_failed_copy_is_explained_by_its_http_status() {
        let s3 = "copying path '/nix/store/x' to 'http://p'...\nerror: unable to upload 'http://p/nar/x.nar.xz': HTTP error 403\n\n       response body:\n\n       S3 refused the upload (AccessDenied)\n";
        let r = copy_failure(s3, Some(1), false);
        assert!(r.starts_with("error: unable to upload"), "{r}");
        assert!(
            r.contains("AccessDenied") && r.contains("refused the upload"),
            "{r}"
        );
        assert!(!r.contains("copying path"), "{r}");
        let attic = "error: unable to upload 'https://a/c/x.narinfo': HTTP error 405\n";
        assert!(copy_failure(attic, Some(1), true).contains("attic push"));
        assert!(!copy_failure(attic, Some(1), false).contains("attic push"));
        assert_eq!(copy_failure("", Some(2), true), "nix copy failed (exit 2)");
        assert_eq!(http_status("HTTP error 50"), None);
    }
}
