//! Where `use` and `remove` write, decided from the probed Nix setup. Pure, so that root,
//! single-user, trusted, untrusted and NixOS cases are all testable.

use std::path::PathBuf;

use super::setup::NixSetup;
use clap::ValueEnum;

/// Where `use` and `remove` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Mode {
    /// Decide from the installed Nix: root, single-user, trusted or untrusted user, NixOS
    #[default]
    Auto,
    /// The user's nix.conf and netrc
    User,
    /// /etc/nix/nix.conf and the daemon's netrc (root only)
    System,
    /// Print the configuration and write nothing
    Print,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Edit this nix.conf; `system` is true for the daemon's own file.
    Write { conf: PathBuf, system: bool },
    /// An untrusted user whose administrator already lists the cache in `trusted-substituters`:
    /// only `extra-substituters` goes into the user's file.
    SubstituterOnly { conf: PathBuf },
    /// The daemon will not honour this user's settings: an administrator must act.
    NeedsAdmin,
    /// NixOS generates /etc/nix/nix.conf: print a module instead of editing.
    NixosModule,
    /// `--mode print`.
    Print,
}

/// Decides the target for a cache whose substituter URL (as the daemon will see it) is `url`.
pub fn decide(mode: Mode, setup: &NixSetup, url: &str, nix_conf: Option<&PathBuf>) -> Target {
    let user = Target::Write {
        conf: nix_conf.cloned().unwrap_or_else(|| setup.user_conf.clone()),
        system: false,
    };
    let system = || {
        if setup.nixos && nix_conf.is_none() {
            Target::NixosModule
        } else {
            Target::Write {
                conf: nix_conf
                    .cloned()
                    .unwrap_or_else(|| setup.system_conf.clone()),
                system: true,
            }
        }
    };
    match mode {
        Mode::Print => Target::Print,
        Mode::User => user,
        Mode::System => system(),
        Mode::Auto if setup.is_root => system(),
        Mode::Auto if setup.user_settings_honoured() => user,
        Mode::Auto => {
            let trusted_subs = setup.system.list("trusted-substituters");
            if trusted_subs.iter().any(|s| crate::cache::same_url(s, url)) {
                Target::SubstituterOnly {
                    conf: nix_conf.cloned().unwrap_or_else(|| setup.user_conf.clone()),
                }
            } else {
                Target::NeedsAdmin
            }
        }
    }
}

/// Where `remove` takes a cache's lines from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveFrom {
    /// This nix.conf.
    Conf(PathBuf),
    /// Nowhere: an untrusted user has nothing of ours in the daemon's file.
    Nothing,
    /// Nothing can be edited (`--mode print`, NixOS): print what to remove.
    Print { nixos: bool },
}

/// `remove`'s target: `--nix-conf`, else the file `use` recorded (in auto mode), else what
/// [`decide`] says for the mode (`decide_now` probes Nix, only when needed).
pub fn remove_from(
    explicit: Option<&std::path::Path>,
    recorded: Option<&std::path::Path>,
    mode: Mode,
    decide_now: impl FnOnce() -> anyhow::Result<Target>,
) -> anyhow::Result<RemoveFrom> {
    if let Some(p) = explicit {
        return Ok(RemoveFrom::Conf(p.to_path_buf()));
    }
    if let (Some(p), Mode::Auto) = (recorded, mode) {
        return Ok(RemoveFrom::Conf(p.to_path_buf()));
    }
    Ok(match decide_now()? {
        Target::Write { conf, .. } | Target::SubstituterOnly { conf } => RemoveFrom::Conf(conf),
        Target::NeedsAdmin => RemoveFrom::Nothing,
        Target::Print => RemoveFrom::Print { nixos: false },
        Target::NixosModule => RemoveFrom::Print { nixos: true },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_takes_the_explicit_then_the_recorded_file_then_decides() {
        use std::path::Path;
        let (e, r) = (Path::new("/e.conf"), Path::new("/r.conf"));
        let write = || {
            Ok(Target::Write {
                conf: PathBuf::from("/d.conf"),
                system: false,
            })
        };
        let never = || -> anyhow::Result<Target> { panic!("probed Nix needlessly") };
        let conf = |p: &str| RemoveFrom::Conf(PathBuf::from(p));
        assert_eq!(
            remove_from(Some(e), Some(r), Mode::User, never).unwrap(),
            conf("/e.conf")
        );
        assert_eq!(
            remove_from(None, Some(r), Mode::Auto, never).unwrap(),
            conf("/r.conf")
        );
        assert_eq!(
            remove_from(None, Some(r), Mode::User, write).unwrap(),
            conf("/d.conf")
        );
        assert_eq!(
            remove_from(None, None, Mode::Auto, write).unwrap(),
            conf("/d.conf")
        );
        let table = [
            (Target::NeedsAdmin, RemoveFrom::Nothing),
            (Target::Print, RemoveFrom::Print { nixos: false }),
            (Target::NixosModule, RemoveFrom::Print { nixos: true }),
            (
                Target::SubstituterOnly {
                    conf: PathBuf::from("/s.conf"),
                },
                conf("/s.conf"),
            ),
        ];
        for (decided, want) in table {
            let got = remove_from(None, None, Mode::Auto, || Ok(decided.clone())).unwrap();
            assert_eq!(got, want);
        }
    }
    use crate::nix::setup::{SettingsView, Trust};

    fn setup(root: bool, daemon: bool, trust: Trust, nixos: bool) -> NixSetup {
        NixSetup {
            version: None,
            daemon,
            is_root: root,
            nixos,
            user: "alice".into(),
            groups: vec![],
            system_conf: "/etc/nix/nix.conf".into(),
            user_conf: "/home/alice/.config/nix/nix.conf".into(),
            system: SettingsView::default(),
            trust,
            known_settings: None,
        }
    }

    #[test]
    fn auto_mode_follows_the_install() {
        let url = "https://c.org";
        let sys = Target::Write {
            conf: "/etc/nix/nix.conf".into(),
            system: true,
        };
        let usr = Target::Write {
            conf: "/home/alice/.config/nix/nix.conf".into(),
            system: false,
        };
        assert_eq!(
            decide(
                Mode::Auto,
                &setup(true, false, Trust::Trusted, false),
                url,
                None
            ),
            sys
        );
        assert_eq!(
            decide(
                Mode::Auto,
                &setup(true, false, Trust::Trusted, true),
                url,
                None
            ),
            Target::NixosModule
        );
        assert_eq!(
            decide(
                Mode::Auto,
                &setup(false, false, Trust::Untrusted, false),
                url,
                None
            ),
            usr
        );
        assert_eq!(
            decide(
                Mode::Auto,
                &setup(false, true, Trust::Trusted, false),
                url,
                None
            ),
            usr
        );
        assert_eq!(
            decide(
                Mode::Auto,
                &setup(false, true, Trust::Untrusted, false),
                url,
                None
            ),
            Target::NeedsAdmin
        );
        assert_eq!(
            decide(
                Mode::Print,
                &setup(true, true, Trust::Trusted, false),
                url,
                None
            ),
            Target::Print
        );
    }

    #[test]
    fn untrusted_user_with_admin_listed_cache_writes_substituter_only() {
        let mut s = setup(false, true, Trust::Untrusted, false);
        s.system.assignments.push((
            "extra-trusted-substituters".into(),
            vec!["https://c.org/".into()],
            "/etc/nix/nix.conf".into(),
        ));
        assert_eq!(
            decide(Mode::Auto, &s, "https://c.org", None),
            Target::SubstituterOnly {
                conf: "/home/alice/.config/nix/nix.conf".into()
            }
        );
        assert_eq!(
            decide(Mode::Auto, &s, "https://other.org", None),
            Target::NeedsAdmin
        );
    }
}
