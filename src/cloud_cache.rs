//! A recorded GCS or Azure cache's credential, as the proxy loads it and as `list`, `doctor`
//! and `secret` tell it: the environment snapshot a command's lease hands the proxy (the
//! variables Google's ADC and Azure's Entra sources read), the Azure key or SAS from the secret
//! store, and the one place that turns those into a [`crate::cloud::ObjectAuth`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use crate::cache::CacheKind;
use crate::cloud::ObjectAuth;
use crate::config::{CacheEntry, Config, Dirs};
use crate::secret::{Account, SecretStore};

/// The variables a cloud credential depends on: Google's ADC (`GOOGLE_APPLICATION_CREDENTIALS`,
/// gcloud's directory by `CLOUDSDK_CONFIG` or `HOME`, another metadata server), Azure's Entra
/// sources (`AZURE_*`), the CA bundles that verify the store (`SSL_CERT_FILE`,
/// `NIX_SSL_CERT_FILE`) and `PATH` (for `az`).
pub const VARS: &[&str] = &[
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
    "HOME",
    "GCE_METADATA_HOST",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "SSL_CERT_FILE",
    "NIX_SSL_CERT_FILE",
    "PATH",
];

/// The values of [`VARS`] in a command's environment (set and non-empty ones), sorted.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EnvSnapshot(Vec<(String, String)>);

impl std::fmt::Debug for EnvSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: AZURE_CLIENT_SECRET is a secret.
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl EnvSnapshot {
    /// From this process's environment.
    pub fn gather() -> EnvSnapshot {
        EnvSnapshot::from_pairs(
            VARS.iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))),
        )
    }

    /// From pairs (tests; only [`VARS`] are kept).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> EnvSnapshot {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(k, v)| VARS.contains(&k.as_str()) && !v.is_empty())
            .collect();
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
        EnvSnapshot(v)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The CA bundles to trust besides the system's.
    pub fn ca_files(&self) -> Vec<PathBuf> {
        crate::proxy::https_rules::ca_files(
            self.get("NIX_SSL_CERT_FILE").map(std::path::Path::new),
            self.get("SSL_CERT_FILE").map(std::path::Path::new),
        )
    }

    /// ADC's facts from this snapshot (the file system looked at now).
    pub fn gcp_facts(&self) -> crate::gcp::adc::Facts {
        let gcloud_file = crate::gcp::adc::gcloud_adc_path(
            self.get("CLOUDSDK_CONFIG").map(PathBuf::from),
            self.get("HOME").map(PathBuf::from),
        );
        crate::gcp::adc::Facts {
            env_file: self
                .get("GOOGLE_APPLICATION_CREDENTIALS")
                .map(PathBuf::from),
            gcloud_file_exists: gcloud_file.as_deref().is_some_and(std::path::Path::is_file),
            gcloud_file,
            metadata_endpoint: self.get("GCE_METADATA_HOST").map(|h| format!("http://{h}")),
        }
    }

    /// Entra's environment from this snapshot.
    pub fn entra(&self) -> crate::azure::entra::EntraEnv {
        let s = |k: &str| self.get(k).map(str::to_string);
        let az = self.get("PATH").and_then(|path| {
            std::env::split_paths(path)
                .map(|d| d.join("az"))
                .find(|p| p.is_file())
        });
        crate::azure::entra::EntraEnv {
            client_id: s("AZURE_CLIENT_ID"),
            tenant_id: s("AZURE_TENANT_ID"),
            client_secret: s("AZURE_CLIENT_SECRET").map(Zeroizing::new),
            federated_token_file: s("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            authority_host: s("AZURE_AUTHORITY_HOST"),
            az,
        }
    }
}

/// A loaded credential and what the proxy needs besides.
pub struct Loaded {
    pub auth: Arc<dyn ObjectAuth>,
    /// The command that gives the cache a working credential.
    pub fix: String,
    /// The store is reached over HTTPS (then nothing may downgrade to HTTP).
    pub scheme_https: bool,
    /// The same credential as an Azure container, for uploads (Put Blob, Put Block).
    pub azure: Option<Arc<crate::azure::Blob>>,
    /// What [`secret_tag`] said when it was loaded.
    pub secret_tag: Option<String>,
}

/// A digest of the secret the cache's credential was made from (an Azure key or SAS in the
/// secret store), so that a proxy sees a `secret set` and loads the credential again; `None`
/// when none is stored.
pub fn secret_tag(entry: &CacheEntry, cfg: &Config, dirs: &Dirs) -> Result<Option<String>> {
    use sha2::{Digest, Sha256};
    if !(matches!(entry.kind, CacheKind::Azure(_)) && entry.has_token) {
        return Ok(None);
    }
    let (key, sas) = azure_secret(&entry.name, cfg, dirs)?;
    if key.is_none() && sas.is_none() {
        return Ok(None);
    }
    let mut h = Sha256::new();
    for part in [key, sas] {
        h.update(part.as_deref().map(|s| s.as_str()).unwrap_or("").as_bytes());
        h.update([0u8]);
    }
    Ok(Some(hex::encode(h.finalize())))
}

/// One stored secret, if any.
pub type Stored = Option<Zeroizing<String>>;

/// An Azure cache's stored secret: its account key or a SAS (`secret set --azure-key-stdin`,
/// `--sas-stdin`); the key wins, as Azure's tools prefer it.
pub fn azure_secret(name: &str, cfg: &Config, dirs: &Dirs) -> Result<(Stored, Stored)> {
    let store = SecretStore::open(cfg, dirs, &crate::ui::Ui::silent())?;
    let key = store.get(&Account::AzureKey(name).to_string())?;
    let sas = store.get(&Account::AzureSas(name).to_string())?;
    Ok((key, sas))
}

/// The HTTP client the clouds' credentials use (token endpoints, IAM, user delegation keys),
/// trusting the system's roots and the snapshot's CA bundles.
fn http_client(env: &EnvSnapshot) -> Result<reqwest::Client> {
    let mut certs = Vec::new();
    for f in env.ca_files() {
        let pem = std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
        certs.extend(
            reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} is not a PEM CA bundle", f.display()))?,
        );
    }
    reqwest::Client::builder()
        .tls_certs_merge(certs)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")
}

/// Loads the credential of the recorded cloud cache `entry` from `env` and the secret store.
/// Inside a tokio runtime.
pub fn load(entry: &CacheEntry, cfg: &Config, dirs: &Dirs, env: &EnvSnapshot) -> Result<Loaded> {
    let http = http_client(env)?;
    match &entry.kind {
        CacheKind::Gcs(bucket) => {
            let cred = crate::gcp::token::Credential::load(env.gcp_facts())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let fix = match cred.state() {
                crate::cloud::State::NeedsPerson { fix, .. } => fix,
                _ => "gcloud auth application-default login".to_string(),
            };
            Ok(Loaded {
                scheme_https: bucket.endpoint.scheme() == "https",
                auth: Arc::new(crate::gcp::Gcs::with_credential(bucket.clone(), cred, http)),
                fix,
                azure: None,
                secret_tag: None,
            })
        }
        CacheKind::Azure(container) => {
            let (key, sas) = if entry.has_token {
                azure_secret(&entry.name, cfg, dirs)?
            } else {
                (None, None)
            };
            let tag = secret_tag(entry, cfg, dirs)?;
            let entra = env.entra();
            let choice = crate::azure::choose(key.is_some(), sas.is_some(), &entra.facts());
            let fix = match choice {
                crate::azure::Choice::Key => {
                    format!("nixstore-auth secret set {} --azure-key-stdin", entry.name)
                }
                crate::azure::Choice::Sas => {
                    format!("nixstore-auth secret set {} --sas-stdin", entry.name)
                }
                crate::azure::Choice::Entra(route) => route.fix().to_string(),
            };
            let cred = crate::azure::Credential::resolve(
                key.as_deref().map(|k| k.as_str()),
                sas.as_deref().map(|s| s.as_str()),
                &entra,
                &http,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let blob = Arc::new(crate::azure::Blob::new(container.clone(), cred, http));
            Ok(Loaded {
                scheme_https: container.endpoint.scheme() == "https",
                auth: blob.clone(),
                fix,
                azure: Some(blob),
                secret_tag: tag,
            })
        }
        _ => bail!("{} is not a GCS or Azure cache", entry.name),
    }
}

/// Which credential a cloud cache uses, in words, from what config.toml records (no secret
/// store opened, no network): for `list`.
pub fn credential_word(c: &CacheEntry) -> String {
    match &c.kind {
        CacheKind::Gcs(_) => {
            "Google Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, metadata server)".into()
        }
        CacheKind::Azure(_) if c.has_token => {
            "Azure account key or SAS in the secret store".into()
        }
        CacheKind::Azure(_) => {
            "Entra ID (AZURE_* environment, the Azure CLI's login, managed identity)".into()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_keeps_only_the_clouds_variables() {
        let env = EnvSnapshot::from_pairs([
            ("HOME".to_string(), "/home/a".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "x".to_string()),
            ("AZURE_CLIENT_SECRET".to_string(), "s3cret".to_string()),
            ("CLOUDSDK_CONFIG".to_string(), String::new()),
            ("SSL_CERT_FILE".to_string(), "/ca.pem".to_string()),
        ]);
        assert_eq!(env.get("HOME"), Some("/home/a"));
        assert_eq!(env.get("AWS_SECRET_ACCESS_KEY"), None);
        assert_eq!(env.get("CLOUDSDK_CONFIG"), None);
        assert!(!format!("{env:?}").contains("s3cret"));
        assert_eq!(env.ca_files(), vec![PathBuf::from("/ca.pem")]);
        let facts = env.gcp_facts();
        assert_eq!(
            facts.gcloud_file,
            Some(PathBuf::from(
                "/home/a/.config/gcloud/application_default_credentials.json"
            ))
        );
        assert_eq!(facts.env_file, None);
        assert_eq!(
            env.entra().client_secret.as_deref().map(|s| s.as_str()),
            Some("s3cret")
        );
    }
}
