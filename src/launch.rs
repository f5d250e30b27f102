//! Running the user's command: set and unset variables, then either replace this process
//! ([`Launch::replace`], so signals, exit status and the terminal behave as if CMD ran
//! directly) or run it as a child and map its end to an exit code ([`Launch::run`], for when a
//! helper such as the S3 proxy must outlive the call).
//!
//! Exit codes follow the shell: CMD's own status, 127 when CMD is not found, 126 when it cannot
//! be run, 128+N when it dies of signal N.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use zeroize::Zeroizing;

use crate::ui::Ui;

/// Set in the environment of every command `exec` runs.
pub const EXEC_MARKER: &str = "NIXSTORE_AUTH_EXEC";

pub const EXIT_NOT_FOUND: i32 = 127;
pub const EXIT_CANNOT_RUN: i32 = 126;

/// What to run and in which environment. Values may be secrets: they go to the child's
/// environment only, never to argv or messages.
#[derive(Default)]
pub struct Launch {
    pub argv: Vec<OsString>,
    pub set: Vec<(String, Zeroizing<String>)>,
    pub unset: Vec<String>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.set.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Launch")
            .field("argv", &self.argv)
            .field("set", &names)
            .field("unset", &self.unset)
            .finish()
    }
}

impl Launch {
    pub fn new(argv: Vec<OsString>) -> Launch {
        Launch {
            argv,
            ..Launch::default()
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        for name in &self.unset {
            cmd.env_remove(name);
        }
        for (k, v) in &self.set {
            cmd.env(k, v.as_str());
        }
        cmd
    }

    /// Replaces this process with the command. Returns only when that fails, with the exit
    /// code to use (the error is already printed, by `ui`).
    pub fn replace(self, ui: &Ui) -> i32 {
        let err = self.command().exec();
        report_spawn_error(&self.argv[0], &err, ui)
    }

    /// Runs the command as a child and waits; returns the exit code to pass on.
    pub fn run(self, ui: &Ui) -> i32 {
        match self.command().status() {
            Ok(status) => status_code(status),
            Err(err) => report_spawn_error(&self.argv[0], &err, ui),
        }
    }
}

/// `nixstore-auth exec -- CMD...` with no option at all, when no credential work can be needed
/// (no NIXSTORE_AUTH_AWS_PROFILE, no S3 or keyring cache recorded, or an outer exec already set
/// everything up): replace this process with CMD before clap builds the whole command tree,
/// which is most of our start-up time. `None` means "take the normal path" (any other argv, or
/// an unreadable config, which the normal path reports).
pub fn fast_exec() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "exec" || args.next()? != "--" {
        return None;
    }
    let argv: Vec<std::ffi::OsString> = args.collect();
    if argv.is_empty() || std::env::var_os("NIXSTORE_AUTH_AWS_PROFILE").is_some() {
        return None;
    }
    let mut launch = Launch::new(argv);
    launch
        .set
        .push((EXEC_MARKER.into(), Zeroizing::new("1".into())));
    if std::env::var_os(EXEC_MARKER).is_none() {
        let dirs = crate::config::Dirs::new().ok()?;
        let cfg = crate::config::Config::load(&dirs.config_file()).ok()?;
        let needs_work = cfg.caches().ok()?.iter().any(crate::cache_plan::needs_exec);
        if needs_work {
            return None;
        }
    }
    // No flag can be given on this path: the printer's defaults are the ones to honour.
    Some(launch.replace(&Ui::default()))
}

static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal that arrived before the child's pid was known: passed on right after spawn.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn pass_on(sig: libc::c_int) {
    // Ctrl-C and Ctrl-\ reach the child from the terminal already (same process group): only
    // signals sent to us alone are passed on. kill(2) is async-signal-safe.
    if sig == libc::SIGINT || sig == libc::SIGQUIT {
        return;
    }
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    } else {
        PENDING.store(sig, Ordering::SeqCst);
    }
}

const PASSED_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];

/// Installs `pass_on` for the signals above; returns the previous actions to restore.
fn install_pass_on() -> Vec<(libc::c_int, libc::sigaction)> {
    let mut old = Vec::new();
    for sig in PASSED_SIGNALS {
        // SAFETY: a zeroed sigaction is valid; the handler only touches an atomic and kill().
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = pass_on as *const () as usize;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            let mut prev: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &act, &mut prev) == 0 {
                old.push((sig, prev));
            }
        }
    }
    old
}

fn restore(old: Vec<(libc::c_int, libc::sigaction)>) {
    for (sig, prev) in old {
        // SAFETY: restoring an action previously returned by sigaction.
        unsafe {
            libc::sigaction(sig, &prev, std::ptr::null_mut());
        }
    }
}

impl Launch {
    /// Runs the command as a child while this process stays in charge of cleaning up (an
    /// ephemeral netrc, a proxy lease). Ctrl-C at a terminal reaches both through the process
    /// group, so it is not sent twice; SIGTERM and SIGHUP sent to us alone are passed on. The
    /// child starts with default signal handling (handlers do not survive exec).
    pub fn run_supervised(self, ui: &Ui) -> i32 {
        PENDING.store(0, Ordering::SeqCst);
        let old = install_pass_on();
        let code = match self.command().spawn() {
            Ok(mut child) => {
                CHILD.store(child.id() as i32, Ordering::SeqCst);
                let early = PENDING.swap(0, Ordering::SeqCst);
                if early != 0 {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe {
                        libc::kill(child.id() as i32, early);
                    }
                }
                let code = match child.wait() {
                    Ok(status) => status_code(status),
                    Err(err) => {
                        ui.error(&anyhow::anyhow!(
                            "waiting for {} failed: {err}",
                            self.argv[0].to_string_lossy()
                        ));
                        crate::error::EXIT_ERROR
                    }
                };
                CHILD.store(0, Ordering::SeqCst);
                code
            }
            Err(err) => report_spawn_error(&self.argv[0], &err, ui),
        };
        restore(old);
        code
    }
}

/// An exit status as a shell reports it: the code, or 128+N for signal N.
pub fn status_code(status: std::process::ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => crate::error::EXIT_ERROR,
    }
}

/// `error: CMD: command not found` (127), or why it cannot run (126), through the printer.
fn report_spawn_error(program: &OsString, err: &std::io::Error, ui: &Ui) -> i32 {
    let name = program.to_string_lossy();
    let (code, what) = match err.kind() {
        std::io::ErrorKind::NotFound => (EXIT_NOT_FOUND, "command not found".to_string()),
        std::io::ErrorKind::PermissionDenied => (EXIT_CANNOT_RUN, "permission denied".to_string()),
        _ => (EXIT_CANNOT_RUN, format!("cannot run it: {err}")),
    };
    ui.error(&anyhow::anyhow!("{name}: {what}"));
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ui() -> Ui {
        Ui::silent()
    }

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn run_maps_statuses() {
        assert_eq!(Launch::new(argv(&["sh", "-c", "exit 7"])).run(&ui()), 7);
        assert_eq!(
            Launch::new(argv(&["sh", "-c", "kill -TERM $$"])).run(&ui()),
            128 + 15
        );
        assert_eq!(Launch::new(argv(&["/nonexistent/cmd"])).run(&ui()), 127);
        assert_eq!(Launch::new(argv(&["/"])).run(&ui()), 126);
    }

    #[test]
    fn supervised_run_passes_sigterm_on_and_maps_the_status() {
        assert_eq!(
            Launch::new(argv(&["sh", "-c", "exit 3"])).run_supervised(&ui()),
            3
        );
        // The child sends SIGTERM to its parent (us, the supervisor): it must come back to the
        // child, which then dies of it.
        let code = Launch::new(argv(&["sh", "-c", "kill -TERM $PPID; sleep 5; exit 0"]))
            .run_supervised(&ui());
        assert_eq!(code, 128 + libc::SIGTERM);
    }

    #[test]
    fn env_is_set_and_unset_and_debug_hides_values() {
        let mut l = Launch::new(argv(&[
            "sh",
            "-c",
            "test \"$A\" = \"$(printf secret-%s value)\" && test -z \"${HOME+x}\"",
        ]));
        l.set
            .push(("A".into(), Zeroizing::new("secret-value".into())));
        l.unset.push("HOME".into());
        assert!(!format!("{l:?}").contains("secret-value"));
        assert_eq!(l.run(&ui()), 0);
    }
}
