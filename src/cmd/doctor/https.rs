//! An HTTPS cache reached as Nix would: with the stored credential and Nix's CA bundle.

use super::*;
use crate::token_command::TokenCommand;
use zeroize::Zeroizing;

/// The CA bundle Nix verifies HTTPS caches with, when it is not the system's: the
/// `ssl-cert-file` setting (newer Nix), else `NIX_SSL_CERT_FILE`, else `SSL_CERT_FILE`.
pub(super) fn nix_ca_file(
    setup: &NixSetup,
    user_view: &SettingsView,
) -> Option<std::path::PathBuf> {
    let env = |name: &str| std::env::var(name).ok();
    user_view
        .scalar("ssl-cert-file")
        .or_else(|| setup.system.scalar("ssl-cert-file"))
        .or_else(|| env("NIX_SSL_CERT_FILE"))
        .or_else(|| env("SSL_CERT_FILE"))
        .filter(|p| !p.trim().is_empty())
        .map(std::path::PathBuf::from)
}

/// Only the roots in `path`, as Nix (curl's CAINFO) uses them; an error names the file.
pub(super) fn load_roots(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)?;
    anyhow::ensure!(!certs.is_empty(), "no PEM certificate in it");
    Ok(certs)
}

/// GET nix-cache-info with the stored credential, trusting the CA bundle Nix would use.
pub(super) fn https_probe(
    r: &mut Report,
    section: &str,
    c: &CacheEntry,
    setup: &NixSetup,
    ca_file: Option<&Path>,
    ctx: session::Ctx,
) {
    let url = format!("{}/nix-cache-info", c.kind.url());
    let machine = c.kind.netrc_machine().unwrap_or_default();
    // The keyring is asked for keyring caches: that is where `exec` takes the token from.
    let store = (c.secret_store == SecretStore::Keyring)
        .then(|| crate::secret::SecretStore::open(ctx.cfg, ctx.dirs, &Ui::silent()).ok())
        .flatten();
    let command = match c.https.token_command.as_deref().map(TokenCommand::parse) {
        Some(Ok(cmd)) => match cmd.run() {
            Ok(t) => Some(t),
            Err(e) => {
                r.add(
                    section,
                    Status::Fail,
                    format!("the token command fails: {e:#}"),
                    Some(format!("run it yourself, or give another: nixstore-auth use {} --token-command 'CMD ARGS'", c.name)),
                );
                return;
            }
        },
        _ => None,
    };
    let credential = match command {
        Some(t) => Some((String::new(), Zeroizing::new(t.as_str().to_string()))),
        None => crate::secret::CacheCredential::of(c, store.as_ref())
            .ok()
            .and_then(|cred| Some((cred.login, cred.token?))),
    };
    let bearer = c.https.auth == crate::nix::https_route::Auth::Bearer;
    if c.has_token && credential.is_none() && c.secret_store == SecretStore::Netrc {
        r.add(
            section,
            Status::Fail,
            format!("no netrc entry for {machine}"),
            Some(format!("nixstore-auth use {} --token-stdin", c.name)),
        );
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            r.add(
                section,
                Status::Fail,
                format!("cannot start the network check: {e}"),
                None,
            );
            return;
        }
    };
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    // The proxy trusts the system's roots, Nix's bundle and the cache's own; Nix alone only
    // its bundle (as curl does).
    let proxy_route = c
        .https_route(crate::proxy::https_rules::service_installed(ctx.dirs))
        .is_some_and(|(r, _)| r == crate::nix::https_route::Route::Proxy);
    let bundles: Vec<&Path> = if proxy_route {
        ca_file
            .into_iter()
            .chain(c.https.ca_file.as_deref())
            .collect()
    } else {
        ca_file.into_iter().collect()
    };
    for ca in bundles {
        match load_roots(ca) {
            Ok(certs) if !proxy_route => builder = builder.tls_certs_only(certs),
            Ok(certs) => {
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            Err(e) => {
                r.add(
                    section,
                    Status::Fail,
                    format!("cannot use the CA bundle {}: {e:#}", ca.display()),
                    Some(
                        "point NIX_SSL_CERT_FILE (or ssl-cert-file) at a readable PEM bundle"
                            .into(),
                    ),
                );
                return;
            }
        }
    }
    let result = rt.block_on(async {
        let client = builder.build()?;
        let mut req = client.get(&url);
        match &credential {
            Some((_, token)) if bearer => req = req.bearer_auth(token.as_str()),
            Some((login, password)) => req = req.basic_auth(login, Some(password.as_str())),
            None => {}
        }
        req.send().await
    });
    match result {
        Ok(resp) if resp.status().is_success() => {
            let how = if credential.is_some() {
                "authenticated"
            } else {
                "without credentials"
            };
            r.add(
                section,
                Status::Ok,
                format!("reachable, {how} (GET nix-cache-info: {})", resp.status()),
                None,
            );
        }
        Ok(resp) if matches!(resp.status().as_u16(), 401 | 403) && credential.is_some() => r.add(
            section,
            Status::Fail,
            format!(
                "the cache refused the credential (GET nix-cache-info: {})",
                resp.status()
            ),
            Some(format!(
                "store a valid token: nixstore-auth use {} --token-stdin",
                c.name
            )),
        ),
        Ok(resp) if matches!(resp.status().as_u16(), 401 | 403) => {
            // No credential of ours: the daemon may hold one in its own netrc, which only root
            // reads (the untrusted-user setup). Then the login cannot be checked from here.
            let daemon_netrc = setup.system_netrc();
            if setup.daemon
                && !setup.is_root
                && daemon_netrc.exists()
                && std::fs::File::open(&daemon_netrc).is_err()
            {
                r.add(
                    section,
                    Status::Warn,
                    format!(
                        "the cache wants a login (GET nix-cache-info: {}); the nix-daemon's is in {}, which only root reads, so doctor cannot check it",
                        resp.status(),
                        daemon_netrc.display()
                    ),
                    Some(format!(
                        "if downloads fail, ask an administrator to check the `machine {machine}` entry in {}",
                        daemon_netrc.display()
                    )),
                );
            } else {
                r.add(
                    section,
                    Status::Fail,
                    format!(
                        "the cache wants a login and no token is recorded (GET nix-cache-info: {})",
                        resp.status()
                    ),
                    Some(format!("nixstore-auth use {} --token-stdin", c.name)),
                );
            }
        }
        Ok(resp) => r.add(
            section,
            Status::Fail,
            format!("GET nix-cache-info answered {}", resp.status()),
            Some("check the URL".into()),
        ),
        Err(e) => r.add(
            section,
            Status::Fail,
            format!("unreachable: {}", describe_reqwest(&e)),
            Some("check the URL, the network, and TLS (Nix reads NIX_SSL_CERT_FILE)".into()),
        ),
    }
}

pub(super) fn describe_reqwest(e: &reqwest::Error) -> String {
    // The URL holds no secret (credentials travel in a header), but keep the message short.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}
