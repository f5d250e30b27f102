//! `login`: get a new AWS session now (MFA prompt included), cache it, say who it is.

use super::{LoginArgs, Run};
use crate::aws::session;
use crate::ui::Ui;

impl Run for LoginArgs {
    fn run(self, ui: &Ui) -> anyhow::Result<i32> {
        let req = self
            .session
            .request()
            .duration(self.duration)
            .mfa_session_duration(self.mfa_session_duration)
            .force_refresh();
        let dirs = crate::config::Dirs::new()?;
        let cfg = crate::config::Config::load(&dirs.config_file())?;
        let s = session::resolve(&req, session::Ctx::new(&cfg, &dirs), ui)?;
        let id = session::caller_identity(&s)?;
        ui.outln(format_args!(
            "Profile:  {}",
            s.profile.as_deref().unwrap_or("(environment)")
        ))?;
        ui.outln(format_args!("Account:  {}", id.account))?;
        ui.outln(format_args!("ARN:      {}", id.arn))?;
        match s.credentials.expiration {
            Some(e) => ui.outln(format_args!(
                "Expires:  {} (in {} min)",
                crate::time::rfc3339(e),
                (e - crate::time::now()).max(0) / 60
            ))?,
            None => ui.outln(format_args!(
                "Expires:  never (long-term keys; no session to cache)"
            ))?,
        }
        if let crate::aws::session::Renewal::Unattended { until: Some(u) } = s.renewal {
            ui.outln(format_args!(
                "Renews:   by itself until {} (the MFA base session), then `nixstore-auth login` again",
                crate::time::rfc3339(u)
            ))?;
        }
        // A command running through the proxy continues with this session at the same URL.
        if s.credentials.expiration.is_some() {
            let layout = crate::proxy::Layout::new(&dirs, &cfg)?;
            let caches: Vec<String> = self
                .session
                .cache
                .iter()
                .filter(|c| !crate::cache::looks_like_url(c))
                .cloned()
                .collect();
            match crate::proxy::renew(
                &layout,
                &s.credentials,
                crate::refresh::info_of(&s),
                &caches,
            ) {
                Ok(Some(n)) if n > 0 => ui.info(format!(
                    "handed the new session to the running proxy ({n} cache(s) use it now)"
                )),
                Ok(_) => {}
                Err(e) => ui.warn(format!(
                    "cannot hand the new session to the running proxy: {e:#}"
                )),
            }
        }
        Ok(0)
    }
}
