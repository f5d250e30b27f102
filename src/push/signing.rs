//! The key that signs uploaded narinfos: Nix's `name:base64` ed25519 secret key, checked
//! without ever showing it, and where to take it from (`push --secret-key` wins over what
//! config.toml records: a file, or the keyring, materialised as an ephemeral 0600 file for the
//! upload only).

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::config::{Config, Dirs, SigningKey};
use crate::ephemeral::EphemeralFile;
use crate::secret::{Account, SecretStore};
use crate::ui::Ui;

/// What a valid secret key says about itself (nothing secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub name: String,
    /// The matching public key, `name:base64`.
    pub public_key: String,
}

/// Checks a secret key's text (Nix's `nix key generate-secret` output); the error never shows
/// the key.
pub fn check(text: &str) -> Result<KeyInfo> {
    let text = text.trim();
    let Some((name, b64)) = text.split_once(':') else {
        bail!("not a Nix secret key (expected NAME:BASE64, as `nix key generate-secret` prints)");
    };
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("not a Nix secret key: the key name is empty or holds whitespace");
    }
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                anyhow::anyhow!("not a Nix secret key: the part after ':' is not base64")
            })?,
    );
    if bytes.len() != 64 {
        bail!(
            "not a Nix secret key: it decodes to {} bytes, an ed25519 secret key has 64 (is it the public key?)",
            bytes.len()
        );
    }
    // Nix's secret key is the 32-byte seed followed by the 32-byte public key.
    let public = base64::engine::general_purpose::STANDARD.encode(&bytes[32..]);
    Ok(KeyInfo {
        name: name.to_string(),
        public_key: format!("{name}:{public}"),
    })
}

/// A warning when `info` does not match any public key recorded for the cache (substituters
/// that trust those keys would refuse what it signs).
pub fn mismatch_warning(info: &KeyInfo, cache: &str, public_keys: &[String]) -> Option<String> {
    if public_keys.is_empty() || public_keys.contains(&info.public_key) {
        return None;
    }
    Some(format!(
        "the signing key {:?} does not match the public key(s) recorded for {cache} ({}): substituters that trust those will refuse what it signs",
        info.name,
        public_keys.join(", ")
    ))
}

/// Reads and checks a key file, as the user can read it.
pub fn check_file(path: &Path) -> Result<KeyInfo> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secret key file {}", path.display()))?,
    );
    check(&text).with_context(|| format!("{}", path.display()))
}

/// The signing key file for one command, absolute; a keyring key lives in `_file` as long as
/// this does.
#[derive(Debug)]
pub struct KeyFile {
    pub path: String,
    pub info: KeyInfo,
    _file: Option<EphemeralFile>,
}

/// Which key signs: `explicit` (`--secret-key`), else the one recorded for cache `name`. With
/// none and `no_sign`, `None` after a warning; with none and no `--no-sign`, an error that says
/// how to record one.
pub fn resolve(
    explicit: Option<&Path>,
    no_sign: bool,
    name: &str,
    public_keys: &[String],
    cfg: &Config,
    dirs: &Dirs,
    ui: &Ui,
) -> Result<Option<KeyFile>> {
    if no_sign {
        if explicit.is_some() {
            bail!("--no-sign and --secret-key contradict each other");
        }
        ui.warn(format!(
            "uploading to {name} unsigned (--no-sign): substituters that check signatures (every Nix by default) will refuse these paths"
        ));
        return Ok(None);
    }
    let source = match explicit {
        Some(p) => SigningKey::File(
            std::fs::canonicalize(p)
                .with_context(|| format!("--secret-key {}: cannot read it", p.display()))?,
        ),
        None => match cfg.signing_key(name)? {
            Some(k) => k,
            None => {
                return Err(crate::ui::error_with_help(
                    format!(
                        "no signing key for {name}: uploads must be signed for substituters to accept them"
                    ),
                    format!(
                        "record one with `nixstore-auth use {name} --secret-key FILE` or `nixstore-auth secret set {name} --signing-key-stdin`, pass `--secret-key FILE`, or upload unsigned with `--no-sign`"
                    ),
                ));
            }
        },
    };
    let key = match source {
        SigningKey::File(path) => {
            let value = path
                .to_str()
                .context("the secret key path is not UTF-8")?
                .to_string();
            // The same rules as a recorded path: it goes into the store URL's query.
            SigningKey::parse(&value).context("--secret-key")?;
            let info = check_file(&path)?;
            KeyFile {
                path: value,
                info,
                _file: None,
            }
        }
        SigningKey::Keyring => {
            let store = SecretStore::open(cfg, dirs, ui)?;
            let text = store
                .get(&Account::SigningKey(name).to_string())?
                .with_context(|| {
                    format!(
                        "config.toml says the signing key of {name} is in {}, but it is not there: `nixstore-auth secret set {name} --signing-key-stdin`",
                        store.describe()
                    )
                })?;
            let info = check(&text).context("the signing key in the keyring")?;
            let file = EphemeralFile::create(dirs, "signing-key", text.trim().as_bytes())?;
            let path = file.path().display().to_string();
            SigningKey::parse(&path).context("the ephemeral key file")?;
            KeyFile {
                path,
                info,
                _file: Some(file),
            }
        }
    };
    if let Some(w) = mismatch_warning(&key.info, name, public_keys) {
        ui.warn(w);
    }
    Ok(Some(key))
}

/// An absolute path for `use --secret-key`, checked (readable, a valid key).
pub fn recordable(path: &Path) -> Result<(PathBuf, KeyInfo)> {
    let abs = std::fs::canonicalize(path)
        .with_context(|| format!("--secret-key {}: cannot read it", path.display()))?;
    let value = abs.to_str().context("the secret key path is not UTF-8")?;
    SigningKey::parse(value).context("--secret-key")?;
    let info = check_file(&abs)?;
    Ok((abs, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    // `nix key generate-secret --key-name test-1` and its public key.
    const SK: &str = "test-1:o5PBs4VosJyrkLIKf9LRVSwItBe56aGqs71ASecTlhHvpmUB9jlr10mh+7SatRy8K0LkeJNRV68hgKmy0n3dcA==";
    const PK: &str = "test-1:76ZlAfY5a9dJofu0mrUcvCtC5HiTUVevIYCpstJ93XA=";

    #[test]
    fn a_secret_key_gives_its_public_key_and_errors_hide_it() {
        let info = check(&format!("{SK}\n")).unwrap();
        assert_eq!(info.name, "test-1");
        assert_eq!(info.public_key, PK);
        for bad in [PK, "test-1", ":AAAA", "a b:AAAA", "k:not*base64"] {
            let err = format!("{:#}", check(bad).unwrap_err());
            assert!(err.contains("not a Nix secret key"), "{bad}: {err}");
            assert!(!err.contains("76ZlAfY"), "{err}");
        }
        assert!(mismatch_warning(&info, "c", &[PK.into()]).is_none());
        assert!(mismatch_warning(&info, "c", &[]).is_none());
        let w = mismatch_warning(&info, "c", &["other-1:AAAA".into()]).unwrap();
        assert!(w.contains("test-1") && !w.contains("o5PB"), "{w}");
    }
}
