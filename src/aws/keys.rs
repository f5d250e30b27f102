//! The first credentials of a profile chain: long-term keys from the AWS files or from the
//! secret store (`aws add-key`), else aws-config's own providers (SSO, `credential_process`,
//! web identity).

use anyhow::{Context, Result, anyhow};
use aws_sdk_sts::error::DisplayErrorContext;
use zeroize::Zeroizing;

use super::Credentials;
use super::profile::{Base, Plan};
use super::request::Ctx;
use super::sts::io_runtime;
use crate::secret::{Account, SecretStore};
use crate::ui::Ui;

/// Opens the secret store only if the plan might need it (a delegated base may have a key
/// stored by `aws add-key`); long-term keys in the files need no store at all.
pub(super) fn lazy_store(ctx: Ctx, ui: &Ui) -> Option<SecretStore> {
    match SecretStore::open(ctx.cfg, ctx.dirs, ui) {
        Ok(s) => Some(s),
        Err(e) => {
            ui.debug(format!("secret store unavailable: {e:#}"));
            None
        }
    }
}

pub(super) fn static_keys(
    set: &aws_config::profile::ProfileSet,
    name: &str,
) -> Result<Credentials> {
    let p = set
        .get_profile(name)
        .with_context(|| format!("profile {name:?} vanished"))?;
    Ok(Credentials {
        access_key_id: p.get("aws_access_key_id").unwrap_or_default().to_string(),
        secret_access_key: Zeroizing::new(
            p.get("aws_secret_access_key")
                .unwrap_or_default()
                .to_string(),
        ),
        session_token: p
            .get("aws_session_token")
            .map(|t| Zeroizing::new(t.to_string())),
        expiration: None,
    })
}

pub(super) fn stored_key(store: &SecretStore, profile: &str) -> Result<Option<Credentials>> {
    let Some(text) = store.get(&Account::AwsKey(profile).to_string())? else {
        return Ok(None);
    };
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Key {
        access_key_id: String,
        secret_access_key: String,
    }
    let mut k: Key = serde_json::from_str(&text).map_err(|_| {
        anyhow!(
            "the stored key of profile {profile:?} is unreadable: store it again with \
             `nixstore-auth aws add-key --profile {profile}`"
        )
    })?;
    Ok(Some(Credentials {
        access_key_id: k.access_key_id.clone(),
        secret_access_key: Zeroizing::new(std::mem::take(&mut k.secret_access_key)),
        session_token: None,
        expiration: None,
    }))
}

/// The first credentials of the chain.
pub(super) fn base_credentials(
    set: &aws_config::profile::ProfileSet,
    plan: &Plan,
    store: &Option<SecretStore>,
    region: Option<&str>,
    ui: &Ui,
) -> Result<Credentials> {
    match &plan.base {
        Base::StaticKeys { profile } => static_keys(set, profile),
        Base::Delegated { profile } => {
            if let Some(store) = store
                && let Some(k) = stored_key(store, profile)?
            {
                ui.debug(format!("using the stored key of profile {profile:?}"));
                return Ok(k);
            }
            ui.debug(format!(
                "profile {profile:?} has no keys: asking aws-config (SSO, credential_process, web identity)"
            ));
            let rt = io_runtime()?;
            match rt.block_on(delegated(profile, region)) {
                Ok(c) => Ok(c),
                Err(why) if is_sso(set, profile) => Err(crate::ui::error_with_help(
                    format!(
                        "profile {profile:?} signs in with AWS SSO, and the SSO token that `aws \
                         sso login` caches (~/.aws/sso/cache) is missing, expired or refused: {why}"
                    ),
                    format!("aws sso login --profile {profile}"),
                )),
                Err(why) => Err(anyhow!(
                    "profile {profile:?} gave no credentials: {why}. Add keys (`nixstore-auth aws \
                     add-key --profile {profile}`), run `aws sso login --profile {profile}`, or \
                     fix its credential_process"
                )),
            }
        }
    }
}

/// Whether `profile` signs in through AWS SSO (IAM Identity Center).
pub(super) fn is_sso(set: &aws_config::profile::ProfileSet, profile: &str) -> bool {
    set.get_profile(profile)
        .is_some_and(|p| p.get("sso_session").is_some() || p.get("sso_start_url").is_some())
}

/// Whether the chain starts from a long-term access key (in the files without a session
/// token, or stored by `aws add-key`): only such a key can open an MFA base session.
pub(super) fn starts_with_long_term_key(
    set: &aws_config::profile::ProfileSet,
    plan: &Plan,
    store: &SecretStore,
) -> Result<bool> {
    Ok(match &plan.base {
        Base::StaticKeys { profile } => set
            .get_profile(profile)
            .is_some_and(|p| p.get("aws_session_token").is_none()),
        Base::Delegated { profile } => stored_key(store, profile)?.is_some(),
    })
}

/// aws-config's own chain for `profile`; the error is the SDK's reason, as text.
async fn delegated(
    profile: &str,
    region: Option<&str>,
) -> std::result::Result<Credentials, String> {
    use aws_credential_types::provider::ProvideCredentials;
    let conf = aws_config::provider_config::ProviderConfig::default()
        .with_region(region.map(|r| aws_types::region::Region::new(r.to_string())));
    let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .configure(&conf)
        .profile_name(profile)
        .build();
    let c = provider
        .provide_credentials()
        .await
        .map_err(|e| DisplayErrorContext(&e).to_string())?;

    Ok(Credentials {
        access_key_id: c.access_key_id().to_string(),
        secret_access_key: Zeroizing::new(c.secret_access_key().to_string()),
        session_token: c.session_token().map(|t| Zeroizing::new(t.to_string())),
        expiration: c.expiry().map(crate::time::epoch),
    })
}
