//! Application Default Credentials: which source applies (the standard order, AIP-4110), and
//! what kind of credential a JSON file holds. Pure decisions over gathered facts; the tokens
//! themselves come from google-cloud-auth (`token.rs`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cloud::{AuthError, AuthResult};

/// The facts ADC's order depends on, gathered from the environment and the file system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `GOOGLE_APPLICATION_CREDENTIALS` (set and non-empty).
    pub env_file: Option<PathBuf>,
    /// gcloud's ADC file (`$CLOUDSDK_CONFIG/...` or `~/.config/gcloud/...`) and whether it exists.
    pub gcloud_file: Option<PathBuf>,
    pub gcloud_file_exists: bool,
    /// Another metadata server (`http://HOST:PORT`; tests). google-cloud-auth also reads
    /// `GCE_METADATA_HOST` itself, which wins over this.
    pub metadata_endpoint: Option<String>,
}

impl Facts {
    /// From this process's environment and file system.
    pub fn gather() -> Facts {
        let env_file = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let gcloud_file = gcloud_adc_path(
            std::env::var_os("CLOUDSDK_CONFIG").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        );
        let gcloud_file_exists = gcloud_file.as_deref().is_some_and(Path::is_file);
        Facts {
            env_file,
            gcloud_file,
            gcloud_file_exists,
            metadata_endpoint: None,
        }
    }

    /// The same facts with the gcloud file's existence looked at again (after a login).
    pub fn refreshed(&self) -> Facts {
        Facts {
            gcloud_file_exists: self.gcloud_file.as_deref().is_some_and(Path::is_file),
            ..self.clone()
        }
    }
}

/// gcloud's ADC file: in `$CLOUDSDK_CONFIG` when set (gcloud writes it there), else
/// `~/.config/gcloud/` (the well-known path of AIP-4113, whatever XDG_CONFIG_HOME says).
pub fn gcloud_adc_path(cloudsdk_config: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    const FILE: &str = "application_default_credentials.json";
    match (cloudsdk_config, home) {
        (Some(dir), _) if !dir.as_os_str().is_empty() => Some(dir.join(FILE)),
        (_, Some(home)) => Some(home.join(".config/gcloud").join(FILE)),
        _ => None,
    }
}

/// Where the credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The file `GOOGLE_APPLICATION_CREDENTIALS` names (a missing file is an error, not a
    /// reason to fall through: that would silently use another identity).
    EnvFile(PathBuf),
    /// gcloud's `application-default login` file.
    GcloudFile(PathBuf),
    /// The metadata server (GCE, GKE, Cloud Run, ...).
    Metadata,
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::EnvFile(p) => format!("GOOGLE_APPLICATION_CREDENTIALS ({})", p.display()),
            Source::GcloudFile(p) => {
                format!("gcloud's application default credentials ({})", p.display())
            }
            Source::Metadata => "the metadata server".into(),
        }
    }
}

/// ADC's order: the environment's file, then gcloud's file if it exists, then the metadata
/// server.
pub fn choose(facts: &Facts) -> Source {
    if let Some(path) = &facts.env_file {
        return Source::EnvFile(path.clone());
    }
    match &facts.gcloud_file {
        Some(path) if facts.gcloud_file_exists => Source::GcloudFile(path.clone()),
        _ => Source::Metadata,
    }
}

/// What a credential file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A service-account key: signs locally.
    ServiceAccount { email: String },
    /// A user's refresh token (`gcloud auth application-default login`).
    AuthorizedUser,
    /// Workload identity federation; `impersonate` is the service account it acts as, if any.
    ExternalAccount { impersonate: Option<Impersonation> },
    /// `gcloud auth application-default login --impersonate-service-account`.
    Impersonated(Impersonation),
}

/// A service account acted as through IAM Credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impersonation {
    pub email: String,
    /// The IAM Credentials service's base (`https://iamcredentials.googleapis.com`), taken
    /// from the file's impersonation URL so that signBlob goes to the same service.
    pub iam_base: String,
}

/// The service account and IAM base of an impersonation URL
/// (`BASE/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken`).
pub fn impersonation(url: &str) -> AuthResult<Impersonation> {
    let bad = || AuthError::Refused(format!("not a service-account impersonation URL: {url}"));
    let (base, rest) = url.split_once("/v1/projects/").ok_or_else(bad)?;
    let (_, account) = rest.split_once("/serviceAccounts/").ok_or_else(bad)?;
    let email = account
        .strip_suffix(":generateAccessToken")
        .ok_or_else(bad)?;
    if email.is_empty() || base.is_empty() || email.contains('/') {
        return Err(bad());
    }
    Ok(Impersonation {
        email: email.to_string(),
        iam_base: base.to_string(),
    })
}

fn field<'a>(json: &'a Value, name: &str) -> Option<&'a str> {
    json.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The kind of a credential file's JSON. Unknown or unsupported types are refused by name.
pub fn kind(json: &Value) -> AuthResult<Kind> {
    let missing = |t: &str, f: &str| AuthError::Refused(format!("a {t} credential without `{f}`"));
    match field(json, "type") {
        Some("service_account") => {
            let email = field(json, "client_email")
                .ok_or_else(|| missing("service_account", "client_email"))?;
            field(json, "private_key").ok_or_else(|| missing("service_account", "private_key"))?;
            Ok(Kind::ServiceAccount {
                email: email.to_string(),
            })
        }
        Some("authorized_user") => {
            field(json, "refresh_token")
                .ok_or_else(|| missing("authorized_user", "refresh_token"))?;
            Ok(Kind::AuthorizedUser)
        }
        Some("external_account") => {
            field(json, "audience").ok_or_else(|| missing("external_account", "audience"))?;
            let impersonate = field(json, "service_account_impersonation_url")
                .map(impersonation)
                .transpose()?;
            Ok(Kind::ExternalAccount { impersonate })
        }
        Some("impersonated_service_account") => {
            let url = field(json, "service_account_impersonation_url").ok_or_else(|| {
                missing(
                    "impersonated_service_account",
                    "service_account_impersonation_url",
                )
            })?;
            Ok(Kind::Impersonated(impersonation(url)?))
        }
        Some(other) => Err(AuthError::Refused(format!(
            "credential type `{other}` is not supported for GCS caches (supported: service_account, \
             authorized_user, external_account, impersonated_service_account)"
        ))),
        None => Err(AuthError::Refused(
            "a credential file without `type`".into(),
        )),
    }
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::ServiceAccount { .. } => "service_account",
            Kind::AuthorizedUser => "authorized_user",
            Kind::ExternalAccount { .. } => "external_account",
            Kind::Impersonated(_) => "impersonated_service_account",
        }
    }

    /// The command that fixes a credential of this kind once it stops working.
    pub fn fix(&self) -> String {
        match self {
            Kind::AuthorizedUser => "gcloud auth application-default login".into(),
            Kind::Impersonated(i) => format!(
                "gcloud auth application-default login --impersonate-service-account {}",
                i.email
            ),
            Kind::ServiceAccount { email } => format!(
                "gcloud iam service-accounts keys create KEY.json --iam-account {email} \
                 (then point GOOGLE_APPLICATION_CREDENTIALS at KEY.json)"
            ),
            Kind::ExternalAccount { .. } => {
                "check the subject token source of the external_account file \
                 GOOGLE_APPLICATION_CREDENTIALS names (a CI job's OIDC token expires with the job)"
                    .into()
            }
        }
    }
}

/// The fix when the metadata server is where ADC ended up and it does not answer.
pub const METADATA_FIX: &str = "gcloud auth application-default login";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn source_order_table() {
        let p = |s: &str| Some(PathBuf::from(s));
        // (env_file, gcloud_file, gcloud exists) → source
        let cases = [
            (
                p("/k.json"),
                p("/h/adc.json"),
                true,
                Source::EnvFile("/k.json".into()),
            ),
            // The environment's file wins even when missing: no silent fall-through.
            (
                p("/missing.json"),
                None,
                false,
                Source::EnvFile("/missing.json".into()),
            ),
            (
                None,
                p("/h/adc.json"),
                true,
                Source::GcloudFile("/h/adc.json".into()),
            ),
            (None, p("/h/adc.json"), false, Source::Metadata),
            (None, None, false, Source::Metadata),
        ];
        for (env_file, gcloud_file, exists, want) in cases {
            let facts = Facts {
                env_file: env_file.clone(),
                gcloud_file: gcloud_file.clone(),
                gcloud_file_exists: exists,
                metadata_endpoint: None,
            };
            assert_eq!(choose(&facts), want, "{facts:?}");
        }
    }

    #[test]
    fn gcloud_file_location() {
        let p = |s: &str| Some(PathBuf::from(s));
        let file = "application_default_credentials.json";
        assert_eq!(
            gcloud_adc_path(p("/c"), p("/h")),
            Some(PathBuf::from("/c").join(file))
        );
        assert_eq!(
            gcloud_adc_path(p(""), p("/h")),
            Some(PathBuf::from("/h/.config/gcloud").join(file))
        );
        assert_eq!(
            gcloud_adc_path(None, p("/h")),
            Some(PathBuf::from("/h/.config/gcloud").join(file))
        );
        assert_eq!(gcloud_adc_path(None, None), None);
    }

    #[test]
    fn kinds_of_credential_files() {
        let url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken";
        let imp = Impersonation {
            email: "sa@p.iam.gserviceaccount.com".into(),
            iam_base: "https://iamcredentials.googleapis.com".into(),
        };
        let cases = [
            (
                json!({"type": "service_account", "client_email": "a@b", "private_key": "k"}),
                Some(Kind::ServiceAccount {
                    email: "a@b".into(),
                }),
            ),
            (json!({"type": "service_account", "private_key": "k"}), None),
            (
                json!({"type": "authorized_user", "refresh_token": "r", "client_id": "c"}),
                Some(Kind::AuthorizedUser),
            ),
            (json!({"type": "authorized_user"}), None),
            (
                json!({"type": "external_account", "audience": "//iam/x"}),
                Some(Kind::ExternalAccount { impersonate: None }),
            ),
            (
                json!({"type": "external_account", "audience": "a", "service_account_impersonation_url": url}),
                Some(Kind::ExternalAccount {
                    impersonate: Some(imp.clone()),
                }),
            ),
            (
                json!({"type": "external_account", "audience": "a", "service_account_impersonation_url": "https://x/"}),
                None,
            ),
            (
                json!({"type": "impersonated_service_account", "service_account_impersonation_url": url}),
                Some(Kind::Impersonated(imp.clone())),
            ),
            (json!({"type": "gdch_service_account"}), None),
            (json!({"no": "type"}), None),
        ];
        for (json, want) in cases {
            assert_eq!(kind(&json).ok(), want, "{json}");
        }
        // A loopback IAM stand-in keeps its scheme and port.
        let local = impersonation(
            "http://127.0.0.1:9/v1/projects/-/serviceAccounts/x@y:generateAccessToken",
        )
        .unwrap();
        assert_eq!(local.iam_base, "http://127.0.0.1:9");
        assert_eq!(local.email, "x@y");
    }

    #[test]
    fn fixes_name_the_command() {
        assert_eq!(
            Kind::AuthorizedUser.fix(),
            "gcloud auth application-default login"
        );
        assert!(
            Kind::Impersonated(Impersonation {
                email: "e@x".into(),
                iam_base: String::new()
            })
            .fix()
            .ends_with("--impersonate-service-account e@x")
        );
    }
}
