//! `list`: the caches we know, where each is configured, and whether a credential is present.
//! Never prints a secret.

use anyhow::Result;
use serde_json::json;

use super::{ListArgs, Run};
use crate::cache::CacheKind;
use crate::config::{CacheEntry, Config, Dirs, SecretStore};
use crate::nix::conf::NixConf;
use crate::nix::https_route::Route;
use crate::ui::Ui;

/// What `list` says about one cache.
struct Row {
    name: String,
    kind: &'static str,
    url: String,
    configured_in: Option<String>,
    credential: String,
    credential_present: bool,
    /// The HTTPS route and why (`None` for S3: always the proxy).
    route: Option<(&'static str, &'static str)>,
}

fn describe(c: &CacheEntry, service: bool) -> Row {
    let url = c.kind.url();
    let configured_in = c.nix_conf.as_ref().and_then(|p| {
        let text = crate::fs::read_optional(p).ok().flatten()?;
        let conf = NixConf::parse(&text).ok()?;
        let listed = match &c.kind {
            CacheKind::Https { .. } => conf.contains_value("substituters", &url),
            _ => c
                .public_keys
                .iter()
                .all(|k| conf.contains_value("trusted-public-keys", k)),
        };
        // On the proxy route nix.conf lists only the keys (the daemon gets the proxy's URL).
        let listed = listed
            || c.https_route(service)
                .is_some_and(|(r, _)| r == Route::Proxy)
                && c.public_keys
                    .iter()
                    .all(|k| conf.contains_value("trusted-public-keys", k));
        listed.then(|| p.display().to_string())
    });
    let (credential, present) = match (&c.kind, c.secret_store) {
        (CacheKind::S3(s3), _) => (
            format!(
                "AWS session (profile {})",
                s3.profile.as_deref().unwrap_or("default")
            ),
            true,
        ),
        (CacheKind::Gcs(_) | CacheKind::Azure(_), _) => {
            (crate::cloud_cache::credential_word(c), true)
        }
        // No keyring is opened for a listing: the presence `use` recorded stands in.
        (CacheKind::Https { .. }, _) => match crate::secret::CacheCredential::of(c, None) {
            Ok(cred) if cred.present => (cred.place, true),
            Ok(cred) => match (&c.netrc, c.secret_store) {
                (Some(path), SecretStore::Netrc) => {
                    (format!("missing from {}", path.display()), false)
                }
                _ => (cred.place, false),
            },
            Err(e) => (format!("unreadable: {e:#}"), false),
        },
    };
    Row {
        name: c.name.clone(),
        kind: c.kind.label(),
        url,
        configured_in,
        credential,
        credential_present: present,
        route: c
            .https_route(service)
            .map(|(route, why)| (route.as_str(), why.text(route))),
    }
}

impl Run for ListArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = Dirs::new()?;
        let config = Config::load(&dirs.config_file())?;
        let service = crate::proxy::https_rules::service_installed(&dirs);
        let rows: Vec<Row> = config
            .caches()?
            .iter()
            .map(|c| describe(c, service))
            .collect();
        if self.json || self.format == super::OutputFormat::Json {
            let v: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "kind": r.kind,
                        "url": r.url,
                        "configured_in": r.configured_in,
                        "credential": r.credential,
                        "credential_present": r.credential_present,
                        "route": r.route.map(|(route, _)| route),
                        "route_why": r.route.map(|(_, why)| why),
                    })
                })
                .collect();
            ui.outln(format_args!("{}", serde_json::to_string_pretty(&v)?))?;
            return Ok(0);
        }
        if rows.is_empty() {
            ui.info("no caches recorded yet; add one with `nixstore-auth use URL`");
            return Ok(0);
        }
        let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
        ui.outln(format_args!(
            "{:w$}  {:5}  {:40}  {:30}  {:5}  CREDENTIAL",
            "NAME", "KIND", "URL", "CONFIGURED IN", "ROUTE"
        ))?;
        for r in &rows {
            ui.outln(format_args!(
                "{:w$}  {:5}  {:40}  {:30}  {:5}  {}",
                r.name,
                r.kind,
                r.url,
                r.configured_in.as_deref().unwrap_or("-"),
                r.route.map_or("proxy", |(route, _)| route),
                r.credential
            ))?;
        }
        // Why each HTTPS cache takes its route, once, below the table.
        for r in &rows {
            if let Some((route, why)) = r.route {
                ui.info(format!("{}: route {route}: {why}", r.name));
            }
        }
        Ok(0)
    }
}
