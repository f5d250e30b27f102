//! What `service install` did, kept so that `uninstall` undoes exactly that and the rest of the
//! tool knows the service is there: `$XDG_STATE_HOME/nixstore-auth/service.json`. For the
//! route without a service manager, `service-persistent` beside it lets the `shell-init` hook
//! tell, with a file test, that the proxy should be running.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::plan::Route;
use crate::config::Dirs;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub route: Route,
    /// The user's nix.conf that gets (or should get) the `!include` line.
    pub nix_conf: PathBuf,
    /// The include file next to it.
    pub include: PathBuf,
    /// `install` added the line (so `uninstall` removes it).
    pub line_added: bool,
    /// `install` created nix.conf (so `uninstall` removes it when the line was all it held).
    #[serde(default)]
    pub created_nix_conf: bool,
    /// URLs an administrator listed (an untrusted user): they never move to a new generation.
    #[serde(default)]
    pub fixed_urls: bool,
    /// The unit (or LaunchAgent) files written.
    #[serde(default)]
    pub units: Vec<PathBuf>,
}

pub fn path(dirs: &Dirs) -> PathBuf {
    dirs.state.join("service.json")
}

/// Present while the service is installed without a service manager.
pub fn persistent_flag(dirs: &Dirs) -> PathBuf {
    dirs.state.join("service-persistent")
}

/// What `install` recorded, `None` when the service is not installed.
pub fn load(dirs: &Dirs) -> Result<Option<Installed>> {
    load_from(&path(dirs))
}

fn load_from(path: &Path) -> Result<Option<Installed>> {
    let Some(text) = crate::fs::read_optional(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .with_context(|| {
            format!(
                "{} is not what `nixstore-auth service install` writes; run `nixstore-auth service install` again",
                path.display()
            )
        })
        .map(Some)
}

/// The marker's text.
pub fn to_text(m: &Installed) -> Result<String> {
    Ok(serde_json::to_string_pretty(m)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_round_trips_and_garbage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("service.json");
        assert_eq!(load_from(&p).unwrap(), None);
        let m = Installed {
            route: Route::Persistent,
            nix_conf: "/h/.config/nix/nix.conf".into(),
            include: "/h/.config/nix/nixstore-auth.conf".into(),
            line_added: true,
            created_nix_conf: false,
            fixed_urls: false,
            units: vec!["/h/.config/systemd/user/nixstore-auth-proxy.socket".into()],
        };
        std::fs::write(&p, to_text(&m).unwrap()).unwrap();
        assert_eq!(load_from(&p).unwrap(), Some(m));
        std::fs::write(&p, "{").unwrap();
        assert!(format!("{:#}", load_from(&p).unwrap_err()).contains("service install"));
    }
}
