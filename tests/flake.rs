//! The flake, the package and the NixOS / home-manager modules (flake.nix, default.nix, nix/),
//! checked with what this machine has: Nix 2.8 on the host and Nix 2.34 in the test chroot
//! (evaluation only: no nixpkgs can be had here, so tests/nix/stub-nixpkgs stands in for it),
//! `nix show-config` for every nix.conf fragment the modules render, `systemd-analyze --user
//! verify` for the unit files, and bash, zsh and fish for the shell integration.
//!
//! Not tested here, and said so in the README: building the package with Nix, evaluating the
//! modules in nixpkgs' module system with real nixpkgs and home-manager, NixOS VM tests, Darwin.
//!
//! A check whose tools are missing is reported as *ignored* (libtest-mimic), and *fails* when
//! `CI=true`: it never passes without running. `NIXSTORE_AUTH_TEST_NIX` selects the Nix
//! versions as for the end-to-end proofs (an unselected one is ignored). Nothing on the machine
//! changes: every Nix command gets its own HOME, nix.conf and store under a temporary directory
//! (inside the chroot for 2.34, entered in a private mount namespace), and `nix flake` runs on a
//! temporary git snapshot of the working tree (a flake sees only tracked files).

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "flake/evaluation.rs"]
mod evaluation;
#[path = "flake/host.rs"]
mod host;
#[path = "flake/modules.rs"]
mod modules;
#[path = "flake/outputs.rs"]
mod outputs;

use evaluation::*;
use host::*;
use modules::*;
use outputs::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_nixstore-auth");
const SELECT_VAR: &str = "NIXSTORE_AUTH_TEST_NIX";
const TIMEOUT: &str = "180";

/// A check run once per Nix version: its name and body.
type Check = (&'static str, fn(Nix));

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for nix in [Nix::V2_8, Nix::V2_34] {
        let per_version: [Check; 11] = [
            ("parse::every_nix_file", parse_every_nix_file),
            ("lib::units_are_the_contract", lib_units),
            ("lib::cache_settings", lib_cache_settings),
            ("lib::cache_errors", lib_cache_errors),
            ("lib::names_match_the_tool", lib_names),
            ("nix_conf::fragments_are_known_to_nix", nix_conf_fragments),
            (
                "nix_conf::include_next_to_a_symlinked_nix_conf",
                nix_conf_user_include,
            ),
            ("modules::nixos", modules_nixos),
            ("modules::home_manager", modules_home_manager),
            ("flake::check_and_show", flake_check_and_show),
            ("flake::package_overlay_default_nix", flake_package),
        ];
        for (name, f) in per_version {
            let name = format!("{name}::{}", nix.suffix());
            if !selected(nix.id()) {
                // Not asked for: ignored, in CI too (as the end-to-end proofs do).
                trials.push(Trial::test(name, || Ok(())).with_ignored_flag(true));
                continue;
            }
            trials.push(trial(name, nix.missing(), move || f(nix)));
        }
    }
    let host = |extra: &[&str]| {
        let mut m = Nix::V2_8.missing();
        m.extend(
            extra
                .iter()
                .filter(|p| which(p).is_none())
                .map(|p| p.to_string()),
        );
        m
    };
    trials.push(trial(
        "units::systemd_analyze_verify".into(),
        host(&["systemd-analyze"]),
        units_verify,
    ));
    trials.push(trial(
        "units::nixos_generator_writes_them".into(),
        host(&["bash", "systemd-analyze", "id"]),
        units_generator,
    ));
    trials.push(trial(
        "units::documentation_page".into(),
        host(&["systemd-analyze", "man"]),
        units_documentation,
    ));
    trials.push(trial(
        "units::the_tool_writes_what_the_modules_render".into(),
        host(&["nix-instantiate"]),
        units_match_the_tool,
    ));
    trials.push(trial(
        "shell::init_lines_define_the_wrappers".into(),
        host(&["bash", "zsh", "fish"]),
        shell_init_lines,
    ));
    let conclusion = libtest_mimic::run(&args, trials);
    cleanup();
    conclusion.exit();
}

/// A trial that is ignored (locally) or fails (CI) when something it needs is missing.
fn trial(name: String, missing: Vec<String>, f: impl FnOnce() + Send + 'static) -> Trial {
    if missing.is_empty() {
        return Trial::test(name, move || {
            f();
            Ok(())
        });
    }
    let why = format!("missing: {}", missing.join(", "));
    if is_ci() {
        Trial::test(name, move || {
            Err(Failed::from(format!(
                "{why} (CI=true: scripts/test.sh installs what these checks need)"
            )))
        })
    } else {
        eprintln!("flake tests: {name} ignored ({why})");
        Trial::test(name, || Ok(())).with_ignored_flag(true)
    }
}

fn is_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

// --- the Nix under test -------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nix {
    /// Debian 12's Nix on the host.
    V2_8,
    /// Debian sid's Nix in the test chroot (scripts/nix-chroot.sh).
    V2_34,
}

impl Nix {
    fn id(self) -> &'static str {
        match self {
            Nix::V2_8 => "2.8",
            Nix::V2_34 => "2.34",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Nix::V2_8 => "nix_2_8",
            Nix::V2_34 => "nix_2_34",
        }
    }

    /// What this Nix's checks need and the machine lacks.
    fn missing(self) -> Vec<String> {
        let mut missing: Vec<String> = ["git", "timeout"]
            .into_iter()
            .filter(|p| which(p).is_none())
            .map(String::from)
            .collect();
        match self {
            Nix::V2_8 => missing.extend(
                ["nix", "nix-instantiate"]
                    .into_iter()
                    .filter(|p| which(p).is_none())
                    .map(String::from),
            ),
            Nix::V2_34 => {
                let nix = chroot_dir().join("usr/bin/nix");
                if !nix.exists() {
                    missing.push(format!("{} (scripts/nix-chroot.sh ensure)", nix.display()));
                }
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } != 0 {
                    missing.push("root (to enter the chroot)".into());
                }
                missing.extend(
                    ["unshare", "chroot"]
                        .into_iter()
                        .filter(|p| which(p).is_none())
                        .map(String::from),
                );
            }
        }
        missing
    }
}

fn selected(id: &str) -> bool {
    match std::env::var(SELECT_VAR) {
        Err(_) => true,
        Ok(v) if v.trim().is_empty() => true,
        Ok(v) => {
            let wanted: Vec<&str> = v.split(',').map(str::trim).collect();
            for w in &wanted {
                assert!(
                    ["2.8", "2.34"].contains(w),
                    "{SELECT_VAR}={v}: unknown Nix {w:?}"
                );
            }
            wanted.contains(&id)
        }
    }
}

fn chroot_dir() -> PathBuf {
    std::env::var_os("NIXSTORE_AUTH_CHROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/nixstore-auth-test/sid"))
}

// --- workspaces ---------------------------------------------------------------------------------

/// A directory a Nix works in: `inside` as its processes see it, `host` as this test reads it.
/// Holds repo/ (the git snapshot), store/, home/, conf/nix.conf and tmp/.
struct Place {
    inside: PathBuf,
    host: PathBuf,
}

impl Place {
    fn repo(&self) -> PathBuf {
        self.inside.join("repo")
    }

    /// A fresh directory under tmp/: (inside, host).
    fn fresh(&self, what: &str) -> (PathBuf, PathBuf) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{what}-{}", N.fetch_add(1, Ordering::SeqCst));
        let host = self.host.join("tmp").join(&name);
        std::fs::create_dir_all(&host).unwrap();
        (self.inside.join("tmp").join(name), host)
    }

    /// The host path of a path this Nix's processes see.
    fn host_path(&self, inside: &Path) -> PathBuf {
        match inside.strip_prefix(&self.inside) {
            Ok(rest) => self.host.join(rest),
            Err(_) => panic!(
                "{} is not under {}",
                inside.display(),
                self.inside.display()
            ),
        }
    }

    /// The host path of a store path in this place's store.
    fn store_file(&self, store_path: &str) -> PathBuf {
        self.host
            .join("store")
            .join(store_path.trim_start_matches('/'))
    }
}

static HOST: OnceLock<Place> = OnceLock::new();
static CHROOT: OnceLock<Place> = OnceLock::new();
static TEMP_ROOT: OnceLock<PathBuf> = OnceLock::new();

fn place(nix: Nix) -> &'static Place {
    let host = HOST.get_or_init(|| {
        let root = tempfile::Builder::new()
            .prefix("nixstore-auth-flake.")
            .tempdir()
            .unwrap()
            .keep();
        TEMP_ROOT.set(root.clone()).ok();
        let p = Place {
            inside: root.clone(),
            host: root,
        };
        snapshot(&p.host.join("repo"));
        init_place(&p);
        p
    });
    match nix {
        Nix::V2_8 => host,
        Nix::V2_34 => CHROOT.get_or_init(|| {
            let inside = PathBuf::from(format!(
                "/var/tmp/nixstore-auth-flake.{}",
                std::process::id()
            ));
            let p = Place {
                host: chroot_dir().join(inside.strip_prefix("/").unwrap()),
                inside,
            };
            std::fs::create_dir_all(&p.host).unwrap();
            let cp = Command::new("cp")
                .arg("-a")
                .arg(host.host.join("repo"))
                .arg(p.host.join("repo"))
                .status()
                .unwrap();
            assert!(cp.success(), "copying the snapshot into the chroot failed");
            init_place(&p);
            p
        }),
    }
}

fn init_place(p: &Place) {
    for d in ["store", "home", "conf", "tmp", "config"] {
        std::fs::create_dir_all(p.host.join(d)).unwrap();
    }
    std::fs::write(
        p.host.join("conf/nix.conf"),
        format!(
            "experimental-features = nix-command flakes\nstore = {}\nsubstituters =\n",
            p.inside.join("store").display()
        ),
    )
    .unwrap();
}

/// The working tree as a git repository of its own: tracked and untracked-but-not-ignored
/// files, committed; plus an untracked target/ that a flake must not see and default.nix's
/// source filter must leave out.
fn snapshot(dest: &Path) {
    let out = Command::new("git")
        .args(["ls-files", "-z", "-c", "-o", "--exclude-standard"])
        .current_dir(REPO)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git ls-files in {REPO} failed (the tests need the repository's git tree)"
    );
    for rel in out.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).unwrap());
        let from = Path::new(REPO).join(rel);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = dest.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    let home = dest.parent().unwrap().join("git-home");
    std::fs::create_dir_all(&home).unwrap();
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@invalid",
            "commit",
            "-q",
            "--no-gpg-sign",
            "-m",
            "snapshot",
        ],
    ] {
        let s = Command::new("git")
            .args(args)
            .current_dir(dest)
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .unwrap();
        assert!(s.success(), "git {args:?} failed in the snapshot");
    }
    std::fs::create_dir_all(dest.join("target/debug")).unwrap();
    std::fs::write(dest.join("target/debug/build-output"), "not source").unwrap();
}

fn cleanup() {
    let mut dirs: Vec<PathBuf> = TEMP_ROOT.get().cloned().into_iter().collect();
    dirs.extend(CHROOT.get().map(|p| p.host.clone()));
    for d in dirs {
        // Store paths are read-only: make them writable first.
        let _ = Command::new("chmod").arg("-R").arg("u+w").arg(&d).status();
        let _ = std::fs::remove_dir_all(&d);
    }
}

// --- running Nix --------------------------------------------------------------------------------

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn expect_ok(self, what: &str) -> Ran {
        assert!(self.ok, "{what} failed:\n{}\n{}", self.stdout, self.stderr);
        self
    }

    fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains("warning:"))
            .collect()
    }
}

/// Runs `program args` as `nix`'s userland does, in `cwd` (inside path), with a private HOME,
/// nix.conf and store (`env` adds or replaces variables).
fn run_nix(nix: Nix, cwd: &Path, program: &str, args: &[&str], env: &[(&str, String)]) -> Ran {
    let p = place(nix);
    let mut vars: Vec<(String, String)> = vec![
        ("HOME".into(), p.inside.join("home").display().to_string()),
        (
            "NIX_CONF_DIR".into(),
            p.inside.join("conf").display().to_string(),
        ),
        (
            "XDG_CONFIG_HOME".into(),
            p.inside.join("config").display().to_string(),
        ),
        (
            "XDG_CACHE_HOME".into(),
            p.inside.join("home/.cache").display().to_string(),
        ),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    for (k, v) in env {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.clone()));
    }
    let mut cmd = Command::new("timeout");
    cmd.arg(TIMEOUT);
    match nix {
        Nix::V2_8 => {
            cmd.arg(program).args(args).current_dir(cwd).env_clear();
            cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
            cmd.envs(vars);
        }
        Nix::V2_34 => {
            let root = chroot_dir();
            // A private mount namespace: the chroot's /proc (Nix reads /proc/self/exe) is
            // mounted for this command only and vanishes with it.
            cmd.args([
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--fork",
                "--pid",
            ])
            .arg(format!("--mount-proc={}", root.join("proc").display()))
            .arg("chroot")
            .arg(&root)
            .args(["/usr/bin/env", "-i", "-C"])
            .arg(cwd)
            .arg("PATH=/usr/bin:/bin");
            for (k, v) in vars {
                cmd.arg(format!("{k}={v}"));
            }
            cmd.arg(program).args(args);
        }
    }
    // The first Nix command of a place creates its store (state directories, symlinks): two
    // at once race ("creating symlink ... File exists"), so the first one runs alone.
    static STORE_MADE: [std::sync::Mutex<bool>; 2] =
        [std::sync::Mutex::new(false), std::sync::Mutex::new(false)];
    let mut made = STORE_MADE[nix as usize]
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let out = if *made {
        drop(made);
        cmd.output()
    } else {
        let out = cmd.output();
        *made = true;
        out
    }
    .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `nix-instantiate --eval --strict --json` of `expr` in the snapshot, with `input` as
/// `builtins.fromJSON (builtins.getEnv "NSA_TEST_INPUT")`.
fn eval(nix: Nix, expr: &str, input: &Value) -> Result<Value, String> {
    let p = place(nix);
    let prelude = "let input = builtins.fromJSON (builtins.getEnv \"NSA_TEST_INPUT\"); nsa = import ./nix/lib.nix; in ";
    let full = format!("{prelude}{expr}");
    let ran = run_nix(
        nix,
        &p.repo(),
        "nix-instantiate",
        &["--eval", "--strict", "--json", "-E", &full],
        &[("NSA_TEST_INPUT", input.to_string())],
    );
    if ran.ok {
        Ok(serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout)))
    } else {
        Err(ran.stderr)
    }
}

fn eval_ok(nix: Nix, expr: &str, input: &Value) -> Value {
    eval(nix, expr, input).unwrap_or_else(|e| panic!("evaluating {expr} failed:\n{e}"))
}

/// `nix SUBCOMMAND... ARGS...` with the stub for nixpkgs (newer Nix wants flags after the
/// subcommand).
fn flake_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = extra.to_vec();
    a.extend_from_slice(&[
        "--override-input",
        "nixpkgs",
        "path:./tests/nix/stub-nixpkgs",
    ]);
    a
}

// --- what the contract says ---------------------------------------------------------------------

/// UNITS.md's two unit files, by name.
fn expected_units(bin: &str, port: u16) -> Value {
    json!({
        "nixstore-auth-proxy.socket": format!(
"[Unit]
Description=nixstore-auth proxy for private Nix caches (socket)
Documentation=man:nixstore-auth-service(1)

[Socket]
ListenStream=127.0.0.1:{port}

[Install]
WantedBy=sockets.target
"),
        "nixstore-auth-proxy.service": format!(
"[Unit]
Description=nixstore-auth proxy for private Nix caches
Documentation=man:nixstore-auth-service(1)
Requires=nixstore-auth-proxy.socket
After=nixstore-auth-proxy.socket

[Service]
Type=notify
ExecStart={bin} proxy serve
Restart=on-failure

[Install]
Also=nixstore-auth-proxy.socket
"),
    })
}

/// An HTTPS cache with a netrc and an S3 cache, as the module system would hand them over
/// (every option present, defaults null).
fn sample_caches() -> Value {
    json!({
        "cache-example-org": {
            "url": "https://cache.example.org",
            "publicKeys": ["cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="],
            "route": null, "netrcFile": "/run/secrets/nix-netrc", "proxyUsers": null
        },
        "my-bucket": {
            "url": "s3://my-bucket?region=eu-west-1",
            "publicKeys": ["my-bucket-1:QkJCQg=="],
            "route": null, "netrcFile": null, "proxyUsers": null
        }
    })
}

const HTTPS_KEY: &str = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
const S3_KEY: &str = "my-bucket-1:QkJCQg==";
