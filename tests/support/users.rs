//! Unprivileged test users with a fresh, empty HOME, and commands run as them in the Nix under
//! test's userland.

use super::{DEFAULT_TIMEOUT, E2e, NixUnderTest, Output, run, run_root, unique_tag};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// PATH for test users: Debian's Nix lives in /usr/bin.
pub const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A real user made with `useradd`, in `nix-users` (so it may reach the daemon's socket), with an
/// empty 0700 HOME below the test's directory. `userdel` on Drop. For a Nix in a chroot the
/// user is made on the host first (which picks a uid free there) and then in the chroot with
/// the same uid and gid: a uid seen in /proc is always this user's, on either side.
pub struct TestUser {
    /// Login name, unique per test (`nsa` + `role` + a tag), at most 32 characters.
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// The Nix whose userland the user's commands run in.
    pub nix: NixUnderTest,
    in_chroot: bool,
}

impl TestUser {
    /// Creates the user. `role` (short, `[a-z]`) only makes the name readable in logs.
    pub fn create(e2e: &E2e, role: &str) -> TestUser {
        let mut name = format!("nsa{role}{}", unique_tag());
        name.truncate(32);
        let home = e2e.dir.join(format!("home-{name}"));
        run_root(
            "/usr/sbin/useradd",
            [
                "--no-create-home",
                "--home-dir",
                home.to_str().unwrap(),
                "--shell",
                "/bin/sh",
                "--groups",
                "nix-users",
                &name,
            ],
            None,
        )
        .assert_success("useradd (is nix-bin installed? it creates the nix-users group)");
        // Constructed before the checks below so that a failure still deletes the user.
        let mut user = TestUser {
            name,
            home,
            uid: 0,
            gid: 0,
            nix: e2e.nix.clone(),
            in_chroot: false,
        };
        let id = |flag: &str| {
            let out = run_root("id", [flag, &user.name], None);
            out.assert_success("id");
            out.stdout.trim().parse::<u32>().unwrap()
        };
        user.uid = id("-u");
        user.gid = id("-g");
        if e2e.nix.in_chroot() {
            let chroot = |program: &str, args: &[&str]| {
                let mut cmd = e2e.nix.command(program);
                cmd.args(args);
                run(&mut cmd, None, DEFAULT_TIMEOUT)
            };
            let (uid, gid) = (user.uid.to_string(), user.gid.to_string());
            chroot("/usr/sbin/groupadd", &["--gid", &gid, &user.name])
                .assert_success("groupadd in the chroot (is its gid taken there?)");
            user.in_chroot = true;
            chroot(
                "/usr/sbin/useradd",
                &[
                    "--uid",
                    &uid,
                    "--gid",
                    &gid,
                    "--no-create-home",
                    "--home-dir",
                    user.home.to_str().unwrap(),
                    "--shell",
                    "/bin/sh",
                    "--groups",
                    "nix-users",
                    &user.name,
                ],
            )
            .assert_success("useradd in the chroot");
        }
        fs::create_dir(&user.home).unwrap();
        fs::set_permissions(&user.home, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&user.home, Some(user.uid), Some(user.uid)).unwrap();
        user
    }

    /// A command run as this user through `runuser` with a clean environment: HOME, USER,
    /// LOGNAME, PATH ([`USER_PATH`]) and `NIX_REMOTE=daemon`, plus what the test adds with
    /// [`UserCmd::env`] (environment, not argv: fine for secrets). Working directory: HOME.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> UserCmd<'_> {
        UserCmd {
            user: self,
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `~/.config/nix/nix.conf`, where Nix looks for the user's settings (no XDG overrides are set).
    pub fn nix_conf(&self) -> PathBuf {
        self.home.join(".config/nix/nix.conf")
    }

    /// Makes HOME 0755, as `useradd -m` and many systems do (Debian's `adduser` makes 0700):
    /// other users may then read whatever the user leaves world-readable.
    pub fn open_home(&self) {
        fs::set_permissions(&self.home, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Writes a file below HOME, mode 0600 and owned by the user, making missing directories
    /// 0700 and theirs (as the user's own tools would keep secrets).
    pub fn write_private(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.home.join(rel);
        let mut dir = self.home.clone();
        for part in Path::new(rel).parent().unwrap().components() {
            dir.push(part);
            if !dir.exists() {
                fs::create_dir(&dir).unwrap();
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
                std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.uid)).unwrap();
            }
        }
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(self.uid), Some(self.uid)).unwrap();
        path
    }

    /// `sh -c SCRIPT` as the user with a bare environment: HOME, USER and PATH, then `extra`
    /// (`NAME=VALUE`s); what direnv, an editor, cron or a script gets at the least.
    pub fn bare_sh(&self, extra: &[String], script: &str) -> UserCmd<'_> {
        self.cmd("/usr/bin/env")
            .args(["-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("USER={}", self.name))
            .arg(format!("PATH={USER_PATH}"))
            .args(extra)
            .args(["sh", "-c", script])
    }

    /// Reads a file below HOME ("" when it does not exist).
    pub fn read(&self, rel: impl AsRef<Path>) -> String {
        fs::read_to_string(self.home.join(rel)).unwrap_or_default()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Processes we started as this user were killed by `run`; the home goes with E2e's dir.
        if self.in_chroot {
            for (program, what) in [
                ("/usr/sbin/userdel", "user"),
                ("/usr/sbin/groupdel", "group"),
            ] {
                let mut cmd = self.nix.command(program);
                cmd.arg(&self.name);
                let out = run(&mut cmd, None, DEFAULT_TIMEOUT);
                // userdel removes the user's own group as well: groupdel may find none.
                if !out.success() && what == "user" {
                    super::note(&format!(
                        "warning: could not delete test user {} in the chroot:\n{out}",
                        self.name
                    ));
                }
            }
        }
        let out = run_root("/usr/sbin/userdel", [&self.name], None);
        if !out.success() {
            super::note(&format!(
                "warning: could not delete test user {}:\n{out}",
                self.name
            ));
        }
    }
}

/// Builder for a command run as a [`TestUser`]; see [`TestUser::cmd`].
pub struct UserCmd<'a> {
    user: &'a TestUser,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl UserCmd<'_> {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets (or overrides) an environment variable of the command.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Bytes written to the command's stdin (otherwise stdin is /dev/null).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the command and waits for it (killed after the timeout).
    pub fn run(self) -> Output {
        let (stdin, timeout, name) = (self.stdin.clone(), self.timeout, self.user.name.clone());
        let mut cmd = self.into_command();
        let mut out = run(&mut cmd, stdin.as_deref(), timeout);
        out.what = format!("[as {name}] {}", out.what);
        out
    }

    /// The command, not run: for a server run as the user ([`super::Service::spawn`]).
    pub fn into_command(self) -> Command {
        let mut cmd = self.user.nix.command("/usr/sbin/runuser");
        // runuser keeps the environment it is given (it only sets HOME, USER, LOGNAME).
        cmd.env_clear()
            .env("HOME", &self.user.home)
            .env("USER", &self.user.name)
            .env("LOGNAME", &self.user.name)
            .env("PATH", USER_PATH)
            .env("NIX_REMOTE", "daemon")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.user.home)
            .arg("-u")
            .arg(&self.user.name)
            .arg("--")
            .arg(&self.program)
            .args(&self.args);
        cmd
    }
}
