//! `exec -- CMD`: resolve the AWS session when one is wanted, then replace this process with
//! CMD. Without `--profile`, `--cache` and a recorded S3 cache it does no AWS work at all:
//! config.toml is read, nothing else (no async runtime, no keyring).

use super::{ExecArgs, Run};
use crate::aws::session::{self, SessionRequest};
use crate::cache::CacheKind;
use crate::config::{Config, Dirs};
use crate::launch::Launch;
use crate::ui::Ui;

impl Run for ExecArgs {
    fn run(self, ui: &Ui) -> anyhow::Result<i32> {
        let req = aws_request(&self)?;
        let mut launch = Launch::new(self.command);
        if let Some(req) = req {
            let s = session::resolve(&req, ui)?;
            ui.debug(format!(
                "session of profile {:?} from {} ({})",
                s.profile.as_deref().unwrap_or("-"),
                s.origin.as_str(),
                s.credentials.access_key_id
            ));
            launch.set = session::session_env(&s);
            launch.unset = session::session_unset(&s)
                .into_iter()
                .map(String::from)
                .collect();
        }
        Ok(launch.replace())
    }
}

/// `nixstore-auth exec -- CMD...` with no option at all, when no AWS work can be needed (no
/// NIXSTORE_AUTH_AWS_PROFILE, no S3 cache recorded): replace this process with CMD before
/// clap builds the whole command tree, which is most of our start-up time. `None` means
/// "take the normal path" (any other argv, or an unreadable config, which clap's path reports).
pub(super) fn fast_path() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "exec" || args.next()? != "--" {
        return None;
    }
    let argv: Vec<std::ffi::OsString> = args.collect();
    if argv.is_empty() || std::env::var_os("NIXSTORE_AUTH_AWS_PROFILE").is_some() {
        return None;
    }
    let dirs = Dirs::new().ok()?;
    let cfg = Config::load(&dirs.config_file()).ok()?;
    let has_s3 = cfg
        .caches()
        .ok()?
        .iter()
        .any(|c| matches!(c.kind, CacheKind::S3(_)));
    if has_s3 {
        return None;
    }
    Some(Launch::new(argv).replace())
}

/// The session `exec` needs, if any: an explicit profile, or the first S3 cache among
/// `--cache` (or, without `--cache`, among the recorded caches).
fn aws_request(args: &ExecArgs) -> anyhow::Result<Option<SessionRequest>> {
    let dirs = Dirs::new()?;
    let cfg = Config::load(&dirs.config_file())?;
    let cache = if args.caches.is_empty() {
        cfg.caches()?
            .into_iter()
            .find(|c| matches!(c.kind, CacheKind::S3(_)))
            .map(|c| c.name)
    } else {
        let mut found = None;
        for name in &args.caches {
            let entry = cfg.find(name)?.ok_or_else(|| {
                crate::error::usage(format!(
                    "no cache named {name:?} is recorded: see `nixstore-auth list`"
                ))
            })?;
            if found.is_none() && matches!(entry.kind, CacheKind::S3(_)) {
                found = Some(entry.name);
            }
        }
        found
    };
    if args.profile.is_none() && cache.is_none() {
        return Ok(None);
    }
    Ok(Some(SessionRequest {
        profile: args.profile.clone(),
        cache,
        mfa_code: args.mfa_code.clone(),
        duration: None,
        force_refresh: false,
    }))
}
