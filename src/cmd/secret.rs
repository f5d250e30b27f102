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
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let config_path = dirs.config_file();
        let cfg = Config::load(&config_path)?;
        let find = |name: &str| -> Result<CacheEntry> {
            cfg.find(name)?.ok_or_else(|| cfg.unknown_cache(name))
        };
        match self.action {
            SecretAction::Set {
                cache,
                signing_key_stdin: true,
                ..
            } => {
                let entry = find(&cache)?;
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
                let store = SecretStore::open(&cfg, &dirs, ui)?;
                store.set(&Account::SigningKey(&entry.name).to_string(), text.trim())?;
                record_signing_key(&config_path, &entry.name, true)?;
                ui.info(format!(
                    "stored the signing key {:?} of {} in {}; push, watch-store and exec --push sign with it (public key {})",
                    info.name,
                    entry.name,
                    store.describe(),
                    info.public_key
                ));
                Ok(0)
            }
            SecretAction::Delete {
                cache,
                signing_key: true,
            } => {
                let entry = find(&cache)?;
                let deleted = SecretStore::open(&cfg, &dirs, ui)?
                    .delete(&Account::SigningKey(&entry.name).to_string())?;
                if cfg.signing_key(&entry.name)? == Some(crate::config::SigningKey::Keyring) {
                    record_signing_key(&config_path, &entry.name, false)?;
                }
                if deleted {
                    ui.info(format!("deleted the signing key of {}", entry.name));
                    Ok(0)
                } else {
                    bail!("no signing key was stored for {}", entry.name)
                }
            }
            SecretAction::Set {
                cache, token_stdin, ..
            } => {
                let entry = https_only(find(&cache)?)?;
                let token = read_token(token_stdin, &entry)?;
                match entry.secret_store {
                    Store::Keyring => {
                        let store = SecretStore::open(&cfg, &dirs, ui)?;
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
                    Store::Netrc => {
                        let path = entry.netrc.clone().context(
                            "this cache has no netrc file recorded: run `nixstore-auth use` with --token-stdin",
                        )?;
                        let machine = entry
                            .kind
                            .netrc_machine()
                            .context("the cache URL has no host")?;
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
                }
                mark_token(&config_path, &entry.name, true)?;
                Ok(0)
            }
            SecretAction::Delete { cache, .. } => {
                let entry = https_only(find(&cache)?)?;
                let deleted = match entry.secret_store {
                    Store::Keyring => SecretStore::open(&cfg, &dirs, ui)?
                        .delete(&Account::CacheToken(&entry.name).to_string())?,
                    Store::Netrc => match (&entry.netrc, entry.kind.netrc_machine()) {
                        (Some(path), Some(machine)) => {
                            let mut plan = Plan::new();
                            plan.edit(path, 0o600, true, move |text| {
                                let mut n = Netrc::parse(text)?;
                                n.remove(&machine);
                                Ok(n.to_text())
                            });
                            !plan.apply()?.is_empty()
                        }
                        _ => false,
                    },
                };
                mark_token(&config_path, &entry.name, false)?;
                if deleted {
                    ui.info(format!("deleted the token of {}", entry.name));
                    Ok(0)
                } else {
                    bail!("no token was stored for {}", entry.name)
                }
            }
            SecretAction::Status { cache, json } => {
                let entries = match &cache {
                    Some(c) => vec![find(c)?],
                    None => cfg.caches()?,
                };
                let store = SecretStore::open(&cfg, &dirs, ui)?;
                let mut rows = Vec::new();
                for e in &entries {
                    rows.push(status_row(e, &store, session::Ctx::new(&cfg, &dirs), ui)?);
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
        }
    }
}

fn https_only(entry: CacheEntry) -> Result<CacheEntry> {
    if matches!(entry.kind, CacheKind::S3(_)) {
        bail!(
            "{} is an S3 cache: it has no token; its credentials are your AWS session (`nixstore-auth login`, `nixstore-auth aws add-key`); its signing key: `secret set {} --signing-key-stdin`",
            entry.name,
            entry.name
        );
    }
    Ok(entry)
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
