//! Known traps: credentials the daemon never sees, hidden netrc files, remote builders, Nix
//! versions that ignore a setting.

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
    let builders = setup.system.scalar("builders").unwrap_or_default();
    let machines_file = Path::new("/etc/nix/machines");
    let has_builders = (!builders.trim().is_empty() && builders.trim() != "@/etc/nix/machines")
        || std::fs::read_to_string(machines_file).is_ok_and(|t| {
            t.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        });
    let bus = setup
        .system
        .scalar("builders-use-substitutes")
        .or(user_view.scalar("builders-use-substitutes"));
    if has_builders && bus.as_deref() == Some("true") && !caches.is_empty() {
        r.add(
            s,
            Status::Warn,
            "remote builders fetch from caches themselves (builders-use-substitutes = true) but hold none of your credentials",
            Some("set builders-use-substitutes = false so the local daemon substitutes and copies to the builder".into()),
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
