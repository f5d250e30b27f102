//! Cached AWS sessions in the secret store (keyring, else 0600 files), one entry per
//! (profile, role, MFA serial). Not keyed by duration: `login --duration` feeds later `exec`s.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::Credentials;
use crate::secret::SecretStore;
use crate::ui::Ui;

/// Default for config key `session-refresh-margin`: reuse a session until this many seconds remain.
pub const DEFAULT_REFRESH_MARGIN: i64 = 300;

/// The stored form. Secrets inside; it only ever goes to the secret store.
#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    profile: String,
    role_arn: Option<String>,
    mfa_serial: Option<String>,
    region: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expiration: i64,
}

impl Drop for Stored {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.secret_access_key.zeroize();
        if let Some(t) = self.session_token.as_mut() {
            t.zeroize();
        }
    }
}

/// A session found in the cache.
#[derive(Debug, Clone)]
pub struct Cached {
    pub credentials: Credentials,
    pub region: Option<String>,
}

/// The account for a (profile, role, MFA serial).
pub fn account(profile: &str, role_arn: Option<&str>, mfa_serial: Option<&str>) -> String {
    let mut h = Sha256::new();
    for part in [Some(profile), role_arn, mfa_serial] {
        // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
        let p = part.unwrap_or("");
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
        h.update([part.is_some() as u8]);
    }
    crate::secret::Account::AwsSession(&hex::encode(h.finalize())[..32]).to_string()
}

/// A usable cached session: more than `margin` seconds left. Expired or nearly expired entries
/// are left for the refresh to overwrite; corrupted ones are deleted with a warning.
pub fn lookup(
    store: &SecretStore,
    account: &str,
    now: i64,
    margin: i64,
    ui: &Ui,
) -> Result<Option<Cached>> {
    let Some(text) = store.get(account)? else {
        return Ok(None);
    };
    let stored = match serde_json::from_str::<Stored>(&text) {
        Ok(s) if s.version == 1 => s,
        _ => {
            ui.warn(format!(
                "the cached AWS session {account} is corrupted; discarding it"
            ));
            store.delete(account)?;
            return Ok(None);
        }
    };
    let left = stored.expiration - now;
    if left <= margin.max(0) {
        ui.debug(format!(
            "cached session for profile {:?} has {left}s left (margin {margin}s): refreshing",
            stored.profile
        ));
        return Ok(None);
    }
    Ok(Some(Cached {
        credentials: Credentials {
            access_key_id: stored.access_key_id.clone(),
            secret_access_key: Zeroizing::new(stored.secret_access_key.clone()),
            session_token: stored
                .session_token
                .as_ref()
                .map(|t| Zeroizing::new(t.clone())),
            expiration: Some(stored.expiration),
        },
        region: stored.region.clone(),
    }))
}

pub fn save(
    store: &SecretStore,
    account: &str,
    profile: &str,
    role_arn: Option<&str>,
    mfa_serial: Option<&str>,
    region: Option<&str>,
    creds: &Credentials,
) -> Result<()> {
    let Some(expiration) = creds.expiration else {
        // Long-term keys are not a session; nothing to cache.
        return Ok(());
    };
    let stored = Stored {
        version: 1,
        profile: profile.to_string(),
        role_arn: role_arn.map(str::to_string),
        mfa_serial: mfa_serial.map(str::to_string),
        region: region.map(str::to_string),
        access_key_id: creds.access_key_id.clone(),
        secret_access_key: creds.secret_access_key.to_string(),
        session_token: creds.session_token.as_ref().map(|t| t.to_string()),
        expiration,
    };
    let text = Zeroizing::new(serde_json::to_string(&stored)?);
    store.set(account, &text)
}

/// Deletes the cached sessions of `profile` (every session when `None`); returns how many.
/// Entries that cannot be read are deleted only with `None` (they name no profile).
pub fn forget(store: &SecretStore, profile: Option<&str>) -> Result<usize> {
    let mut n = 0;
    for account in store.list()? {
        if !matches!(
            crate::secret::Account::parse(&account),
            Some(crate::secret::Account::AwsSession(_))
        ) {
            continue;
        }
        let matches = match profile {
            None => true,
            Some(p) => store
                .get(&account)?
                .and_then(|t| serde_json::from_str::<Stored>(&t).ok())
                .is_some_and(|s| s.profile == p),
        };
        if matches && store.delete(&account)? {
            n += 1;
        }
    }
    Ok(n)
}

/// Expiry of the cached session of a profile, for status displays (no secret leaves).
pub fn expiry_of(store: &SecretStore, account: &str) -> Result<Option<i64>> {
    Ok(store
        .get(account)?
        .and_then(|t| serde_json::from_str::<Stored>(&t).ok())
        .map(|s| s.expiration))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(exp: i64) -> Credentials {
        Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Zeroizing::new("sec".into()),
            session_token: Some(Zeroizing::new("tok".into())),
            expiration: Some(exp),
        }
    }

    #[test]
    fn reuse_until_margin_never_expired_and_corruption_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SecretStore::file(tmp.path().join("s"));
        let ui = Ui::default();
        let a = account("work", Some("arn:role"), Some("arn:mfa"));
        assert_ne!(a, account("work", Some("arn:role"), None));
        assert_ne!(
            account("ab", Some("c"), None),
            account("a", Some("bc"), None)
        );
        save(
            &store,
            &a,
            "work",
            Some("arn:role"),
            Some("arn:mfa"),
            Some("r"),
            &creds(1000),
        )
        .unwrap();
        let hit = lookup(&store, &a, 600, 300, &ui).unwrap().unwrap();
        assert_eq!(hit.credentials.secret_access_key.as_str(), "sec");
        assert_eq!(hit.region.as_deref(), Some("r"));
        assert!(lookup(&store, &a, 700, 300, &ui).unwrap().is_none());
        assert!(lookup(&store, &a, 1000, 0, &ui).unwrap().is_none());
        assert!(lookup(&store, &a, 999, 0, &ui).unwrap().is_some());
        assert_eq!(expiry_of(&store, &a).unwrap(), Some(1000));

        store.set(&a, "{not json").unwrap();
        assert!(lookup(&store, &a, 0, 0, &ui).unwrap().is_none());
        assert!(
            store.get(&a).unwrap().is_none(),
            "corrupted entry is deleted"
        );
    }

    #[test]
    fn forget_by_profile() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SecretStore::file(tmp.path().join("s"));
        let a = account("a", None, Some("m"));
        let b = account("b", Some("r"), None);
        save(&store, &a, "a", None, Some("m"), None, &creds(9)).unwrap();
        save(&store, &b, "b", Some("r"), None, None, &creds(9)).unwrap();
        store.set("aws-key:a", "keep").unwrap();
        assert_eq!(forget(&store, Some("a")).unwrap(), 1);
        assert!(store.get(&a).unwrap().is_none());
        assert!(store.get(&b).unwrap().is_some());
        assert_eq!(forget(&store, None).unwrap(), 1);
        assert_eq!(store.list().unwrap(), vec!["aws-key:a"]);
    }
}
