//! The credential source of an S3 cache in a background proxy: the cache's AWS session,
//! resolved unattended by the same rules as a command's refresh (`aws/session.rs`, `refresh.rs`):
//! long-term keys, roles from a valid MFA base session, SSO with a valid token,
//! `credential_process`, web identity. It never prompts: a session only a person can renew is
//! [`Renewal::NeedsPerson`], naming `nixstore-auth login CACHE`.

use super::credential::{Credential, Renewal, Source};
use crate::aws::session::{self, Ctx, NeedsLogin, SessionRequest};
use crate::cache::S3Ref;
use crate::config::{Config, Dirs};
use crate::ui::Ui;

pub struct AwsSource {
    cache: String,
    s3: S3Ref,
    cfg: Config,
    dirs: Dirs,
}

impl AwsSource {
    /// The source of the recorded S3 cache `cache` (its `profile=` and `region=` apply).
    pub fn new(cache: &str, s3: &S3Ref, cfg: &Config, dirs: &Dirs) -> AwsSource {
        AwsSource {
            cache: cache.to_string(),
            s3: s3.clone(),
            cfg: cfg.clone(),
            dirs: dirs.clone(),
        }
    }
}

impl Source for AwsSource {
    fn cache(&self) -> &str {
        &self.cache
    }

    fn renew(&mut self) -> Renewal {
        let req = SessionRequest::new(None, Some(self.cache.clone())).unattended();
        // Nothing the resolver says (the keyring fallback, ...) reaches a person from here.
        let quiet = Ui::silent();
        match session::resolve(&req, Ctx::new(&self.cfg, &self.dirs), &quiet) {
            Ok(s) => {
                let (_, cache_info) = super::probe::fetch_cache_info(&s.credentials, &self.s3);
                Renewal::Fresh {
                    info: crate::refresh::info_of(&s),
                    credential: Credential::Aws(s.credentials),
                    cache_info,
                }
            }
            Err(e) if e.downcast_ref::<NeedsLogin>().is_some() => {
                Renewal::NeedsPerson(format!("{e:#}"))
            }
            Err(e) => Renewal::Failed(format!("{e:#}")),
        }
    }
}
