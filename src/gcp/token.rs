//! A GCS credential: the source ADC chose (`adc.rs`), its tokens from google-cloud-auth (which
//! caches them and renews them in the background before they expire), its signer if it has one,
//! and where it stands. A credential that needed a person reloads itself once its file changes
//! (after `gcloud auth application-default login`), so the proxy needs no restart.

use std::path::Path;
use std::sync::Mutex;

use google_cloud_auth::credentials::{
    AccessTokenCredentials, external_account, impersonated, mds, service_account, user_account,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::adc::{self, Facts, Impersonation, Kind, Source};
use super::sign::KeySigner;
use crate::cloud::{AuthError, AuthResult, State};

/// How a credential signs V4 URLs, if it can.
#[derive(Debug, Clone)]
pub enum Signer {
    /// A service-account key, locally.
    Key { key: KeySigner, email: String },
    /// IAM Credentials' signBlob for the impersonated account.
    Iam(Impersonation),
}

impl Signer {
    pub fn email(&self) -> &str {
        match self {
            Signer::Key { email, .. } => email,
            Signer::Iam(i) => &i.email,
        }
    }
}

/// One loaded credential.
struct Loaded {
    source: Source,
    /// `None` for the metadata server.
    kind: Option<Kind>,
    /// SHA-256 of the file's bytes: a changed file is reloaded after a failure.
    fingerprint: Option<[u8; 32]>,
    tokens: AccessTokenCredentials,
    signer: Option<Signer>,
}

/// A GCS credential as the proxy holds it.
pub struct Credential {
    facts: Facts,
    loaded: Mutex<std::sync::Arc<Loaded>>,
    state: Mutex<State>,
    /// How often it was loaded again after the store refused its token ([`Credential::refused`]).
    generation: std::sync::atomic::AtomicU64,
}

/// What fixes an unreadable credential file of `source`.
fn file_fix(source: &Source) -> String {
    match source {
        Source::EnvFile(_) => {
            "point GOOGLE_APPLICATION_CREDENTIALS at an existing credential file \
             (or unset it to use gcloud auth application-default login)"
                .into()
        }
        _ => adc::METADATA_FIX.into(),
    }
}

fn read_file(source: &Source, path: &Path) -> AuthResult<(Value, [u8; 32])> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| AuthError::NeedsPerson {
        why: format!("cannot read the credential file {}: {e}", path.display()),
        fix: file_fix(source),
    })?);
    let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
        AuthError::Refused(format!(
            "{} is not a JSON credential file: {e}",
            path.display()
        ))
    })?;
    Ok((json, Sha256::digest(&*bytes).into()))
}

fn build_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::Refused(format!("cannot use the GCS credential: {e}"))
}

fn load(source: Source, metadata_endpoint: Option<&str>) -> AuthResult<Loaded> {
    let path = match &source {
        Source::EnvFile(p) | Source::GcloudFile(p) => p.clone(),
        Source::Metadata => {
            let mut builder = mds::Builder::default();
            if let Some(e) = metadata_endpoint {
                builder = builder.with_endpoint(e);
            }
            let tokens = builder
                .build_access_token_credentials()
                .map_err(build_error)?;
            return Ok(Loaded {
                source,
                kind: None,
                fingerprint: None,
                tokens,
                signer: None,
            });
        }
    };
    let (json, fingerprint) = read_file(&source, &path)?;
    let kind = adc::kind(&json)?;
    let (tokens, signer) = match &kind {
        Kind::ServiceAccount { email } => {
            let pem = json
                .get("private_key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let signer = Signer::Key {
                key: KeySigner::from_pem(pem)?,
                email: email.clone(),
            };
            let tokens = service_account::Builder::new(json.clone())
                .build_access_token_credentials()
                .map_err(build_error)?;
            (tokens, Some(signer))
        }
        Kind::AuthorizedUser => (
            user_account::Builder::new(json.clone())
                .build_access_token_credentials()
                .map_err(build_error)?,
            None,
        ),
        Kind::ExternalAccount { impersonate } => (
            external_account::Builder::new(json.clone())
                .build_access_token_credentials()
                .map_err(build_error)?,
            impersonate.clone().map(Signer::Iam),
        ),
        Kind::Impersonated(imp) => (
            impersonated::Builder::new(json.clone())
                .build_access_token_credentials()
                .map_err(build_error)?,
            Some(Signer::Iam(imp.clone())),
        ),
    };
    Ok(Loaded {
        source,
        kind: Some(kind),
        fingerprint: Some(fingerprint),
        tokens,
        signer,
    })
}

impl Credential {
    /// Loads the credential ADC's order picks from `facts`. Inside a tokio runtime.
    pub fn load(facts: Facts) -> AuthResult<Credential> {
        let loaded = load(adc::choose(&facts), facts.metadata_endpoint.as_deref())?;
        Ok(Credential {
            facts,
            loaded: Mutex::new(std::sync::Arc::new(loaded)),
            state: Mutex::new(State::Renews { until: None }),
            generation: Default::default(),
        })
    }

    /// Which load the tokens handed out now come from.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The store refused a token of load `seen` (401: expired or unknown): load the credential
    /// again, so that google-cloud-auth fetches a new token instead of its cached one; once per
    /// load, however many requests saw it refused. Whether a new one may come. Inside a tokio
    /// runtime.
    pub fn refused(&self, seen: u64) -> bool {
        use std::sync::atomic::Ordering;
        let mut g = match self.loaded.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if self.generation.load(Ordering::SeqCst) != seen {
            return true;
        }
        let facts = self.facts.refreshed();
        match load(adc::choose(&facts), facts.metadata_endpoint.as_deref()) {
            Ok(fresh) => {
                *g = std::sync::Arc::new(fresh);
                self.generation.fetch_add(1, Ordering::SeqCst);
                true
            }
            Err(_) => false,
        }
    }

    fn current(&self) -> std::sync::Arc<Loaded> {
        match self.loaded.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_state(&self, s: State) {
        match self.state.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }

    /// "authorized_user from gcloud's application default credentials (PATH)".
    pub fn describe(&self) -> String {
        let l = self.current();
        match &l.kind {
            Some(k) => format!("{} from {}", k.name(), l.source.describe()),
            None => l.source.describe(),
        }
    }

    /// The kind's name (`authorized_user`, ..., `metadata`).
    pub fn kind_name(&self) -> &'static str {
        self.current().kind.as_ref().map_or("metadata", Kind::name)
    }

    pub fn state(&self) -> State {
        match self.state.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub async fn signer(&self) -> Option<Signer> {
        self.current().signer.clone()
    }

    /// After a failure that needed a person: reload if the file changed (a new login).
    fn reload_if_changed(&self) {
        if !matches!(self.state(), State::NeedsPerson { .. }) {
            return;
        }
        let facts = self.facts.refreshed();
        let source = adc::choose(&facts);
        let now = match &source {
            Source::EnvFile(p) | Source::GcloudFile(p) => {
                read_file(&source, p).ok().map(|(_, f)| f)
            }
            Source::Metadata => None,
        };
        let old = self.current();
        if now == old.fingerprint && source == old.source {
            return;
        }
        if let Ok(fresh) = load(source, facts.metadata_endpoint.as_deref())
            && let Ok(mut g) = self.loaded.lock()
        {
            *g = std::sync::Arc::new(fresh);
        }
    }

    /// A valid access token (cached and renewed by google-cloud-auth).
    pub async fn access_token(&self) -> AuthResult<Zeroizing<String>> {
        self.reload_if_changed();
        let l = self.current();
        match l.tokens.access_token().await {
            Ok(t) => {
                self.set_state(State::Renews { until: None });
                Ok(Zeroizing::new(t.token))
            }
            // With no file at all, a silent metadata server means nobody logged in.
            Err(e) if l.source == Source::Metadata => {
                let why = format!(
                    "no GCS credential: GOOGLE_APPLICATION_CREDENTIALS is unset, gcloud's \
                     application default credentials do not exist, and the metadata server did \
                     not give a token ({e})"
                );
                let fix = adc::METADATA_FIX.to_string();
                self.set_state(State::NeedsPerson {
                    why: why.clone(),
                    fix: fix.clone(),
                });
                Err(AuthError::NeedsPerson { why, fix })
            }
            Err(e) if e.is_transient() => Err(AuthError::Transient(format!(
                "GCS credential ({}): {e}",
                l.source.describe()
            ))),
            Err(e) => {
                let fix = l
                    .kind
                    .as_ref()
                    .map_or(adc::METADATA_FIX.to_string(), Kind::fix);
                let why = format!(
                    "the GCS credential ({}) was refused: {e}",
                    l.kind
                        .as_ref()
                        .map_or("metadata server".into(), |k| format!(
                            "{} from {}",
                            k.name(),
                            l.source.describe()
                        ))
                );
                self.set_state(State::NeedsPerson {
                    why: why.clone(),
                    fix: fix.clone(),
                });
                Err(AuthError::NeedsPerson { why, fix })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_err(facts: Facts) -> AuthError {
        match Credential::load(facts) {
            Err(e) => e,
            Ok(_) => panic!("expected an error"),
        }
    }

    #[tokio::test]
    async fn a_refused_token_loads_the_credential_again_once_per_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sa.json");
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": "test-project",
            "client_email": "a@test-project.iam.gserviceaccount.com",
            "private_key_id": "k1",
            "private_key": include_str!("testdata/dummy-service-account.pem"),
            "token_uri": "http://127.0.0.1:1/token",
        });
        std::fs::write(&file, json.to_string()).unwrap();
        let cred = Credential::load(Facts {
            env_file: Some(file.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cred.generation(), 0);
        // Two requests saw load 0 refused: one reload.
        assert!(cred.refused(0));
        assert!(cred.refused(0));
        assert_eq!(cred.generation(), 1);
        assert!(cred.refused(1));
        assert_eq!(cred.generation(), 2);
        // A file that no longer loads: no new token can come.
        std::fs::write(&file, "not json").unwrap();
        assert!(!cred.refused(2));
        assert_eq!(cred.generation(), 2);
    }

    #[test]
    fn unusable_files_say_why_and_what_fixes_them() {
        let dir = tempfile::tempdir().unwrap();
        // GOOGLE_APPLICATION_CREDENTIALS naming a missing file: no fall-through, a fix.
        let missing = dir.path().join("missing.json");
        match load_err(Facts {
            env_file: Some(missing.clone()),
            ..Default::default()
        }) {
            AuthError::NeedsPerson { why, fix } => {
                assert!(why.contains(&missing.display().to_string()), "{why}");
                assert!(fix.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{fix}");
            }
            other => panic!("{other:?}"),
        }
        // Not JSON, an unsupported type, a service account without a usable key: refused by name.
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            Facts {
                env_file: Some(p),
                ..Default::default()
            }
        };
        assert!(
            matches!(load_err(write("a", "not json")), AuthError::Refused(m) if m.contains("not a JSON"))
        );
        assert!(matches!(
            load_err(write("b", r#"{"type":"gdch_service_account"}"#)),
            AuthError::Refused(m) if m.contains("gdch_service_account")
        ));
        assert!(matches!(
            load_err(write("c", r#"{"type":"service_account","client_email":"a@b","private_key":"junk"}"#)),
            AuthError::Refused(m) if m.contains("private_key")
        ));
    }
}
