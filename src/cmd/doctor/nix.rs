//! The installed Nix: version, install mode, trust, the nix.conf files in force and where each
//! relevant setting comes from.

use super::*;

pub(super) fn nix_checks(r: &mut Report, setup: &NixSetup, user_view: &SettingsView) {
    match setup.version {
        Some(v) => r.add(
            "nix",
            Status::Info,
            format!(
                "Nix {v}, {}",
                if setup.daemon {
                    "multi-user (through the nix-daemon)"
                } else {
                    "single-user or root (no daemon in between)"
                }
            ),
            None,
        ),
        None => r.add(
            "nix",
            Status::Fail,
            "`nix` was not found on PATH",
            Some("install Nix, or fix PATH".into()),
        ),
    }
    if setup.daemon {
        match setup.trust {
            Trust::Trusted => r.add("nix", Status::Ok, format!("the nix-daemon trusts {:?}: your nix.conf settings reach it", setup.user), None),
            Trust::Untrusted => r.add(
                "nix",
                Status::Warn,
                format!("the nix-daemon does not trust {:?}: it ignores substituters, keys and netrc-file from your nix.conf", setup.user),
                Some(format!("`nixstore-auth use CACHE` prints what an administrator must add to {}", setup.system_conf.display())),
            ),
        }
    }
    let mut files: Vec<String> = setup
        .system
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    files.extend(user_view.files.iter().map(|p| p.display().to_string()));
    // Readable only by root (the daemon reads them): listed, never a problem.
    files.extend(
        setup
            .system
            .unreadable
            .iter()
            .chain(&user_view.unreadable)
            .map(|p| format!("{} (only the nix-daemon can read it)", p.display())),
    );
    r.add(
        "nix",
        Status::Info,
        format!(
            "nix.conf files in force: {}",
            if files.is_empty() {
                "none".into()
            } else {
                files.join(", ")
            }
        ),
        None,
    );
    for p in setup.system.problems.iter().chain(&user_view.problems) {
        r.add(
            "nix",
            Status::Fail,
            p.clone(),
            Some("fix the file: Nix refuses to start with it".into()),
        );
    }
    for name in [
        "substituters",
        "trusted-public-keys",
        "trusted-substituters",
        "netrc-file",
        "trusted-users",
    ] {
        let sources: Vec<String> = setup
            .system
            .sources(name)
            .into_iter()
            .chain(user_view.sources(name))
            .map(|(f, v)| {
                format!(
                    "{} ({})",
                    f.display(),
                    if v.is_empty() {
                        "empty".into()
                    } else {
                        v.join(" ")
                    }
                )
            })
            .collect();
        if !sources.is_empty() {
            r.add(
                "nix",
                Status::Info,
                format!("{name}: {}", sources.join("; ")),
                None,
            );
        }
    }
}
