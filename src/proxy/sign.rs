//! From a cache key to a signed S3 request, and from S3's answer to the status Nix should see.

use anyhow::{Context, Result};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::{Duration, SystemTime};

use crate::aws::Credentials;
use crate::cache::S3Ref;
use crate::s3_params::Addressing;

/// A session as the proxy keeps it: ready to sign, with its expiry.
pub struct Session {
    identity: Identity,
    pub expiration: Option<i64>,
    /// Set when S3 refused these credentials; any newer session then replaces them.
    pub refused: std::sync::atomic::AtomicBool,
}

impl Session {
    pub fn new(c: &Credentials) -> Session {
        let expiry = c.expiration.map(crate::time::system_time);
        let creds = aws_credential_types::Credentials::new(
            c.access_key_id.as_str(),
            c.secret_access_key.as_str(),
            c.session_token.as_ref().map(|t| t.as_str().to_string()),
            expiry,
            "nixstore-auth",
        );
        Session {
            identity: creds.into(),
            expiration: c.expiration,
            refused: Default::default(),
        }
    }

    pub fn expired(&self, now: i64) -> bool {
        self.expiration.is_some_and(|e| e <= now)
    }

    pub fn refused(&self) -> bool {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Whether a new session with expiry `new` should replace one with expiry `old` (None: never
/// expires). Equal counts as fresher, so a re-login with the same expiry still takes over.
pub fn fresher(new: Option<i64>, old: Option<i64>) -> bool {
    match (new, old) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(n), Some(o)) => n >= o,
    }
}

/// S3's own characters that need no escaping in a key.
fn encode_segment(seg: &str, out: &mut String) {
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A query parameter's value, encoded as S3 signs it.
pub fn encode_query_value(v: &str) -> String {
    let mut out = String::new();
    encode_segment(v, &mut out);
    out
}

/// Whether a bucket name can be a DNS label under a TLS wildcard (no dots, lowercase).
fn virtual_host_ok(bucket: &str) -> bool {
    !bucket.is_empty()
        && bucket.len() <= 63
        && !bucket.contains('.')
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The region to sign for (and, on AWS, to put in the host name). Checked again here although
/// `cache::parse_url` checks it: an `S3Ref` can be built elsewhere (the control socket), and a
/// region outside `[a-z0-9-]+` could name another host.
pub fn region(s3: &S3Ref) -> Result<&str> {
    let region = s3.region.as_deref().unwrap_or("us-east-1");
    crate::cache::validate_region(region)?;
    Ok(region)
}

/// The region to sign for and the object URL of `key`, or why there are none.
pub fn upstream<'a>(s3: &'a S3Ref, key: &str) -> Result<(&'a str, String)> {
    Ok((region(s3)?, object_url(s3, key)?))
}

/// The object URL for `key` (already decoded) in the cache `s3`, by the URL's
/// `addressing-style` with Nix's rules:
///
/// - `auto` (the default): custom endpoints (moto, MinIO, Garage, R2...) get path style
///   `ENDPOINT/BUCKET/PREFIX/KEY`, which all of them understand; AWS itself gets virtual-hosted
///   style `https://BUCKET.s3.REGION.amazonaws.com/PREFIX/KEY` (AWS is retiring path style),
///   except for bucket names with dots (or capitals), which would break TLS there;
/// - `path`: always path style (`https://s3.REGION.amazonaws.com/BUCKET/...` on AWS);
/// - `virtual`: always the bucket as the first label of the host, also on a custom endpoint;
///   a bucket that cannot be a DNS label is an error.
pub fn object_url(s3: &S3Ref, key: &str) -> Result<String> {
    let region = region(s3)?;
    let mut path = String::new();
    let segments = s3
        .prefix
        .iter()
        .flat_map(|p| p.split('/'))
        .chain(key.split('/'))
        .filter(|s| !s.is_empty());
    for seg in segments {
        path.push('/');
        encode_segment(seg, &mut path);
    }
    let path_style = match s3.params.addressing() {
        Addressing::Path => true,
        Addressing::Virtual => {
            if !virtual_host_ok(&s3.bucket) {
                anyhow::bail!(
                    "addressing-style=virtual: the bucket name {:?} cannot be a host name label",
                    s3.bucket
                );
            }
            false
        }
        Addressing::Auto => s3.endpoint.is_some() || !virtual_host_ok(&s3.bucket),
    };
    let mut bucket = String::new();
    encode_segment(&s3.bucket, &mut bucket);
    Ok(match (&s3.endpoint, path_style) {
        (Some(e), true) => format!("{}/{bucket}{path}", e.trim_end_matches('/')),
        (Some(e), false) => {
            let mut u = url::Url::parse(e).context("the S3 endpoint is not a URL")?;
            let host = u
                .host_str()
                .context("the S3 endpoint has no host")?
                .to_string();
            u.set_host(Some(&format!("{}.{host}", s3.bucket)))
                .context("the bucket and endpoint make no host name")?;
            format!("{}{path}", u.as_str().trim_end_matches('/'))
        }
        (None, true) => format!("https://s3.{region}.amazonaws.com/{bucket}{path}"),
        (None, false) => format!("https://{}.s3.{region}.amazonaws.com{path}", s3.bucket),
    })
}

/// The headers that sign `method url` with `session`: `authorization`, `x-amz-date`,
/// `x-amz-content-sha256: UNSIGNED-PAYLOAD` (bodies stream, so they are never hashed) and
/// `x-amz-security-token` for temporary credentials.
///
/// Only `host` and the `x-amz-*` headers are signed (`amz`: ours, such as
/// `x-amz-storage-class`, which S3 wants signed): never `Accept-Encoding`, `Content-Type` or
/// anything a front end may rewrite on the way (GCS's does, NixOS/nix#15019).
pub fn signed_headers(
    session: &Session,
    region: &str,
    method: &str,
    url: &str,
    amz: &[(&str, &str)],
) -> Result<Vec<(&'static str, String)>> {
    signed_headers_at(session, region, method, url, amz, SystemTime::now())
}

/// [`signed_headers`] at `time` (known-answer tests).
pub fn signed_headers_at(
    session: &Session,
    region: &str,
    method: &str,
    url: &str,
    amz: &[(&str, &str)],
    time: SystemTime,
) -> Result<Vec<(&'static str, String)>> {
    if let Some((name, _)) = amz.iter().find(|(n, _)| !n.starts_with("x-amz-")) {
        anyhow::bail!("only x-amz-* headers are signed, not {name}");
    }
    let mut settings = s3_settings();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let (headers, _query) = sign_s3(session, region, method, url, amz, settings, time)?;
    Ok(headers)
}

/// `GET url` signed in its query string (a presigned URL), valid for `expires` from `time`.
/// Whoever holds it can read that one object until then, and nothing else: the secret key
/// never leaves the proxy, and the session token alone cannot sign anything.
pub fn presigned_get(
    session: &Session,
    region: &str,
    url: &str,
    expires: Duration,
    time: SystemTime,
) -> Result<String> {
    let mut settings = s3_settings();
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let (_headers, query) = sign_s3(session, region, "GET", url, &[], settings, time)?;
    // Object URLs carry no query of their own (cache keys are paths).
    let mut out = String::from(url);
    for (i, (name, value)) in query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        out.push('=');
        encode_segment(value, &mut out);
    }
    Ok(out)
}

/// S3 signs the path exactly as sent: no double encoding, no normalisation.
fn s3_settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings
}

type Signature = (Vec<(&'static str, String)>, Vec<(&'static str, String)>);

/// SigV4 for S3 with an unsigned payload: the headers and query parameters to add.
fn sign_s3(
    session: &Session,
    region: &str,
    method: &str,
    url: &str,
    amz: &[(&str, &str)],
    settings: SigningSettings,
    time: SystemTime,
) -> Result<Signature> {
    // The region goes into the signature's scope: the same rule as everywhere.
    crate::cache::validate_region(region)?;
    let params = v4::SigningParams::builder()
        .identity(&session.identity)
        .region(region)
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .context("building the signing parameters")?
        .into();
    let req = SignableRequest::new(
        method,
        url,
        amz.iter().copied(),
        SignableBody::UnsignedPayload,
    )
    .context("the upstream URL cannot be signed")?;
    let (instructions, _sig) = sign(req, &params)
        .context("signing the upstream request")?
        .into_parts();
    let (headers, query) = instructions.into_parts();
    Ok((
        headers
            .into_iter()
            .map(|h| (h.name(), h.value().to_string()))
            .collect(),
        query
            .into_iter()
            .map(|(k, v)| (k, v.into_owned()))
            .collect(),
    ))
}

/// What the proxy answers Nix for an upstream response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pass S3's status and body on (2xx, 304, 412, 416).
    Pass,
    /// The object is not there: 404, which Nix records as a miss.
    NotFound,
    /// S3 refused the credentials: 503, and a fresher session may replace them.
    CredentialsRefused,
    /// Anything else: 502 (or 503 when S3 itself asks to slow down).
    Upstream(u16),
}

/// S3 error codes that mean "these credentials do not work (any more)".
const CREDENTIAL_CODES: &[&str] = &[
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "AccessDenied",
    "InvalidSecurity",
    "AllAccessDisabled",
    "AccountProblem",
    "RequestTimeTooSkewed",
];

/// Maps S3's status and error code to what Nix sees. Never 401/403 for anything S3 says, and
/// 404 only for a missing object: Nix remembers those as misses for an hour.
pub fn classify(status: u16, code: Option<&str>) -> Verdict {
    match status {
        200..=299 | 304 | 412 | 416 => Verdict::Pass,
        404 => match code {
            None | Some("NoSuchKey") => Verdict::NotFound,
            // NoSuchBucket and friends are configuration problems, not misses.
            Some(_) => Verdict::Upstream(502),
        },
        // HEAD answers carry no body, so a bare 403 is taken as refused credentials.
        403 if code.is_none() => Verdict::CredentialsRefused,
        400..=403 if code.is_some_and(|c| CREDENTIAL_CODES.contains(&c)) => {
            Verdict::CredentialsRefused
        }
        503 => Verdict::Upstream(503),
        _ => Verdict::Upstream(502),
    }
}

/// `(Code, Message)` from an S3 XML error body.
pub fn error_code(body: &str) -> (Option<String>, Option<String>) {
    fn tag(body: &str, name: &str) -> Option<String> {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find("</")? + start;
        Some(body[start..end].trim().chars().take(200).collect())
    }
    (tag(body, "Code"), tag(body, "Message"))
}

#[cfg(test)]
#[path = "sign_known_answers.rs"]
mod known_answers;

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: Option<&str>, endpoint: Option<&str>) -> S3Ref {
        S3Ref {
            bucket: bucket.into(),
            prefix: prefix.map(String::from),
            region: Some("eu-west-1".into()),
            endpoint: endpoint.map(String::from),
            profile: None,
            params: Default::default(),
        }
    }

    #[test]
    fn urls_are_path_style_on_custom_endpoints_and_virtual_hosted_on_aws() {
        assert_eq!(
            object_url(
                &s3("b", Some("p/q"), Some("http://127.0.0.1:9000/")),
                "nar/x.nar.xz"
            )
            .unwrap(),
            "http://127.0.0.1:9000/b/p/q/nar/x.nar.xz"
        );
        assert_eq!(
            object_url(&s3("b", None, None), "abc.narinfo").unwrap(),
            "https://b.s3.eu-west-1.amazonaws.com/abc.narinfo"
        );
        assert_eq!(
            object_url(&s3("my.bucket", None, None), "log/a+b=c.drv").unwrap(),
            "https://s3.eu-west-1.amazonaws.com/my.bucket/log/a%2Bb%3Dc.drv"
        );
    }

    #[test]
    fn a_region_outside_the_rule_is_an_error_not_a_host_name() {
        let c = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: zeroize::Zeroizing::new("s3cr3t".into()),
            session_token: None,
            expiration: None,
        };
        for bad in [
            "evil.host/x",
            "eu-west-1&endpoint=https://other.host",
            "",
            "EU",
        ] {
            let mut r = s3("b", None, None);
            r.region = Some(bad.into());
            let err = object_url(&r, "nix-cache-info").unwrap_err();
            assert!(
                err.to_string().contains("invalid S3 region"),
                "{bad:?}: {err}"
            );
            assert!(region(&r).is_err(), "{bad:?}");
            let signed =
                signed_headers(&Session::new(&c), bad, "GET", "http://127.0.0.1:1/b/k", &[]);
            assert!(signed.is_err(), "{bad:?}");
        }
        assert_eq!(
            region(&S3Ref {
                region: None,
                ..s3("b", None, None)
            })
            .unwrap(),
            "us-east-1"
        );
    }

    #[test]
    fn signing_adds_the_headers_s3_needs() {
        let c = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: zeroize::Zeroizing::new("s3cr3t".into()),
            session_token: Some(zeroize::Zeroizing::new("tok".into())),
            expiration: Some(4_000_000_000),
        };
        let h = signed_headers(
            &Session::new(&c),
            "us-east-1",
            "GET",
            "http://127.0.0.1:1/b/k",
            &[],
        )
        .unwrap();
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"));
        assert_eq!(get("x-amz-security-token"), Some("tok"));
        let auth = get("authorization").unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/"));
        assert!(!auth.contains("s3cr3t"));
    }

    #[test]
    fn presigned_urls_match_the_aws_documentation_example() {
        // The example of "Authenticating Requests: Using Query Parameters" in the S3 API
        // reference: same keys, time and expiry must give AWS's own signature.
        let c = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: zeroize::Zeroizing::new(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            ),
            session_token: None,
            expiration: None,
        };
        let at = crate::time::system_time(1_369_353_600); // 2013-05-24T00:00:00Z
        let url = presigned_get(
            &Session::new(&c),
            "us-east-1",
            "https://examplebucket.s3.amazonaws.com/test.txt",
            Duration::from_secs(86400),
            at,
        )
        .unwrap();
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn presigned_urls_carry_the_session_token_but_never_the_secret() {
        let c = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: zeroize::Zeroizing::new("s3cr3t/key".into()),
            session_token: Some(zeroize::Zeroizing::new("tok/en+=".into())),
            expiration: Some(4_000_000_000),
        };
        let url = presigned_get(
            &Session::new(&c),
            "eu-west-1",
            "http://127.0.0.1:9000/b/nar/x.nar.xz",
            Duration::from_secs(300),
            SystemTime::now(),
        )
        .unwrap();
        assert!(url.starts_with("http://127.0.0.1:9000/b/nar/x.nar.xz?X-Amz-Algorithm="));
        assert!(url.contains("X-Amz-Security-Token=tok%2Fen%2B%3D"), "{url}");
        assert!(url.contains("X-Amz-Expires=300"), "{url}");
        assert!(!url.contains("s3cr3t"), "{url}");
    }

    #[test]
    fn statuses_never_become_misses_unless_the_object_is_missing() {
        assert_eq!(classify(200, None), Verdict::Pass);
        assert_eq!(classify(404, Some("NoSuchKey")), Verdict::NotFound);
        assert_eq!(classify(404, None), Verdict::NotFound);
        assert_eq!(classify(404, Some("NoSuchBucket")), Verdict::Upstream(502));
        for code in [
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AccessDenied",
        ] {
            assert_eq!(classify(403, Some(code)), Verdict::CredentialsRefused);
        }
        assert_eq!(
            classify(400, Some("ExpiredToken")),
            Verdict::CredentialsRefused
        );
        assert_eq!(classify(403, None), Verdict::CredentialsRefused);
        assert_eq!(
            classify(400, Some("InvalidRequest")),
            Verdict::Upstream(502)
        );
        assert_eq!(
            classify(301, Some("PermanentRedirect")),
            Verdict::Upstream(502)
        );
        assert_eq!(classify(500, None), Verdict::Upstream(502));
        assert_eq!(classify(503, Some("SlowDown")), Verdict::Upstream(503));
        assert!(fresher(Some(10), Some(10)) && fresher(None, Some(10)));
        assert!(!fresher(Some(9), Some(10)) && !fresher(Some(9), None));
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        let (c, m) = error_code(body);
        assert_eq!(c.as_deref(), Some("NoSuchKey"));
        assert_eq!(m.as_deref(), Some("The specified key does not exist."));
        assert_eq!(error_code("garbage"), (None, None));
    }
}
