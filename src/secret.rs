//! Secret storage: the OS keyring (Secret Service on Linux, Keychain on macOS) under the service
//! `nixstore-auth`, with a fallback to 0600 files under the XDG data dir when no keyring runs.
//!
//! Accounts name what a secret is for, never the secret itself: `aws-session:<hash>`,
//! `aws-key:PROFILE`, `cache-token:NAME`, `signing-key:NAME`. The config key `keyring-backend = "os" | "file"` forces
//! one backend; without it the keyring is tried and the file store used when it is missing
//! (said once per command on stderr).

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use zeroize::Zeroizing;

use crate::config::{Config, Dirs};
use crate::nix::netrc;
use crate::ui::Ui;

/// What a stored secret is for: its account name in the store. The one definition of the
/// names, so that what one command stores another finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account<'a> {
    /// A cache's token (`cache-token:NAME`).
    CacheToken(&'a str),
    /// A profile's long-term AWS key from `aws add-key` (`aws-key:PROFILE`), JSON
    /// `{"AccessKeyId": "...", "SecretAccessKey": "..."}`.
    AwsKey(&'a str),
    /// A cached AWS session (`aws-session:HASH`, the hash of profile, role and MFA device).
    AwsSession(&'a str),
    /// A cache's signing key for uploads (`signing-key:NAME`), Nix's `name:base64` form.
    SigningKey(&'a str),
    /// An Azure cache's storage account key (`azure-key:NAME`), base64 as the portal shows it.
    AzureKey(&'a str),
    /// An Azure cache's SAS token (`azure-sas:NAME`), the query string without `?`.
    AzureSas(&'a str),
}

impl<'a> Account<'a> {
    const CACHE_TOKEN: &'static str = "cache-token:";
    const AWS_KEY: &'static str = "aws-key:";
    const AWS_SESSION: &'static str = "aws-session:";
    const SIGNING_KEY: &'static str = "signing-key:";
    const AZURE_KEY: &'static str = "azure-key:";
    const AZURE_SAS: &'static str = "azure-sas:";

    /// Reads an account name as the store lists it; `None` for names that are not ours.
    pub fn parse(name: &'a str) -> Option<Account<'a>> {
        None.or_else(|| {
            name.strip_prefix(Self::CACHE_TOKEN)
                .map(Account::CacheToken)
        })
        .or_else(|| name.strip_prefix(Self::AWS_KEY).map(Account::AwsKey))
        .or_else(|| {
            name.strip_prefix(Self::AWS_SESSION)
                .map(Account::AwsSession)
        })
        .or_else(|| {
            name.strip_prefix(Self::SIGNING_KEY)
                .map(Account::SigningKey)
        })
        .or_else(|| name.strip_prefix(Self::AZURE_KEY).map(Account::AzureKey))
        .or_else(|| name.strip_prefix(Self::AZURE_SAS).map(Account::AzureSas))
    }
}

impl std::fmt::Display for Account<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (prefix, rest) = match self {
            Account::CacheToken(n) => (Self::CACHE_TOKEN, n),
            Account::AwsKey(p) => (Self::AWS_KEY, p),
            Account::AwsSession(h) => (Self::AWS_SESSION, h),
            Account::SigningKey(n) => (Self::SIGNING_KEY, n),
            Account::AzureKey(n) => (Self::AZURE_KEY, n),
            Account::AzureSas(n) => (Self::AZURE_SAS, n),
        };
        write!(f, "{prefix}{rest}")
    }
}

/// A cache's token, valid by construction: one netrc word that curl reads back unchanged
/// ([`netrc::word_problem`]), since a token ends up in a netrc file either way (the user's, or
/// the ephemeral one `exec` writes from the keyring). `use`, `secret set` and `exec` all build
/// it with [`Token::new`], so what one accepts the others accept too.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Zeroizing<String>);

impl Token {
    /// Checks `value`; the error says what is wrong without showing the token.
    pub fn new(value: Zeroizing<String>) -> Result<Token> {
        if let Some(why) = netrc::word_problem(&value, true) {
            bail!("the token {why}; refusing it");
        }
        Ok(Token(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The keyring service every entry of ours lives under.
pub const SERVICE: &str = "nixstore-auth";

static FALLBACK_TOLD: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    Os,
    File(PathBuf),
}

/// Where secrets go for this command. Cheap to open; the keyring is contacted lazily by
/// `keyring` itself on first use (one D-Bus connection per process).
#[derive(Debug, Clone)]
pub struct SecretStore {
    backend: Backend,
}

impl SecretStore {
    /// Picks the backend from config.toml (`keyring-backend`) and what the machine offers.
    pub fn open(cfg: &Config, dirs: &Dirs, ui: &Ui) -> Result<SecretStore> {
        let file_dir = dirs.data.join("secrets");
        match cfg.get_str("keyring-backend") {
            Some("file") => Ok(SecretStore::file(file_dir)),
            Some("os") => match keyring::Entry::store_status() {
                Ok(()) => Ok(SecretStore {
                    backend: Backend::Os,
                }),
                Err(e) => bail!(
                    "keyring-backend = \"os\" in config.toml, but no OS keyring is reachable ({}); \
                     start one (e.g. gnome-keyring in a D-Bus session) or set keyring-backend = \"file\"",
                    describe_keyring_error(e)
                ),
            },
            Some(other) => bail!(
                "config.toml: keyring-backend = {other:?} is not known: use \"os\" or \"file\""
            ),
            None => match keyring::Entry::store_status() {
                Ok(()) => Ok(SecretStore {
                    backend: Backend::Os,
                }),
                Err(e) => {
                    if !FALLBACK_TOLD.swap(true, Ordering::Relaxed) {
                        ui.warn(format!(
                            "no OS keyring is available ({}); keeping secrets in 0600 files under {} \
                             (set keyring-backend = \"file\" in config.toml to silence this)",
                            describe_keyring_error(e),
                            file_dir.display()
                        ));
                    }
                    Ok(SecretStore::file(file_dir))
                }
            },
        }
    }

    /// A file store in `dir` (created 0700 on first write).
    pub fn file(dir: PathBuf) -> SecretStore {
        SecretStore {
            backend: Backend::File(dir),
        }
    }

    /// A short description for messages: where secrets live.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Os => "the OS keyring".to_string(),
            Backend::File(dir) => format!("0600 files in {}", dir.display()),
        }
    }

    pub fn is_keyring(&self) -> bool {
        self.backend == Backend::Os
    }

    pub fn get(&self, account: &str) -> Result<Option<Zeroizing<String>>> {
        match &self.backend {
            Backend::Os => match entry(account)?.get_password() {
                Ok(s) => Ok(Some(Zeroizing::new(s))),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(keyring_failure("read", account, e)),
            },
            Backend::File(dir) => {
                let path = file_path(dir, account);
                match std::fs::read_to_string(&path) {
                    Ok(s) => Ok(Some(Zeroizing::new(s))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
                }
            }
        }
    }

    pub fn set(&self, account: &str, secret: &str) -> Result<()> {
        match &self.backend {
            Backend::Os => entry(account)?
                .set_password(secret)
                .map_err(|e| keyring_failure("store", account, e)),
            Backend::File(dir) => {
                ensure_private_dirs(dir)?;
                let path = file_path(dir, account);
                crate::fs::atomic_write(&path, secret.as_bytes(), 0o600)?;
                // atomic_write keeps an existing file's mode: a secret file is always 0600.
                set_mode(&path, 0o600)
            }
        }
    }

    /// Deletes an account; `false` when there was none.
    pub fn delete(&self, account: &str) -> Result<bool> {
        match &self.backend {
            Backend::Os => match entry(account)?.delete_credential() {
                Ok(()) => Ok(true),
                Err(keyring::Error::NoEntry) => Ok(false),
                Err(e) => Err(keyring_failure("delete", account, e)),
            },
            Backend::File(dir) => {
                let path = file_path(dir, account);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
                }
            }
        }
    }

    /// Every account we hold, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        match &self.backend {
            Backend::Os => {
                let spec = HashMap::from([("service", SERVICE)]);
                let found = keyring_core::Entry::search(&spec)
                    .map_err(|e| keyring_failure("list", "*", e))?;
                for e in found {
                    if let Some((service, user)) = e.get_specifiers()
                        && service == SERVICE
                    {
                        out.push(user);
                    }
                }
            }
            Backend::File(dir) => {
                let rd = match std::fs::read_dir(dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot list {}", dir.display()));
                    }
                };
                for ent in rd {
                    let name = ent?.file_name();
                    if let Some(account) = name.to_str().and_then(decode_file_name) {
                        out.push(account);
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

fn entry(account: &str) -> Result<keyring::Entry> {
    keyring::Entry::new(SERVICE, account).map_err(|e| keyring_failure("open", account, e))
}

/// A keyring error as a message that says what to do. Account names are not secret.
fn keyring_failure(what: &str, account: &str, e: keyring::Error) -> anyhow::Error {
    match e {
        keyring::Error::NoStorageAccess(_) => anyhow::anyhow!(
            "cannot {what} {account:?} in the OS keyring: it is locked. Unlock it (log in to your \
             desktop session, or run `gnome-keyring-daemon --unlock` and type the keyring password \
             on stdin), or set keyring-backend = \"file\" in config.toml"
        ),
        other => anyhow::anyhow!(
            "cannot {what} {account:?} in the OS keyring: {}",
            describe_keyring_error(&other)
        ),
    }
}

fn describe_keyring_error(e: &keyring::Error) -> String {
    match e {
        keyring::Error::NoDefaultStore => "no Secret Service on the session bus".to_string(),
        // Variants carrying secret bytes are never formatted with their payload.
        keyring::Error::BadEncoding(_) => "an entry is not UTF-8".to_string(),
        keyring::Error::BadDataFormat(..) => "an entry has an unexpected format".to_string(),
        other => other.to_string(),
    }
}

/// File names are the account hex-encoded: accounts may hold `:` or `/`, file names must not.
fn file_path(dir: &Path, account: &str) -> PathBuf {
    dir.join(format!("{}.secret", hex::encode(account.as_bytes())))
}

fn decode_file_name(name: &str) -> Option<String> {
    let hex_part = name.strip_suffix(".secret")?;
    String::from_utf8(hex::decode(hex_part).ok()?).ok()
}

fn ensure_private_dirs(dir: &Path) -> Result<()> {
    // The data dir itself is ours too: 0700 when we create it.
    if let Some(parent) = dir.parent()
        && !parent.exists()
    {
        crate::fs::private_dir(parent)?;
    }
    crate::fs::private_dir(dir)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// Where an HTTPS cache's credential is, and whether it is there: the one presence check for
/// `list`, `secret status` and `doctor`.
pub struct CacheCredential {
    /// Where it lives, for people: `netrc (PATH)`, the store's description, or "none".
    pub place: String,
    /// The netrc login (the recorded login for keyring tokens).
    pub login: String,
    /// The token, when it could be read (`None`: missing, or a keyring not asked).
    pub token: Option<Zeroizing<String>>,
    /// Whether a token is there (for a keyring not asked: what `use` recorded).
    pub present: bool,
}

impl CacheCredential {
    /// Looks up `entry`'s credential: its netrc entry, or its keyring token when `store` is
    /// given (without one, the presence `use` recorded stands in: `list` opens no keyring).
    pub fn of(entry: &crate::config::CacheEntry, store: Option<&SecretStore>) -> Result<Self> {
        use crate::config::SecretStore as Where;
        let machine = entry.kind.netrc_machine();
        if let Some(line) = &entry.https.token_command {
            // Run by the proxy when needed, never here: its output is not kept.
            let program = crate::token_command::split(line)
                .ok()
                .and_then(|w| w.into_iter().next())
                .unwrap_or_default();
            return Ok(CacheCredential {
                place: format!("token command ({program})"),
                login: String::new(),
                token: None,
                present: true,
            });
        }
        Ok(match (entry.secret_store, &entry.netrc, machine) {
            (Where::Keyring, _, _) => {
                let token = match store {
                    Some(st) => st.get(&Account::CacheToken(&entry.name).to_string())?,
                    None => None,
                };
                CacheCredential {
                    place: store
                        .map(SecretStore::describe)
                        .unwrap_or_else(|| "keyring".into()),
                    login: entry.login.clone(),
                    present: if store.is_some() {
                        token.is_some()
                    } else {
                        entry.has_token
                    },
                    token,
                }
            }
            (Where::Netrc, Some(path), Some(machine)) => {
                let netrc = crate::nix::read_netrc(path)?;
                let found = netrc.as_ref().and_then(|n| n.get(&machine));
                let token = netrc.as_ref().and_then(|n| n.password(&machine));
                CacheCredential {
                    place: format!("netrc ({})", path.display()),
                    login: found.and_then(|e| e.login).unwrap_or_default(),
                    present: token.is_some(),
                    token,
                }
            }
            (Where::Netrc, _, _) => CacheCredential {
                place: "none".into(),
                login: String::new(),
                token: None,
                present: false,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn account_names_round_trip() {
        for a in [
            Account::CacheToken("c"),
            Account::AwsKey("work"),
            Account::AwsSession("00ff"),
            Account::SigningKey("c"),
        ] {
            assert_eq!(Account::parse(&a.to_string()), Some(a));
        }
        assert_eq!(Account::CacheToken("a/b").to_string(), "cache-token:a/b");
        assert_eq!(Account::parse("other:x"), None);
    }

    #[test]
    fn tokens_follow_the_netrc_rule_and_errors_never_show_them() {
        let ok = ["s3cr3t", "a#b", "eyJhbGciOi.J9-_x+/=", "ünïcode", "machine"];
        for t in ok {
            assert_eq!(Token::new(Zeroizing::new(t.into())).unwrap().as_str(), t);
        }
        let bad = [
            ("", "is empty"),
            ("SEC RET", "whitespace"),
            ("SEC\tRET", "whitespace"),
            ("SEC\nRET", "whitespace"),
            ("SEC\u{1}RET", "control character"),
            ("SEC\"RET", "double quote"),
            ("#SECRET", "starts with '#'"),
            ("SEC\u{a0}RET", "whitespace"),
        ];
        for (t, needle) in bad {
            let err = format!("{:#}", Token::new(Zeroizing::new(t.into())).unwrap_err());
            assert!(
                err.starts_with("the token ") && err.contains(needle),
                "{t:?}: {err}"
            );
            assert!(!err.contains("SEC") && !err.contains("U+"), "{err}");
        }
        let t = Token::new(Zeroizing::new("s3cr3t".into())).unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    #[test]
    fn file_store_round_trip_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data/secrets");
        let store = SecretStore::file(dir.clone());
        assert_eq!(store.get("aws-key:work").unwrap(), None);
        store.set("aws-key:work", "s3cr3t").unwrap();
        store.set("cache-token:a/b", "t").unwrap();
        assert_eq!(
            store.get("aws-key:work").unwrap().unwrap().as_str(),
            "s3cr3t"
        );
        assert_eq!(
            store.list().unwrap(),
            vec!["aws-key:work", "cache-token:a/b"]
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for e in std::fs::read_dir(&dir).unwrap() {
            assert_eq!(mode(&e.unwrap().path()), 0o600);
        }
        assert!(store.delete("aws-key:work").unwrap());
        assert!(!store.delete("aws-key:work").unwrap());
        assert_eq!(store.list().unwrap(), vec!["cache-token:a/b"]);
    }

    #[test]
    fn forced_file_backend_never_touches_the_keyring() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = Config::parse("keyring-backend = \"file\"\n", Path::new("c.toml")).unwrap();
        let dirs = Dirs {
            config: tmp.path().join("c"),
            cache: tmp.path().join("k"),
            data: tmp.path().join("d"),
            state: tmp.path().join("s"),
            runtime: None,
        };
        let s = SecretStore::open(&cfg, &dirs, &Ui::default()).unwrap();
        assert!(!s.is_keyring());
        assert!(s.describe().contains("/d/secrets"));
        let bad = Config::parse("keyring-backend = \"kwallet\"\n", Path::new("c.toml")).unwrap();
        let err = SecretStore::open(&bad, &dirs, &Ui::default()).unwrap_err();
        assert!(err.to_string().contains("\"os\" or \"file\""));
    }
}
