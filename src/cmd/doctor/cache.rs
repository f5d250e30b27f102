//! Each recorded cache: substituter, keys and credential where the downloader honours them.

use super::*;

pub(super) fn cache_checks(
    r: &mut Report,
    c: &CacheEntry,
    setup: &NixSetup,
    user_view: &SettingsView,
    ctx: session::Ctx,
) {
    let section = format!("cache {} ({})", c.name, c.kind.url());
    let url = c.kind.url();
    // Public keys: those in the user's files count only when the downloader honours them.
    let system_keys = setup.system.list("trusted-public-keys");
    let user_keys = user_view.list("trusted-public-keys");
    let in_system = c.public_keys.iter().all(|k| system_keys.contains(k));
    let in_any = c
        .public_keys
        .iter()
        .all(|k| system_keys.contains(k) || user_keys.contains(k));
    if c.public_keys.is_empty() {
        r.add(
            &section,
            Status::Warn,
            "no public key recorded: Nix will refuse unsigned paths from it",
            Some(format!(
                "nixstore-auth use {} --public-key NAME:KEY",
                c.name
            )),
        );
    } else if in_system || (in_any && setup.user_settings_honoured()) {
        r.add(&section, Status::Ok, "public key present in nix.conf", None);
    } else if in_any {
        r.add(
            &section,
            Status::Fail,
            "public key only in your nix.conf, which the nix-daemon ignores (untrusted user)",
            Some(format!("nixstore-auth use {} --mode print", c.name)),
        );
    } else {
        r.add(
            &section,
            Status::Fail,
            "public key missing from nix.conf",
            Some(format!("nixstore-auth use {}", c.name)),
        );
    }
    match &c.kind {
        CacheKind::Https { .. } => {
            let listed_user = user_view
                .list("substituters")
                .iter()
                .any(|s| crate::cache::same_url(s, &url));
            let listed_sys = setup
                .system
                .list("substituters")
                .iter()
                .any(|s| crate::cache::same_url(s, &url));
            let trusted_sub = setup
                .system
                .list("trusted-substituters")
                .iter()
                .any(|s| crate::cache::same_url(s, &url));
            let service = crate::proxy::https_rules::service_installed(ctx.dirs);
            let route = c.https_route(service);
            if let Some((route, why)) = route {
                r.add(
                    &section,
                    Status::Info,
                    format!("route {}: {}", route.as_str(), why.text(route)),
                    None,
                );
            }
            if route.is_some_and(|(r, _)| r == crate::nix::https_route::Route::Proxy) {
                let how = if service {
                    "the background service serves it to plain `nix`"
                } else {
                    "run Nix through `nixstore-auth exec`"
                };
                r.add(
                    &section,
                    Status::Info,
                    format!(
                        "reached through your loopback proxy, which adds the credential: {how}"
                    ),
                    None,
                );
                if listed_user || listed_sys {
                    r.add(&section, Status::Warn, "nix.conf still lists the cache's own URL, where the nix-daemon has no credential", Some(format!("nixstore-auth use {}", c.name)));
                }
            } else if c.secret_store == SecretStore::Keyring {
                r.add(&section, Status::Info, "token in the keyring: reached through `nixstore-auth exec` (or the shell wrappers)", None);
            } else if listed_sys || (listed_user && (setup.user_settings_honoured() || trusted_sub))
            {
                r.add(
                    &section,
                    Status::Ok,
                    "substituter visible to whoever downloads",
                    None,
                );
            } else if listed_user {
                r.add(&section, Status::Fail, "substituter is in your nix.conf but the nix-daemon ignores it (untrusted user)", Some(format!("nixstore-auth use {} --mode print", c.name)));
            } else {
                r.add(
                    &section,
                    Status::Fail,
                    "substituter not configured",
                    Some(format!("nixstore-auth use {}", c.name)),
                );
            }
            https_probe(
                r,
                &section,
                c,
                setup,
                nix_ca_file(setup, user_view).as_deref(),
                ctx,
            );
        }
        CacheKind::S3(s3) => s3_checks(r, &section, c, s3, setup, ctx),
        CacheKind::Gcs(_) | CacheKind::Azure(_) => {
            for (status, line, fix) in super::cloud::doctor_lines(c, ctx.cfg, ctx.dirs) {
                r.add(&section, status, line, fix);
            }
        }
    }
}
