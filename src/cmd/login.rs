//! `login`: get a new AWS session now (MFA prompt included), cache it, say who it is.

use super::{LoginArgs, Run};
use crate::aws::session;
use crate::ui::Ui;

impl Run for LoginArgs {
    fn run(self, ui: &Ui) -> anyhow::Result<i32> {
        let mut req = super::env::request(&self.session);
        req.duration = self.duration;
        req.force_refresh = true;
        let s = session::resolve(&req, ui)?;
        let id = session::caller_identity(&s)?;
        println!(
            "Profile:  {}",
            s.profile.as_deref().unwrap_or("(environment)")
        );
        println!("Account:  {}", id.account);
        println!("ARN:      {}", id.arn);
        match s.credentials.expiration {
            Some(e) => println!(
                "Expires:  {} (in {} min)",
                crate::time::rfc3339(e),
                (e - crate::time::now()).max(0) / 60
            ),
            None => println!("Expires:  never (long-term keys; no session to cache)"),
        }
        Ok(0)
    }
}
