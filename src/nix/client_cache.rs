//! Nix's own per-user cache directory (`~/.cache/nix`). A Nix client that opens a binary cache
//! itself (`nix copy --to`, any command on a single-user install) records the store's URL in
//! `binary-cache-v6.sqlite` there (`-v7` on Nix 2.34), mode 0644 in a directory made with the
//! user's umask. The proxy's URL holds its secret, so before Nix sees that URL the directory is
//! made private: the evaluation cache and everything else in it stay, readable only by the user.

use anyhow::{Context, Result};
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

/// Makes this process's Nix cache directory private before a URL with a secret reaches a Nix
/// client, with the one private-directory rule ([`crate::fs::private_dir`]): a symlink (as
/// home-manager makes) is followed, a directory of someone else's refuses the command.
pub fn protect() -> Result<()> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set")?;
    crate::fs::private_dir(&dir(&|k| std::env::var(k).ok(), &home))
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
}
