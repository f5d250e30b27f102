//! Azure Blob Storage: where a cache lives (`azure://ACCOUNT/CONTAINER[/PREFIX][?endpoint=URL]`
//! or the portal's `https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]`), the credential
//! that reads it (an account key, a SAS we are given, or Entra ID: `entra.rs`), request
//! signing (`shared_key.rs`, `sas.rs`) and uploads (`upload.rs`).
//!
//! [`Blob`] is the kind-agnostic surface the proxy calls ([`crate::cloud::ObjectAuth`]).

pub mod entra;
pub mod sas;
pub mod shared_key;
pub mod upload;

use std::time::Duration;

use reqwest::Method;
use tokio::sync::Mutex;
use url::Url;

use crate::cloud::{AuthError, AuthResult, Authorized, BoxFuture, ObjectAuth, State, renew_due};
use sas::{DelegationKey, GivenSas, SasGrant};
use shared_key::AccountKey;

/// A Blob container cache's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub account: String,
    pub container: String,
    /// Key prefix below the container, no slashes at either end ("" for none).
    pub prefix: String,
    /// The account's blob endpoint, no trailing slash: `https://ACCOUNT.blob.core.windows.net`,
    /// or Azurite's path-style `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Url,
}

/// Storage account names: 3-24 lowercase letters and digits.
fn account_ok(a: &str) -> bool {
    (3..=24).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Container names: 3-63 of lowercase letters, digits and single hyphens, not at either end.
fn container_ok(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--")
}

/// The host suffix of public-cloud blob endpoints.
const BLOB_HOST: &str = ".blob.core.windows.net";

impl Container {
    /// Parses `azure://ACCOUNT/CONTAINER[/PREFIX][?endpoint=URL]` or
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]`.
    pub fn parse(text: &str) -> AuthResult<Container> {
        let bad = |why: &str| AuthError::Refused(format!("{text}: {why}"));
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let (account, rest, mut endpoint) = match url.scheme() {
            "azure" => {
                let account = url.host_str().unwrap_or_default().to_string();
                let endpoint = format!("https://{account}{BLOB_HOST}");
                (account, url.path().to_string(), endpoint)
            }
            "https" => {
                let host = url.host_str().unwrap_or_default();
                let account = host
                    .strip_suffix(BLOB_HOST)
                    .ok_or_else(|| bad("an https:// Azure cache URL is https://ACCOUNT.blob.core.windows.net/CONTAINER"))?
                    .to_string();
                if url.port().is_some() {
                    return Err(bad("the portal's blob URL has no port"));
                }
                (account, url.path().to_string(), format!("https://{host}"))
            }
            _ => return Err(bad("an Azure cache URL starts with azure:// or https://")),
        };
        if !account_ok(&account) {
            return Err(bad(
                "not a storage account name (3-24 lowercase letters and digits)",
            ));
        }
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" if url.scheme() == "azure" => {
                    endpoint = v.trim_end_matches('/').to_string()
                }
                other => return Err(bad(&format!("unknown parameter `{other}`"))),
            }
        }
        let endpoint = Url::parse(&endpoint).map_err(|e| bad(&format!("endpoint: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https")
            || endpoint.host_str().is_none()
            || endpoint.query().is_some()
            || !endpoint.username().is_empty()
        {
            return Err(bad("endpoint must be an http(s)://HOST[:PORT][/PATH] URL"));
        }
        let rest = rest.trim_matches('/');
        let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !container_ok(container) {
            return Err(bad(
                "not a container name (3-63 lowercase letters, digits and hyphens)",
            ));
        }
        let raw_path = text.split('?').next().unwrap_or_default();
        if raw_path.split('/').skip(3).any(|s| s == "." || s == "..") {
            return Err(bad("the prefix may not contain . or .. segments"));
        }
        Ok(Container {
            account,
            container: container.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint,
        })
    }

    /// The `azure://` URL as recorded in config.toml (the portal's form becomes this one):
    /// `?endpoint=` only when not the public cloud's.
    pub fn to_url(&self) -> String {
        let mut s = format!("azure://{}/{}", self.account, self.container);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        let endpoint = self.endpoint.as_str().trim_end_matches('/');
        if endpoint != format!("https://{}{BLOB_HOST}", self.account) {
            s.push_str("?endpoint=");
            s.push_str(endpoint);
        }
        s
    }

    /// The blob's name in the container (prefix joined).
    pub fn blob(&self, key: &str) -> String {
        let key = key.trim_start_matches('/');
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The blob's URL (each path segment percent-encoded).
    pub fn url(&self, key: &str) -> Url {
        let mut url = self.endpoint.clone();
        // http(s) URLs always have path segments (parse checked the scheme).
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().push(&self.container);
            for s in self.blob(key).split('/') {
                segs.push(s);
            }
        }
        url
    }

    /// The account's service URL (`ENDPOINT/`), for service-level calls.
    pub fn service_url(&self) -> Url {
        let mut url = self.endpoint.clone();
        let path = format!("{}/", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }
}

/// How this cache's requests are authorised.
pub enum Credential {
    /// The storage account key (Shared Key; presigns with a service SAS).
    Key(AccountKey),
    /// A SAS token we were given (appended to every request; never handed on in redirects).
    Sas(GivenSas),
    /// Entra ID (Bearer; presigns with a user-delegation SAS).
    Entra(entra::Entra),
}

/// The `<Code>` of the service's error answer, if any.
pub fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    Some(&body[start..start + len])
}

/// Which credential an Azure cache uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Key,
    Sas,
    Entra(entra::Route),
}

/// A stored account key first (it never expires and can presign), then a stored SAS token,
/// else Entra ID in its own order (`entra::choose`).
pub fn choose(has_key: bool, has_sas: bool, env: &entra::Facts) -> Choice {
    match (has_key, has_sas) {
        (true, _) => Choice::Key,
        (false, true) => Choice::Sas,
        (false, false) => Choice::Entra(entra::choose(env)),
    }
}

impl Credential {
    /// The credential [`choose`] picks from the secrets stored for the cache (`key`: the
    /// account key's base64, `sas`: a SAS token) and the environment snapshot `env`.
    pub fn resolve(
        key: Option<&str>,
        sas: Option<&str>,
        env: &entra::EntraEnv,
        http: &reqwest::Client,
    ) -> AuthResult<Credential> {
        match (choose(key.is_some(), sas.is_some(), &env.facts()), key, sas) {
            (Choice::Key, Some(k), _) => Ok(Credential::Key(AccountKey::from_base64(k)?)),
            (Choice::Sas, _, Some(s)) => Ok(Credential::Sas(GivenSas::parse(s)?)),
            (Choice::Entra(route), _, _) => {
                Ok(Credential::Entra(entra::Entra::build(route, env, http)?))
            }
            _ => Err(AuthError::Refused("no Azure credential".into())),
        }
    }
}

/// An Azure Blob cache with its credential.
pub struct Blob {
    pub container: Container,
    cred: Credential,
    http: reqwest::Client,
    udk: Mutex<Option<(i64, DelegationKey)>>,
}

/// How long a user delegation key we ask for lives (the service allows up to 7 days).
const UDK_LIFE: i64 = 3600;

/// RFC 1123 date for `x-ms-date`.
fn http_date(secs: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[u8::from(t.month()) as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl Blob {
    pub fn new(container: Container, cred: Credential, http: reqwest::Client) -> Blob {
        Blob {
            container,
            cred,
            http,
            udk: Mutex::new(None),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn credential(&self) -> &Credential {
        &self.cred
    }

    /// Authorises a request on `url` with `query` (decoded pairs, already in `url` for the
    /// SAS case they are appended) and the `headers` it will carry (they are signed with
    /// Shared Key: send exactly these).
    pub async fn authorize_url(
        &self,
        method: Method,
        mut url: Url,
        headers: &[(String, String)],
    ) -> AuthResult<Authorized> {
        let now = crate::time::now();
        let mut all: Vec<(String, String)> = headers.to_vec();
        all.push(("x-ms-version".into(), sas::API_VERSION.into()));
        all.push(("x-ms-date".into(), http_date(now)));
        let mut auth: Option<(&'static str, String)> = None;
        match &self.cred {
            Credential::Key(key) => {
                let query: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let sts = shared_key::string_to_sign(
                    method.as_str(),
                    &all,
                    &self.container.account,
                    url.path(),
                    &query,
                );
                auth = Some((
                    "authorization",
                    shared_key::authorization(&self.container.account, key, &sts),
                ));
            }
            Credential::Sas(sas) => {
                if sas.expires.is_some_and(|e| e <= now) {
                    return Err(AuthError::NeedsPerson {
                        why: format!("the SAS token for {} expired", self.container.account),
                        fix: "nixstore-auth secret set NAME --sas-stdin".into(),
                    });
                }
                let q = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{}", sas.as_query()),
                    _ => sas.as_query().to_string(),
                };
                url.set_query(Some(&q));
            }
            Credential::Entra(e) => {
                let t = e.token().await?;
                auth = Some(("authorization", format!("Bearer {}", t.secret.as_str())));
            }
        }
        let mut req = Authorized::new(method, url);
        for (k, v) in &all {
            let name = reqwest::header::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| AuthError::Refused(format!("bad header name {k}")))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| AuthError::Refused(format!("bad value for header {k}")))?;
            req.headers.insert(name, value);
        }
        if let Some((name, value)) = auth {
            req.header(name, &value, true)?;
        }
        Ok(req)
    }

    /// A user delegation key, fetched with the Entra token and kept while fresh.
    async fn delegation_key(&self, e: &entra::Entra) -> AuthResult<DelegationKey> {
        let now = crate::time::now();
        let mut held = self.udk.lock().await;
        if let Some((issued, k)) = held.as_ref()
            && let Some(exp) = k.expires()
            && !renew_due(*issued, exp, now)
        {
            return Ok(k.clone());
        }
        let token = e.token().await?;
        let mut url = self.container.service_url();
        url.set_query(Some("restype=service&comp=userdelegationkey"));
        let resp = self
            .http
            .post(url)
            .bearer_auth(token.secret.as_str())
            .header("x-ms-version", sas::API_VERSION)
            .header("x-ms-date", http_date(now))
            .header("content-type", "application/xml")
            .body(sas::delegation_key_request(now - 60, now + UDK_LIFE))
            .send()
            .await
            .map_err(|e| AuthError::Transient(format!("Get User Delegation Key: {e}")))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let msg = format!(
                "Get User Delegation Key answered {status} ({})",
                error_code(&body).unwrap_or("no error code")
            );
            return Err(if status.is_server_error() {
                AuthError::Transient(msg)
            } else {
                AuthError::Refused(msg)
            });
        }
        let key = DelegationKey::parse(&body)?;
        *held = Some((now, key.clone()));
        Ok(key)
    }

    async fn presign_impl(&self, key: &str, ttl: Duration) -> AuthResult<Option<Url>> {
        let now = crate::time::now();
        let resource = sas::canonical_resource(
            &self.container.account,
            &self.container.container,
            &self.container.blob(key),
        );
        let mut grant = SasGrant {
            permissions: "r",
            start: Some(now - 60),
            expiry: now + ttl.as_secs().max(1) as i64,
            resource,
        };
        let query = match &self.cred {
            Credential::Key(k) => sas::service_sas(k, &grant),
            // A given SAS may allow far more than reading one blob for minutes: never hand it on.
            Credential::Sas(_) => return Ok(None),
            Credential::Entra(e) => {
                let udk = self.delegation_key(e).await?;
                if let Some(exp) = udk.expires() {
                    grant.expiry = grant.expiry.min(exp);
                }
                sas::user_delegation_sas(&udk, &grant)
            }
        };
        let mut url = self.container.url(key);
        url.set_query(Some(&query));
        Ok(Some(url))
    }

    fn describe_impl(&self) -> String {
        match &self.cred {
            Credential::Key(_) => format!("account key of {}", self.container.account),
            Credential::Sas(_) => "SAS token".into(),
            Credential::Entra(e) => e.route.describe().into(),
        }
    }

    fn state_impl(&self) -> State {
        match &self.cred {
            Credential::Key(_) => State::Valid { until: None },
            Credential::Sas(s) => match s.expires {
                Some(e) if e <= crate::time::now() => State::NeedsPerson {
                    why: "the SAS token expired".into(),
                    fix: "nixstore-auth secret set NAME --sas-stdin".into(),
                },
                until => State::Valid { until },
            },
            Credential::Entra(e) => e
                .cache()
                .needs_person()
                .unwrap_or(State::Renews { until: None }),
        }
    }
}

impl ObjectAuth for Blob {
    fn describe(&self) -> String {
        self.describe_impl()
    }

    fn authorize<'a>(
        &'a self,
        method: Method,
        key: &'a str,
    ) -> BoxFuture<'a, AuthResult<Authorized>> {
        Box::pin(async move {
            self.authorize_url(method, self.container.url(key), &[])
                .await
        })
    }

    fn presign_get<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, AuthResult<Option<Url>>> {
        Box::pin(self.presign_impl(key, ttl))
    }

    fn state(&self) -> State {
        self.state_impl()
    }

    /// An Entra token the store refused is dropped, so that the next request gets a new one
    /// (Azure answers 401/403; Azurite 400 `InvalidAuthenticationInfo`). A key or a SAS we were
    /// given only a person replaces.
    fn refused(&self, _request: &Authorized) -> bool {
        match &self.cred {
            Credential::Entra(e) => {
                e.cache().forget_now();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_urls() {
        let c = Container::parse(
            "azure://devstoreaccount1/cache/nix?endpoint=http://127.0.0.1:10000/devstoreaccount1",
        )
        .unwrap();
        assert_eq!(
            (c.account.as_str(), c.container.as_str(), c.prefix.as_str()),
            ("devstoreaccount1", "cache", "nix")
        );
        assert_eq!(
            c.url("nar/a b.nar").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/cache/nix/nar/a%20b.nar"
        );
        assert_eq!(
            c.service_url().as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/"
        );
        assert_eq!(
            c.to_url(),
            "azure://devstoreaccount1/cache/nix?endpoint=http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(Container::parse(&c.to_url()).unwrap(), c);
        let p = Container::parse("https://myacct.blob.core.windows.net/cache").unwrap();
        assert_eq!(p, Container::parse("azure://myacct/cache").unwrap());
        assert_eq!(p.to_url(), "azure://myacct/cache");
        assert_eq!(
            p.url("x.narinfo").as_str(),
            "https://myacct.blob.core.windows.net/cache/x.narinfo"
        );
        assert_eq!(
            p.service_url().as_str(),
            "https://myacct.blob.core.windows.net/"
        );
        for bad in [
            "azure://UPPER/cache",
            "azure://ab/cache",
            "azure://acct/ca",
            "azure://acct/-cache",
            "azure://acct/ca--che",
            "azure://acct/cache?sas=x",
            "azure://acct/cache?endpoint=ftp://h",
            "https://acct.example.com/cache",
            "https://acct.blob.core.windows.net:444/cache",
            "https://acct.blob.core.windows.net/cache?endpoint=http://x",
            "azure://acct/cache/../x",
            "s3://acct/cache",
        ] {
            assert!(Container::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_refused_entra_token_is_renewed_and_a_key_is_not() {
        use std::os::unix::fs::PermissionsExt;
        let c = Container::parse("azure://acct1/cache").unwrap();
        let http = reqwest::Client::new();
        let key = Blob::new(
            c.clone(),
            Credential::Key(AccountKey::from_base64(&"a".repeat(88)).unwrap()),
            http.clone(),
        );
        let r = key.authorize(Method::GET, "x.narinfo").await.unwrap();
        assert!(!key.refused(&r));
        // An `az` stub that hands out tok1, tok2, ...: a refusal makes the next request ask
        // it again, once.
        let dir = tempfile::tempdir().unwrap();
        let az = dir.path().join("az");
        let n = dir.path().join("n");
        std::fs::write(
            &az,
            format!(
                "#!/bin/sh\nn=$(cat {0} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {0}\n\
                 echo \"{{\\\"accessToken\\\":\\\"tok$n\\\",\\\"expires_on\\\":4102444800}}\"\n",
                n.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = entra::EntraEnv {
            az: Some(az),
            ..Default::default()
        };
        let entra = Blob::new(
            c,
            Credential::Entra(entra::Entra::build(entra::Route::AzureCli, &env, &http).unwrap()),
            http,
        );
        let a = entra.authorize(Method::GET, "x.narinfo").await.unwrap();
        let b = entra.authorize(Method::GET, "y.narinfo").await.unwrap();
        assert_eq!(a.headers["authorization"], "Bearer tok1");
        assert_eq!(b.headers["authorization"], "Bearer tok1");
        assert!(entra.refused(&a));
        let c = entra.authorize(Method::GET, "x.narinfo").await.unwrap();
        assert_eq!(c.headers["authorization"], "Bearer tok2");
    }

    #[test]
    fn credential_order_table() {
        use entra::{Facts, Route};
        let wi = Facts {
            client_id: true,
            tenant_id: true,
            federated_token_file: true,
            ..Default::default()
        };
        let az = Facts {
            az_on_path: true,
            ..Default::default()
        };
        let none = Facts::default();
        // (stored key, stored SAS, environment) → credential
        let cases = [
            (true, true, wi, Choice::Key),
            (true, false, none, Choice::Key),
            (false, true, wi, Choice::Sas),
            (false, true, none, Choice::Sas),
            (false, false, wi, Choice::Entra(Route::WorkloadIdentity)),
            (false, false, az, Choice::Entra(Route::AzureCli)),
            (false, false, none, Choice::Entra(Route::ManagedIdentity)),
        ];
        for (key, sas, env, want) in cases {
            assert_eq!(choose(key, sas, &env), want, "key {key} sas {sas} {env:?}");
        }
        let http = reqwest::Client::new();
        let env = entra::EntraEnv::default();
        assert!(matches!(
            Credential::resolve(Some("bad key"), None, &env, &http),
            Err(AuthError::Refused(_))
        ));
        assert!(matches!(
            Credential::resolve(None, Some("sv=1&sig=x"), &env, &http),
            Ok(Credential::Sas(_))
        ));
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            error_code(
                "<?xml?><Error><Code>AuthenticationFailed</Code><Message>x</Message></Error>"
            ),
            Some("AuthenticationFailed")
        );
        assert_eq!(error_code("nothing"), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_706_781_600), "Thu, 01 Feb 2024 10:00:00 GMT");
    }
}
