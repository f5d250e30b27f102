//! Nix's own per-user cache directory (`~/.cache/nix`). A Nix client that opens a binary cache
//! itself (`nix copy --to`, any command on a single-user install) records the store's URL in
//! `binary-cache-v6.sqlite` there (`-v7` on Nix 2.34), mode 0644 in a directory made with the
//! user's umask. The proxy's URL holds its secret, so before Nix sees that URL the directory is
//! made private: the evaluation cache and everything else in it stay, readable only by the user.

use anyhow::{Context, Result};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where Nix keeps its per-user cache: `$NIX_CACHE_HOME`, else `$XDG_CACHE_HOME/nix`, else
/// `~/.cache/nix` (Nix's `getCacheDir`).
pub fn dir(env: &dyn Fn(&str) -> Option<String>, home: &Path) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(d) = set("NIX_CACHE_HOME") {
        return PathBuf::from(d);
    }
    match set("XDG_CACHE_HOME") {
        Some(d) => Path::new(&d).join("nix"),
        None => home.join(".cache/nix"),
    }
}

/// Makes Nix's cache directory 0700 (creating it, and its parents with the usual modes, if
/// missing). A directory that belongs to someone else is left alone: `Ok(false)`.
pub fn make_private(dir: &Path) -> Result<bool> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let meta = fs::metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    // SAFETY: getuid has no preconditions.
    if !meta.is_dir() || meta.uid() != unsafe { libc::getuid() } {
        return Ok(false);
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (0700)", dir.display()))?;
    }
    Ok(true)
}

/// [`make_private`] for this process's Nix: before a URL with a secret reaches a Nix client.
pub fn protect() -> Result<bool> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set")?;
    make_private(&dir(&|k| std::env::var(k).ok(), &home))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_cache_dir_follows_nix_lookup_order() {
        let home = Path::new("/home/u");
        let table: [(&[(&str, &str)], &str); 4] = [
            (&[], "/home/u/.cache/nix"),
            (&[("XDG_CACHE_HOME", "/x")], "/x/nix"),
            (&[("XDG_CACHE_HOME", "/x"), ("NIX_CACHE_HOME", "/n")], "/n"),
            (&[("XDG_CACHE_HOME", "")], "/home/u/.cache/nix"),
        ];
        for (vars, want) in table {
            let env = |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            };
            assert_eq!(dir(&env, home), PathBuf::from(want), "{vars:?}");
        }
    }

    #[test]
    fn an_open_cache_dir_is_closed_and_its_files_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("cache/nix");
        assert!(make_private(&d).unwrap());
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(d.join("eval-cache-v5"), "keep").unwrap();
        assert!(make_private(&d).unwrap());
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::read_to_string(d.join("eval-cache-v5")).unwrap(), "keep");
    }
}
