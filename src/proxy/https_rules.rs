//! The rules of the HTTPS upstream kind, pure and table-tested: which CA bundles verify the
//! cache, where a redirect goes (followed with the credential within the cache's origin, passed
//! on to Nix without it elsewhere), and what the cache's statuses become for Nix (its 401/403
//! never reach Nix as 401/403/404, which Nix up to 2.34 remembers as misses for an hour).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use url::Url;

/// Whether the background service is installed (a keyring token then takes the proxy route).
/// A marker that cannot be read counts as not installed: `service status` reports it.
pub fn service_installed(dirs: &crate::config::Dirs) -> bool {
    crate::service::marker::load(dirs).ok().flatten().is_some()
}

/// The most redirects within the cache's origin the proxy follows for one request.
pub const MAX_HOPS: u32 = 5;

/// The CA bundles that verify the cache besides the system's roots: the bundle Nix is told to
/// use (`ssl-cert-file`, `NIX_SSL_CERT_FILE`: doctor's `nix_ca_file` is that rule), then the
/// cache's own `ca-file`. The same file named twice is read once.
pub fn ca_files(nix_bundle: Option<&Path>, ca_file: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in [nix_bundle, ca_file].into_iter().flatten() {
        if !p.as_os_str().is_empty() && !out.iter().any(|o| o == p) {
            out.push(p.to_path_buf());
        }
    }
    out
}

/// A TLS client configuration: the system's roots plus every certificate in `files`, hostnames
/// verified (rustls never skips that). A file that cannot be read or holds no certificate is an
/// error naming it; missing system roots are not, when a file gives some.
pub fn tls_config(files: &[PathBuf]) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (system, _) = roots.add_parsable_certificates(native.certs);
    for f in files {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(f)
            .with_context(|| format!("cannot read the CA bundle {}", f.display()))?
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("{} is not a PEM CA bundle", f.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            anyhow::bail!("{} holds no usable CA certificate", f.display());
        }
    }
    if system == 0 && files.is_empty() {
        anyhow::bail!("no system CA certificates were found; give the cache's CA with --ca-file");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The `Authorization` header the proxy adds for a cache: `Basic base64(login:token)` (what
/// curl makes of a netrc entry) or `Bearer token`; marked sensitive so that no `Debug` shows it.
/// A token that cannot be a header value (a control character) is an error that never shows it.
pub fn authorization(
    auth: crate::nix::https_route::Auth,
    login: &str,
    token: &crate::secret::Token,
) -> Result<hyper::header::HeaderValue> {
    use base64::Engine;
    use zeroize::Zeroizing;
    let value = Zeroizing::new(match auth {
        crate::nix::https_route::Auth::Basic => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(Zeroizing::new(format!("{login}:{}", token.as_str())).as_bytes())
        ),
        crate::nix::https_route::Auth::Bearer => format!("Bearer {}", token.as_str()),
    });
    let mut v = hyper::header::HeaderValue::from_str(&value)
        .map_err(|_| anyhow::anyhow!("the token has characters an HTTP header cannot carry"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Scheme, host and port (the scheme's default when the URL names none).
pub fn origin(u: &Url) -> (String, String, Option<u16>) {
    (
        u.scheme().to_ascii_lowercase(),
        u.host_str().unwrap_or("").to_ascii_lowercase(),
        u.port_or_known_default(),
    )
}

/// What to do with a redirect from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// Within the cache's origin: the proxy asks there itself, with the credential.
    Follow(Url),
    /// Another origin: Nix follows it itself (the credential never goes there).
    PassOn(Url),
    /// Not something to follow or hand on: why (answered as a 502).
    Refuse(&'static str),
}

/// Where a redirect from `from` (the URL just asked) to `location` goes, for a cache at `cache`
/// after `hops` redirects already followed for this request.
pub fn redirect(cache: &Url, from: &Url, location: &str, hops: u32) -> Redirect {
    let Ok(to) = from.join(location) else {
        return Redirect::Refuse("the cache redirected to an invalid URL");
    };
    if !matches!(to.scheme(), "http" | "https") || to.host_str().is_none() {
        return Redirect::Refuse("the cache redirected to a URL that is not http(s)");
    }
    if !to.username().is_empty() || to.password().is_some() {
        return Redirect::Refuse("the cache redirected to a URL with a login in it");
    }
    if cache.scheme() == "https" && to.scheme() == "http" {
        return Redirect::Refuse("the cache redirected to plain HTTP");
    }
    if origin(&to) == origin(cache) {
        if hops >= MAX_HOPS {
            return Redirect::Refuse("the cache redirected too many times");
        }
        return Redirect::Follow(to);
    }
    Redirect::PassOn(to)
}

/// Whether `status` is a redirect the proxy looks at (with a `Location`).
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// What the cache's answer becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed on as it is (2xx, 304, 412, 416; a 404 for a missing object).
    Pass,
    /// The credential was refused and a fresh one may come without a person (a token command
    /// not yet run again for this request): renew it and ask once more.
    RetryFresh,
    /// The credential was refused and only a person can fix that: the background-service rule
    /// for a credential that needs a person applies.
    NeedsPerson,
    /// Anything else, as this status (502, or 503 where the cache asks to slow down).
    Status(u16),
}

/// Maps the cache's `status` for Nix. `renewable`: the credential comes from a command;
/// `retried`: this request already asked again with a fresh one; `write`: a PUT (an upload,
/// whose refusal our own push reports as it is; Nix remembers no miss for it).
pub fn outcome(status: u16, renewable: bool, retried: bool, write: bool) -> Outcome {
    match status {
        200..=299 | 304 | 412 | 416 => Outcome::Pass,
        404 if !write => Outcome::Pass,
        401 | 403 if renewable && !retried => Outcome::RetryFresh,
        401 | 403 if write => Outcome::Status(403),
        401 | 403 => Outcome::NeedsPerson,
        429 | 503 => Outcome::Status(503),
        _ => Outcome::Status(502),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn ca_bundles_follow_nix_and_the_cache() {
        let p = |s: &str| Some(PathBuf::from(s));
        // (Nix's bundle, ca-file) -> files
        let rows: &[(Option<PathBuf>, Option<PathBuf>, &[&str])] = &[
            (None, None, &[]),
            (p("/a"), None, &["/a"]),
            (None, p("/c"), &["/c"]),
            (p("/b"), p("/c"), &["/b", "/c"]),
            (p("/c"), p("/c"), &["/c"]),
            (p(""), p("/c"), &["/c"]),
        ];
        for (n, c, want) in rows {
            let got = ca_files(n.as_deref(), c.as_deref());
            let want: Vec<PathBuf> = want.iter().map(PathBuf::from).collect();
            assert_eq!(got, want, "{n:?} {c:?}");
        }
    }

    #[test]
    fn redirects_stay_with_the_credential_only_within_the_origin() {
        let cache = u("https://cache.example.org/sub");
        let from = u("https://cache.example.org/sub/nar/x.nar");
        use Redirect::*;
        let rows = [
            (
                "/sub/nar/y.nar",
                0,
                Follow(u("https://cache.example.org/sub/nar/y.nar")),
            ),
            (
                "y.nar",
                0,
                Follow(u("https://cache.example.org/sub/nar/y.nar")),
            ),
            (
                "https://cache.example.org:443/z",
                0,
                Follow(u("https://cache.example.org/z")),
            ),
            (
                "https://CACHE.example.org/z",
                0,
                Follow(u("https://cache.example.org/z")),
            ),
            (
                "/z",
                MAX_HOPS,
                Refuse("the cache redirected too many times"),
            ),
            (
                "https://cdn.example.org/n",
                0,
                PassOn(u("https://cdn.example.org/n")),
            ),
            (
                "https://cdn.example.org/n",
                MAX_HOPS,
                PassOn(u("https://cdn.example.org/n")),
            ),
            (
                "https://cache.example.org:8443/n",
                0,
                PassOn(u("https://cache.example.org:8443/n")),
            ),
            (
                "http://cache.example.org/n",
                0,
                Refuse("the cache redirected to plain HTTP"),
            ),
            (
                "http://cdn.example.org/n",
                0,
                Refuse("the cache redirected to plain HTTP"),
            ),
            (
                "ftp://cdn.example.org/n",
                0,
                Refuse("the cache redirected to a URL that is not http(s)"),
            ),
            (
                "https://u:p@cdn.example.org/n",
                0,
                Refuse("the cache redirected to a URL with a login in it"),
            ),
            (
                "http://[::1",
                0,
                Refuse("the cache redirected to an invalid URL"),
            ),
        ];
        for (loc, hops, want) in rows {
            assert_eq!(redirect(&cache, &from, loc, hops), want, "{loc}");
        }
        // A cache given as http:// may move within http, and to https elsewhere.
        let plain = u("http://127.0.0.1:8080");
        let from = u("http://127.0.0.1:8080/nar/a");
        assert_eq!(
            redirect(&plain, &from, "/b", 0),
            Follow(u("http://127.0.0.1:8080/b"))
        );
        assert_eq!(
            redirect(&plain, &from, "https://127.0.0.1:8080/b", 0),
            PassOn(u("https://127.0.0.1:8080/b"))
        );
        assert!(is_redirect(302) && is_redirect(308) && !is_redirect(304) && !is_redirect(300));
    }

    #[test]
    fn refusals_never_reach_nix_as_misses() {
        use Outcome::*;
        // (status, renewable, retried, write) -> outcome
        let rows = [
            (200, false, false, false, Pass),
            (206, false, false, false, Pass),
            (304, false, false, false, Pass),
            (404, false, false, false, Pass),
            (404, false, false, true, Status(502)),
            (401, true, false, false, RetryFresh),
            (403, true, false, false, RetryFresh),
            (401, true, true, false, NeedsPerson),
            (401, false, false, false, NeedsPerson),
            (403, false, false, false, NeedsPerson),
            (401, true, false, true, RetryFresh),
            (401, true, true, true, Status(403)),
            (403, false, false, true, Status(403)),
            (429, false, false, false, Status(503)),
            (503, false, false, false, Status(503)),
            (500, false, false, false, Status(502)),
            (410, false, false, false, Status(502)),
            (400, false, false, false, Status(502)),
        ];
        for (status, renewable, retried, write, want) in rows {
            let got = outcome(status, renewable, retried, write);
            assert_eq!(got, want, "{status} {renewable} {retried} {write}");
            if !write {
                assert!(!matches!(got, Status(401 | 403 | 404)));
            }
        }
    }

    #[test]
    fn the_header_is_basic_or_bearer_and_never_shown() {
        use crate::nix::https_route::Auth;
        let t = |s: &str| crate::secret::Token::new(zeroize::Zeroizing::new(s.into())).unwrap();
        let basic = authorization(Auth::Basic, "nixstore-auth", &t("s3cr3t")).unwrap();
        // curl's netrc header for the same entry.
        assert_eq!(
            basic.to_str().unwrap(),
            "Basic bml4c3RvcmUtYXV0aDpzM2NyM3Q="
        );
        let bearer = authorization(Auth::Bearer, "ignored", &t("eyJ.x-_")).unwrap();
        assert_eq!(bearer.to_str().unwrap(), "Bearer eyJ.x-_");
        assert!(bearer.is_sensitive() && !format!("{bearer:?}").contains("eyJ"));
        // Bytes beyond ASCII go as they are, as curl sends a netrc password.
        let raw = authorization(Auth::Bearer, "", &t("ünï")).unwrap();
        assert_eq!(raw.as_bytes(), "Bearer ünï".as_bytes());
    }

    #[test]
    fn a_bundle_that_is_not_one_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("ca.pem");
        std::fs::write(&bad, "not a certificate\n").unwrap();
        let e = format!("{:#}", tls_config(std::slice::from_ref(&bad)).unwrap_err());
        assert!(e.contains(&bad.display().to_string()), "{e}");
        let e = format!(
            "{:#}",
            tls_config(&[dir.path().join("missing")]).unwrap_err()
        );
        assert!(e.contains("cannot read the CA bundle"), "{e}");
    }
}
