//! Google Cloud Storage: where a cache lives (`gs://BUCKET[/PREFIX][?endpoint=URL]`), the
//! credential that reads it (Application Default Credentials, `adc.rs`, tokens by
//! google-cloud-auth in `token.rs`), V4 signed URLs (`sign.rs`, `iam.rs`).
//!
//! [`Gcs`] is the kind-agnostic surface the proxy calls ([`crate::cloud::ObjectAuth`]).

pub mod adc;
pub mod iam;
pub mod sign;
pub mod token;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use url::Url;

use crate::cloud::{AuthError, AuthResult, Authorized, BoxFuture, ObjectAuth, State};

/// Google's public endpoint, used unless the cache names another (`?endpoint=`).
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// A GCS cache's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Scheme, host and port (and any path) of the storage endpoint, without a trailing slash.
    pub endpoint: Url,
    pub bucket: String,
    /// The key prefix below the bucket, without slashes at either end ("" for none).
    pub prefix: String,
}

/// GCS bucket names: 3-63 characters of lowercase letters, digits, `-`, `_`, `.`, starting and
/// ending with a letter or digit (longer dotted names are rare and refused here).
fn bucket_name_ok(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

impl Bucket {
    /// Parses `gs://BUCKET[/PREFIX][?endpoint=http(s)://HOST[:PORT]]`.
    pub fn parse(text: &str) -> AuthResult<Bucket> {
        let bad = |why: &str| AuthError::Refused(format!("{text}: {why}"));
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "gs" {
            return Err(bad("a GCS cache URL starts with gs://"));
        }
        let bucket = url.host_str().unwrap_or_default().to_string();
        if !bucket_name_ok(&bucket) {
            return Err(bad("not a GCS bucket name"));
        }
        let mut endpoint = Url::parse(DEFAULT_ENDPOINT).map_err(|e| bad(&e.to_string()))?;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" => {
                    endpoint = Url::parse(&v).map_err(|e| bad(&format!("endpoint: {e}")))?;
                    if !matches!(endpoint.scheme(), "http" | "https")
                        || endpoint.host_str().is_none()
                        || endpoint.query().is_some()
                        || !endpoint.username().is_empty()
                    {
                        return Err(bad("endpoint must be an http(s)://HOST[:PORT] URL"));
                    }
                }
                other => {
                    return Err(bad(&format!(
                        "unknown parameter `{other}` (known: endpoint)"
                    )));
                }
            }
        }
        let path = endpoint.path().trim_end_matches('/').to_string();
        endpoint.set_path(&path);
        let prefix = url.path().trim_matches('/').to_string();
        // Checked on the text: URL parsing would resolve the dots away.
        let raw_path = text.split('?').next().unwrap_or_default();
        if raw_path.split('/').skip(3).any(|s| s == "." || s == "..") {
            return Err(bad("the prefix may not contain . or .. segments"));
        }
        Ok(Bucket {
            endpoint,
            bucket,
            prefix,
        })
    }

    /// The `gs://` URL as recorded in config.toml: `?endpoint=` only when not Google's.
    pub fn to_url(&self) -> String {
        let mut s = format!("gs://{}", self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        let endpoint = self.endpoint.as_str().trim_end_matches('/');
        if endpoint != DEFAULT_ENDPOINT {
            s.push_str("?endpoint=");
            s.push_str(endpoint);
        }
        s
    }

    /// The object's name in the bucket (prefix joined).
    pub fn object(&self, key: &str) -> String {
        let key = key.trim_start_matches('/');
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// `host[:port]` as signed and sent.
    fn host(&self) -> String {
        match (self.endpoint.host_str(), self.endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => String::new(),
        }
    }

    /// The unencoded resource path: `/ENDPOINT_PATH/BUCKET/OBJECT` (path-style XML API).
    fn resource_path(&self, key: &str) -> String {
        format!(
            "{}/{}/{}",
            self.endpoint.path().trim_end_matches('/'),
            self.bucket,
            self.object(key)
        )
    }

    /// The XML API URL of `key` (path-style).
    pub fn url(&self, key: &str) -> AuthResult<Url> {
        let mut url = self.endpoint.clone();
        let mut path = String::new();
        for (i, seg) in self.resource_path(key).split('/').enumerate() {
            if i > 0 {
                path.push('/');
            }
            path.push_str(&percent_encoding::utf8_percent_encode(seg, SEGMENT).to_string());
        }
        url.set_path(&path);
        Ok(url)
    }
}

/// Bytes kept as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A GCS cache with its credential: the proxy's upstream for `gs://` (later).
pub struct Gcs {
    pub bucket: Bucket,
    cred: token::Credential,
    http: reqwest::Client,
}

impl Gcs {
    /// Loads the credential by ADC's order from this process's environment. Call inside a
    /// tokio runtime (google-cloud-auth renews tokens in a background task).
    pub fn load(bucket: Bucket, http: reqwest::Client) -> AuthResult<Gcs> {
        let cred = token::Credential::load(adc::Facts::gather())?;
        Ok(Gcs { bucket, cred, http })
    }

    /// With a credential already loaded (tests; a proxy sharing one credential).
    pub fn with_credential(bucket: Bucket, cred: token::Credential, http: reqwest::Client) -> Gcs {
        Gcs { bucket, cred, http }
    }

    pub fn credential(&self) -> &token::Credential {
        &self.cred
    }

    async fn authorize_impl(&self, method: Method, key: &str) -> AuthResult<Authorized> {
        let generation = self.cred.generation();
        let token = self.cred.access_token().await?;
        let mut req = Authorized::new(method, self.bucket.url(key)?);
        req.header("authorization", &format!("Bearer {}", token.as_str()), true)?;
        req.generation = generation;
        Ok(req)
    }

    async fn presign_impl(&self, key: &str, ttl: Duration) -> AuthResult<Option<Url>> {
        let Some(signer) = self.cred.signer().await else {
            return Ok(None);
        };
        let host = self.bucket.host();
        let path = self.bucket.resource_path(key);
        let req = sign::V4Request {
            method: "GET",
            scheme: self.bucket.endpoint.scheme(),
            host: &host,
            path: &path,
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            email: signer.email(),
            timestamp: crate::time::now(),
            expires: ttl.as_secs().clamp(1, sign::MAX_EXPIRES),
        };
        let prepared = sign::prepare(&req)?;
        let signature = match &signer {
            token::Signer::Key { key, .. } => key.sign(prepared.string_to_sign.as_bytes())?,
            token::Signer::Iam(imp) => {
                let bearer = self.cred.access_token().await?;
                iam::sign_blob(
                    &self.http,
                    imp,
                    bearer.as_str(),
                    prepared.string_to_sign.as_bytes(),
                )
                .await?
            }
        };
        sign::finish(&prepared, &signature).map(Some)
    }
}

impl ObjectAuth for Gcs {
    fn describe(&self) -> String {
        self.cred.describe()
    }

    fn authorize<'a>(
        &'a self,
        method: Method,
        key: &'a str,
    ) -> BoxFuture<'a, AuthResult<Authorized>> {
        Box::pin(self.authorize_impl(method, key))
    }

    fn presign_get<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, AuthResult<Option<Url>>> {
        Box::pin(self.presign_impl(key, ttl))
    }

    fn state(&self) -> State {
        self.cred.state()
    }

    fn refused(&self, request: &Authorized) -> bool {
        self.cred.refused(request.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls() {
        let b = Bucket::parse("gs://my-cache/nix/store?endpoint=http://127.0.0.1:4443").unwrap();
        assert_eq!(b.bucket, "my-cache");
        assert_eq!(b.prefix, "nix/store");
        assert_eq!(b.endpoint.as_str(), "http://127.0.0.1:4443/");
        assert_eq!(b.host(), "127.0.0.1:4443");
        assert_eq!(
            b.url("nar/a b+c.nar").unwrap().as_str(),
            "http://127.0.0.1:4443/my-cache/nix/store/nar/a%20b%2Bc.nar"
        );
        assert_eq!(
            b.to_url(),
            "gs://my-cache/nix/store?endpoint=http://127.0.0.1:4443"
        );
        assert_eq!(Bucket::parse(&b.to_url()).unwrap(), b);
        let d = Bucket::parse("gs://cache").unwrap();
        assert_eq!(d.to_url(), "gs://cache");
        assert_eq!(
            d.url("x.narinfo").unwrap().as_str(),
            "https://storage.googleapis.com/cache/x.narinfo"
        );
        assert_eq!(d.host(), "storage.googleapis.com");
        for bad in [
            "s3://cache",
            "gs://UPPER",
            "gs://ab",
            "gs://cache?region=x",
            "gs://cache?endpoint=ftp://h",
            "gs://cache?endpoint=http://u:p@h",
            "gs://cache/../x",
        ] {
            assert!(Bucket::parse(bad).is_err(), "{bad}");
        }
    }
}
