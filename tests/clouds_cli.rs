//! `use gs://` / `use azure://` (and the portal's blob URL), `list`, `secret set
//! --azure-key-stdin | --sas-stdin` and their refusals, through the binary against sandboxed
//! files (no daemon, no network, no store). The proxy serving these caches is proven in
//! tests/e2e/clouds.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KEY: &str = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
/// Azurite's published development key (a valid 64-byte key, nobody's secret).
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let s = Sandbox {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(s.path("etc")).unwrap();
        std::fs::create_dir_all(s.config_toml().parent().unwrap()).unwrap();
        std::fs::write(s.config_toml(), "keyring-backend = \"file\"\n").unwrap();
        s
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn home(&self) -> PathBuf {
        self.path("home")
    }
    fn config_toml(&self) -> PathBuf {
        self.home().join(".config/nixstore-auth/config.toml")
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
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(args, stdin);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        text(&o)
    }
    fn fails(&self, args: &[&str], stdin: Option<&str>, why: &str) {
        let before = read(&self.config_toml());
        let o = self.run(args, stdin);
        assert!(!o.status.success(), "{args:?} succeeded: {}", text(&o));
        assert!(text(&o).contains(why), "{args:?}: {}", text(&o));
        assert_eq!(
            read(&self.config_toml()),
            before,
            "{args:?} changed config.toml"
        );
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
fn cloud_caches_are_recorded_with_their_kind_and_credential() {
    let s = Sandbox::new();
    // The portal's blob URL is an Azure cache, recorded in the azure:// form.
    let out = s.ok(
        &[
            "use",
            "https://acct1.blob.core.windows.net/cache/sub",
            "--public-key",
            KEY,
        ],
        None,
    );
    assert!(out.contains("secret set cache --azure-key-stdin"), "{out}");
    s.ok(
        &[
            "use",
            "gs://my-bucket/pre?endpoint=http://127.0.0.1:4443",
            "--public-key",
            KEY,
        ],
        None,
    );
    let conf = read(&s.config_toml());
    assert!(
        conf.contains("kind = \"azure\"\nurl = \"azure://acct1/cache/sub\"")
            && conf.contains(
                "kind = \"gcs\"\nurl = \"gs://my-bucket/pre?endpoint=http://127.0.0.1:4443\""
            ),
        "{conf}"
    );
    let list = s.ok(&["list"], None);
    assert!(
        list.contains("Entra ID") && list.contains("Application Default Credentials"),
        "{list}"
    );
    // The account key: checked, stored in the secret store only, told by list and secret status.
    s.fails(
        &["secret", "set", "cache", "--azure-key-stdin"],
        Some("bm90LWEta2V5\n"),
        "the Azure account key is too short",
    );
    s.ok(
        &["secret", "set", "cache", "--azure-key-stdin"],
        Some(&format!("{ACCOUNT_KEY}\n")),
    );
    let holders = s.files_holding(ACCOUNT_KEY);
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(
        holders[0].starts_with(s.home().join(".local/share/nixstore-auth/secrets")),
        "{holders:?}"
    );
    assert!(s.ok(&["list"], None).contains("Azure account key or SAS"));
    assert!(
        s.ok(&["secret", "status"], None)
            .contains("cache: account key in")
    );
    // A SAS replaces the key; delete removes it.
    s.ok(
        &["secret", "set", "cache", "--sas-stdin"],
        Some("?sv=2021-08-06&sr=c&sp=rl&se=2099-01-01T00:00:00Z&sig=abc%3D\n"),
    );
    assert!(s.files_holding(ACCOUNT_KEY).is_empty());
    assert!(
        s.ok(&["secret", "status"], None)
            .contains("cache: SAS token in")
    );
    s.ok(&["secret", "delete", "cache"], None);
    assert!(s.ok(&["list"], None).contains("Entra ID"));
    // `remove` takes the stored key with the cache.
    s.ok(
        &["secret", "set", "cache", "--azure-key-stdin"],
        Some(&format!("{ACCOUNT_KEY}\n")),
    );
    assert_eq!(s.files_holding(ACCOUNT_KEY).len(), 1);
    let out = s.ok(&["remove", "cache"], None);
    assert!(
        out.contains("deleted the account key or SAS of cache"),
        "{out}"
    );
    assert!(s.files_holding(ACCOUNT_KEY).is_empty());
    assert!(!read(&s.config_toml()).contains("azure://"));
}

#[test]
fn cloud_misuse_is_refused_and_changes_nothing() {
    let s = Sandbox::new();
    s.ok(&["use", "gs://my-bucket", "--public-key", KEY], None);
    s.ok(&["use", "azure://acct1/cache", "--public-key", KEY], None);
    let rows: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["use", "gs://my-bucket", "--token-stdin"],
            Some("x\n"),
            "GCS caches take no token",
        ),
        (
            &["use", "azure://acct1/cache", "--token-stdin"],
            Some("x\n"),
            "--azure-key-stdin",
        ),
        (
            &["use", "azure://acct1/cache", "--route", "proxy"],
            None,
            "apply to HTTPS caches",
        ),
        (
            &["use", "azure://acct1/cache?sas=x"],
            None,
            "unknown parameter `sas`",
        ),
        (&["use", "gs://UP"], None, "not a GCS bucket name"),
        (
            &["secret", "set", "my-bucket", "--sas-stdin"],
            Some("sv=1&sig=x\n"),
            "--sas-stdin applies to Azure caches",
        ),
        (
            &["secret", "set", "my-bucket", "--token-stdin"],
            Some("x\n"),
            "it has no stored secret",
        ),
        (
            &["secret", "set", "cache", "--token-stdin"],
            Some("x\n"),
            "an Azure cache takes --azure-key-stdin",
        ),
        (
            &["secret", "set", "cache", "--sas-stdin"],
            Some("not-a-sas\n"),
            "not a SAS token",
        ),
    ];
    for (args, stdin, why) in rows {
        s.fails(args, *stdin, why);
    }
}
