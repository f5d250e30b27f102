//! `use` for HTTPS caches with `--route`, `--auth`, `--token-command` and `--ca-file`, through
//! the binary against sandboxed files (no daemon, no network): the usage errors, where the
//! token goes on each route, the move between routes, what `list` and `--dry-run` tell, and
//! `remove` undoing all of it. The proxy itself is proven in tests/e2e/https_proxy.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KEY: &str = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
const TOKEN: &str = "s3cr3t-token-value";
const URL: &str = "https://cache.example.org";

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let s = Sandbox {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(s.path("etc")).unwrap();
        std::fs::create_dir_all(s.user_conf().parent().unwrap()).unwrap();
        std::fs::create_dir_all(s.config_toml().parent().unwrap()).unwrap();
        // The keyring is the 0600 file store: no Secret Service in these tests.
        std::fs::write(s.config_toml(), "keyring-backend = \"file\"\n").unwrap();
        s
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn home(&self) -> PathBuf {
        self.path("home")
    }
    fn user_conf(&self) -> PathBuf {
        self.home().join(".config/nix/nix.conf")
    }
    fn user_netrc(&self) -> PathBuf {
        self.home().join(".config/nix/netrc")
    }
    fn config_toml(&self) -> PathBuf {
        self.home().join(".config/nixstore-auth/config.toml")
    }
    fn secrets(&self) -> PathBuf {
        self.home().join(".local/share/nixstore-auth/secrets")
    }
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nixstore-auth"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("XDG_DATA_HOME", self.home().join(".local/share"))
            .env("XDG_CACHE_HOME", self.home().join(".cache"))
            .env("XDG_STATE_HOME", self.home().join(".local/state"))
            .env("NIX_CONF_DIR", self.path("etc"))
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // setsid: no controlling terminal, so prompts are impossible.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            // A usage error exits before reading stdin: a broken pipe here is no failure.
            let _ = pipe.write_all(input.as_bytes());
        }
        child.wait_with_output().unwrap()
    }
    fn use_(&self, extra: &[&str], stdin: Option<&str>) -> Output {
        let mut args = vec!["use", URL, "--public-key", KEY, "--mode", "user"];
        args.extend_from_slice(extra);
        self.run(&args, stdin)
    }
    /// Every file under the sandbox that holds `needle`.
    fn files_holding(&self, needle: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, needle: &str, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, needle, out);
                } else if std::fs::read(&p)
                    .is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
                {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), needle, &mut out);
        out
    }
    fn list_json(&self) -> serde_json::Value {
        let o = self.run(&["list", "--json"], None);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn contradicting_flags_are_usage_errors_and_change_nothing() {
    let s = Sandbox::new();
    let rows: &[(&[&str], &str)] = &[
        (
            &["--auth", "bearer", "--route", "netrc", "--token-stdin"],
            "--auth bearer cannot be used with --route netrc",
        ),
        (
            &["--token-command", "gh auth token", "--route", "netrc"],
            "--token-command cannot be used with --route netrc",
        ),
        (
            &["--auth", "bearer", "--login", "me", "--token-stdin"],
            "--login cannot be used with --auth bearer",
        ),
        (
            &[
                "--auth",
                "bearer",
                "--secret-store",
                "netrc",
                "--token-stdin",
            ],
            "--secret-store netrc cannot be used with --auth bearer",
        ),
        (
            &[
                "--route",
                "proxy",
                "--secret-store",
                "netrc",
                "--token-stdin",
            ],
            "--secret-store netrc cannot be used with --route proxy",
        ),
        (
            &["--token-command", "cat t | jq -r .token"],
            "--token-command: the token command uses '|'",
        ),
        (&["--token-command", "echo 'open"], "unclosed single quote"),
        (
            &["--token-command", "x", "--token-stdin"],
            "cannot be used with",
        ),
        (&["--route", "via", "--token-stdin"], "invalid value 'via'"),
        (
            &["--auth", "digest", "--token-stdin"],
            "invalid value 'digest'",
        ),
    ];
    for (extra, needle) in rows {
        let o = s.use_(extra, Some(TOKEN));
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(text(&o).contains(needle), "{extra:?}: {}", text(&o));
        assert!(!text(&o).contains(TOKEN));
    }
    let o = s.run(
        &["use", "s3://bucket", "--route", "proxy", "--mode", "user"],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("apply to HTTPS caches"), "{}", text(&o));
    assert!(!s.user_conf().exists() && !s.user_netrc().exists());
    assert_eq!(read(&s.config_toml()), "keyring-backend = \"file\"\n");
}

#[test]
fn auto_takes_netrc_for_a_static_basic_token_and_the_proxy_for_bearer_and_commands() {
    // A static Basic token: netrc, as before.
    let s = Sandbox::new();
    let o = s.use_(&["--token-stdin"], Some(TOKEN));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("route netrc for https://cache.example.org: a static Basic token in a netrc file works with no process running"), "{}", text(&o));
    assert!(read(&s.user_netrc()).contains(TOKEN));
    assert!(read(&s.user_conf()).contains(&format!("extra-substituters = {URL}")));
    let l = s.list_json();
    assert_eq!(l[0]["route"], "netrc");

    // Bearer: the proxy; the token in the keyring only, the real URL not in nix.conf.
    let s = Sandbox::new();
    let o = s.use_(&["--auth", "bearer", "--token-stdin"], Some(TOKEN));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("route proxy for https://cache.example.org: a Bearer token cannot be given through netrc"), "{}", text(&o));
    let conf = read(&s.user_conf());
    assert!(
        conf.contains(KEY) && !conf.contains("substituters"),
        "{conf}"
    );
    assert!(!s.user_netrc().exists());
    let holding = s.files_holding(TOKEN);
    assert_eq!(holding.len(), 1, "{holding:?}");
    assert!(holding[0].starts_with(s.secrets()), "{holding:?}");
    let toml = read(&s.config_toml());
    assert!(
        toml.contains("auth = \"bearer\"") && toml.contains("secret-store = \"keyring\""),
        "{toml}"
    );
    let l = s.list_json();
    assert_eq!(
        (&l[0]["route"], &l[0]["route_why"]),
        (
            &serde_json::json!("proxy"),
            &serde_json::json!("a Bearer token cannot be given through netrc")
        )
    );
    assert_eq!(l[0]["credential_present"], true);

    // A command: the proxy; nothing stored, the command line recorded, never run by `use`.
    let s = Sandbox::new();
    let ran = s.path("ran");
    let cmd = format!("touch '{}'", ran.display());
    let o = s.use_(&["--token-command", &cmd], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!ran.exists(), "use ran the token command");
    assert!(!s.secrets().exists() && !s.user_netrc().exists());
    let toml = read(&s.config_toml());
    assert!(
        toml.contains(&format!("token-command = \"touch '{}'\"", ran.display())),
        "{toml}"
    );
    let l = s.list_json();
    assert_eq!(
        (&l[0]["route"], &l[0]["credential"]),
        (
            &serde_json::json!("proxy"),
            &serde_json::json!("token command (touch)")
        )
    );
    let o = s.run(&["list"], None);
    assert!(
        text(&o).contains("cache-example-org: route proxy: the token comes from a command"),
        "{}",
        text(&o)
    );
}

#[test]
fn moving_to_the_proxy_takes_the_token_out_of_netrc_and_remove_undoes_all() {
    let s = Sandbox::new();
    let conf_before = "# mine\nkeep-outputs = true\n";
    std::fs::write(s.user_conf(), conf_before).unwrap();
    let netrc_before = "machine other.example.org login me password theirs\n";
    std::fs::write(s.user_netrc(), netrc_before).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.user_netrc(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf_line = format!("{conf_before}netrc-file = {}\n", s.user_netrc().display());
    std::fs::write(s.user_conf(), &conf_line).unwrap();

    let o = s.use_(&["--token-stdin"], Some(TOKEN));
    assert!(o.status.success(), "{}", text(&o));
    assert!(read(&s.user_netrc()).contains(TOKEN));

    // The dry run tells the route and changes nothing.
    let before = (
        read(&s.user_conf()),
        read(&s.user_netrc()),
        read(&s.config_toml()),
    );
    let o = s.run(
        &[
            "use",
            "cache-example-org",
            "--route",
            "proxy",
            "--dry-run",
            "--mode",
            "user",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("route proxy for https://cache.example.org: --route proxy was asked"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("-extra-substituters = https://cache.example.org"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains(TOKEN));
    assert_eq!(
        before,
        (
            read(&s.user_conf()),
            read(&s.user_netrc()),
            read(&s.config_toml())
        )
    );

    let o = s.run(
        &[
            "use",
            "cache-example-org",
            "--route",
            "proxy",
            "--mode",
            "user",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    // The netrc keeps only what was there before; the token moved to the keyring.
    assert_eq!(read(&s.user_netrc()), netrc_before);
    let holding = s.files_holding(TOKEN);
    assert_eq!(holding.len(), 1, "{holding:?}");
    assert!(holding[0].starts_with(s.secrets()), "{holding:?}");
    let conf = read(&s.user_conf());
    assert!(
        !conf.contains("substituters") && conf.contains(KEY),
        "{conf}"
    );
    assert!(read(&s.config_toml()).contains("route = \"proxy\""));
    assert_eq!(s.list_json()[0]["route"], "proxy");

    // And back: `--route netrc` puts the token into the netrc again.
    let o = s.run(
        &[
            "use",
            "cache-example-org",
            "--route",
            "netrc",
            "--secret-store",
            "netrc",
            "--mode",
            "user",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(read(&s.user_netrc()).contains(TOKEN));
    assert!(read(&s.user_conf()).contains(&format!("extra-substituters = {URL}")));
    assert!(
        s.files_holding(TOKEN)
            .iter()
            .all(|p| !p.starts_with(s.secrets()))
    );

    let o = s.run(
        &[
            "use",
            "cache-example-org",
            "--route",
            "proxy",
            "--mode",
            "user",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = s.run(&["remove", "cache-example-org"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read(&s.user_conf()), conf_line);
    assert_eq!(read(&s.user_netrc()), netrc_before);
    assert!(s.files_holding(TOKEN).is_empty());
    assert_eq!(read(&s.config_toml()), "keyring-backend = \"file\"\n");
}

#[test]
fn a_ca_file_is_read_when_given_and_recorded_as_an_absolute_path() {
    let s = Sandbox::new();
    std::fs::write(s.path("bad.pem"), "not a certificate\n").unwrap();
    let o = s.use_(&["--ca-file", "bad.pem", "--no-token"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("bad.pem"), "{}", text(&o));
    assert!(!s.user_conf().exists());
    // A real bundle (the test CA the e2e proofs use is made there; any PEM certificate does).
    let Some(system) = ["/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        panic!("no system CA bundle to copy on this machine");
    };
    std::fs::copy(system, s.path("ca.pem")).unwrap();
    let o = s.use_(&["--ca-file", "ca.pem", "--no-token"], None);
    assert!(o.status.success(), "{}", text(&o));
    let toml = read(&s.config_toml());
    assert!(
        toml.contains(&format!("ca-file = \"{}\"", s.path("ca.pem").display())),
        "{toml}"
    );
}
