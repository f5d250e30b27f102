//! `login`: get a new AWS session now (MFA prompt included), cache it, say who it is.

use super::{LoginArgs, Run};
use crate::aws::session;
use crate::ui::Ui;

impl Run for LoginArgs {
    fn run(self, ui: &Ui) -> anyhow::Result<i32> {
        let req = super::env::request(&self.session)
            .duration(self.duration)
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
        Ok(0)
    }
}
