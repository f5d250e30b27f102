//! `remove`: undo exactly what `use` added for a cache: its substituter, keys, netrc entry and
//! record. Lines the user wrote (plain `substituters`, other machines) are left alone.

use anyhow::{Result, bail};
use std::path::PathBuf;

use super::{RemoveArgs, Run};
use crate::cache::{self, CacheKind};
use crate::config::{CacheEntry, Config, Dirs, SecretStore, same_cache};
use crate::nix::conf::NixConf;
use crate::nix::netrc::Netrc;
use crate::nix::setup::{self, ProbeCache};
use crate::nix::snippet::{Format, Snippet};
use crate::nix::target::{self, RemoveFrom};
use crate::plan::Plan;
use crate::ui::Ui;

impl Run for RemoveArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let config_path = dirs.config_file();
        let config = Config::load(&config_path)?;
        let all = config.caches()?;
        let entry = match config.find(&self.cache)? {
            Some(e) => e,
            None if cache::looks_like_url(&self.cache) => {
                let kind = cache::parse_url(&self.cache)?;
                CacheEntry {
                    name: kind.default_name(),
                    kind,
                    public_keys: Vec::new(),
                    login: String::new(),
                    secret_store: SecretStore::Netrc,
                    nix_conf: None,
                    netrc: None,
                    has_token: false,
                    added_netrc_line: false,
                    https: Default::default(),
                }
            }
            None => return Err(config.unknown_cache(&self.cache)),
        };
        let others: Vec<&CacheEntry> = all.iter().filter(|c| c.name != entry.name).collect();
        let url = entry.kind.url();

        let from = target::remove_from(
            self.edit.nix_conf.as_deref(),
            entry.nix_conf.as_deref(),
            self.edit.mode,
            || {
                Ok(target::decide(
                    self.edit.mode,
                    &setup::probe(ProbeCache::ReadOnly)?,
                    &url,
                    None,
                ))
            },
        )?;
        let conf_path = match from {
            RemoveFrom::Conf(p) => Some(p),
            RemoveFrom::Nothing => None,
            RemoveFrom::Print { nixos } => {
                let mut snippet = Snippet::default();
                snippet.push("extra-substituters", vec![url.clone()]);
                snippet.push("extra-trusted-public-keys", entry.public_keys.clone());
                ui.outln("# remove from your Nix configuration:")?;
                ui.out(snippet.render(Format::NixConf.on_nixos(nixos)))?;
                return Ok(0);
            }
        };

        let mut plan = Plan::new();
        if let Some(conf_path) = &conf_path {
            if let Some(why) = crate::fs::edit_blocker(conf_path) {
                bail!(
                    "cannot edit {}: {why}; remove {url} from the configuration that generates it",
                    conf_path.display()
                );
            }
            // Keys another recorded cache still needs stay.
            let keys: Vec<String> = entry
                .public_keys
                .iter()
                .filter(|k| !others.iter().any(|o| o.public_keys.contains(k)))
                .cloned()
                .collect();
            let netrc_line = entry
                .added_netrc_line
                .then(|| entry.netrc.clone())
                .flatten()
                .filter(|n| {
                    !others.iter().any(|o| {
                        o.netrc.as_ref() == Some(n) && o.nix_conf.as_ref() == Some(conf_path)
                    })
                });
            let substituter = match entry.kind {
                CacheKind::Https { .. } => Some(url.clone()),
                _ => None,
            };
            plan.edit(conf_path, 0o644, false, move |text| {
                let mut c = NixConf::parse(text)?;
                if let Some(u) = &substituter {
                    c.remove_value("substituters", u);
                    // `use` writes the URL as given; a trailing slash is the same cache.
                    c.remove_value("substituters", &format!("{u}/"));
                }
                for k in &keys {
                    c.remove_value("trusted-public-keys", k);
                }
                if let Some(n) = &netrc_line
                    && c.get("netrc-file").map(PathBuf::from).as_ref() == Some(n)
                {
                    c.unset("netrc-file");
                }
                Ok(c.to_text())
            });
        }
        if let (Some(netrc_path), Some(machine)) = (&entry.netrc, entry.kind.netrc_machine()) {
            let shared = others.iter().any(|o| {
                o.netrc.as_ref() == Some(netrc_path)
                    && o.kind.netrc_machine().as_deref() == Some(machine.as_str())
            });
            if shared {
                ui.info(format!(
                    "the netrc entry for {machine} stays: another recorded cache on that host uses it"
                ));
            } else {
                plan.edit(netrc_path, 0o600, true, move |text| {
                    let mut n = Netrc::parse(text)?;
                    n.remove(&machine);
                    Ok(n.to_text())
                });
            }
        }
        let name = entry.name.clone();
        let recorded = all
            .iter()
            .any(|c| c.name == name && same_cache(&c.kind, &entry.kind));
        if recorded {
            let path = config_path.clone();
            plan.edit(&config_path, 0o600, false, move |text| {
                let mut cfg = Config::parse(text, &path)?;
                // Already gone (a concurrent `remove`) is the state we want.
                cfg.remove_cache(&name);
                Ok(cfg.to_text())
            });
        }
        if self.edit.dry_run {
            ui.out(format_args!("{}", plan.preview()?))?;
            ui.info("dry run: nothing was changed");
            return Ok(0);
        }
        let changed = plan.apply()?;
        if recorded {
            crate::service::include::after_change(&dirs, ui);
        }
        if entry.secret_store == SecretStore::Keyring && recorded {
            let store = crate::secret::SecretStore::open(&config, &dirs, ui)?;
            if store.delete(&crate::secret::Account::CacheToken(&entry.name).to_string())? {
                ui.info(format!(
                    "deleted the token of {} from {}",
                    entry.name,
                    store.describe()
                ));
            }
        }
        if matches!(entry.kind, CacheKind::Azure(_)) && entry.has_token && recorded {
            // Its account key or SAS (`secret set --azure-key-stdin | --sas-stdin`) goes too.
            let store = crate::secret::SecretStore::open(&config, &dirs, ui)?;
            let key = store.delete(&crate::secret::Account::AzureKey(&entry.name).to_string())?;
            let sas = store.delete(&crate::secret::Account::AzureSas(&entry.name).to_string())?;
            if key || sas {
                ui.info(format!(
                    "deleted the account key or SAS of {} from {}",
                    entry.name,
                    store.describe()
                ));
            }
        }
        if changed.is_empty() {
            ui.info(format!("{url} was not configured; nothing changed"));
        }
        for p in &changed {
            ui.info(format!("updated {}", p.display()));
        }
        if let Some(conf_path) = &conf_path {
            let text = crate::fs::read_optional(conf_path)?.unwrap_or_default();
            if let Ok(c) = NixConf::parse(&text) {
                for o in c.occurrences("substituters") {
                    if o.values.iter().any(|v| crate::cache::same_url(v, &url)) {
                        ui.warn(format!(
                            "{}:{} still lists {url} in `{}`, a line nixstore-auth did not write; left alone",
                            conf_path.display(),
                            o.line,
                            o.key
                        ));
                    }
                }
            }
        }
        Ok(0)
    }
}
