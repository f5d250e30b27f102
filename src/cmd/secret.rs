//! `secret set|status|delete`: rotate, inspect or delete a cache's stored token (HTTPS) or
//! signing key for uploads (any cache) without re-running `use`. Never prints a secret.

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::io::Read;
use zeroize::Zeroizing;

use super::{Run, SecretAction, SecretArgs};
use crate::aws::session::{self, SessionRequest};
use crate::cache::CacheKind;
use crate::config::{CacheEntry, Config, Dirs, SecretStore as Store};
use crate::nix::netrc::Netrc;
use crate::plan::Plan;
use crate::secret::Account;
use crate::secret::{SecretStore, Token};
use crate::ui::{self, Ui};

impl Run for SecretArgs {
    /// Gather (config, the cache) → decide ([`decide`]) → apply (one function per step).
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let config_path = dirs.config_file();
        let cfg = Config::load(&config_path)?;
        let find = |name: &str| -> Result<CacheEntry> {
            cfg.find(name)?.ok_or_else(|| cfg.unknown_cache(name))
        };
        let (cache, what, set, token_stdin) = match self.action {
            SecretAction::Status { cache, json } => {
                let entries = match &cache {
                    Some(c) => vec![find(c)?],
                    None => cfg.caches()?,
                };
                return status(&entries, json, &cfg, &dirs, ui);
            }
            SecretAction::Set {
                cache,
                signing_key_stdin,
                token_stdin,
                azure_key_stdin,
                sas_stdin,
            } => {
                if azure_key_stdin || sas_stdin {
                    let entry = find(&cache)?;
                    return set_azure(&entry, azure_key_stdin, &cfg, &dirs, &config_path, ui);
                }
                (cache, Secret::of(signing_key_stdin), true, token_stdin)
            }
            SecretAction::Delete { cache, signing_key } => {
                (cache, Secret::of(signing_key), false, false)
            }
        };
        let entry = find(&cache)?;
        if what == Secret::Token && entry.kind.is_cloud() {
            return cloud_token(&entry, set, &cfg, &dirs, &config_path, ui);
        }
        let recorded = cfg.signing_key(&entry.name)?;
        let apply = Apply {
            entry: &entry,
            cfg: &cfg,
            dirs: &dirs,
            config_path: &config_path,
            token_stdin,
            ui,
        };
        match decide(what, set, &entry, recorded.as_ref())? {
            Step::StoreSigningKey => apply.store_signing_key(),
            Step::DeleteSigningKey { forget_record } => apply.delete_signing_key(forget_record),
            Step::SetToken(place) => apply.set_token(place),
            Step::DeleteToken(place) => apply.delete_token(place),
        }
    }
}

/// Which secret of a cache `set` or `delete` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secret {
    Token,
    SigningKey,
}

impl Secret {
    fn of(signing_key: bool) -> Secret {
        if signing_key {
            Secret::SigningKey
        } else {
            Secret::Token
        }
    }
}

/// Where an HTTPS cache's token lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Keyring,
    /// A netrc file, under the cache's host.
    Netrc {
        path: std::path::PathBuf,
        machine: String,
    },
    /// Recorded nowhere (a netrc cache without its file): nothing to delete.
    Nowhere,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    StoreSigningKey,
    /// `forget_record`: config.toml points to the keyring's key, and stops pointing to it.
    DeleteSigningKey {
        forget_record: bool,
    },
    SetToken(Place),
    DeleteToken(Place),
}

/// What `secret set|delete` does for `entry`. Pure.
fn decide(
    what: Secret,
    set: bool,
    entry: &CacheEntry,
    recorded: Option<&crate::config::SigningKey>,
) -> Result<Step> {
    if what == Secret::SigningKey {
        return Ok(if set {
            Step::StoreSigningKey
        } else {
            Step::DeleteSigningKey {
                forget_record: recorded == Some(&crate::config::SigningKey::Keyring),
            }
        });
    }
    if matches!(entry.kind, CacheKind::S3(_)) {
        bail!(
            "{} is an S3 cache: it has no token; its credentials are your AWS session (`nixstore-auth login`, `nixstore-auth aws add-key`); its signing key: `secret set {} --signing-key-stdin`",
            entry.name,
            entry.name
        );
    }
    let place = match (entry.secret_store, &entry.netrc, entry.kind.netrc_machine()) {
        (Store::Keyring, _, _) => Place::Keyring,
        (Store::Netrc, Some(path), Some(machine)) => Place::Netrc {
            path: path.clone(),
            machine,
        },
        (Store::Netrc, None, _) if set => bail!(
            "this cache has no netrc file recorded: run `nixstore-auth use` with --token-stdin"
        ),
        (Store::Netrc, Some(_), None) if set => bail!("the cache URL has no host"),
        (Store::Netrc, _, _) => Place::Nowhere,
    };
    Ok(if set {
        Step::SetToken(place)
    } else {
        Step::DeleteToken(place)
    })
}

/// The apply steps, for one cache.
struct Apply<'a> {
    entry: &'a CacheEntry,
    cfg: &'a Config,
    dirs: &'a Dirs,
    config_path: &'a std::path::Path,
    token_stdin: bool,
    ui: &'a Ui,
}

impl Apply<'_> {
    fn store(&self) -> Result<SecretStore> {
        SecretStore::open(self.cfg, self.dirs, self.ui)
    }

    fn store_signing_key(&self) -> Result<i32> {
        let (entry, ui) = (self.entry, self.ui);
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        let info = crate::push::signing::check(&text).context("--signing-key-stdin")?;
        if let Some(w) =
            crate::push::signing::mismatch_warning(&info, &entry.name, &entry.public_keys)
        {
            ui.warn(w);
        }
        let store = self.store()?;
        store.set(&Account::SigningKey(&entry.name).to_string(), text.trim())?;
        record_signing_key(self.config_path, &entry.name, true)?;
        ui.info(format!(
            "stored the signing key {:?} of {} in {}; push, watch-store and exec --push sign with it (public key {})",
            info.name,
            entry.name,
            store.describe(),
            info.public_key
        ));
        Ok(0)
    }

    fn delete_signing_key(&self, forget_record: bool) -> Result<i32> {
        let name = &self.entry.name;
        let deleted = self
            .store()?
            .delete(&Account::SigningKey(name).to_string())?;
        if forget_record {
            record_signing_key(self.config_path, name, false)?;
        }
        if deleted {
            self.ui.info(format!("deleted the signing key of {name}"));
            Ok(0)
        } else {
            bail!("no signing key was stored for {name}")
        }
    }

    fn set_token(&self, place: Place) -> Result<i32> {
        let (entry, ui) = (self.entry, self.ui);
        let token = read_token(self.token_stdin, entry)?;
        let keyring = matches!(place, Place::Keyring);
        match place {
            Place::Keyring => {
                let store = self.store()?;
                store.set(
                    &Account::CacheToken(&entry.name).to_string(),
                    token.as_str(),
                )?;
                ui.info(format!(
                    "stored a new token for {} in {}",
                    entry.name,
                    store.describe()
                ));
            }
            Place::Netrc { path, machine } => {
                let login = entry.login.clone();
                let mut plan = Plan::new();
                plan.edit(&path, 0o600, true, move |text| {
                    let mut n = Netrc::parse(text)?;
                    n.upsert(&machine, &login, token.as_str())?;
                    Ok(n.to_text())
                });
                plan.apply()?;
                ui.info(format!(
                    "stored a new token for {} in {}",
                    entry.name,
                    path.display()
                ));
            }
            // `decide` refuses to set a token with no place for it.
            Place::Nowhere => bail!("{} has no place recorded for its token", entry.name),
        }
        mark_token(self.config_path, &entry.name, true)?;
        if keyring {
            // A running background proxy mounts the cache again with the new token (one that
            // needed a person moves to a new URL, so the daemon forgets its misses).
            crate::service::include::after_change(self.dirs, ui);
        }
        Ok(0)
    }

    fn delete_token(&self, place: Place) -> Result<i32> {
        let name = &self.entry.name;
        let deleted = match place {
            Place::Keyring => self
                .store()?
                .delete(&Account::CacheToken(name).to_string())?,
            Place::Netrc { path, machine } => {
                let mut plan = Plan::new();
                plan.edit(&path, 0o600, true, move |text| {
                    let mut n = Netrc::parse(text)?;
                    n.remove(&machine);
                    Ok(n.to_text())
                });
                !plan.apply()?.is_empty()
            }
            Place::Nowhere => false,
        };
        mark_token(self.config_path, name, false)?;
        if deleted {
            self.ui.info(format!("deleted the token of {name}"));
            Ok(0)
        } else {
            bail!("no token was stored for {name}")
        }
    }
}

/// `secret status`: where each cache's secret lives (never the secret), and the stored AWS
/// keys and signing keys.
fn status(entries: &[CacheEntry], json: bool, cfg: &Config, dirs: &Dirs, ui: &Ui) -> Result<i32> {
    let store = SecretStore::open(cfg, dirs, ui)?;
    let mut rows = Vec::new();
    for e in entries {
        rows.push(status_row(e, &store, session::Ctx::new(cfg, dirs), ui)?);
    }
    for account in store.list().unwrap_or_default() {
        let kind = match Account::parse(&account) {
            Some(Account::AwsKey(_)) => "aws-key",
            Some(Account::SigningKey(_)) => "signing-key",
            _ => continue,
        };
        rows.push(json!({
            "name": account,
            "kind": kind,
            "where": store.describe(),
            "present": true,
        }));
    }
    if json {
        ui.outln(format_args!("{}", serde_json::to_string_pretty(&rows)?))?;
    } else if rows.is_empty() {
        ui.info("no caches or keys recorded");
    } else {
        for r in &rows {
            let mut line = format!(
                "{}: {} ({})",
                r["name"].as_str().unwrap_or(""),
                r["where"].as_str().unwrap_or(""),
                if r["present"].as_bool() == Some(true) {
                    "present"
                } else {
                    "missing"
                }
            );
            if let Some(exp) = r.get("expires").and_then(|v| v.as_str()) {
                line.push_str(&format!(", session expires {exp}"));
            }
            ui.outln(format_args!("{line}"))?;
        }
    }
    Ok(0)
}

/// `secret set NAME --azure-key-stdin | --sas-stdin`: the Azure cache's account key or SAS into
/// the secret store (checked first; the other one is deleted, so that what was set last is
/// used), and config.toml records that the cache has one.
fn set_azure(
    entry: &CacheEntry,
    key: bool,
    cfg: &Config,
    dirs: &Dirs,
    config_path: &std::path::Path,
    ui: &Ui,
) -> Result<i32> {
    let flag = if key {
        "--azure-key-stdin"
    } else {
        "--sas-stdin"
    };
    if !matches!(entry.kind, CacheKind::Azure(_)) {
        bail!(
            "{flag} applies to Azure caches; {} is a {} cache",
            entry.name,
            entry.kind.label()
        );
    }
    let mut text = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read standard input")?;
    let value = Zeroizing::new(text.trim().trim_start_matches('?').to_string());
    if value.is_empty() {
        bail!("{flag}: standard input was empty");
    }
    // Checked as the proxy will read it; the error never shows the value.
    let checked = if key {
        crate::azure::shared_key::AccountKey::from_base64(&value).map(drop)
    } else {
        crate::azure::sas::GivenSas::parse(&value).map(drop)
    };
    checked.map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    let store = SecretStore::open(cfg, dirs, ui)?;
    let (this, other) = (
        Account::AzureKey(&entry.name),
        Account::AzureSas(&entry.name),
    );
    let (this, other) = if key { (this, other) } else { (other, this) };
    store.set(&this.to_string(), &value)?;
    store.delete(&other.to_string())?;
    mark_token(config_path, &entry.name, true)?;
    ui.info(format!(
        "stored the {} of {} in {}; the proxy uses it from the next command (or reload)",
        if key { "account key" } else { "SAS token" },
        entry.name,
        store.describe()
    ));
    crate::service::include::after_change(dirs, ui);
    Ok(0)
}

/// `secret set|delete NAME` (no flag) for a GCS or Azure cache.
fn cloud_token(
    entry: &CacheEntry,
    set: bool,
    cfg: &Config,
    dirs: &Dirs,
    config_path: &std::path::Path,
    ui: &Ui,
) -> Result<i32> {
    match (&entry.kind, set) {
        (CacheKind::Azure(_), true) => bail!(
            "an Azure cache takes --azure-key-stdin (its storage account key) or --sas-stdin (a SAS token)"
        ),
        (CacheKind::Azure(_), false) => {
            let store = SecretStore::open(cfg, dirs, ui)?;
            let a = store.delete(&Account::AzureKey(&entry.name).to_string())?;
            let b = store.delete(&Account::AzureSas(&entry.name).to_string())?;
            mark_token(config_path, &entry.name, false)?;
            if !(a || b) {
                bail!("no account key or SAS was stored for {}", entry.name);
            }
            ui.info(format!(
                "deleted the stored credential of {}; Entra ID (az login, AZURE_* variables) is used from now on",
                entry.name
            ));
            crate::service::include::after_change(dirs, ui);
            Ok(0)
        }
        _ => bail!(
            "{} is a GCS cache: it has no stored secret; its credentials are Google's Application Default Credentials (`gcloud auth application-default login`, GOOGLE_APPLICATION_CREDENTIALS)",
            entry.name
        ),
    }
}

/// Records in config.toml that the cache's signing key is in the keyring (or forgets it).
fn record_signing_key(config_path: &std::path::Path, name: &str, present: bool) -> Result<()> {
    let path = config_path.to_path_buf();
    let name = name.to_string();
    let mut plan = Plan::new();
    plan.edit(config_path, 0o600, false, move |text| {
        let mut cfg = Config::parse(text, &path)?;
        let key = crate::config::SigningKey::Keyring;
        if !cfg.set_signing_key(&name, present.then_some(&key))? && present {
            // Removed by a concurrent `remove`: the key is stored, but nothing points to it.
            bail!("cache {name} is no longer recorded; nothing records the stored signing key");
        }
        Ok(cfg.to_text())
    });
    plan.apply().map(drop)
}

fn read_token(token_stdin: bool, entry: &CacheEntry) -> Result<Token> {
    let token = if token_stdin || !ui::has_tty() {
        if !token_stdin {
            bail!("no terminal to ask on: pipe the token with --token-stdin");
        }
        let mut buf = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("cannot read standard input")?;
        Zeroizing::new(buf.trim_end_matches(['\n', '\r']).to_string())
    } else {
        Zeroizing::new(
            dialoguer::Password::new()
                .with_prompt(format!("New token for {}", entry.name))
                .interact_on(&console::Term::stderr())
                .context("cannot read the token from the terminal")?,
        )
    };
    if token.is_empty() {
        bail!("the token is empty");
    }
    Token::new(token)
}

fn mark_token(config_path: &std::path::Path, name: &str, present: bool) -> Result<()> {
    let path = config_path.to_path_buf();
    let name = name.to_string();
    let mut plan = Plan::new();
    plan.edit(config_path, 0o600, false, move |text| {
        let mut cfg = Config::parse(text, &path)?;
        if let Some(mut e) = cfg.cache(&name)? {
            e.has_token = present;
            cfg.upsert_cache(&e)?;
        }
        Ok(cfg.to_text())
    });
    plan.apply().map(drop)
}

fn status_row(
    e: &CacheEntry,
    store: &SecretStore,
    ctx: session::Ctx,
    ui: &Ui,
) -> Result<serde_json::Value> {
    Ok(match (&e.kind, e.secret_store) {
        (CacheKind::S3(s3), _) => {
            let req = SessionRequest::new(None, Some(e.name.clone()));
            let cached = session::cached_only(&req, ctx, ui).ok().flatten();
            let expires = cached
                .as_ref()
                .and_then(|s| s.credentials.expiration)
                .map(crate::time::rfc3339);
            json!({
                "name": e.name,
                "kind": "s3",
                "where": format!("AWS session of profile {} in {}", s3.profile.as_deref().unwrap_or("default"), store.describe()),
                "present": cached.is_some(),
                "expires": expires,
            })
        }
        (CacheKind::Gcs(_), _) => json!({
            "name": e.name,
            "kind": "gcs",
            "where": crate::cloud_cache::credential_word(e),
            "present": true,
        }),
        (CacheKind::Azure(_), _) => {
            let key = store
                .get(&Account::AzureKey(&e.name).to_string())?
                .is_some();
            let sas = store
                .get(&Account::AzureSas(&e.name).to_string())?
                .is_some();
            let place = match (key, sas) {
                (true, _) => format!("account key in {}", store.describe()),
                (false, true) => format!("SAS token in {}", store.describe()),
                _ => crate::cloud_cache::credential_word(&CacheEntry {
                    has_token: false,
                    ..e.clone()
                }),
            };
            json!({
                "name": e.name,
                "kind": "azure",
                "where": place,
                "present": true,
            })
        }
        (CacheKind::Https { .. }, _) => {
            let cred = crate::secret::CacheCredential::of(e, Some(store))?;
            json!({
                "name": e.name,
                "kind": "https",
                "where": cred.place,
                "present": cred.present,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SigningKey;

    fn entry(url: &str, store: Store, netrc: Option<&str>) -> CacheEntry {
        CacheEntry {
            name: "c".into(),
            kind: crate::cache::parse_url(url).unwrap(),
            public_keys: Vec::new(),
            login: "nixstore-auth".into(),
            secret_store: store,
            nix_conf: None,
            netrc: netrc.map(Into::into),
            has_token: true,
            added_netrc_line: false,
            https: Default::default(),
        }
    }

    #[test]
    fn set_and_delete_reach_the_secret_where_it_lives() {
        let https = |store, netrc| entry("https://c.example.org", store, netrc);
        let s3 = entry("s3://b", Store::Netrc, None);
        let netrc = Place::Netrc {
            path: "/h/.config/nix/netrc".into(),
            machine: "c.example.org".into(),
        };
        let keyring = Some(&SigningKey::Keyring);
        let file_key = SigningKey::File("/k/sk".into());
        let file = Some(&file_key);
        let (key, tok) = (Secret::SigningKey, Secret::Token);
        let forget = |forget_record| Ok(Step::DeleteSigningKey { forget_record });
        // (secret, set, entry, recorded signing key) -> step, or a piece of the error.
        type Row<'a> = (
            Secret,
            bool,
            CacheEntry,
            Option<&'a SigningKey>,
            std::result::Result<Step, &'static str>,
        );
        let n = Some("/h/.config/nix/netrc");
        let table: Vec<Row> = vec![
            (key, true, s3.clone(), None, Ok(Step::StoreSigningKey)),
            (
                key,
                true,
                https(Store::Netrc, None),
                file,
                Ok(Step::StoreSigningKey),
            ),
            (key, false, s3.clone(), keyring, forget(true)),
            (key, false, s3.clone(), file, forget(false)),
            (key, false, s3.clone(), None, forget(false)),
            (
                tok,
                true,
                s3.clone(),
                None,
                Err("is an S3 cache: it has no token"),
            ),
            (
                tok,
                false,
                s3.clone(),
                None,
                Err("is an S3 cache: it has no token"),
            ),
            (
                tok,
                true,
                https(Store::Keyring, None),
                None,
                Ok(Step::SetToken(Place::Keyring)),
            ),
            (
                tok,
                false,
                https(Store::Keyring, n),
                None,
                Ok(Step::DeleteToken(Place::Keyring)),
            ),
            (
                tok,
                true,
                https(Store::Netrc, n),
                None,
                Ok(Step::SetToken(netrc.clone())),
            ),
            (
                tok,
                false,
                https(Store::Netrc, n),
                None,
                Ok(Step::DeleteToken(netrc.clone())),
            ),
            (
                tok,
                true,
                https(Store::Netrc, None),
                None,
                Err("no netrc file recorded"),
            ),
            (
                tok,
                false,
                https(Store::Netrc, None),
                None,
                Ok(Step::DeleteToken(Place::Nowhere)),
            ),
        ];
        for (what, set, e, recorded, want) in table {
            let got = decide(what, set, &e, recorded);
            let at = format!("{what:?} set={set} {}", e.kind.url());
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{at}"),
                (Err(err), Err(needle)) => assert!(format!("{err:#}").contains(needle), "{err:#}"),
                _ => panic!("{at}: got {got:?}, want {want:?}"),
            }
        }
    }
}
