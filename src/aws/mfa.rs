//! Getting an MFA code: `--mfa-code` / NIXSTORE_AUTH_MFA_CODE, a profile's `mfa_process`, or a
//! prompt on /dev/tty (so it works with piped stdin and stdout). Each code goes to STS once.

use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use zeroize::Zeroizing;

use crate::ui::Ui;

/// How many codes a user may type at the terminal before we give up.
pub const TERMINAL_TRIES: usize = 3;

/// Where a code came from: only a terminal prompt may be asked again after a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    Argument,
    Process,
    Terminal,
}

/// Hands out MFA codes for one device, never the same code twice.
pub struct MfaCodes<'a> {
    serial: String,
    profile: String,
    given: Option<Zeroizing<String>>,
    process: Option<String>,
    used: HashSet<String>,
    asked: usize,
    ui: &'a Ui,
}

impl<'a> MfaCodes<'a> {
    pub fn new(
        serial: &str,
        profile: &str,
        given: Option<&str>,
        process: Option<&str>,
        ui: &'a Ui,
    ) -> Self {
        MfaCodes {
            serial: serial.to_string(),
            profile: profile.to_string(),
            given: given
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Zeroizing::new(s.to_string())),
            process: process.map(str::to_string),
            used: HashSet::new(),
            asked: 0,
            ui,
        }
    }

    /// The first code, before any STS client exists.
    pub fn first(&mut self) -> Result<(Zeroizing<String>, CodeSource)> {
        if let Some(code) = self.given.take() {
            check_shape(&code)?;
            self.used.insert(code.to_string());
            return Ok((code, CodeSource::Argument));
        }
        if let Some(cmd) = self.process.clone() {
            let code = run_mfa_process(&cmd, &self.profile, self.ui)?;
            self.used.insert(code.to_string());
            return Ok((code, CodeSource::Process));
        }
        self.prompt()
    }

    /// Whether the user may be asked again after STS refused a code from `last`.
    pub fn can_retry(&self, last: CodeSource) -> bool {
        last == CodeSource::Terminal && self.asked < TERMINAL_TRIES
    }

    /// Another code after STS refused one: only when the last came from the terminal.
    pub fn retry(&mut self, last: CodeSource) -> Result<Option<(Zeroizing<String>, CodeSource)>> {
        if !self.can_retry(last) {
            return Ok(None);
        }
        self.prompt().map(Some)
    }

    fn prompt(&mut self) -> Result<(Zeroizing<String>, CodeSource)> {
        if !crate::ui::has_tty() {
            bail!(
                "profile {:?} needs an MFA code (device {}) and there is no terminal to ask on: \
                 pass --mfa-code CODE, set NIXSTORE_AUTH_MFA_CODE, or add `mfa_process = COMMAND` \
                 to the profile",
                self.profile,
                self.serial
            );
        }
        let tty = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/tty")
                .context("cannot open /dev/tty to ask for the MFA code")
        };
        let term = console::Term::read_write_pair(tty()?, tty()?);
        loop {
            self.asked += 1;
            let code: String = dialoguer::Input::new()
                .with_prompt(format!(
                    "MFA code for {} (profile {})",
                    self.serial, self.profile
                ))
                .validate_with(|s: &String| check_shape(s).map_err(|e| e.to_string()))
                .interact_text_on(&term)
                .context("reading the MFA code from the terminal")?;
            let code = Zeroizing::new(code.trim().to_string());
            if self.used.insert(code.to_string()) {
                return Ok((code, CodeSource::Terminal));
            }
            // AWS refuses a code it has seen: never send it twice.
            // A hint on the prompt's terminal: if it cannot be shown, the prompt below still is.
            let _ = term.write_line("That code was already used; wait for the next one.");
            if self.asked >= TERMINAL_TRIES {
                bail!("no new MFA code after {TERMINAL_TRIES} tries");
            }
        }
    }
}

/// MFA codes are digits (6 for TOTP devices); reject anything else before it reaches STS.
fn check_shape(code: &str) -> Result<()> {
    let c = code.trim();
    if c.len() < 6 || c.len() > 8 || !c.bytes().all(|b| b.is_ascii_digit()) {
        bail!("an MFA code is 6 digits");
    }
    Ok(())
}

/// Runs the profile's `mfa_process` through `sh -c` (the user's own command; no secret in its
/// argv) and takes the last non-empty line of its output.
fn run_mfa_process(cmd: &str, profile: &str, ui: &Ui) -> Result<Zeroizing<String>> {
    ui.debug(format!("running mfa_process of profile {profile:?}"));
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run mfa_process of profile {profile:?}"))?;
    if !out.status.success() {
        return Err(crate::ui::error_with_help(
            format!("mfa_process of profile {profile:?} failed ({})", out.status),
            "fix it, or pass --mfa-code",
        ));
    }
    let text = Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
    let code = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    check_shape(code)
        .with_context(|| format!("mfa_process of profile {profile:?} did not print an MFA code"))?;
    Ok(Zeroizing::new(code.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_code_is_used_once_and_never_retried() {
        let ui = Ui::default();
        let mut m = MfaCodes::new("arn:mfa", "p", Some(" 123456 "), None, &ui);
        let (code, src) = m.first().unwrap();
        assert_eq!(code.as_str(), "123456");
        assert_eq!(src, CodeSource::Argument);
        assert!(m.retry(src).unwrap().is_none());
    }

    #[test]
    fn mfa_process_output_and_failures() {
        let ui = Ui::default();
        let mut m = MfaCodes::new(
            "arn:mfa",
            "p",
            None,
            Some("echo touch key >&2; echo 654321"),
            &ui,
        );
        assert_eq!(m.first().unwrap().0.as_str(), "654321");
        let mut bad = MfaCodes::new("arn:mfa", "p", None, Some("echo nope"), &ui);
        assert!(format!("{:#}", bad.first().unwrap_err()).contains("did not print"));
        let mut fail = MfaCodes::new("arn:mfa", "p", None, Some("exit 3"), &ui);
        let err = fail.first().unwrap_err();
        assert!(format!("{err:#}").contains("failed"));
        assert!(crate::ui::help_of(&err).unwrap().contains("--mfa-code"));
        assert!(check_shape("12a456").is_err());
    }
}
