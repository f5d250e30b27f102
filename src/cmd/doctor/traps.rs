//! Known traps: credentials the daemon never sees, hidden netrc files, Nix versions that ignore
//! a setting. (Remote builders: builders.rs.)

use super::*;

pub(super) fn trap_checks(
    r: &mut Report,
    setup: &NixSetup,
    user_view: &SettingsView,
    caches: &[CacheEntry],
) {
    let s = "traps";
    if setup.daemon
        && std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        && (caches.iter().any(|c| matches!(c.kind, CacheKind::S3(_)))
            || user_view
                .list("substituters")
                .iter()
                .any(|u| u.starts_with("s3://")))
    {
        r.add(
            s,
            Status::Warn,
            "AWS credentials are set in this shell, but the nix-daemon downloads and never sees them",
            Some("run Nix as `nixstore-auth exec -- nix ...` (or eval \"$(nixstore-auth shell-init bash)\")".into()),
        );
    }
    let system_netrc = setup.system_netrc();
    if let Some(user_netrc) = user_view.scalar("netrc-file")
        && Path::new(&user_netrc) != system_netrc
        && system_netrc.exists()
    {
        r.add(
            s,
            Status::Warn,
            format!("your nix.conf sets netrc-file = {user_netrc}, which hides {} for your commands", system_netrc.display()),
            Some(format!("copy the entries you need from {} into {user_netrc}, or use --secret-store keyring", system_netrc.display())),
        );
    }
    if setup.version == Some(Version(2, 34, 0)) {
        r.add(
            s,
            Status::Warn,
            "Nix 2.34.0's daemon ignores a forwarded netrc-file",
            Some("upgrade to Nix 2.34.1 or later".into()),
        );
    }
}
