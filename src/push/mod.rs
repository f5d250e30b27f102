//! Uploading store paths to a cache as they appear: the store watcher (`watch`), the durable
//! queue (`queue`), the uploader (`upload`: references first, several paths at a time, skip
//! what the cache has, retry), what Nix records (`closure`), the NAR's export, hashing and
//! compression (`nar`), the narinfo and its signature (`narinfo`), the HTTP PUTs (`http`), the
//! signing key (`signing`), the worker threads that tie them together with progress
//! (`pusher`), Ctrl-C counting (`interrupt`), and what a command sets up for all that
//! (`setup`: the signing keys, the S3 lease, the target). Used by `push`, `watch-store` and
//! `exec --push`.

use anyhow::{Result, bail};

pub mod closure;
pub mod http;
pub mod interrupt;
pub mod nar;
pub mod narinfo;
pub mod pusher;
pub mod queue;
pub mod setup;
pub mod signing;
pub mod upload;
pub mod watch;

/// A child of an upload (`nix path-info`, `nix-store --dump`): its AWS variables come from
/// the session's [`EnvDelta`](crate::aws::session::EnvDelta) alone, set and unset together
/// (the user's `AWS_PROFILE` or a stale token never reach it); `None` (an HTTPS cache) leaves
/// the environment as it is. Killed with us, in its own process group (a Ctrl-C at the
/// terminal reaches it only through us).
pub fn command(
    program: &str,
    env: Option<&crate::aws::session::EnvDelta>,
) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    if let Some(delta) = env {
        delta.apply(&mut cmd);
    }
    // SAFETY: setpgid and prctl are async-signal-safe and touch no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// Nix's store directory (`NIX_STORE_DIR`, else `/nix/store`).
pub fn store_dir() -> String {
    std::env::var("NIX_STORE_DIR")
        .ok()
        .filter(|d| d.starts_with('/') && !d.contains(['\n', '\0']))
        .map(|d| d.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "/nix/store".to_string())
}

/// A store path, checked: `/STORE/HASH-NAME` with Nix's hash alphabet and name characters, so
/// that it can go into file names and Nix command lines as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath(String);

/// Nix's base-32 alphabet (no e, o, u, t).
const HASH_CHARS: &str = "0123456789abcdfghijklmnpqrsvwxyz";

impl StorePath {
    pub fn parse(s: &str) -> Result<StorePath> {
        let Some((dir, base)) = s.rsplit_once('/') else {
            bail!("{s:?} is not a store path");
        };
        if !dir.starts_with('/') || dir.contains("//") {
            bail!("{s:?} is not a store path");
        }
        valid_base_name(base)?;
        Ok(StorePath(s.to_string()))
    }

    /// The store path that `path` is or lies in (`./result`, a file below an output).
    pub fn containing(path: &std::path::Path, store: &str) -> Result<StorePath> {
        let real =
            std::fs::canonicalize(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let real = real.to_string_lossy();
        let Some(rest) = real.strip_prefix(&format!("{store}/")) else {
            bail!("{} is not in the Nix store ({store})", path.display());
        };
        let base = rest.split('/').next().unwrap_or_default();
        StorePath::parse(&format!("{store}/{base}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `HASH-NAME`.
    pub fn base_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The 32-character hash: the narinfo is `HASH.narinfo`.
    pub fn hash_part(&self) -> &str {
        &self.base_name()[..32]
    }

    pub fn is_drv(&self) -> bool {
        self.0.ends_with(".drv")
    }
}

impl std::fmt::Display for StorePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_base_name(base: &str) -> Result<()> {
    let ok = base.len() > 33
        && base.len() <= 211
        && base.as_bytes()[32] == b'-'
        && base[..32].chars().all(|c| HASH_CHARS.contains(c))
        && base[33..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._?=".contains(c))
        && !base[33..].starts_with('.');
    if !ok {
        bail!("{base:?} is not the name of a store path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_are_checked() {
        let p =
            StorePath::parse("/nix/store/mmlv50f8bzmabr3mc6fy8lx942nmzxn9-nsa-probe-1.0").unwrap();
        assert_eq!(p.hash_part(), "mmlv50f8bzmabr3mc6fy8lx942nmzxn9");
        assert_eq!(
            p.base_name(),
            "mmlv50f8bzmabr3mc6fy8lx942nmzxn9-nsa-probe-1.0"
        );
        assert!(!p.is_drv());
        assert!(
            StorePath::parse("/nix/store/bn9d1k2bifq5fp8h5v42yd8ibw81mdmj-x.drv")
                .unwrap()
                .is_drv()
        );
        for bad in [
            "nix/store/mmlv50f8bzmabr3mc6fy8lx942nmzxn9-a",
            "/nix/store/mmlv50f8bzmabr3mc6fy8lx942nmzxn9",
            "/nix/store/mmlv50f8bzmabr3mc6fy8lx942nmzxne-a",
            "/nix/store/mmlv50f8bzmabr3mc6fy8lx942nmzxn9-a b",
            "/nix/store/mmlv50f8bzmabr3mc6fy8lx942nmzxn9-a\nb",
            "/nix/store/mmlv50f8bzmabr3mc6fy8lx942nmzxn9-.lock",
            "/nix/store/../mmlv50f8bzmabr3mc6fy8lx942nmzxn9-a/x",
        ] {
            assert!(StorePath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
