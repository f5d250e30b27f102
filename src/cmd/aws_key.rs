//! `aws add-key|remove-key`: a profile's long-term access key in the OS keyring, so that
//! `~/.aws/credentials` needs no secret. The session resolver uses it as the source for
//! AssumeRole / GetSessionToken.

use anyhow::{Context, Result, bail};
use std::io::BufRead;
use zeroize::Zeroizing;

use super::{AwsAction, AwsArgs, Run};
use crate::aws::{profile, session_cache};
use crate::config::{Config, Dirs};
use crate::secret::Account;
use crate::secret::SecretStore;
use crate::ui::{self, Ui};

impl Run for AwsArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        match self.action {
            AwsAction::AddKey { profile } => {
                let (id, secret) = read_key(&profile)?;
                validate_key_id(&id)?;
                if secret.is_empty() || secret.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    bail!("the secret access key is empty or contains whitespace");
                }
                let store = SecretStore::open(&cfg, &dirs, ui)?;
                let value = Zeroizing::new(
                    serde_json::json!({ "AccessKeyId": id, "SecretAccessKey": secret.as_str() })
                        .to_string(),
                );
                store.set(&Account::AwsKey(&profile).to_string(), &value)?;
                ui.info(format!(
                    "stored the access key {id} of profile {profile:?} in {}",
                    store.describe()
                ));
                if credentials_file_has_secret(&profile) {
                    ui.warn(format!(
                        "~/.aws/credentials still holds a secret for profile {profile:?}: remove its aws_secret_access_key line so that no plaintext key stays on disk"
                    ));
                }
                Ok(0)
            }
            AwsAction::RemoveKey { profile } => {
                let store = SecretStore::open(&cfg, &dirs, ui)?;
                if store.delete(&Account::AwsKey(&profile).to_string())? {
                    ui.info(format!(
                        "deleted the stored access key of profile {profile:?}"
                    ));
                    let n = forget_sessions_from(&store, &profile)?;
                    if n > 0 {
                        ui.info(format!(
                            "forgot {n} cached session{} assumed with it",
                            if n == 1 { "" } else { "s" }
                        ));
                    }
                    Ok(0)
                } else {
                    bail!("no access key is stored for profile {profile:?}")
                }
            }
        }
    }
}

/// Forgets the cached sessions of every profile whose chain starts at `source`'s stored key:
/// otherwise they would keep working after the key is removed (often because it leaked).
fn forget_sessions_from(store: &SecretStore, source: &str) -> Result<usize> {
    let set = profile::load_profiles()?;
    let mut n = 0;
    for name in set.profiles() {
        let from_source = profile::plan(&set, name).is_ok_and(
            |p| matches!(&p.base, profile::Base::Delegated { profile } if profile == source),
        );
        if from_source {
            n += session_cache::forget(store, Some(name))?;
        }
    }
    Ok(n)
}

/// From prompts on a terminal, else two lines on stdin (key id, then secret).
fn read_key(profile: &str) -> Result<(String, Zeroizing<String>)> {
    let stdin_is_tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if stdin_is_tty && ui::has_tty() {
        let term = console::Term::stderr();
        let id: String = dialoguer::Input::new()
            .with_prompt(format!("Access key id for profile {profile}"))
            .interact_text_on(&term)
            .context("cannot read from the terminal")?;
        let secret = Zeroizing::new(
            dialoguer::Password::new()
                .with_prompt("Secret access key")
                .interact_on(&term)
                .context("cannot read from the terminal")?,
        );
        return Ok((id.trim().to_string(), secret));
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let id = lines
        .next()
        .transpose()?
        .context("expected two lines on standard input: the access key id, then the secret")?;
    let secret = Zeroizing::new(
        lines
            .next()
            .transpose()?
            .context("expected a second line on standard input: the secret access key")?,
    );
    Ok((
        id.trim().to_string(),
        Zeroizing::new(secret.trim().to_string()),
    ))
}

fn validate_key_id(id: &str) -> Result<()> {
    if id.len() < 16
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        // Often the secret access key, on the first line by mistake: never shown.
        bail!(
            "{} does not look like an AWS access key id (16 to 128 characters from A-Z and 0-9, e.g. AKIA...); give the key id on the first line, the secret on the second",
            crate::redact::secret("access key id", id)
        );
    }
    Ok(())
}

/// Whether the shared credentials file still has `aws_secret_access_key` for the profile.
fn credentials_file_has_secret(profile: &str) -> bool {
    let path = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().join(".aws/credentials")));
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return false;
    };
    let mut in_profile = false;
    for line in text.lines() {
        let l = line.trim();
        if let Some(section) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            in_profile = section.trim() == profile;
        } else if in_profile
            && l.split('=')
                .next()
                .is_some_and(|k| k.trim() == "aws_secret_access_key")
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_checked() {
        assert!(validate_key_id("AKIAIOSFODNN7EXAMPLE").is_ok());
        assert!(validate_key_id("akia").is_err());
        assert!(validate_key_id("AKIA IOSFODNN7EXAMPLE").is_err());
        // The secret access key where the id belongs is refused without a character of it.
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let err = format!("{:#}", validate_key_id(secret).unwrap_err());
        assert!(err.contains("(40 characters, not shown)"), "{err}");
        assert!(!err.contains("wJal") && !err.contains("EXAMPLE"), "{err}");
    }
}
