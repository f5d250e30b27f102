//! `env`: print the session for a shell (`sh`, `fish`) or as AWS `credential_process` JSON.

use super::{EnvArgs, EnvFormat, Run};
use crate::aws::session;
use crate::ui::Ui;
use zeroize::Zeroizing;

impl Run for EnvArgs {
    fn run(self, ui: &Ui) -> anyhow::Result<i32> {
        let dirs = crate::config::Dirs::new()?;
        let cfg = crate::config::Config::load(&dirs.config_file())?;
        let s = session::resolve(&self.session.request(), session::Ctx::new(&cfg, &dirs), ui)?;
        let text = match self.format {
            EnvFormat::Sh => shell(
                &s,
                sh_quote,
                |k, v| format!("export {k}={v}\n"),
                |k| format!("unset {k}\n"),
            ),
            EnvFormat::Fish => shell(
                &s,
                fish_quote,
                |k, v| format!("set -gx {k} {v}\n"),
                |k| format!("set -e {k}\n"),
            ),
            EnvFormat::Json => json(&s)?,
        };
        ui.out(text.as_str())?;
        Ok(0)
    }
}

fn shell(
    s: &session::Session,
    quote: fn(&str) -> String,
    set: impl Fn(&str, &str) -> String,
    unset: impl Fn(&str) -> String,
) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::new());
    let delta = session::EnvDelta::for_session(s);
    for name in delta.unset {
        text.push_str(&unset(name));
    }
    for (k, v) in delta.set {
        let q = Zeroizing::new(quote(&v));
        text.push_str(&Zeroizing::new(set(&k, &q)));
    }
    text
}

/// The `credential_process` format (Version 1).
fn json(s: &session::Session) -> anyhow::Result<Zeroizing<String>> {
    let c = &s.credentials;
    let mut v = serde_json::json!({
        "Version": 1,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key.as_str(),
    });
    if let Some(t) = &c.session_token {
        v["SessionToken"] = t.as_str().into();
    }
    if let Some(e) = c.expiration {
        v["Expiration"] = crate::time::rfc3339(e).into();
    }
    let mut text = Zeroizing::new(serde_json::to_string_pretty(&v)?);
    text.push('\n');
    Ok(text)
}

fn sh_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

fn fish_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', r"\\").replace('\'', r"\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(fish_quote(r"a'b\c"), r"'a\'b\\c'");
    }
}
