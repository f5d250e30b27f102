//! `nixstore-auth proxy status|rotate-secret|stop|serve`: the loopback signing proxy.
use super::{ProxyAction, ProxyArgs, Run};
use crate::proxy;
use crate::ui::Ui;
use anyhow::{Context, Result};
use std::io::BufRead;

impl Run for ProxyArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        // The watcher needs nothing else (and must not fail on a config it does not read).
        if let ProxyAction::WatchUrls { file, pid } = &self.action {
            proxy::watch_urls(file, *pid);
            return Ok(0);
        }
        let dirs = crate::config::Dirs::new()?;
        let cfg = crate::config::Config::load(&dirs.config_file())?;
        let layout = proxy::Layout::new(&dirs, &cfg)?;
        match self.action {
            ProxyAction::Status => status(&layout, ui),
            ProxyAction::RotateSecret => {
                let (file, told) = proxy::rotate_secret(&layout)?;
                ui.info(format!("wrote a new proxy secret to {}", file.display()));
                crate::service::include::after_change(&dirs, ui);
                if told {
                    ui.info("the running proxy uses it now; commands started before with the old URL get 401 until they are run through `nixstore-auth exec` again");
                }
                Ok(0)
            }
            ProxyAction::Stop => {
                if proxy::stop(&layout)? {
                    ui.info("stopped the proxy");
                } else {
                    ui.info("no proxy was running");
                }
                Ok(0)
            }
            ProxyAction::Serve { persistent } => proxy::serve(layout, persistent, ui).map(|()| 0),
            ProxyAction::Start { persistent } => {
                match proxy::start(&layout, persistent, ui)? {
                    proxy::Started::New(pid) => ui.info(format!(
                        "started the proxy (pid {pid}){}",
                        if persistent {
                            ": it serves every recorded cache of its kinds and keeps running"
                        } else {
                            ""
                        }
                    )),
                    proxy::Started::Running(pid) => {
                        ui.info(format!("the proxy runs already (pid {pid})"))
                    }
                }
                Ok(0)
            }
            ProxyAction::Lease => lease(&layout, ui),
            ProxyAction::WatchUrls { .. } => Ok(0),
        }
    }
}

/// The session part of a cache's status line: time left, origin, and how it renews.
/// `background`: the proxy renews the session itself (a recorded cache of a background proxy).
fn session_summary(m: &proxy::MountStatus, now: i64, background: bool) -> String {
    let mut out = String::new();
    match m.expiration {
        Some(e) if e > now => out.push_str(&format!(
            ", {} left (until {})",
            crate::time::human_secs(e - now),
            crate::time::rfc3339(e)
        )),
        Some(e) => out.push_str(&format!(", ended {}", crate::time::rfc3339(e))),
        None => {}
    }
    let Some(info) = &m.info else {
        return out;
    };
    if !info.origin.is_empty() {
        out.push_str(&format!(", from {}", info.origin));
    }
    if let Some(p) = &info.profile {
        out.push_str(&format!(" (profile {p})"));
    }
    out.push_str(&match (info.renewal.as_str(), info.renew_until) {
        ("auto", Some(u)) => format!(
            ", renews by itself until {} (then `nixstore-auth login {}`)",
            crate::time::rfc3339(u),
            m.name
        ),
        ("auto", None) if background => ", renews by itself (the background proxy)".to_string(),
        ("auto", None) => ", renews by itself while a command runs".to_string(),
        ("login", _) => format!(", renewing needs `nixstore-auth login {}`", m.name),
        ("fixed", _) => ", from the caller's environment: not renewed".to_string(),
        _ => String::new(),
    });
    out
}

fn status(layout: &proxy::Layout, ui: &Ui) -> Result<i32> {
    let (port, secret_file, log) = proxy::describe(layout)?;
    match proxy::status(layout)? {
        None => {
            ui.outln(format_args!(
                "proxy: not running (`nixstore-auth exec` starts it for a command; `nixstore-auth service install` keeps it running)"
            ))?;
            ui.outln(format_args!("url:   http://127.0.0.1:{port}/<secret>/NAME"))?;
        }
        Some(st) => {
            ui.outln(format_args!(
                "proxy: running, pid {}, {} client(s){}",
                st.pid,
                st.leases,
                match (st.background, st.activated) {
                    (_, true) => ", background (socket-activated)",
                    (true, false) => ", background",
                    (false, false) => "",
                }
            ))?;
            ui.outln(format_args!(
                "url:   http://127.0.0.1:{}/<secret>/NAME",
                st.port
            ))?;
            for m in &st.mounts {
                let exp = session_summary(m, crate::time::now(), st.background && m.recorded);
                let nars = match m.nars.as_str() {
                    "redirect" => ", NARs by presigned redirect",
                    "stream" => ", NARs streamed",
                    _ => "",
                };
                let daemon = if m.daemon_used {
                    ", used by the nix-daemon"
                } else {
                    ""
                };
                // A GCS or Azure credential's fix depends on its kind: doctor names it.
                let cloud = m.url.starts_with("gs://") || m.url.starts_with("azure://");
                let exp = match &m.standing {
                    Some(proxy::Standing::NeedsPerson { why }) if cloud => format!(
                        "{exp}; needs you: {why}: see `nixstore-auth doctor {}`",
                        m.name
                    ),
                    Some(proxy::Standing::NeedsPerson { why }) => format!(
                        "{exp}; needs you: {why}: run `{}`",
                        proxy::login_command(&m.name)
                    ),
                    _ => exp,
                };
                ui.outln(format_args!(
                    "cache: {} -> {} (session {}{exp}{nars}{daemon})",
                    m.name, m.url, m.session
                ))?;
            }
        }
    }
    ui.outln(format_args!("access: {}", proxy::access_summary()))?;
    ui.outln(format_args!("secret file: {}", secret_file.display()))?;
    ui.outln(format_args!("log:   {}", log.display()))?;
    Ok(0)
}

#[derive(serde::Deserialize)]
struct LeaseInput {
    creds: LeaseCreds,
    #[serde(default)]
    mounts: Vec<LeaseMount>,
}

#[derive(serde::Deserialize)]
struct LeaseCreds {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    expiration: Option<i64>,
}

impl LeaseCreds {
    fn into_credentials(self) -> crate::aws::Credentials {
        use zeroize::Zeroizing;
        crate::aws::Credentials {
            access_key_id: self.access_key_id,
            secret_access_key: Zeroizing::new(self.secret_access_key),
            session_token: self.session_token.map(Zeroizing::new),
            expiration: self.expiration,
        }
    }
}

#[derive(serde::Deserialize)]
struct LeaseMount {
    name: String,
    url: String,
}

/// Hidden `proxy lease`, for tests and debugging: reads `{"creds":{...},"mounts":[{"name",
/// "url":"s3://..."}]}` from stdin (never argv), holds a lease, prints `{"base","pid"}`, takes
/// further lines as fresher credentials, and releases the lease at end of input.
fn lease(layout: &proxy::Layout, ui: &Ui) -> Result<i32> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut line = zeroize::Zeroizing::new(String::new());
    lines.read_line(&mut line)?;
    let input: LeaseInput =
        serde_json::from_str(&line).context("stdin: malformed lease request")?;
    let mut mounts = Vec::new();
    for m in input.mounts {
        match crate::cache::parse_url(&m.url)? {
            crate::cache::CacheKind::S3(s3) => mounts.push(proxy::Mount { name: m.name, s3 }),
            _ => anyhow::bail!("{}: not an s3:// URL", m.url),
        }
    }
    let mut lease = proxy::ensure_running(layout, &input.creds.into_credentials(), &mounts, ui)?;
    let base = lease.url_for("");
    ui.outln(format_args!(
        "{}",
        serde_json::json!({"base": base.trim_end_matches('/'), "pid": lease.proxy_pid()})
    ))?;
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let creds: LeaseCreds =
            serde_json::from_str(&line).context("stdin: malformed credentials")?;
        lease.refresh(&creds.into_credentials())?;
        ui.outln(format_args!("{{\"refreshed\":true}}"))?;
    }
    Ok(0)
}
