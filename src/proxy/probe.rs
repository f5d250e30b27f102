//! One signed request to a bucket, for `doctor`: does the session reach the cache? Uses the
//! proxy's signing and status mapping, without starting a proxy.

use std::time::Duration;

use super::sign::{self, Verdict};
use crate::aws::Credentials;
use crate::cache::S3Ref;

/// What a signed `GET nix-cache-info` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The bucket answered with the file.
    Ok,
    /// Reachable and authenticated, but the bucket has no `nix-cache-info` yet (nothing pushed).
    Empty,
    /// S3 refused the credentials (code such as ExpiredToken, SignatureDoesNotMatch).
    Refused(String),
    /// Another upstream answer.
    Upstream(u16, String),
    /// No answer: connection refused, DNS, TLS, timeout.
    Unreachable(String),
}

/// Signs and sends `GET nix-cache-info` for the cache.
pub fn probe(creds: &Credentials, s3: &S3Ref) -> Probe {
    fetch_cache_info(creds, s3).0
}

/// The same, with the file's bytes when the bucket answered with it (the background proxy
/// keeps them to answer `nix-cache-info` while a person is needed).
pub fn fetch_cache_info(creds: &Credentials, s3: &S3Ref) -> (Probe, Option<Vec<u8>>) {
    let (probe, body) = get_cache_info(creds, s3);
    let body = (probe == Probe::Ok).then_some(body).flatten();
    (probe, body)
}

fn get_cache_info(creds: &Credentials, s3: &S3Ref) -> (Probe, Option<Vec<u8>>) {
    let unreachable = |m: String| (Probe::Unreachable(m), None);
    let session = sign::Session::new(creds);
    let (region, url) = match sign::upstream(s3, "nix-cache-info") {
        Ok(target) => target,
        Err(e) => return unreachable(format!("{e:#}")),
    };
    let headers = match sign::signed_headers(&session, region, "GET", &url, &[]) {
        Ok(h) => h,
        Err(e) => return unreachable(format!("{e:#}")),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return unreachable(e.to_string()),
    };
    rt.block_on(async {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => return unreachable(e.to_string()),
        };
        let mut req = client.get(&url);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                return unreachable(msg);
            }
        };
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let body = String::from_utf8_lossy(&bytes);
        let (code, _message) = sign::error_code(&body);
        let probe = match sign::classify(status, code.as_deref()) {
            Verdict::Pass => Probe::Ok,
            Verdict::NotFound => Probe::Empty,
            Verdict::CredentialsRefused => {
                Probe::Refused(code.unwrap_or_else(|| status.to_string()))
            }
            Verdict::Upstream(_) => Probe::Upstream(status, code.unwrap_or_default()),
        };
        (probe, Some(bytes))
    })
}
