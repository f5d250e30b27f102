//! The running proxy: each request as route → forward (or the refusal), and the lifecycle
//! loop that keeps the proxy up while clients or requests remain, or for good as a background
//! proxy (socket-activated, or `--persistent`), which reports readiness and status to its
//! service manager.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::UnixListener;

use super::activation::{self, Notifier};
use super::background::Renewer;
use super::credential::{Standing, login_command};
use super::log::{self, log};
use super::paths::{self, Layout};
use super::state::State;

/// AWS credentials and the caller's profile choice: never part of the proxy's environment,
/// whoever started it (a background proxy resolves each cache's session from its `profile=`).
const CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    crate::aws::session::MARKER,
    "NIXSTORE_AUTH_EXEC",
    "NIXSTORE_AUTH_MFA_CODE",
];

/// `proxy serve`: runs the proxy in the foreground. It takes the listening socket a service
/// manager hands over (then it is a background proxy, as with `persistent`), and runs until
/// stopped, or, as a command's proxy, until idle.
pub fn serve(layout: Layout, persistent: bool, ui: &crate::ui::Ui) -> Result<()> {
    // SAFETY: the first thing `proxy serve` does, while this is the only thread.
    unsafe {
        for k in CREDENTIAL_VARS {
            std::env::remove_var(k);
        }
    }
    let notifier = Notifier::from_env();
    let passed = activation::take_listener()?;
    log_to_file(&layout)?;
    let rundir = layout.runtime_dir()?;
    // One proxy per user. A previous one may still be finishing its exit: wait a little.
    let deadline = Instant::now() + Duration::from_secs(5);
    let _instance = loop {
        if let Some(l) = paths::try_lock(&rundir.join("serve.lock"))? {
            break l;
        }
        if Instant::now() > deadline {
            log("another proxy already runs for this user; leaving");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Without a service manager, the URLs the user's Nix reads exist only while this proxy
    // runs: a watcher removes them when it exits, also when it is killed.
    let runtime_urls = (persistent && passed.is_none())
        .then(|| crate::service::include::runtime_file(&layout.dirs));
    if let Some(path) = &runtime_urls {
        guard_runtime_urls(path);
    }
    log::cap_at(&layout.log_file());
    super::listen::raise_file_limit();
    let secret = paths::read_or_create_secret(&layout.secret_file())?;
    let activated = passed.is_some();
    let port = match &passed {
        Some(l) => l.local_addr()?.port(),
        None => layout.port,
    };
    if port != layout.port {
        log(format!(
            "the service manager's socket is on port {port}, but the configuration says {}: URLs name {port} until `nixstore-auth service install` writes the units again",
            layout.port
        ));
    }
    let background = persistent || activated;
    let state = Arc::new(State {
        secret: RwLock::new(secret),
        secret_file: layout.secret_file(),
        mounts: RwLock::new(HashMap::new()),
        https: RwLock::new(HashMap::new()),
        objects: RwLock::new(HashMap::new()),
        client: super::upstream::upstream_client(),
        leases: AtomicUsize::new(0),
        ever_leased: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        port,
        verbose: ui.verbose > 0,
        redirect_nars: layout.redirect_nars,
        stop: tokio::sync::Notify::new(),
        daemon_used: Default::default(),
        generations: RwLock::new(
            super::urls::load(&super::urls::file(&layout.dirs.state)).unwrap_or_default(),
        ),
        cache_info: Default::default(),
        missed: Default::default(),
        background: AtomicBool::new(background),
        activated,
        renewer: Default::default(),
        dirs: layout.dirs.clone(),
    });
    // A background proxy resolves every recorded cache's session before it serves: the first
    // request (the one that started it, with socket activation) finds them ready. Done before
    // any thread runs (resolving may set the recursion guard in the environment).
    let renewer = if background {
        let mut r = Renewer::new(state.clone(), layout.dirs.clone());
        match r.load() {
            Ok(summary) => log(summary),
            Err(e) => log(format!("cannot read config.toml: {e}")),
        }
        r.round();
        Some(r)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(run(layout, state, passed, renewer, &notifier));
    if let Some(path) = &runtime_urls {
        crate::service::include::clear_runtime(path, std::process::id());
    }
    if let Err(e) = &result {
        log(format!("error: {e:#}"));
        notifier.send(&format!("STATUS=failed: {e:#}"));
    }
    result
}

/// Starts a watcher (`nixstore-auth proxy watch-urls PATH PID`, its own session) that removes
/// `path` once this process has exited, whatever ends it (`kill -9` too): it reads a pipe only
/// this process holds open until its end. It removes the file only if this process wrote it
/// (its pid is in the first line). Must be called while this is the only thread.
fn guard_runtime_urls(path: &std::path::Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let failed =
        || log("cannot start the watcher of the URL file; it stays if the proxy is killed");
    let Ok(exe) = std::env::current_exe() else {
        return failed();
    };
    let (Ok(exe), Ok(file)) = (
        CString::new(exe.as_os_str().as_bytes()),
        CString::new(path.as_os_str().as_bytes()),
    ) else {
        return failed();
    };
    let pid = CString::new(std::process::id().to_string()).unwrap_or_default();
    let args = [
        c"nixstore-auth",
        c"proxy",
        c"watch-urls",
        file.as_c_str(),
        pid.as_c_str(),
    ];
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut fds = [0i32; 2];
    // SAFETY: pipe fills two descriptors we own; both are close-on-exec (nothing we run
    // inherits them; the watcher takes the read end as its stdin, which dup2 leaves open).
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return failed();
    }
    let (read_end, write_end) = (fds[0], fds[1]);
    for fd in fds {
        // SAFETY: fcntl on the descriptors just made.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: fork while single-threaded (serve has started no thread yet); the child makes
    // the pipe its stdin, leaves our session and process group, and execs at once.
    match unsafe { libc::fork() } {
        0 => unsafe {
            libc::setsid();
            libc::dup2(read_end, 0);
            for fd in 3..1024 {
                libc::close(fd);
            }
            libc::execv(exe.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        },
        pid if pid > 0 => {
            // SAFETY: our copy of the read end; the write end stays open (close-on-exec) until
            // this process ends: its closing is the watcher's signal.
            unsafe { libc::close(read_end) };
            let _ = write_end;
        }
        _ => failed(),
    }
}

/// `proxy watch-urls PATH PID` (hidden): waits for the end of stdin (the proxy `PID` exited),
/// then removes `PATH` if that proxy wrote it.
pub fn watch_urls(path: &std::path::Path, pid: u32) {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    loop {
        match std::io::Read::read(&mut stdin, &mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    crate::service::include::clear_runtime(path, pid);
}

/// Makes the proxy's log file its stderr, whatever stderr was (a service manager's journal, a
/// terminal): the log is always in the same place (`proxy.log`).
fn log_to_file(layout: &Layout) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let path = layout.log_file();
    let target = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
    // SAFETY: fstat on our own stderr into a struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let same = unsafe { libc::fstat(2, &mut st) } == 0
        && target == Some((st.st_dev as u64, st.st_ino as u64));
    if same {
        return Ok(());
    }
    let f = paths::open_log(&path)?;
    // SAFETY: dup2 onto fd 2, which we own; the file stays open through fd 2.
    if unsafe { libc::dup2(f.as_raw_fd(), 2) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot log to {}", path.display()));
    }
    Ok(())
}

/// The service manager's status line: each cache and where its credential stands.
fn status_line(state: &State) -> String {
    let now = crate::time::now();
    let map = state.mounts.read().unwrap_or_else(|e| e.into_inner());
    if map.is_empty() {
        return "serving no cache: record one with `nixstore-auth use s3://...`".into();
    }
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let parts: Vec<String> = names
        .into_iter()
        .map(|n| {
            let m = &map[n];
            let what = match m.standing(now) {
                Standing::Valid { expires: Some(e) } => {
                    format!("valid until {}", crate::time::rfc3339(e))
                }
                Standing::Valid { expires: None } => "valid".into(),
                Standing::Renews { until: Some(u), .. } => {
                    format!("renews by itself until {}", crate::time::rfc3339(u))
                }
                Standing::Renews { until: None, .. } => "renews by itself".into(),
                Standing::NeedsPerson { .. } => format!("needs `{}`", login_command(n)),
                Standing::Unavailable { why } => format!("unavailable ({why})"),
            };
            let what = match (&m.needs_person, m.standing(now).usable()) {
                (Some(_), true) => format!("{what}, then needs `{}`", login_command(n)),
                _ => what,
            };
            format!("{n}: {what}")
        })
        .collect();
    format!("serving {}", parts.join("; "))
}

/// Runs until stopped, or idle (no client, nothing in flight) for the grace period, or idle
/// with no unexpired session left.
async fn run(
    layout: Layout,
    state: Arc<State>,
    passed: Option<std::net::TcpListener>,
    renewer: Option<Renewer>,
    notifier: &Notifier,
) -> Result<()> {
    let http = match passed {
        Some(l) => tokio::net::TcpListener::from_std(l)
            .context("cannot use the socket the service manager passed")?,
        None => {
            // The previous proxy may still be releasing the port for a moment.
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                match super::listen::bind(&layout) {
                    Ok(l) => break l,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    let sock_path = layout.socket_path()?;
    let _ = std::fs::remove_file(&sock_path);
    let control = UnixListener::bind(&sock_path)
        .with_context(|| format!("cannot listen on {}", sock_path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600))?;
    }
    let background = state.background.load(Ordering::SeqCst);
    log(format!(
        "listening on 127.0.0.1:{} (pid {}, {})",
        state.port,
        std::process::id(),
        match (state.activated, background) {
            (true, _) => "socket-activated: a background proxy".to_string(),
            (false, true) => "a background proxy".to_string(),
            (false, false) => format!("idle grace {} s", layout.grace_secs),
        }
    ));
    if let Some(r) = renewer {
        super::background::spawn(&state, r);
    }
    notifier.send(&format!("READY=1\nSTATUS={}", status_line(&state)));

    tokio::spawn(super::listen::serve(state.clone(), http));
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = control.accept().await {
                tokio::spawn(super::clients::serve(st.clone(), s));
            }
        }
    });

    let grace = Duration::from_secs(layout.grace_secs);
    let mut idle_since: Option<Instant> = None;
    let rundir = layout.runtime_dir()?;
    let mut exit_lock = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let reason = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.stop.notified() => break "stopped on request".to_string(),
        }
        let now = crate::time::now();
        let usable = {
            let mut map = state.mounts.write().unwrap_or_else(|e| e.into_inner());
            for (name, m) in map.iter_mut() {
                if let Some(s) = m.session.as_ref().filter(|s| s.expired(now)) {
                    let expired = m.expired(s.expiration);
                    log(format!(
                        "the AWS session for {name} expired at {}; {}",
                        crate::time::expiry(s.expiration),
                        match expired.standing(now) {
                            Standing::NeedsPerson { .. } =>
                                format!("answering misses until `{}`", login_command(name)),
                            _ => "answering 503 until a fresh one comes".to_string(),
                        }
                    ));
                    // Dropping the last reference zeroizes the secret key.
                    *m = Arc::new(expired);
                }
            }
            // An HTTPS mount reads its own credential: it serves for the grace period too.
            map.values().any(|m| m.session.is_some())
                || !state
                    .https
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
        };
        if notifier.active() {
            notifier.status(&status_line(&state));
        }
        if state.background.load(Ordering::SeqCst) {
            // A background proxy never exits by itself.
            idle_since = None;
            continue;
        }
        if state.leases.load(Ordering::SeqCst) > 0 || state.in_flight.load(Ordering::SeqCst) > 0 {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        let why = if state.ever_leased.load(Ordering::SeqCst) && !usable {
            "no client left and no unexpired session".to_string()
        } else if since.elapsed() >= grace {
            format!("no client for {} s", layout.grace_secs)
        } else {
            continue;
        };
        // A client attaching right now holds the start lock until its lease counts: exit only
        // with the lock, and only if still idle; it is released when the process ends.
        match paths::lock_start(&rundir, false) {
            Ok(Some(lock)) if state.leases.load(Ordering::SeqCst) == 0 => {
                exit_lock = Some(lock);
                break why;
            }
            _ => continue,
        }
    };
    // Remove the socket first, so that a new client starts a new proxy instead of reaching
    // this one while it exits.
    let _ = std::fs::remove_file(&sock_path);
    log(format!("exiting: {reason}"));
    notifier.send(&format!("STOPPING=1\nSTATUS=exiting: {reason}"));
    drop(exit_lock);
    Ok(())
}
