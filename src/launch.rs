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
use zeroize::Zeroizing;

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
    /// code to use (the error is already printed).
    pub fn replace(self) -> i32 {
        let err = self.command().exec();
        report_spawn_error(&self.argv[0], &err)
    }

    /// Runs the command as a child and waits; returns the exit code to pass on.
    pub fn run(self) -> i32 {
        match self.command().status() {
            Ok(status) => status_code(status),
            Err(err) => report_spawn_error(&self.argv[0], &err),
        }
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

fn report_spawn_error(program: &OsString, err: &std::io::Error) -> i32 {
    let name = program.to_string_lossy();
    let (code, what) = match err.kind() {
        std::io::ErrorKind::NotFound => (EXIT_NOT_FOUND, "command not found".to_string()),
        std::io::ErrorKind::PermissionDenied => (EXIT_CANNOT_RUN, "permission denied".to_string()),
        _ => (EXIT_CANNOT_RUN, format!("cannot run it: {err}")),
    };
    eprintln!(
        "{} {name}: {what}",
        crate::ui::paint("nixstore-auth:", console::Color::Red)
    );
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn run_maps_statuses() {
        assert_eq!(Launch::new(argv(&["sh", "-c", "exit 7"])).run(), 7);
        assert_eq!(
            Launch::new(argv(&["sh", "-c", "kill -TERM $$"])).run(),
            128 + 15
        );
        assert_eq!(Launch::new(argv(&["/nonexistent/cmd"])).run(), 127);
        assert_eq!(Launch::new(argv(&["/"])).run(), 126);
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
        assert_eq!(l.run(), 0);
    }
}
