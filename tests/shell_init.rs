//! `nixstore-auth shell-init bash|zsh|fish`, proven in the real shells under tmux: the test types
//! into an interactive shell (`send-keys`) and reads its screen (`capture-pane`), as a user would.
//!
//! Each test gets a fresh HOME and XDG directories, its own tmux server (socket in its temp
//! directory, so nothing leaks between tests or into a user's tmux) and a PATH whose first entry
//! holds the built binary as `nixstore-auth` and fake `nix` / `nix-build` scripts that print
//! their argv and `NIXSTORE_AUTH_EXEC` (which every `nixstore-auth exec` sets). Nothing outside
//! the temp directory changes: no end-to-end guard, but tmux, zsh and fish must be installed
//! (`apt-get install tmux zsh fish`); with `CI=true` a missing one fails the test, otherwise the
//! test prints a skip line.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for a shell to show what a step prints.
const WAIT: Duration = Duration::from_secs(20);

/// The fake `nix` and `nix-build`: print the name, the exec marker and each argument, then
/// `exit N`, `sleep` (for Ctrl-C) or `run CMD...` (a command that runs a nested shell).
const FAKE_NIX: &str = r#"#!/bin/sh
echo "fake $(basename "$0") EXEC=${NIXSTORE_AUTH_EXEC-unset}"
printf '<%s>\n' "$@"
case "$1" in
  exit) exit "$2" ;;
  sleep) echo "fake sleeping"; sleep 60; echo "fake woke" ;;
  run) shift; exec "$@" ;;
esac
"#;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn name(self) -> &'static str {
        match self {
            Shell::Bash => "bash",
            Shell::Zsh => "zsh",
            Shell::Fish => "fish",
        }
    }

    /// The interactive shell, without any rc file of the machine or user.
    fn argv(self) -> &'static [&'static str] {
        match self {
            Shell::Bash => &["bash", "--norc", "--noprofile"],
            Shell::Zsh => &["zsh", "-f"],
            Shell::Fish => &["fish", "--no-config"],
        }
    }

    /// The line that loads the integration, as the README tells users.
    fn init_line(self) -> &'static str {
        match self {
            Shell::Bash => r#"eval "$(nixstore-auth shell-init bash)""#,
            Shell::Zsh => r#"eval "$(nixstore-auth shell-init zsh)""#,
            Shell::Fish => "nixstore-auth shell-init fish | source",
        }
    }

    /// The variable holding the last exit status.
    fn status_var(self) -> &'static str {
        match self {
            Shell::Fish => "$status",
            _ => "$?",
        }
    }

    /// A command that prints how the shell resolves `nix`, and what it prints for a function.
    fn kind_of_nix(self) -> (&'static str, &'static str) {
        match self {
            Shell::Bash => ("type -t nix", "function"),
            Shell::Zsh => ("whence -w nix", "nix: function"),
            Shell::Fish => ("type -t nix", "function"),
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(program)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// What is missing to test `shell` (tmux, the shell itself); empty when nothing is.
fn missing_tools(shell: Shell) -> Vec<&'static str> {
    ["tmux", shell.name()]
        .into_iter()
        .filter(|p| !on_path(p))
        .collect()
}

/// Fails the test when a tool is missing (it runs only then in CI: elsewhere the harness
/// ignores it).
fn require_tools(shell: Shell) {
    let missing = missing_tools(shell);
    assert!(
        missing.is_empty(),
        "not installed: {} (apt-get install -y tmux zsh fish)",
        missing.join(", ")
    );
}

/// A fresh HOME, XDG dirs, working directory and PATH, and a tmux server of its own running
/// `shell` in them. The session (and its server) is killed on Drop.
struct Term {
    shell: Shell,
    sock: PathBuf,
    session: String,
    step: usize,
    _dir: tempfile::TempDir,
}

impl Term {
    fn start(shell: Shell, test: &str) -> Term {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::Builder::new()
            .prefix("nsa-shell-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        let bin = root.join("bin");
        let home = root.join("home");
        let work = root.join("work");
        for d in [&bin, &home, &work] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_nixstore-auth"),
            bin.join("nixstore-auth"),
        )
        .unwrap();
        for name in ["nix", "nix-build"] {
            write_executable(&bin.join(name), FAKE_NIX);
        }
        // Files an unquoted glob would match: a quoted one must reach Nix as it was typed.
        for f in ["one.txt", "two.txt"] {
            std::fs::write(work.join(f), "").unwrap();
        }
        let session = format!(
            "nsa-{}-{}-{}-{}",
            shell.name(),
            test,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let term = Term {
            shell,
            sock: root.join("tmux.sock"),
            session,
            step: 0,
            _dir: dir,
        };
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
        let env = [
            format!("HOME={}", home.display()),
            format!("XDG_CONFIG_HOME={}", home.join(".config").display()),
            format!("XDG_DATA_HOME={}", home.join(".local/share").display()),
            format!("XDG_CACHE_HOME={}", home.join(".cache").display()),
            format!("XDG_STATE_HOME={}", home.join(".local/state").display()),
            format!("PATH={path}"),
            "TERM=screen".to_string(),
            "LANG=C.UTF-8".to_string(),
            "PS1=$ ".to_string(),
        ];
        // `env -i`: the shell sees only the environment above, not the test runner's (which
        // might hold NIXSTORE_AUTH_EXEC, AWS_* or a profile variable).
        let status = term
            .tmux()
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "220",
                "-y",
                "50",
            ])
            .args(["-s", &term.session, "-c"])
            .arg(&work)
            .args(["--", "env", "-i"])
            .args(&env)
            .args(shell.argv())
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed: {status}");
        let mut term = term;
        // The shell is ready once it runs what we type.
        term.run_step("echo started");
        term
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.sock).stdin(Stdio::null());
        c
    }

    /// Types `text` and Enter, as a user would.
    fn type_line(&self, text: &str) {
        let ok = self
            .tmux()
            .args(["send-keys", "-t", &self.session, "-l", text])
            .status()
            .unwrap()
            .success()
            && self.keys("Enter");
        assert!(ok, "tmux send-keys failed");
    }

    /// Sends a key by its tmux name (`Enter`, `C-c`).
    fn keys(&self, key: &str) -> bool {
        self.tmux()
            .args(["send-keys", "-t", &self.session, key])
            .status()
            .unwrap()
            .success()
    }

    /// The whole pane, history included, wrapped lines joined, trailing blanks dropped.
    fn screen(&self) -> Vec<String> {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-J", "-S", "-", "-t", &self.session])
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux capture-pane failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// Waits until `found` picks something from the screen; panics with the screen after WAIT.
    fn wait_for<T>(&self, what: &str, mut found: impl FnMut(&[String]) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if let Some(t) = found(&screen) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out after {WAIT:?} waiting for {what}; screen:\n{}",
                self.shell.name(),
                screen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `command` between two echoed markers, waits for the end marker, and returns the
    /// lines printed in between and the exit status of `command`. The markers are typed split
    /// (`"BEG""IN-3"`) so that the typed line itself never matches what the echo prints.
    fn run_step(&mut self, command: &str) -> (Vec<String>, i32) {
        self.step += 1;
        let n = self.step;
        self.type_line(&format!(
            "echo \"BEG\"\"IN-{n}\"; {command}; echo \"EN\"\"D-{n}:{}\"",
            self.shell.status_var()
        ));
        self.block(n, command)
    }

    /// The output of step `n`, once its end marker is on the screen.
    fn block(&self, n: usize, command: &str) -> (Vec<String>, i32) {
        let begin = format!("BEGIN-{n}");
        let end = format!("END-{n}:");
        self.wait_for(&format!("the end of `{command}`"), |screen| {
            let start = screen.iter().position(|l| *l == begin)?;
            let len = screen[start + 1..]
                .iter()
                .position(|l| l.starts_with(&end))?;
            let status = screen[start + 1 + len][end.len()..].trim().parse().ok()?;
            Some((screen[start + 1..start + 1 + len].to_vec(), status))
        })
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self
            .tmux()
            .args(["kill-session", "-t", &self.session])
            .stderr(Stdio::null())
            .status();
        let _ = self
            .tmux()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A shell with the integration loaded.
fn loaded(shell: Shell, test: &str) -> Term {
    require_tools(shell);
    let mut t = Term::start(shell, test);
    let (out, status) = t.run_step(shell.init_line());
    assert_eq!(
        (out.as_slice(), status),
        (&[][..], 0),
        "{}: loading the init printed something or failed",
        shell.name()
    );
    t
}

#[track_caller]
fn assert_step(t: &mut Term, command: &str, want: &[&str], want_status: i32) {
    let (out, status) = t.run_step(command);
    assert_eq!(
        (out.clone(), status),
        (want.iter().map(|s| s.to_string()).collect(), want_status),
        "{}: `{command}` printed (left) / expected (right):\n{}",
        t.shell.name(),
        out.join("\n")
    );
}

/// Arguments with spaces, quotes, `$`, command substitution, shell operators, an empty one and
/// a quoted glob reach Nix untouched, through `exec`; an unquoted glob is expanded once, by the
/// shell; the exit status passes through; `command nix` bypasses the wrapper.
fn arguments_status_and_bypass(shell: Shell) {
    let mut t = loaded(shell, "arguments_status_and_bypass");
    let (kind, function) = shell.kind_of_nix();
    assert_step(&mut t, kind, &[function], 0);
    assert_step(
        &mut t,
        r#"nix 'a b' "it's" 'say "hi"' '$HOME' '$(echo pwned)' '*.txt' *.txt '' '  two  spaces ' 'a;b|c&d' --opt=x\ y"#,
        &[
            "fake nix EXEC=1",
            "<a b>",
            "<it's>",
            "<say \"hi\">",
            "<$HOME>",
            "<$(echo pwned)>",
            "<*.txt>",
            "<one.txt>",
            "<two.txt>",
            "<>",
            "<  two  spaces >",
            "<a;b|c&d>",
            "<--opt=x y>",
        ],
        0,
    );
    assert_step(
        &mut t,
        "nix exit 7",
        &["fake nix EXEC=1", "<exit>", "<7>"],
        7,
    );
    assert_step(
        &mut t,
        "nix-build --help 'x y'",
        &["fake nix-build EXEC=1", "<--help>", "<x y>"],
        0,
    );
    assert_step(
        &mut t,
        "command nix 'a b'",
        &["fake nix EXEC=unset", "<a b>"],
        0,
    );
    assert_step(
        &mut t,
        "command nix exit 3",
        &["fake nix EXEC=unset", "<exit>", "<3>"],
        3,
    );
}

/// Ctrl-C while the wrapped command runs ends it (not the shell), and the shell is back at its
/// prompt with status 130.
fn ctrl_c(shell: Shell) {
    let mut t = loaded(shell, "ctrl_c");
    t.step += 1;
    let n = t.step;
    t.type_line(&format!("echo \"BEG\"\"IN-{n}\"; nix sleep"));
    let begin = format!("BEGIN-{n}");
    t.wait_for("the fake nix to sleep", |screen| {
        let start = screen.iter().position(|l| *l == begin)?;
        screen[start..]
            .iter()
            .any(|l| l == "fake sleeping")
            .then_some(())
    });
    let pressed = Instant::now();
    assert!(t.keys("C-c"), "tmux send-keys C-c failed");
    // Typed while the shell may still be reaping the job: the terminal buffers it.
    t.type_line(&format!("echo \"EN\"\"D-{n}:{}\"", shell.status_var()));
    let (out, status) = t.block(n, "nix sleep, then Ctrl-C");
    assert!(
        pressed.elapsed() < Duration::from_secs(15),
        "{}: Ctrl-C did not end the sleeping nix",
        shell.name()
    );
    assert_eq!(
        out.first().map(String::as_str),
        Some("fake nix EXEC=1"),
        "{}: {out:#?}",
        shell.name()
    );
    assert!(
        !out.iter().any(|l| l == "fake woke"),
        "{}: the fake nix was not interrupted: {out:#?}",
        shell.name()
    );
    assert_eq!(
        status,
        130,
        "{}: status after Ctrl-C: {out:#?}",
        shell.name()
    );
    // The shell itself survived and still wraps nix.
    assert_step(
        &mut t,
        "nix exit 4",
        &["fake nix EXEC=1", "<exit>", "<4>"],
        4,
    );
}

/// A wrapped command (`nix-build`, standing for nix-shell) runs a shell that loads the init
/// again and runs wrapped `nix`: no error, marker and arguments intact, statuses pass through
/// both levels.
fn nested(shell: Shell) {
    let mut t = loaded(shell, "nested");
    let (kind, function) = shell.kind_of_nix();
    let inner = format!(
        r#"{}; {kind}; nix inner "a  b"; nix exit 5"#,
        shell.init_line()
    );
    let argv = shell.argv();
    // The inner shell runs the script given with -c (fish: -c too).
    let mut want: Vec<String> = vec!["fake nix-build EXEC=1".into(), "<run>".into()];
    want.extend(argv.iter().map(|a| format!("<{a}>")));
    want.push("<-c>".into());
    want.push(format!("<{inner}>"));
    want.push(function.into());
    want.extend(
        [
            "fake nix EXEC=1",
            "<inner>",
            "<a  b>",
            "fake nix EXEC=1",
            "<exit>",
            "<5>",
        ]
        .map(String::from),
    );
    let (out, status) = t.run_step(&format!("nix-build run {} -c '{inner}'", argv.join(" ")));
    assert_eq!(
        (out.clone(), status),
        (want, 5),
        "{}: nested run printed (left) / expected (right):\n{}",
        shell.name(),
        out.join("\n")
    );
}

/// One test per shell and behaviour (`bash_ctrl_c`, ...). A test whose shell or tmux is
/// missing is ignored, unless `CI=true`: there the test bed must be complete, and it fails.
fn main() -> std::process::ExitCode {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    type Behaviour = (&'static str, fn(Shell));
    let behaviours: [Behaviour; 3] = [
        ("arguments_status_and_bypass", arguments_status_and_bypass),
        ("ctrl_c", ctrl_c),
        ("nested", nested),
    ];
    let mut tests = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let missing = missing_tools(shell);
        for (what, run) in behaviours {
            let name = format!("{}_{what}", shell.name());
            tests.push(
                libtest_mimic::Trial::test(name, move || {
                    run(shell);
                    Ok(())
                })
                .with_ignored_flag(!ci && !missing.is_empty()),
            );
        }
        if !ci && !missing.is_empty() {
            support::note(&format!(
                "note: the {} tests are ignored: not installed: {} (apt-get install -y tmux zsh fish)",
                shell.name(),
                missing.join(", ")
            ));
        }
    }
    support::harness::plain_main(tests)
}
