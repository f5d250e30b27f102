//! The binary against sandboxed config files: no daemon, no network, no machine state. Each
//! test gets its own HOME, XDG dirs and NIX_CONF_DIR.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KEY: &str = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
const TOKEN: &str = "s3cr3t-token-value";

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let s = Sandbox {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(s.etc()).unwrap();
        std::fs::create_dir_all(s.user_conf().parent().unwrap()).unwrap();
        s
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }
    fn user_conf(&self) -> PathBuf {
        self.home().join(".config/nix/nix.conf")
    }
    fn user_netrc(&self) -> PathBuf {
        self.home().join(".config/nix/netrc")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nixstore-auth"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("XDG_DATA_HOME", self.home().join(".local/share"))
            .env("XDG_CACHE_HOME", self.home().join(".cache"))
            .env("NIX_CONF_DIR", self.etc())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.cmd(args);
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        // setsid: no controlling terminal, as in CI, so prompts are impossible.
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
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }
    fn use_cache(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "use",
            "https://cache.example.org",
            "--public-key",
            KEY,
            "--token-stdin",
            "--mode",
            "user",
        ];
        args.extend_from_slice(extra);
        self.run(&args, Some(TOKEN))
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

const BUSY_CONF: &str = "# Managed by hand. Do not touch.\n\
    max-jobs = 4   # two cores\n\
    \n\
    # caches\n\
    extra-substituters = https://other.example.org\t# keep me\n\
    binary-cache-public-keys = other-1:AAAA\r\n\
    !include /nonexistent/extra.conf\n\
    keep-outputs = true";

#[test]
fn use_then_remove_restores_a_busy_nix_conf_byte_for_byte() {
    let s = Sandbox::new();
    std::fs::write(s.user_conf(), BUSY_CONF).unwrap();
    let o = s.use_cache(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(TOKEN));
    let conf = read(&s.user_conf());
    assert!(conf.starts_with(BUSY_CONF), "{conf}");
    assert!(conf.contains("extra-substituters = https://cache.example.org"));
    assert!(conf.contains(&format!("extra-trusted-public-keys = {KEY}")));
    assert!(
        !conf.lines().any(|l| l.starts_with("substituters")),
        "never the plain form"
    );
    let netrc_mode = std::fs::metadata(s.user_netrc())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(netrc_mode, 0o600);
    assert!(read(&s.user_netrc()).contains(&format!(
        "machine cache.example.org login nixstore-auth password {TOKEN}"
    )));

    // Idempotent: a second run changes no byte.
    let before = (read(&s.user_conf()), read(&s.user_netrc()));
    let o = s.use_cache(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(before, (read(&s.user_conf()), read(&s.user_netrc())));

    let o = s.run(&["remove", "cache-example-org"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read(&s.user_conf()), BUSY_CONF);
    assert!(!read(&s.user_netrc()).contains(TOKEN));
}

#[test]
fn dry_run_shows_a_masked_diff_and_changes_nothing() {
    let s = Sandbox::new();
    std::fs::write(s.user_conf(), "max-jobs = 2\n").unwrap();
    let o = s.use_cache(&["--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("+extra-substituters = https://cache.example.org"),
        "{out}"
    );
    assert!(out.contains("password ********"), "{out}");
    assert!(!text(&o).contains(TOKEN));
    assert_eq!(read(&s.user_conf()), "max-jobs = 2\n");
    assert!(!s.user_netrc().exists());
    assert!(!s.home().join(".config/nixstore-auth/config.toml").exists());
}

#[test]
fn malformed_files_get_a_clear_error_and_lose_nothing() {
    let s = Sandbox::new();
    let garbage = "max-jobs = 2\nthis is not a setting\n";
    std::fs::write(s.user_conf(), garbage).unwrap();
    let o = s.use_cache(&[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("line 2"), "{}", text(&o));
    assert_eq!(read(&s.user_conf()), garbage);

    let s = Sandbox::new();
    let netrc = "machine a.org login x password \"unterminated\n";
    std::fs::write(s.user_netrc(), netrc).unwrap();
    std::fs::set_permissions(s.user_netrc(), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        s.user_conf(),
        format!("netrc-file = {}\n", s.user_netrc().display()),
    )
    .unwrap();
    let conf_before = read(&s.user_conf());
    let o = s.use_cache(&[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(TOKEN));
    assert_eq!(read(&s.user_netrc()), netrc);
    assert_eq!(read(&s.user_conf()), conf_before, "nothing is half-written");
}

#[test]
fn injection_attempts_are_refused() {
    let s = Sandbox::new();
    for key in [
        format!("{KEY}\nsubstituters = http://evil"),
        format!("{KEY}#x"),
    ] {
        let o = s.run(
            &[
                "use",
                "https://cache.example.org",
                "--public-key",
                &key,
                "--no-token",
                "--mode",
                "user",
            ],
            None,
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    }
    let o = s.run(
        &[
            "use",
            "https://u:p@cache.example.org",
            "--no-token",
            "--mode",
            "user",
        ],
        None,
    );
    assert!(text(&o).contains("--token-stdin"), "{}", text(&o));
    let o = s.run(
        &[
            "use",
            "https://cache.example.org",
            "--public-key",
            KEY,
            "--token-stdin",
            "--mode",
            "user",
        ],
        Some("tok en\nmachine evil password x"),
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!s.user_conf().exists() || !read(&s.user_conf()).contains("cache.example.org"));
    assert!(!read(&s.user_netrc()).contains("evil"));
}

#[test]
fn a_symlinked_or_read_only_nix_conf_gets_a_snippet_not_an_edit() {
    let s = Sandbox::new();
    let store_file = s.dir.path().join("store-nix.conf");
    std::fs::write(&store_file, "max-jobs = 1\n").unwrap();
    std::fs::set_permissions(&store_file, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::os::unix::fs::symlink(&store_file, s.user_conf()).unwrap();
    let o = s.use_cache(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("symlink"), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("extra-substituters = https://cache.example.org")
    );
    assert!(!text(&o).contains(TOKEN));
    assert!(
        std::fs::symlink_metadata(s.user_conf())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(read(&store_file), "max-jobs = 1\n");
}

#[test]
fn no_token_and_no_terminal_names_token_stdin() {
    let s = Sandbox::new();
    let o = s.run(
        &[
            "use",
            "https://cache.example.org",
            "--public-key",
            KEY,
            "--mode",
            "user",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--token-stdin"), "{}", text(&o));
    assert!(!s.user_conf().exists());
    // A public cache needs none.
    let o = s.run(
        &[
            "use",
            "https://cache.example.org",
            "--public-key",
            KEY,
            "--mode",
            "user",
            "--no-token",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!s.user_netrc().exists());
}

#[test]
fn unknown_caches_and_bad_usage_have_their_exit_codes() {
    let s = Sandbox::new();
    let o = s.run(&["remove", "nope"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("unknown cache"), "{}", text(&o));
    let o = s.run(&["use"], None);
    assert_eq!(o.status.code(), Some(2));
    let o = s.run(&["exec", "--cache", "nope", "--", "true"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn print_mode_formats() {
    let s = Sandbox::new();
    let o = s.run(
        &[
            "use",
            "https://cache.example.org",
            "--public-key",
            KEY,
            "--mode",
            "print",
            "--format",
            "nixos",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("nix.settings = {"), "{out}");
    assert!(
        out.contains("extra-substituters = [ \"https://cache.example.org\" ];"),
        "{out}"
    );
    assert!(!s.user_conf().exists());
}

#[test]
fn list_shows_where_and_never_the_secret() {
    let s = Sandbox::new();
    assert!(s.use_cache(&[]).status.success());
    let o = s.run(&["list", "--json"], None);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "cache-example-org");
    assert_eq!(v[0]["credential_present"], true);
    assert_eq!(v[0]["configured_in"], s.user_conf().display().to_string());
    assert!(!text(&o).contains(TOKEN));
}

#[test]
fn concurrent_use_runs_keep_both_entries() {
    let s = Sandbox::new();
    let spawn = |url: &'static str| {
        let mut c = s.cmd(&[
            "use",
            url,
            "--public-key",
            KEY,
            "--token-stdin",
            "--mode",
            "user",
        ]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(TOKEN.as_bytes())
            .unwrap();
        child
    };
    for _ in 0..5 {
        let a = spawn("https://a.example.org");
        let b = spawn("https://b.example.org");
        assert!(a.wait_with_output().unwrap().status.success());
        assert!(b.wait_with_output().unwrap().status.success());
    }
    let conf = read(&s.user_conf());
    assert!(
        conf.contains("https://a.example.org") && conf.contains("https://b.example.org"),
        "{conf}"
    );
    let netrc = read(&s.user_netrc());
    assert!(
        netrc.contains("machine a.example.org") && netrc.contains("machine b.example.org"),
        "{netrc}"
    );
    let o = s.run(&["list", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[test]
fn exec_without_credentials_replaces_itself_and_keeps_status() {
    let s = Sandbox::new();
    let o = s.run(
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo \"$NIXSTORE_AUTH_EXEC\"; exit 7",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n");
    assert_eq!(
        s.run(&["exec", "--", "/nonexistent/x"], None).status.code(),
        Some(127)
    );
    assert_eq!(s.run(&["exec", "--", "/"], None).status.code(), Some(126));
}

#[test]
fn dynamic_completion_offers_recorded_cache_names() {
    let s = Sandbox::new();
    for url in [
        "https://cache-one.example.org",
        "https://second.example.org",
    ] {
        let o = s.run(&["use", url, "--no-token", "--mode", "user"], None);
        assert!(o.status.success(), "{}", text(&o));
    }
    let complete = |words: &[&str]| {
        let mut args = vec!["--", "nixstore-auth"];
        args.extend_from_slice(words);
        let o = s.cmd(&args).env("COMPLETE", "fish").output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(
        complete(&["remove", "ca"]),
        "cache-one-example-org\thttps://cache-one.example.org\n"
    );
    let all = complete(&["exec", "--cache", ""]);
    assert!(
        all.contains("cache-one-example-org") && all.contains("second-example-org"),
        "{all}"
    );
    assert!(complete(&["doctor", "zz"]).is_empty());
}

#[test]
fn moving_a_token_to_the_keyring_takes_back_the_netrc_file_line() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.home().join(".config/nixstore-auth")).unwrap();
    std::fs::write(
        s.home().join(".config/nixstore-auth/config.toml"),
        "keyring-backend = \"file\"\n",
    )
    .unwrap();
    std::fs::write(s.user_conf(), BUSY_CONF).unwrap();
    assert!(s.use_cache(&[]).status.success());
    assert!(read(&s.user_conf()).contains("netrc-file = "));
    let o = s.run(
        &[
            "use",
            "cache-example-org",
            "--secret-store",
            "keyring",
            "--mode",
            "user",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(TOKEN));
    let conf = read(&s.user_conf());
    assert!(
        !conf.contains("netrc-file"),
        "the line use added is gone: {conf}"
    );
    assert!(
        conf.contains("extra-substituters = https://cache.example.org"),
        "{conf}"
    );
    assert!(!read(&s.user_netrc()).contains(TOKEN));
    // The token now lives in the (file) secret store, 0600, and only there.
    let store = s.home().join(".local/share/nixstore-auth/secrets");
    let files: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(read(&files[0]), TOKEN);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // And `remove` still gives the original file back.
    let o = s.run(&["remove", "cache-example-org"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read(&s.user_conf()), BUSY_CONF);
    assert!(
        std::fs::read_dir(&store).unwrap().next().is_none(),
        "the token was deleted"
    );
}

fn config_toml(s: &Sandbox) -> PathBuf {
    s.home().join(".config/nixstore-auth/config.toml")
}

#[test]
fn an_s3_region_hiding_an_endpoint_is_refused_before_anything_is_written() {
    let s = Sandbox::new();
    let o = s.run(
        &[
            "use",
            "s3://b?region=eu-west-1%26endpoint%3Dhttps%3A%2F%2Fother.host",
            "--public-key",
            KEY,
            "--mode",
            "user",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("invalid S3 region \"eu-west-1&endpoint=https://other.host\""),
        "{}",
        text(&o)
    );
    assert!(!config_toml(&s).exists());
    assert!(!s.user_conf().exists());
}

#[test]
fn an_edited_config_toml_cannot_inject_settings() {
    let key_with = |tail: &str| format!("{KEY}{tail}");
    let cases = [
        (
            format!(
                "[caches.c]\nurl = \"https://c.example.org\"\npublic-keys = [{:?}]\n",
                key_with("\nsubstituters = http://evil")
            ),
            "caches.c.public-keys: the public key contains a newline",
        ),
        (
            format!(
                "[caches.c]\nurl = \"https://c.example.org\"\npublic-keys = [{:?}]\n",
                key_with("#x")
            ),
            "caches.c.public-keys: the public key contains '#'",
        ),
        (
            "[caches.c]\nurl = \"s3://b?region=eu-west-1%26endpoint%3Dhttps%3A%2F%2Fother.host\"\n"
                .to_string(),
            "caches.c.url: invalid S3 region",
        ),
    ];
    for (toml, needle) in cases {
        let s = Sandbox::new();
        std::fs::create_dir_all(config_toml(&s).parent().unwrap()).unwrap();
        std::fs::write(config_toml(&s), &toml).unwrap();
        let file = config_toml(&s).display().to_string();
        for args in [&["list"][..], &["exec", "--", "true"], &["doctor", "c"]] {
            let o = s.run(args, None);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
            let out = text(&o);
            assert!(
                out.contains(&format!("{file}: {needle}")),
                "{args:?} with {toml:?}: {out}"
            );
        }
        assert_eq!(read(&config_toml(&s)), toml, "nothing rewrote the file");
    }
}

#[test]
fn a_token_netrc_cannot_hold_is_refused_alike_by_use_secret_set_and_exec() {
    const REFUSED: &str = "the token contains a double quote";
    let s = Sandbox::new();
    std::fs::create_dir_all(config_toml(&s).parent().unwrap()).unwrap();
    std::fs::write(config_toml(&s), "keyring-backend = \"file\"\n").unwrap();
    let keyring_use = |token: &str| {
        s.run(
            &[
                "use",
                "https://cache.example.org",
                "--public-key",
                KEY,
                "--token-stdin",
                "--secret-store",
                "keyring",
                "--mode",
                "user",
            ],
            Some(token),
        )
    };
    // Refused before anything is written.
    let o = keyring_use("tok\"en");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(REFUSED), "{}", text(&o));
    assert!(!text(&o).contains("tok\"en"), "{}", text(&o));
    assert_eq!(read(&config_toml(&s)), "keyring-backend = \"file\"\n");
    let store = s.home().join(".local/share/nixstore-auth/secrets");
    assert!(!store.exists());

    let o = keyring_use(TOKEN);
    assert!(o.status.success(), "{}", text(&o));
    let o = s.run(
        &["secret", "set", "cache-example-org", "--token-stdin"],
        Some("tok\"en"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(REFUSED), "{}", text(&o));
    let files: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(read(&files[0]), TOKEN, "the stored token is unchanged");

    // A token put into the store by other means meets the same rule in exec.
    std::fs::write(&files[0], "tok\"en").unwrap();
    let o = s.run(&["exec", "--", "true"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(REFUSED), "{}", text(&o));
    assert!(!text(&o).contains("tok\"en"), "{}", text(&o));
}

// --- issue 18: config.toml shapes, secrets in errors, private directories, the printer ---

/// A cache written as an inline table: valid TOML that `list` reads.
const INLINE_CACHE: &str = "keyring-backend = \"file\"\n\
    [caches]\n\
    my = { kind = \"https\", url = \"https://cache.example.org\" } # hand-written\n";

/// A Nix secret key (64 bytes once decoded); its bytes do not matter here.
fn signing_key() -> String {
    format!("my-1:{}==", "A".repeat(86))
}

fn with_config(toml: &str) -> Sandbox {
    let s = Sandbox::new();
    std::fs::create_dir_all(config_toml(&s).parent().unwrap()).unwrap();
    std::fs::write(config_toml(&s), toml).unwrap();
    s
}

#[test]
fn an_inline_table_cache_can_be_used_again_and_updated() {
    let s = with_config(INLINE_CACHE);
    let o = s.run(&["list"], None);
    assert!(o.status.success(), "{}", text(&o));
    let args = [
        "use",
        "my",
        "--public-key",
        KEY,
        "--no-token",
        "--mode",
        "user",
    ];
    let o = s.run(&[&args[..], &["--dry-run"]].concat(), None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        read(&config_toml(&s)),
        INLINE_CACHE,
        "a dry run writes nothing"
    );
    let o = s.run(&args, None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let toml = read(&config_toml(&s));
    assert!(toml.contains("# hand-written"), "{toml}");
    assert!(toml.contains(KEY), "the public key is recorded: {toml}");
    let o = s.run(&["list"], None);
    assert!(
        o.status.success() && text(&o).contains("my"),
        "{}",
        text(&o)
    );
    let o = s.run(&["remove", "my", "--mode", "user"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!read(&config_toml(&s)).contains("cache.example.org"));
}

#[test]
fn a_signing_key_for_an_inline_table_cache_is_recorded() {
    let s = with_config(INLINE_CACHE);
    let key = signing_key();
    let o = s.run(&["secret", "set", "my", "--signing-key-stdin"], Some(&key));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains(&key[5..]), "{}", text(&o));
    let toml = read(&config_toml(&s));
    assert!(toml.contains("secret-key = \"keyring\""), "{toml}");
    let o = s.run(&["secret", "delete", "my", "--signing-key"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!read(&config_toml(&s)).contains("secret-key"));
}

/// Asserts that no part of `secret` appears in what the command printed (the error, its
/// `Caused by` lines and `-v` output), and that it failed.
fn refused_without_echo(o: &Output, secrets: &[&str]) {
    let out = text(o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("error:"), "{out}");
    for s in secrets {
        assert!(!out.contains(s), "{s:?} echoed in: {out}");
    }
}

#[test]
fn rejected_secrets_are_never_echoed() {
    let s = Sandbox::new();
    // The cache's secret signing key given as --public-key.
    let secret_key = "cache.example.org-1:BwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QEFCQ0RFRg==";
    let b64 = &secret_key["cache.example.org-1:".len()..];
    let o = s.run(
        &[
            "-v",
            "use",
            "https://cache.example.org",
            "--public-key",
            secret_key,
            "--no-token",
            "--mode",
            "user",
        ],
        None,
    );
    refused_without_echo(&o, &[b64]);
    assert!(
        text(&o).contains("did you pass the secret key?"),
        "{}",
        text(&o)
    );
    // Credentials in a URL that does not parse, and in an S3 endpoint.
    for url in [
        "https://ci:PASSWORD@cache.example.org:99999",
        "https://ci:PASSWORD@cache.example.org",
        "s3://b?endpoint=http://ci:PASSWORD@s3.example.org",
        "s3://b?endpoint=http://ci:PASSWORD@s3.example.org:99999",
        "s3://b?endpoint=ftp://ci:PASSWORD@s3.example.org",
        "s3://KEYID:PASSWORD@bucket",
        "s3://PASSWORD@bucket",
    ] {
        let o = s.run(&["-v", "use", url, "--no-token", "--mode", "user"], None);
        refused_without_echo(&o, &["PASSWORD", "ci:"]);
        let o = s.run(&["-v", "exec", "--cache", url, "--", "true"], None);
        refused_without_echo(&o, &["PASSWORD", "ci:"]);
    }
    assert!(!config_toml(&s).exists());
    // `aws add-key` with its two lines swapped: the secret first.
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let o = s.run(
        &["-v", "aws", "add-key", "--profile", "work"],
        Some(&format!("{secret}\nAKIAIOSFODNN7EXAMPLE\n")),
    );
    refused_without_echo(&o, &[secret, "wJalr", "EXAMPLEKEY"]);
    assert!(
        text(&o).contains("does not look like an AWS access key id"),
        "{}",
        text(&o)
    );
    // A secret key pasted into config.toml where its path belongs.
    std::fs::create_dir_all(config_toml(&s).parent().unwrap()).unwrap();
    std::fs::write(
        config_toml(&s),
        format!("[caches.c]\nurl = \"https://c.example.org\"\nsecret-key = {secret_key:?}\n"),
    )
    .unwrap();
    let o = s.run(&["-v", "list"], None);
    refused_without_echo(&o, &[b64]);
    assert!(text(&o).contains("caches.c.secret-key"), "{}", text(&o));
}

/// A directory that belongs to someone else: made for uid 65534 when we are root, else one of
/// root's (never one we could change).
fn someone_elses_dir(s: &Sandbox) -> PathBuf {
    if unsafe { libc::geteuid() } != 0 {
        return PathBuf::from("/usr");
    }
    let d = s.dir.path().join("nobodys");
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// `~/.cache/nix` symlinked to `target`; an S3 cache recorded; AWS keys in the environment (no
/// network is needed until Nix runs: the proxy starts on loopback and idles out in a second).
fn s3_sandbox_with_nix_cache_at(target: &Path) -> Sandbox {
    // A port of its own: tests run in parallel, each with its own proxy.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = with_config(&format!(
        "[proxy]\nport = {port}\n[caches.bkt]\nurl = \"s3://bkt?region=us-east-1&endpoint=http://127.0.0.1:9\"\n"
    ));
    std::fs::create_dir_all(s.home().join(".cache")).unwrap();
    std::os::unix::fs::symlink(target, s.home().join(".cache/nix")).unwrap();
    s
}

fn with_aws(s: &Sandbox, args: &[&str]) -> Output {
    let run = |args: &[&str]| {
        let mut c = s.cmd(args);
        c.env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .env("XDG_STATE_HOME", s.home().join(".local/state"))
            .env("XDG_RUNTIME_DIR", s.dir.path().join("rt"))
            .env("NIXSTORE_AUTH_PROXY_IDLE_SECS", "1")
            // A store of its own for push to name paths in (nothing is uploaded).
            .env("NIX_STORE_DIR", s.dir.path().join("store"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.output().unwrap()
    };
    let out = run(args);
    // The proxy it may have started goes before the sandbox does (a proxy whose runtime
    // directory vanished would wait for it forever).
    let stop = run(&["proxy", "stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    out
}

#[test]
fn nix_cache_dir_symlinked_to_a_private_dir_works_for_exec() {
    let tmp = tempfile::tempdir().unwrap();
    let mine = tmp.path().join("nix-cache");
    std::fs::create_dir(&mine).unwrap();
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = s3_sandbox_with_nix_cache_at(&mine);
    let o = with_aws(&s, &["exec", "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mode = std::fs::metadata(&mine).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the link's target was made private");
    assert!(
        std::fs::symlink_metadata(s.home().join(".cache/nix"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn nix_cache_dir_symlinked_to_someone_elses_dir_is_refused_by_exec_and_push_alike() {
    let s0 = Sandbox::new();
    let other = someone_elses_dir(&s0);
    let before = std::fs::metadata(&other).unwrap().permissions().mode();
    let s = s3_sandbox_with_nix_cache_at(&other);
    let path = s
        .dir
        .path()
        .join("store/0l2xhql3vk87yhqj8a0kbxcmvs9vdxr9-x");
    std::fs::create_dir_all(&path).unwrap();
    let path = path.display().to_string();
    for args in [
        &["exec", "--", "true"][..],
        &["push", "bkt", &path, "--no-sign"],
    ] {
        let o = with_aws(&s, args);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}");
        assert!(out.contains("error:"), "{args:?}: {out}");
        assert!(
            out.contains(&other.display().to_string()),
            "{args:?}: {out}"
        );
        assert!(out.contains("belongs to"), "{args:?}: {out}");
    }
    assert_eq!(
        std::fs::metadata(&other).unwrap().permissions().mode(),
        before,
        "left alone"
    );
}

#[test]
fn a_command_that_cannot_start_is_reported_by_the_printer() {
    let s = Sandbox::new();
    // The fast path (no option), the normal one, and colour forced on.
    for args in [
        &["exec", "--", "/nonexistent/x"][..],
        &["--color", "never", "exec", "--", "/nonexistent/x"],
    ] {
        let o = s.run(args, None);
        assert_eq!(o.status.code(), Some(127), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "error: /nonexistent/x: command not found\n",
            "{args:?}"
        );
    }
    let o = s.run(&["--color", "always", "exec", "--", "/"], None);
    assert_eq!(o.status.code(), Some(126));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("\u{1b}[") && err.contains("error:") && err.contains("/: permission denied"),
        "{err:?}"
    );
    // Supervised (a proxy lease must outlive CMD): the same.
    let mine = s.dir.path().join("nix-cache");
    std::fs::create_dir(&mine).unwrap();
    let s = s3_sandbox_with_nix_cache_at(&mine);
    let o = with_aws(&s, &["--color", "never", "exec", "--", "/nonexistent/x"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: /nonexistent/x: command not found\n"
    );
}

/// What `args` shows on a terminal (a pseudo-terminal from script(1)), in `s`'s environment.
fn on_a_terminal(s: &Sandbox, args: &[&str]) -> String {
    let line = std::iter::once(env!("CARGO_BIN_EXE_nixstore-auth"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = Command::new("script");
    c.env_clear();
    for (k, v) in s.cmd(&[]).get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    let o = c
        .env("TERM", "xterm")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    text(&o)
}

/// A cache server that answers each connection only after `delay`, with nothing: long enough
/// for a progress display to show.
fn slow_server(delay: std::time::Duration) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().take(16) {
            std::thread::sleep(delay);
            drop(conn);
        }
    });
    port
}

#[test]
fn doctor_shows_its_progress_on_a_terminal_unless_quiet() {
    let port = slow_server(std::time::Duration::from_millis(400));
    let s = with_config(&format!("[caches.my]\nurl = \"http://127.0.0.1:{port}\"\n"));
    let shown = on_a_terminal(&s, &["doctor"]);
    assert!(shown.contains("checking my"), "{shown}");
    let quiet = on_a_terminal(&s, &["--quiet", "doctor"]);
    assert!(
        quiet.contains("cache my"),
        "the report is still there: {quiet}"
    );
    assert!(!quiet.contains("checking my"), "{quiet}");
}

/// `doctor CACHE --json`'s checks of that cache, as (status, summary) pairs.
fn doctor_checks(s: &Sandbox, cache: &str, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut c = s.cmd(&["doctor", cache, "--json"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let all: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    all.as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["section"]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("cache {cache}"))
        })
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_string(),
                c["summary"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn with_aws_files(config: &str, cache_url: &str) -> Sandbox {
    let s = with_config(&format!(
        "keyring-backend = \"file\"\n[caches.bkt]\nurl = {cache_url:?}\n"
    ));
    std::fs::create_dir_all(s.home().join(".aws")).unwrap();
    std::fs::write(s.home().join(".aws/config"), config).unwrap();
    s
}

/// doctor and exec take their session the same way: where exec gets one without a prompt,
/// doctor does not call it missing; the profile is the one exec would use.
#[test]
fn doctor_judges_the_session_as_exec_would_get_it() {
    // A role without MFA over long-term keys, nothing cached: exec assumes it without a prompt.
    let s = with_aws_files(
        "[profile keys]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = x\n\
         [profile role]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = keys\n",
        "s3://bkt?region=us-east-1&endpoint=http://127.0.0.1:9&profile=role",
    );
    let checks = doctor_checks(&s, "bkt", &[]);
    assert!(
        !checks
            .iter()
            .any(|(st, m)| st == "fail" && m.contains("no valid AWS session")),
        "{checks:#?}"
    );
    assert!(
        checks.iter().any(|(_, m)| m.contains("without a prompt")),
        "{checks:#?}"
    );
    // An empty AWS_PROFILE means the default profile, to exec and to doctor.
    let s = with_aws_files(
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = x\n",
        "s3://bkt?region=us-east-1&endpoint=http://127.0.0.1:9",
    );
    let checks = doctor_checks(&s, "bkt", &[("AWS_PROFILE", "")]);
    assert!(
        checks
            .iter()
            .any(|(_, m)| m.starts_with("AWS profile default")),
        "{checks:#?}"
    );
    assert!(
        checks
            .iter()
            .any(|(st, m)| st == "ok" && m.starts_with("long-term AWS keys")),
        "{checks:#?}"
    );
}
