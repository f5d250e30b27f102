//! `logout`: forget cached AWS sessions (the profile's, or all with `--all`).

use super::{LogoutArgs, Run};
use crate::aws::session_cache;
use crate::config::{Config, Dirs};
use crate::secret::SecretStore;
use crate::ui::Ui;

impl Run for LogoutArgs {
    fn run(self, ui: &Ui) -> anyhow::Result<i32> {
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        let store = SecretStore::open(&cfg, &dirs, ui)?;
        let profile = if self.all {
            None
        } else {
            Some(self.profile.clone().unwrap_or_else(|| {
                std::env::var("AWS_PROFILE")
                    .ok()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "default".into())
            }))
        };
        let mut n = session_cache::forget(&store, profile.as_deref())?;
        // The profile's MFA base session too: it would open new sessions without a code.
        if let Some(p) = &profile
            && let Ok(Some(base)) = crate::aws::session::base_session_account(
                p,
                crate::aws::session::Ctx::new(&cfg, &dirs),
                ui,
            )
            && store.delete(&base)?
        {
            n += 1;
        }
        let whose = match &profile {
            Some(p) => format!("of profile {p:?}"),
            None => "of every profile".to_string(),
        };
        ui.info(format!(
            "Forgot {n} cached session{} {whose} ({}).",
            if n == 1 { "" } else { "s" },
            store.describe()
        ));
        Ok(0)
    }
}
