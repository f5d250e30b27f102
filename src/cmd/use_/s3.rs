//! `use` for an S3 cache: the public key, the recorded cache, and for an untrusted user the
//! administrator's snippet with the proxy's URL in a root-only file.

use super::*;

pub(super) fn use_s3(
    args: &UseArgs,
    mut entry: CacheEntry,
    config_path: &Path,
    layout: &crate::proxy::Layout,
    ui: &Ui,
) -> Result<i32> {
    if args.token_stdin || args.token_env.is_some() {
        bail!(
            "S3 caches take no token: credentials come from your AWS session (see `nixstore-auth login`)"
        );
    }
    let setup = setup::probe(ProbeCache::ReadOnly)?;
    let url = entry.kind.url();
    // The daemon sees the proxy's stable URL, not the s3:// one.
    let proxy_url = crate::proxy::stable_url_for(layout, &entry.name)?;
    let target = target::decide(
        args.edit.mode,
        &setup,
        &proxy_url,
        args.edit.nix_conf.as_ref(),
    );
    let mut plan = Plan::new();
    match target {
        Target::Write { conf, .. } if !entry.public_keys.is_empty() => {
            if let Some(why) = crate::fs::edit_blocker(&conf) {
                bail!("cannot edit {}: {why}", conf.display());
            }
            let keys = entry.public_keys.clone();
            plan.edit(&conf, 0o644, false, move |text| {
                let mut c = NixConf::parse(text)?;
                for k in &keys {
                    c.add_value("trusted-public-keys", k)?;
                }
                Ok(c.to_text())
            });
            entry.nix_conf = Some(conf);
        }
        Target::Write { .. } | Target::SubstituterOnly { .. } => {}
        Target::Print | Target::NeedsAdmin | Target::NixosModule => {
            let (snippet, private) = proxy_admin_snippet(&setup, &entry, &proxy_url);
            let format = args.format.on_nixos(target == Target::NixosModule);
            if target == Target::NeedsAdmin && daemon_uses_proxy(layout, &entry.name) {
                // Listed in a file we cannot read, and the running proxy has seen the daemon.
                ui.info(format!(
                    "the nix-daemon already fetches {url} through your proxy's URL (an administrator listed it in a file only root reads)"
                ));
                record(&mut plan, config_path, &entry, None);
                if !args.edit.dry_run {
                    plan.apply()?;
                    crate::service::include::after_change(&layout.dirs, ui);
                }
                return Ok(0);
            }
            if target == Target::NeedsAdmin {
                // Not explain_untrusted: for S3 the cache is recorded, and no later `use`
                // edits the user's nix.conf (exec forwards the URL).
                ui.warn(format!(
                    "the nix-daemon does not trust user {:?}: it ignores the substituters that `exec` forwards to it",
                    setup.user
                ));
                let recorded = if args.edit.dry_run {
                    "dry run: the cache was not recorded"
                } else {
                    "the cache is recorded"
                };
                ui.info(format!(
                    "{recorded}. An administrator can either allow your proxy's URL without trusting you (the lines below, then restart the nix-daemon; afterwards `nixstore-auth exec -- nix build ...` substitutes from it), or add you to `trusted-users` (which makes you effectively root).",
                ));
                if !setup.system.unreadable.is_empty() {
                    ui.info(format!(
                        "{} cannot be read by you, so whether it already lists your proxy's URL cannot be checked from here; after a first `nixstore-auth exec`, `nixstore-auth doctor {}` tells",
                        setup.system.unreadable.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                        entry.name
                    ));
                }
            }
            warn_proxy_url_secret(ui, &setup, &private, "read the bucket");
            ui.out(format_args!("{}", snippet.render(format)))?;
            if target != Target::Print {
                // Record the cache anyway so that `exec` serves it once the administrator acted.
                record(&mut plan, config_path, &entry, None);
                if !args.edit.dry_run {
                    plan.apply()?;
                    crate::service::include::after_change(&layout.dirs, ui);
                }
                return Ok(EXIT_NEEDS_ADMIN);
            }
            return Ok(0);
        }
    }
    record(&mut plan, config_path, &entry, None);
    let service = crate::service::marker::load(&layout.dirs)?.is_some();
    if args.edit.dry_run {
        ui.out(format_args!("{}", plan.preview()?))?;
        if service {
            ui.info("the background service's include file would list the cache too");
        }
        ui.info("dry run: nothing was changed");
        return Ok(0);
    }
    for p in plan.apply()? {
        ui.info(format!("updated {}", p.display()));
    }
    if service {
        crate::service::include::after_change(&layout.dirs, ui);
        ui.info(format!(
            "recorded {} as {:?}: the background service serves it, so plain nix commands use it",
            url, entry.name
        ));
    } else {
        ui.info(format!(
            "recorded {} as {:?}. No {}:// substituter was added to nix.conf: the nix-daemon has no credential for it. Run `nixstore-auth service install` once so that plain nix commands use it, or run Nix through `nixstore-auth exec -- nix build ...`.",
            url,
            entry.name,
            url.split("://").next().unwrap_or("s3")
        ));
    }
    Ok(0)
}

/// Whether the running proxy has seen root (the nix-daemon) fetch this cache through its URL.
fn daemon_uses_proxy(layout: &crate::proxy::Layout, name: &str) -> bool {
    crate::proxy::status(layout)
        .ok()
        .flatten()
        .is_some_and(|st| st.mounts.iter().any(|m| m.name == name && m.daemon_used))
}
